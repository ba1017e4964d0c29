"""Running commands and copying files on a host: over SSH (paramiko) or locally.

One SSH connection per host, opened once and reused for every command and SFTP
transfer. Host keys are checked against known_hosts: an unknown key is refused unless
the admin confirmed its fingerprint, a changed key is always refused. sudo is applied
here, so recipes say *what* needs root, not *how*; a sudo password is sent on stdin,
never on a command line, and never reaches the command's own stdin (see ``_sudo_wrap``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import os
import selectors
import shlex
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hubwizard.core.errors import HostKeyError, UnreachableError
from hubwizard.remote import channel_io
from hubwizard.remote.channels import DEFAULT_BUDGET, ChannelBudget
from hubwizard.remote.clientkeys import KeyRing, LoginAgain, authenticate
from hubwizard.remote.proxycommand import ProxyProcess

# paramiko logs a refused channel itself ("Secsh channel N open FAILED"); with no logging set up
# Python prints that raw to stderr in the middle of our report. What matters is raised to us.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

EOF_GRACE_S = 2.0  # after the exit status, how long to wait for the rest of the output
BANNER_RETRIES = 2  # a server that closes before its banner (sshd's MaxStartups) is tried again
EXEC_TRIES = 4  # exec requests the server refused ("Channel closed."), tried again with back-off
OnLine = Callable[[str, str], None]  # (stream "out"|"err", line without newline)


@dataclass(frozen=True)
class Result:
    """What one command did."""

    host: str
    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def output(self) -> str:
        return (self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr).strip()


class Transport(Protocol):
    """What the engine needs of a host."""

    name: str

    def run(
        self,
        command: str,
        *,
        sudo: bool = False,
        stdin: str | None = None,
        timeout: float | None = None,
        on_line: OnLine | None = None,
    ) -> Result: ...

    def put(self, data: bytes, path: str, *, mode: int = 0o644, sudo: bool = False) -> None: ...

    def get(self, path: str, *, sudo: bool = False) -> bytes: ...

    def close(self) -> None: ...


def fingerprint(key_type: str, key_bytes: bytes) -> str:
    """OpenSSH-style SHA256 fingerprint, what admins compare against `ssh-keygen -lf`."""
    digest = base64.b64encode(hashlib.sha256(key_bytes).digest()).decode().rstrip("=")
    return f"{key_type} SHA256:{digest}"


SUDO_PW_VAR = "HUBWIZARD_SUDO_PW"  # lives only in the wrapper shell and sudo's askpass helper


def _sudo_wrap(command: str, user: str, sudo: bool, password: str | None) -> tuple[str, str | None]:
    """Wrap ``command`` for root when needed; return (command, stdin prefix).

    With a password, a wrapper shell reads the first stdin line itself and hands it to sudo
    through an askpass helper (``printenv`` of a variable, no file holds it); the command gets
    the rest of stdin untouched. ``sudo -S`` would leave the password on the command's stdin
    whenever sudo does not ask (NOPASSWD, a cached timestamp): ``docker login --password-stdin``
    would send it to a registry, ``docker secret create -`` would store it."""
    if not sudo or user == "root":
        return command, None
    if password is None:
        return f"sudo -n -- sh -c {shlex.quote(command)}", None
    v = SUDO_PW_VAR
    body = (
        f"IFS= read -r {v}; export {v}; SUDO_ASKPASS=$(command -v printenv) exec sudo -A -p {v} -- "
        f"sh -c {shlex.quote(f'unset {v}; {command}')}"
    )
    return f"sh -c {shlex.quote(body)}", password + "\n"


class _SudoGate:
    """Tries the sudo password once per connection (``sudo -S -v``, fed nothing but the password),
    so a wrong one costs one attempt, not three per command (pam_faillock counts them), and every
    later command is refused with sudo's own words instead of trying again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checked = False
        self._refusal: Result | None = None

    def refusal(self, t: Transport, password: str) -> Result | None:
        with self._lock:
            if not self._checked:
                self._refusal = _validate_sudo(t, password)
                self._checked = True
            return self._refusal


def _validate_sudo(t: Transport, password: str) -> Result | None:
    """None when sudo works for the login user with this password (or needs none); else sudo's answer."""
    if t.run("sudo -n true").ok:
        return None
    res = t.run("sudo -S -p '' -v", stdin=password + "\n")
    return None if res.ok else res


