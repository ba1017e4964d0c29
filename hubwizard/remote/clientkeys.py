"""The admin's own SSH keys: key files and ssh-agent, tried so that a key file locked by a
passphrase never stands in the way of ssh-agent.

Order, as OpenSSH does it in effect: key files that open without a passphrase, then the agent's
keys, and only when none was accepted, the passphrase of a locked file is asked (once per file
and run, one question at a time, never for a key the agent already offered). Without a way to
ask (no terminal, the TUI) the error names the key and the fix: `ssh-add KEY`."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hubwizard.core.errors import UnreachableError

ASK_ATTEMPTS = 3  # as ssh: three tries at a passphrase, then give up on that key
AskPassphrase = Callable[[str, str], "str | None"]  # (host, key path) -> passphrase, or ""/None: not given


@dataclass
class KeyFile:
    """One key file as found on disk."""

    path: str  # as configured, for messages
    key: Any = None  # paramiko.PKey once opened
    locked: bool = False  # needs a passphrase
    public_b64: str | None = None  # from PATH.pub: tells whether the agent holds the same key
    problem: str | None = None  # why it is no key at all


class LoginAgain(Exception):
    """The server closed the login while the admin typed a passphrase: log in again (the key is kept)."""


def _open_key(path: str, passphrase: str | None):
    """The key in ``path`` (any type paramiko knows); PasswordRequiredException when locked,
    SSHException when the passphrase is wrong or the file holds no key."""
    import paramiko

    last: Exception | None = None
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key_file(path, passphrase)
        except paramiko.PasswordRequiredException:
            raise
        except (paramiko.SSHException, ValueError, TypeError, IndexError) as exc:
            last = exc
    raise paramiko.SSHException(str(last) or "not a private key")


def _public_b64(path: str) -> str | None:
    try:
        with open(path + ".pub", encoding="utf-8") as fh:
            fields = fh.read().split()
    except OSError:
        return None
    return fields[1] if len(fields) >= 2 else None


class KeyRing:
    """Key files read once per run and shared by every connection, like the host-key policy."""

    def __init__(self, ask: AskPassphrase | None = None) -> None:
        self.ask = ask
        self._lock = threading.Lock()
        self._ask_lock = threading.Lock()  # one passphrase question at a time
        self._files: dict[str, KeyFile] = {}
        self._unlocked: dict[str, Any] = {}
        self._not_given: set[str] = set()

    def file(self, path: str) -> KeyFile:
        import paramiko

        with self._lock:
            if path in self._files:
                return self._files[path]
            kf = KeyFile(path, public_b64=_public_b64(os.path.expanduser(path)))
            try:
                kf.key = _open_key(os.path.expanduser(path), None)
            except paramiko.PasswordRequiredException:
                kf.locked = True
            except (paramiko.SSHException, OSError) as exc:
                kf.problem = f"{path} is not a private key paramiko can read ({getattr(exc, 'strerror', None) or exc})"
            self._files[path] = kf
            return kf

    def unlocked(self, kf: KeyFile):
        """The key of a locked file, if its passphrase was given earlier in this run."""
        with self._lock:
            return self._unlocked.get(kf.path)

    def not_given(self, kf: KeyFile) -> bool:
        with self._lock:
            return kf.path in self._not_given

    def unlock(self, host: str, kf: KeyFile):
        """Ask the passphrase of ``kf`` (once per run); None when it cannot be asked or was not given."""
        import paramiko

        with self._ask_lock:
            key = self.unlocked(kf)
            if key is not None or self.not_given(kf) or self.ask is None:
                return key
            for _ in range(ASK_ATTEMPTS):
                passphrase = self.ask(host, kf.path)
                if not passphrase:
                    break
                try:
                    key = _open_key(os.path.expanduser(kf.path), passphrase)
                except paramiko.SSHException:
                    continue
                with self._lock:
                    self._unlocked[kf.path] = key
                return key
            else:
                raise UnreachableError(
                    f"{host}: wrong passphrase for the SSH key {kf.path} ({ASK_ATTEMPTS} tries)",
                    fix=f"load the key into ssh-agent once with `ssh-add {kf.path}` (it checks the passphrase), "
                    "then run again",
                )
            with self._lock:
                self._not_given.add(kf.path)
            return None


def _agent():
    """The running ssh-agent (SSH_AUTH_SOCK), or None when there is none to talk to."""
    import paramiko

    if not os.environ.get("SSH_AUTH_SOCK"):
        return None
    try:
        return paramiko.Agent()
    except paramiko.SSHException:
        return None


class _Login:
    """One login attempt's bookkeeping: which keys were offered, for the message if all fail."""

    def __init__(self, transport, user: str) -> None:
        self.transport, self.user = transport, user
        self.offered: set[str] = set()
        self.files: list[str] = []
        self.agent_keys = 0
        self.agent = "no ssh-agent: SSH_AUTH_SOCK is not set"

    def offer(self, key, label: str | None) -> bool:
        import paramiko

        if key.get_base64() in self.offered:
            return False
        self.offered.add(key.get_base64())
        if label is None:
            self.agent_keys += 1
        else:
            self.files.append(label)
        try:
            self.transport.auth_publickey(self.user, key)
        except paramiko.AuthenticationException:
            return False
        return self.transport.is_authenticated()

    def tried(self) -> str:
        parts = [f"the key {p}" for p in self.files]
        if self.agent_keys:
            parts.append(f"{self.agent_keys} key(s) from ssh-agent")
        elif self.agent != "ssh-agent":
            parts.append(self.agent)
        return "tried " + ", ".join(parts) if self.offered else f"no key could be offered ({self.agent})"