def _sudo_refused(t, command: str, sudo: bool) -> Result | None:
    """The result to return instead of running ``command`` when the connection's sudo check failed."""
    if not sudo or t.user == "root" or t.sudo_password is None:
        return None
    refused = t._sudo_gate.refusal(t, t.sudo_password)
    if refused is None:
        return None
    return Result(t.name, command, refused.exit_code or 1, "", refused.stderr.strip() or refused.output)


class _LineSplitter:
    """Turns chunks into complete lines for a callback, keeping the full text too."""

    def __init__(self, stream: str, on_line: OnLine | None) -> None:
        self.stream, self.on_line = stream, on_line
        self.parts: list[str] = []
        self._pending = ""

    def feed(self, chunk: bytes) -> None:
        text = chunk.decode("utf-8", "replace")
        self.parts.append(text)
        if self.on_line is None:
            return
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self.on_line(self.stream, line.rstrip("\r"))

    def close(self) -> str:
        if self.on_line is not None and self._pending:
            self.on_line(self.stream, self._pending.rstrip("\r"))
            self._pending = ""
        return "".join(self.parts)


# --------------------------------------------------------------------------- local


class LocalTransport:
    """The machine hubwizard runs on: same interface, no SSH."""

    def __init__(self, name: str = "local", *, sudo_password: str | None = None) -> None:
        self.name = name
        self.user = os.environ.get("USER") or ("root" if os.geteuid() == 0 else "user")
        if os.geteuid() == 0:
            self.user = "root"
        self.sudo_password = sudo_password
        self._sudo_gate = _SudoGate()

    def run(self, command, *, sudo=False, stdin=None, timeout=None, on_line=None) -> Result:
        refused = _sudo_refused(self, command, sudo)
        if refused is not None:
            return refused
        wrapped, prefix = _sudo_wrap(command, self.user, sudo, self.sudo_password)
        data = (prefix or "") + (stdin or "")
        proc = subprocess.Popen(
            ["/bin/sh", "-c", wrapped],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdin and proc.stdout and proc.stderr
        if data:
            proc.stdin.write(data.encode())
        proc.stdin.close()
        out, err = _LineSplitter("out", on_line), _LineSplitter("err", on_line)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        deadline = None if timeout is None else time.monotonic() + timeout
        while sel.get_map():
            if deadline is not None and time.monotonic() > deadline:
                proc.kill()
                break
            for key, _ in sel.select(timeout=0.5):
                chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                if chunk:
                    key.data.feed(chunk)
                else:
                    sel.unregister(key.fileobj)
        code = proc.wait()
        if deadline is not None and time.monotonic() > deadline:
            code = 124
        return Result(self.name, command, code, out.close(), err.close())

    def put(self, data: bytes, path: str, *, mode: int = 0o644, sudo: bool = False) -> None:
        import tempfile

        tmpdir = tempfile.mkdtemp(prefix=".hubwizard-")  # private (0700): no one else can swap the file
        tmp = os.path.join(tmpdir, "upload")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        _install(self, tmpdir, path, mode, sudo)

    def get(self, path: str, *, sudo: bool = False) -> bytes:
        if not sudo or self.user == "root":
            return Path(path).read_bytes()
        res = self.run(f"base64 < {shlex.quote(path)}", sudo=True)
        return base64.b64decode(res.stdout)

    def close(self) -> None:
        pass


def _install(t: Transport, tmpdir: str, path: str, mode: int, sudo: bool) -> None:
    """Put ``tmpdir``/upload at ``path`` with ``mode``, atomically (a rename next to the target),
    and remove ``tmpdir``: one command.

    Under sudo the file becomes root:root: an upload is owned by the login user, who must not
    be able to rewrite a file root runs later (a unit, a script)."""
    q = shlex.quote
    parent = os.path.dirname(path) or "/"
    staged = f"{parent}/.{os.path.basename(path)}.hubwizard-new"
    owner = "-o root -g root " if sudo else ""
    cmd = (
        f"mkdir -p {q(parent)} && install {owner}-m {mode:o} {q(tmpdir + '/upload')} {q(staged)} && "
        f"mv -f {q(staged)} {q(path)}; rc=$?; rm -rf {q(tmpdir)}; [ $rc = 0 ] || rm -f {q(staged)}; exit $rc"
    )
    res = t.run(cmd, sudo=sudo)
    if not res.ok:
        t.run(f"rm -rf {q(tmpdir)}")  # when sudo itself failed, nothing ran
        raise OSError(f"{t.name}: cannot write {path}: {res.output}")


# --------------------------------------------------------------------------- ssh


@dataclass
class SshTarget:
    """Where and how to connect, after ~/.ssh/config was applied."""

    name: str
    hostname: str
    port: int = 22
    user: str = "root"
    key_files: tuple[str, ...] = ()
    proxy_jump: SshTarget | None = None  # the last hop before this host; its own proxy_jump the one before
    sudo_password: str | None = None
    proxy_command: str | None = None  # ~/.ssh/config's ProxyCommand, tokens expanded (when no jump)


class HostKeyPolicy:
    """Decides on host keys; the single place that says yes to an unknown key.

    ``confirm(host, fingerprint) -> bool`` is how the TUI shows a modal, or the CLI's
    ``--accept-new-host-keys`` says yes. Accepted keys are written to known_hosts.

    One question per key: several connections may meet the same unknown key at once (the TUI
    probes every host in its own worker, each node reaching the hub as its jump host). Questions
    about one known_hosts file are asked one at a time, in every policy of the process; after
    waiting its turn a connection reads the file again (another one may have added the key), and
    a key refused while it waited is refused without asking."""

    def __init__(self, known_hosts: str | Path, confirm: Callable[[str, str], bool] | None = None) -> None:
        self.path = Path(known_hosts).expanduser()
        self.confirm = confirm

    def check(self, host_id: str, key) -> None:  # key: paramiko.PKey
        if self._known(host_id, key):
            return
        waiting_since = time.monotonic()
        lock, refused = _asking(self.path)
        with lock:
            if self._known(host_id, key):  # accepted by another connection while this one waited
                return
            fp = fingerprint(key.get_name(), key.asbytes())
            said_no = refused.get((host_id, key.get_base64()), float("-inf")) >= waiting_since
            if said_no or self.confirm is None or not self.confirm(host_id, fp):
                if self.confirm is not None and not said_no:
                    refused[(host_id, key.get_base64())] = time.monotonic()
                raise HostKeyError(
                    f"host {host_id} is not in {self.path}; it presents {fp}",
                    fix="compare that fingerprint with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the "
                    "host's console, then re-run with --accept-new-host-keys (or confirm it in the wizard)",
                )
            append_known_host(self.path, host_id, key.get_name(), key.get_base64())

    def _known(self, host_id: str, key) -> bool:
        """True if known_hosts holds this key for ``host_id``, False if it holds nothing for it;
        HostKeyError for a revoked, changed or other-type key."""
        known, revoked = load_known_hosts(self.path)
        fp = fingerprint(key.get_name(), key.asbytes())
        if key.get_base64() in revoked:
            raise HostKeyError(
                f"host {host_id} presents {fp}, a key marked @revoked in {self.path}",
                fix="the machine still uses a key its admin revoked: give it a new host key, check it on its console, "
                "then run again",
            )
        entries = known.lookup(host_id)
        if entries is not None and key.get_name() in entries:
            if entries[key.get_name()].asbytes() == key.asbytes():
                return True
            raise HostKeyError(
                f"host key of {host_id} CHANGED: it now presents {fp}. "
                "This may be a man-in-the-middle attack, or the machine was reinstalled.",
                fix=f"if the machine was rebuilt, remove the old key with `ssh-keygen -R '{host_id}' -f {self.path}` "
                "after checking the new fingerprint on its console, then run again",
            )
        if entries is not None and entries.keys():
            # known host with another key type: treat as changed, never silently add.
            raise HostKeyError(
                f"host {host_id} presents a {key.get_name()} key {fp} but known_hosts holds another type",
                fix=f"check on its console, then `ssh-keygen -R '{host_id}' -f {self.path}` and run again",
            )
        return False


_ASKING_LOCK = threading.Lock()
_ASKING: dict[Path, tuple[threading.Lock, dict[tuple[str, str], float]]] = {}


def _asking(path: Path) -> tuple[threading.Lock, dict[tuple[str, str], float]]:
    """The process-wide question lock of a known_hosts file, and when each (host, key) was refused."""
    with _ASKING_LOCK:
        return _ASKING.setdefault(path.resolve(), (threading.Lock(), {}))


def load_known_hosts(path: Path):
    """(paramiko HostKeys, the base64 of every @revoked key) from an OpenSSH known_hosts file.

    paramiko's own load() raises on an ``@cert-authority`` line; markers are read here: @revoked
    keys are refused, @cert-authority lines skipped (paramiko checks no host certificates), and a
    line paramiko cannot read is skipped as ssh itself does."""
    import paramiko
    from paramiko.hostkeys import HostKeyEntry, InvalidHostKey

    known, revoked = paramiko.HostKeys(), set[str]()
    if not path.exists():
        return known, revoked
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0].startswith("@"):
            if fields[0] == "@revoked" and len(fields) >= 4:
                revoked.add(fields[3])
            continue
        try:
            entry = HostKeyEntry.from_line(line, lineno)
        except (InvalidHostKey, paramiko.SSHException, ValueError):
            continue
        if entry is not None:
            known._entries.append(entry)  # type: ignore[attr-defined]  # paramiko: no public add of a parsed entry
    return known, revoked