def authenticate(transport, target, ring: KeyRing) -> None:
    """Log in with public keys; UnreachableError naming what was tried and the fix if none is accepted.
    ``target``: an SshTarget (name, hostname, port, user, key_files)."""
    files = [ring.file(p) for p in dict.fromkeys(target.key_files) if os.path.exists(os.path.expanduser(p))]
    login = _Login(transport, target.user)
    for kf in files:
        key = kf.key if kf.key is not None else ring.unlocked(kf)
        if key is not None and login.offer(key, kf.path):
            return
    agent = _agent()
    if agent is not None:
        login.agent = "ssh-agent holds no key" if not agent.get_keys() else "ssh-agent"
    try:
        for key in agent.get_keys() if agent is not None else ():
            if login.offer(key, None):
                return
        for kf in files:
            if not kf.locked or kf.public_b64 in login.offered or ring.unlocked(kf) is not None:
                continue
            key = ring.unlock(target.name, kf)
            if key is None:
                continue
            if not transport.is_active():
                raise LoginAgain
            if login.offer(key, kf.path):
                return
    finally:
        if agent is not None:
            with contextlib.suppress(Exception):
                agent.close()
    raise _refused(target, login, [kf for kf in files if kf.locked and ring.unlocked(kf) is None
                                   and kf.public_b64 not in login.offered], [kf for kf in files if kf.problem])


def _refused(target, login: _Login, locked: list[KeyFile], broken: list[KeyFile]) -> UnreachableError:
    where = f"{target.user}@{target.hostname}:{target.port}"
    if not login.transport.is_active() and login.offered:
        return UnreachableError(
            f"{target.name}: the server at {where} closed the login after {len(login.offered)} key(s) "
            f"({login.tried()}): sshd's MaxAuthTries",
            fix="name the one key for this host (key = ... in the site file, or IdentityFile in ~/.ssh/config), "
            "or remove keys from ssh-agent you do not need here (`ssh-add -d KEY`)",
        )
    msg = f"{target.name}: SSH login as {where} refused: {login.tried()}"
    if broken:
        msg += "; skipped " + "; ".join(kf.problem or kf.path for kf in broken)
    if locked:
        paths = ", ".join(kf.path for kf in locked)
        return UnreachableError(
            msg + f"; the key {paths} needs a passphrase, and none was given (asked on a terminal or in the TUI only)",
            fix=f"load it into ssh-agent once: `ssh-add {locked[0].path}` (it asks the passphrase), then run again; "
            f"and check that its .pub line is in {target.user}'s ~/.ssh/authorized_keys on the host",
        )
    return UnreachableError(
        msg,
        fix=f"check the user ({target.user}) and the key (key = ... in the site file, ssh-agent, ~/.ssh/config), "
        "and that the key's .pub line is in that user's ~/.ssh/authorized_keys on the host",
    )