def append_known_host(path: Path, host_id: str, key_type: str, key_b64: str) -> None:
    """Append the one confirmed line; never rewrite the file: paramiko's save() would drop its
    comments, ``@cert-authority``/``@revoked`` lines and merge hashed entries it cannot read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "ab") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() > 0:
            with open(path, "rb") as rd:
                rd.seek(-1, os.SEEK_END)
                if rd.read(1) != b"\n":
                    fh.write(b"\n")  # the last line had no newline: ours must not join it
        fh.write(f"{host_id} {key_type} {key_b64}\n".encode())


def _host_id(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


def _send_stdin(chan: Any, data: str, timeout: float | None) -> bool:
    """The command's input, then its end (in order with sshd's close: remote/channel_io.py).
    False when the command took none of its input in time (treated as a timeout)."""
    try:
        if data:
            channel_io.send_input(chan, data.encode(), timeout or channel_io.STALL_S)
    except channel_io.InputClosed:
        pass  # the command ended before reading it all: its exit status says how
    except TimeoutError:
        return False
    channel_io.send_eof(chan)
    return True


class SshTransport:
    """A paramiko connection to one host, reused for everything.

    Session channels (commands, SFTP, the Docker API) are opened under a ``ChannelBudget`` so the
    connection never holds more than sshd's MaxSessions allows. A jumped host's connection runs
    through ``jump``, the jump host's own transport (shared, not closed here), or else through a
    connection of its own to ``target.proxy_jump``, or through ``target.proxy_command``."""

    def __init__(self, target: SshTarget, policy: HostKeyPolicy, *, connect_timeout: float = 10.0,
                 jump: SshTransport | None = None, budget: ChannelBudget | int = DEFAULT_BUDGET,
                 keys: KeyRing | None = None) -> None:
        self.name = target.name
        self.target = target
        self.user = target.user
        self.sudo_password = target.sudo_password
        self._sudo_gate = _SudoGate()
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.budget = budget if isinstance(budget, ChannelBudget) else ChannelBudget(target.name, budget)
        self._client = None
        self._shared_jump = jump
        self._jump: SshTransport | None = None
        self._proxy: ProxyProcess | None = None
        self.keys = keys if keys is not None else KeyRing()
        self._lock = threading.Lock()

    # -- connection -----------------------------------------------------------
    def connect(self):
        """Open the connection (once); raise UnreachableError/HostKeyError with a fix."""
        with self._lock:
            if self._client is not None and self._client.get_transport() and self._client.get_transport().is_active():
                return self._client
            self._client = self._open()
            return self._client

    def _open(self):
        retries, logged_again = 0, False
        while True:
            try:
                return self._open_once()
            except _NoBanner as exc:
                if exc.timed_out or retries == BANNER_RETRIES:
                    raise exc.error from None
                retries += 1
                time.sleep(0.5 * retries)
            except LoginAgain:
                if logged_again:
                    t = self.target
                    raise UnreachableError(
                        f"{t.name}: {t.hostname}:{t.port} closed the login twice while a key's passphrase was typed",
                        fix="load the key into ssh-agent (`ssh-add KEY`) so no passphrase is asked during a login",
                    ) from None
                logged_again = True  # the key is unlocked now: the next login offers it first

    def _jump_transport(self) -> SshTransport | None:
        t = self.target
        if self._shared_jump is not None:
            return self._shared_jump
        if t.proxy_jump is None:
            return None
        if self._jump is None:
            self._jump = SshTransport(t.proxy_jump, self.policy, connect_timeout=self.connect_timeout, keys=self.keys)
        return self._jump

    def _socket(self):
        """A byte stream to the target's sshd: TCP, or a tunnel through the jump host."""
        t = self.target
        jump = self._jump_transport()
        if jump is not None:
            try:
                jump.connect()
            except UnreachableError as exc:
                raise type(exc)(f"{t.name}: unreachable through {jump.name}: {exc.message}", fix=exc.fix) from None
            return jump.open_tunnel(t.name, t.hostname, t.port, self.connect_timeout)
        if t.proxy_command:
            self._close_proxy()
            self._proxy = ProxyProcess(t.name, t.proxy_command, self.connect_timeout)
            return self._proxy.sock
        try:
            return socket.create_connection((t.hostname, t.port), timeout=self.connect_timeout)
        except TimeoutError:
            raise UnreachableError(
                f"{t.name}: no answer from {t.hostname}:{t.port} within {self.connect_timeout:g} s (TCP connect timed out)",
                fix="check the address and port in the site file, that the machine is up, and that no firewall "
                "drops SSH between here and there",
            ) from None
        except ConnectionRefusedError:
            raise UnreachableError(
                f"{t.name}: connection refused by {t.hostname}:{t.port}: the machine answers but nothing listens there",
                fix="check the port in the site file and that sshd runs on the machine (`systemctl status ssh`)",
            ) from None
        except OSError as exc:
            raise UnreachableError(
                f"{t.name}: cannot connect to {t.hostname}:{t.port}: {exc.strerror or type(exc).__name__}",
                fix="check the address (name resolution, routes) and port in the site file and that the machine is up",
            ) from None

    def _open_once(self):
        import paramiko

        t = self.target
        sock = self._socket()
        transport = paramiko.Transport(sock)
        transport.banner_timeout = self.connect_timeout
        started = time.monotonic()
        try:
            transport.start_client(timeout=self.connect_timeout)  # returns quietly on a timeout
            server_key = transport.get_remote_server_key()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            transport.close()
            if self._proxy is not None:
                raise self._proxy.failure(f"no SSH server answered at {t.hostname}:{t.port}") from None
            if not transport.remote_version:
                raise _NoBanner(self._no_banner(), time.monotonic() - started >= self.connect_timeout * 0.9) from None
            raise UnreachableError(
                f"{t.name}: the SSH handshake with {t.hostname}:{t.port} failed ({type(exc).__name__}: {exc})",
                fix="check that the server's sshd is OpenSSH 7.4 or newer and accepts ed25519/ecdsa/rsa-sha2 keys",
            ) from None
        try:
            self.policy.check(_host_id(t.hostname, t.port), server_key)
            self._authenticate(transport)
        except paramiko.AuthenticationException as exc:
            transport.close()
            raise UnreachableError(
                f"{t.name}: SSH login as {t.user}@{t.hostname}:{t.port} refused: {exc}",
                fix=f"check the user ({t.user}) and the key (key = ... in the site file, ssh-agent, ~/.ssh/config), "
                "and that the key's .pub line is in that user's ~/.ssh/authorized_keys on the host",
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            transport.close()
            raise UnreachableError(
                f"{t.name}: SSH to {t.user}@{t.hostname}:{t.port} failed after the handshake ({type(exc).__name__}: {exc})",
                fix="check the user, the key (key = ... in the site file, ssh-agent, ~/.ssh/config) "
                "and that the key is in the user's authorized_keys",
            ) from None
        except Exception:
            transport.close()
            raise
        client = paramiko.SSHClient()
        # an SSHClient around our checked transport: paramiko has no public way to wrap one
        client._transport = transport  # type: ignore[attr-defined]
        return client

    def _no_banner(self) -> UnreachableError:
        t = self.target
        return UnreachableError(
            f"{t.name}: {t.hostname}:{t.port} accepted the connection but sent no SSH banner within "
            f"{self.connect_timeout:g} s: not an SSH server on that port, or sshd dropped it (MaxStartups: too many "
            "connections being set up at once)",
            fix="check the port in the site file is sshd's (`Port` in /etc/ssh/sshd_config), not another service; "
            "if it is, raise `MaxStartups` in sshd_config",
        )

    def _authenticate(self, transport) -> None:
        """Key files, then ssh-agent, then a passphrase asked for a locked key file (clientkeys)."""
        authenticate(transport, self.target, self.keys)

    # -- channels -------------------------------------------------------------
    def open_session(self, what: str):
        """A session channel under the budget: waits for a free one, retries a refused one, and
        raises ChannelRefusedError (host, MaxSessions, fix) when the server keeps refusing."""
        import paramiko

        client = self.connect()

        def opener():
            transport = client.get_transport()
            try:
                return transport.open_session(timeout=self.connect_timeout)
            except paramiko.ChannelException:
                raise _Refused from None
            except paramiko.SSHException as exc:
                # paramiko keeps one "last error" per connection: of two refusals at once, one
                # thread gets the ChannelException, the other this generic error.
                if transport.is_active() and "Unable to open channel" in str(exc):
                    raise _Refused from None
                raise

        return self.budget.open(opener, what, (_Refused,))

    def exec_session(self, what: str, command: str):
        """A session running ``command``. The server may refuse the exec request itself (paramiko
        then says "Channel closed." or repeats an older error; seen in the lab): the command did not start, so a
        new session is tried, a few times with back-off, while the connection stays up."""
        import paramiko

        for attempt in range(EXEC_TRIES):
            chan = self.open_session(what)
            try:
                chan.exec_command(command)
                return chan
            except (paramiko.SSHException, EOFError) as exc:
                # paramiko raises the connection's saved error for a refused request when it has
                # one (an EOFError of an earlier channel), else "Channel closed."
                transport = chan.get_transport()  # this connection: never a new one made here
                chan.close()
                refused = isinstance(exc, EOFError) or "Channel closed" in str(exc)
                if not refused or not transport.is_active() or attempt == EXEC_TRIES - 1:
                    raise
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def open_tunnel(self, name: str, hostname: str, port: int, timeout: float):
        """A direct-tcpip channel to ``hostname:port`` as seen from this host (for a jumped host)."""
        import paramiko

        transport = self.connect().get_transport()
        try:
            return transport.open_channel("direct-tcpip", (hostname, port), ("127.0.0.1", 0), timeout=timeout)
        except paramiko.ChannelException as exc:
            if exc.code == 1:  # administratively prohibited
                raise UnreachableError(
                    f"{name}: the jump host {self.name} refuses to forward to {hostname}:{port}",
                    fix=f"allow forwarding in {self.name}'s /etc/ssh/sshd_config (`AllowTcpForwarding yes`, "
                    "`PermitOpen`), reload sshd, then run again",
                ) from None
            raise UnreachableError(
                f"{name}: the jump host {self.name} cannot connect to {hostname}:{port}",
                fix=f"check, from {self.name}, that the machine is up and its sshd listens on port {port} "
                f"(the address as {self.name} sees it)",
            ) from None
        except (paramiko.SSHException, OSError, EOFError):
            if transport.is_active():  # paramiko's "Timeout opening channel."
                raise UnreachableError(
                    f"{name}: the jump host {self.name} got no answer from {hostname}:{port} within {timeout:g} s",
                    fix=f"check the address and port as {self.name} sees them, that the machine is up, and that "
                    f"no firewall between {self.name} and it drops SSH",
                ) from None
            raise UnreachableError(
                f"{name}: cannot open a tunnel to {hostname}:{port}: the connection to the jump host {self.name} dropped",
                fix=f"check {self.name} and the network, then run again",
            ) from None

    # -- commands -------------------------------------------------------------
    def run(self, command, *, sudo=False, stdin=None, timeout=None, on_line=None) -> Result:
        client = self.connect()
        refused = _sudo_refused(self, command, sudo)
        if refused is not None:
            return refused
        wrapped, prefix = _sudo_wrap(command, self.user, sudo, self.sudo_password)
        try:
            chan = self.exec_session(f"the command `{_short(command)}`", wrapped)
        except UnreachableError:
            raise
        except Exception as exc:
            raise UnreachableError(
                f"{self.name}: the SSH connection dropped before `{_short(command)}` could start ({type(exc).__name__})",
                fix="check the host is up and the network, then run again: finished steps are kept",
            ) from None
        chan.settimeout(1.0)
        deadline = None if timeout is None else time.monotonic() + timeout
        timed_out = not _send_stdin(chan, (prefix or "") + (stdin or ""), timeout)
        out, err = _LineSplitter("out", on_line), _LineSplitter("err", on_line)
        exited_at = 0.0
        while True:
            got = False
            while chan.recv_ready():
                out.feed(chan.recv(65536))
                got = True
            while chan.recv_stderr_ready():
                err.feed(chan.recv_stderr(65536))
                got = True
            if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                # sshd may send the exit status before it has drained the command's output:
                # wait for EOF too (briefly: a background child may hold stdout open forever)
                exited_at = exited_at or time.monotonic()
                if chan.eof_received or chan.closed or time.monotonic() - exited_at > EOF_GRACE_S:
                    break
            if chan.closed and not got:
                break
            if timed_out or (deadline is not None and time.monotonic() > deadline):
                timed_out = True
                break
            if not got:
                if not client.get_transport().is_active():
                    raise UnreachableError(
                        f"{self.name}: the SSH connection dropped while running: {command}",
                        fix="check the host and the network, then run again: finished steps are kept",
                    )
                time.sleep(0.01)
        code = 124 if timed_out else chan.recv_exit_status()
        chan.close()
        stderr = err.close()
        if code == -1:  # no exit status: the connection dropped, or the command died of a signal
            if not _wait_inactive(client.get_transport()):
                stderr += "\n(the command ended without an exit status: killed by a signal?)"
            else:
                raise UnreachableError(
                    f"{self.name}: the SSH connection dropped while running: {command}",
                    fix="check the host, its sshd and the network, then run again: finished steps are kept "
                    "and this one starts over",
                )
        return Result(self.name, command, code, out.close(), stderr)

    @contextlib.contextmanager
    def _sftp(self, what: str):
        """An SFTP session for one transfer: it takes a channel of the budget only while in use."""
        import paramiko

        chan = self.open_session(what)
        try:
            chan.invoke_subsystem("sftp")
            sftp = paramiko.SFTPClient(chan)
        except Exception:
            chan.close()
            raise
        try:
            yield sftp
        finally:
            sftp.close()

    def put(self, data: bytes, path: str, *, mode: int = 0o644, sudo: bool = False) -> None:
        tmpdir = f"/tmp/.hubwizard-{uuid.uuid4().hex}"
        with self._sftp(f"an upload to {path}") as sftp:
            sftp.mkdir(tmpdir, 0o700)  # fails if it exists: a fresh private folder, as `mktemp -d` makes
            try:
                sftp.chmod(tmpdir, 0o700)
                with sftp.open(f"{tmpdir}/upload", "wx") as fh:
                    fh.chmod(0o600)
                    fh.write(data)
            except Exception:
                self.run(f"rm -rf {shlex.quote(tmpdir)}")
                raise
        _install(self, tmpdir, path, mode, sudo)

    def get(self, path: str, *, sudo: bool = False) -> bytes:
        if sudo and self.user != "root":
            res = self.run(f"base64 < {shlex.quote(path)}", sudo=True)
            if not res.ok:
                raise OSError(f"{self.name}: cannot read {path}: {res.output}")
            return base64.b64decode(res.stdout)
        buf = io.BytesIO()
        with self._sftp(f"a download of {path}") as sftp:
            sftp.getfo(path, buf)
        return buf.getvalue()

    def close(self) -> None:
        """Close this connection (and a jump connection of its own; a shared one stays open)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._jump is not None:
            self._jump.close()
            self._jump = None
        self._close_proxy()

    def _close_proxy(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None


class _Refused(Exception):
    """The server answered a channel open with a refusal."""


class _NoBanner(Exception):
    """Connected, but no SSH banner came: ``timed_out`` or closed at once (retried)."""

    def __init__(self, error: UnreachableError, timed_out: bool) -> None:
        super().__init__(error.message)
        self.error, self.timed_out = error, timed_out


def _short(command: str, limit: int = 80) -> str:
    line = " ".join(command.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _wait_inactive(transport, seconds: float = 1.0) -> bool:
    """True once the SSH transport is down. paramiko closes a dead connection's channels a
    moment before it marks the transport inactive, so give it that moment."""
    deadline = time.monotonic() + seconds
    while transport is not None and transport.is_active():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
