"""From site-file hosts to open transports: ~/.ssh/config applied, jump hosts chained,
one connection per host for the whole run.

~/.ssh/config gives HostName, Port, User, IdentityFile, ProxyJump (every hop of ``a,b``, each
hop's own config applied) and ProxyCommand; what the site file says explicitly wins (a ``port``
or ``user`` written there, even if equal to the default; ``jump`` over ProxyJump/ProxyCommand).
A ProxyJump hop is one shared connection per run, whatever number of hosts go through it.

A host that cannot be reached is remembered for the run: asking again fails at once with the
same error (one timeout per host, not one per step), and a host behind an unreachable jump host
is reported "unreachable through JUMP" without trying. A site host used as a jump host lends
its own connection to the hosts behind it (one connection to a bastion, not one per node)."""

from __future__ import annotations

import getpass
import os
import threading
from collections.abc import Callable
from pathlib import Path

from hubwizard.core.config import Host, Site
from hubwizard.core.errors import ConfigError, UnreachableError
from hubwizard.core.secrets import Secrets
from hubwizard.remote.clientkeys import KeyRing
from hubwizard.remote.transport import HostKeyPolicy, LocalTransport, SshTarget, SshTransport, Transport

DEFAULT_KEYS = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
MAX_HOPS = 8  # a ProxyJump chain longer than this is a loop in ~/.ssh/config


def _ssh_config(path: str | None):
    import paramiko

    cfg = paramiko.SSHConfig()
    p = Path(path or "~/.ssh/config").expanduser()
    if p.exists():
        try:  # a file that is not an ssh config is bad input naming it, not a crash
            with p.open(encoding="utf-8") as fh:
                cfg.parse(fh)
        except (paramiko.ssh_exception.ConfigParseError, UnicodeDecodeError) as exc:
            where = "[ssh] config in the site file" if path else "~/.ssh/config"
            raise ConfigError(f"{p} ({where}) is not an OpenSSH client config: {str(exc)[:200]!r}",
                              fix=f"correct that line, or name another file as {where}") from None
    return cfg


def parse_hop(spec: str) -> tuple[str | None, str, int | None]:
    """One ProxyJump hop, ``[user@]host[:port]`` or ``ssh://[user@]host[:port]`` (``[v6]:port``
    too) -> (user, host, port); None where not given."""
    rest = spec.strip().removeprefix("ssh://")
    user, _, hostport = rest.rpartition("@")
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        port = tail.removeprefix(":")
    else:
        host, _, port = hostport.partition(":")
    if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise ConfigError(f"ProxyJump {spec.strip()!r} in the ssh config: not [user@]host[:port]",
                          fix="correct that ProxyJump line in ~/.ssh/config (or [ssh] config in the site file)")
    return (user or None), host, int(port) if port else None


def _enabled(entry, key: str) -> str | None:
    value = entry.get(key)
    return None if value is None or value.strip().lower() == "none" else value.strip()


def _port_of(entry, default: int = 22) -> int:
    value = str(entry.get("port", default))
    if not value.isdigit():
        raise ConfigError(f"Port {value!r} in the ssh config is not a number",
                          fix="correct that Port line in ~/.ssh/config (or [ssh] config in the site file)")
    return int(value)


def _hop_key(t: SshTarget) -> tuple:
    """Identity of a hop with the hops before it: same key, same shared connection."""
    return (t.user, t.hostname, t.port, t.proxy_command, _hop_key(t.proxy_jump) if t.proxy_jump else None)


SLOW_CONNECT_S = 1.0  # a login on a LAN takes 0.1-0.3 s; past a second, say what we wait for


class Connections:
    """Lazily opened, thread-safe, one transport per host name."""

    def __init__(
        self,
        site: Site,
        secrets: Secrets,
        *,
        accept_new_host_keys: bool = False,
        confirm: Callable[[str, str], bool] | None = None,
        on_connecting: Callable[[str, str, float], None] | None = None,
        ask_passphrase: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self.site = site
        self.on_connecting = on_connecting  # (host, address, timeout): a connection is slow to open
        self.secrets = secrets
        known = site.ssh.known_hosts or "~/.ssh/known_hosts"
        if confirm is None and accept_new_host_keys:
            confirm = lambda host, fp: True  # noqa: E731 - the admin said yes on the command line
        self.policy = HostKeyPolicy(known, confirm)
        # (host, key path) -> passphrase: the TUI's modal, else the secrets' terminal prompt (CLI)
        self.keys = KeyRing(ask_passphrase or self._passphrase_prompt())
        self._sshcfg = _ssh_config(site.ssh.config)
        self._open: dict[str, Transport] = {}
        self._hops: dict[tuple, SshTransport] = {}  # ProxyJump hops of ~/.ssh/config, shared
        self._hop_failed: dict[tuple, UnreachableError] = {}
        self._failed: dict[str, UnreachableError] = {}
        self._host_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def _passphrase_prompt(self):
        """The secrets' prompt (a terminal in the CLI) asking a key file's passphrase, or None."""
        prompt = self.secrets.prompt
        if prompt is None:
            return None
        return lambda host, path: prompt(f"passphrase of the SSH key {path} (to log in to {host})")

    def target(self, host: Host) -> SshTarget:
        """Where to connect: what the site file says explicitly wins over ~/.ssh/config, which fills the gaps."""
        entry = self._lookup(host)
        hostname = entry.get("hostname", host.address)
        port, user = _port_of(entry, host.port), entry.get("user", host.user)
        keys = self._keys([host.key] if host.key else [], entry)
        password = self.secrets.get("sudo_password") if host.sudo == "password" else None
        if host.jump:
            return SshTarget(host.name, hostname, port, user, keys, self.target(self.site.host(host.jump)), password)
        jump, command = self._proxy(entry, keys, 0)
        return SshTarget(host.name, hostname, port, user, keys, jump, password, command)

    def _lookup(self, host: Host):
        """The config entry of ``host`` as if its explicit site values came first in the file (the
        first value obtained wins, as ssh's -p and -l do), so ProxyCommand's %p and %r say them too."""
        import paramiko

        given = [(k, getattr(host, k)) for k in ("port", "user") if k in host.model_fields_set]
        if not given:
            return self._sshcfg.lookup(host.address)
        first = paramiko.SSHConfig.from_text(f"Host {host.address}\n" + "".join(f"  {k} {v}\n" for k, v in given))
        first._config.extend(self._sshcfg._config)  # type: ignore[attr-defined]  # no public way to prepend lines
        return first.lookup(host.address)

    @staticmethod
    def _keys(first: list[str], entry) -> tuple[str, ...]:
        """``first``, then the config's IdentityFile lines; with neither, the default ~/.ssh/id_* files."""
        keys = first + list(entry.get("identityfile", []))
        if not keys:
            keys = [k for k in DEFAULT_KEYS if os.path.exists(os.path.expanduser(k))]
        return tuple(dict.fromkeys(keys))

    def _proxy(self, entry, keys: tuple[str, ...], depth: int) -> tuple[SshTarget | None, str | None]:
        """(last ProxyJump hop, ProxyCommand) of a config entry: ``ProxyJump a,b`` -> b reached through a."""
        spec = _enabled(entry, "proxyjump")
        if spec is None:
            return None, _enabled(entry, "proxycommand")
        if depth >= MAX_HOPS:
            raise ConfigError(f"ProxyJump in the ssh config goes through more than {MAX_HOPS} hops (a loop?)",
                              fix="check the ProxyJump lines of ~/.ssh/config: a hop must not lead back to itself")
        jump: SshTarget | None = None
        for n, hop in enumerate(spec.split(",")):
            juser, jhost, jport = parse_hop(hop)
            jentry = self._sshcfg.lookup(jhost)
            hop_keys = self._keys(list(jentry.get("identityfile", [])), {}) + keys
            command = None
            if n == 0:  # the first hop is reached as its own config says; each later one through the one before
                jump, command = self._proxy(jentry, keys, depth + 1)
            jump = SshTarget(
                name=jhost,
                hostname=jentry.get("hostname", jhost),
                port=jport or _port_of(jentry),
                user=juser or jentry.get("user") or getpass.getuser(),
                key_files=tuple(dict.fromkeys(hop_keys)),
                proxy_jump=jump,
                proxy_command=command,
            )
        return jump, None

    def get(self, name: str) -> Transport:
        """The open transport of host ``name``; UnreachableError (remembered) if it cannot be had."""
        with self._lock:
            lock = self._host_locks.setdefault(name, threading.Lock())
        with lock:  # one connection attempt per host at a time: others wait for its outcome
            with self._lock:
                if name in self._failed:
                    raise self._failed[name]
                if name in self._open:
                    return self._open[name]
            try:
                t = self._connect_announced(self.site.host(name))
            except UnreachableError as exc:
                with self._lock:
                    self._failed[name] = exc
                raise
            with self._lock:
                self._open[name] = t
            return t

    def _connect_announced(self, host: Host) -> Transport:
        """_connect, saying "connecting to HOST (ADDRESS, N s)" when it takes longer than
        SLOW_CONNECT_S: a host that does not answer costs up to the connect timeout, silently."""
        if self.on_connecting is None or host.transport == "local":
            return self._connect(host)
        notice = threading.Timer(SLOW_CONNECT_S, self.on_connecting,
                                 (host.name, host.address, float(self.site.ssh.connect_timeout)))
        notice.daemon = True
        notice.start()
        try:
            return self._connect(host)
        finally:
            notice.cancel()

    def _connect(self, host: Host) -> Transport:
        if host.transport == "local":
            password = self.secrets.get("sudo_password") if host.sudo == "password" else None
            return LocalTransport(host.name, sudo_password=password)
        jump: SshTransport | None = None
        if host.jump:
            try:
                got = self.get(host.jump)
            except UnreachableError as exc:
                raise type(exc)(f"{host.name}: unreachable through {host.jump} (not tried): {exc.message}",
                                fix=exc.fix) from None
            jump = got if isinstance(got, SshTransport) else None
        target = self.target(host)
        if jump is None and target.proxy_jump is not None:
            jump = self._hop(host.name, target.proxy_jump)
        t = SshTransport(target, self.policy, connect_timeout=self.site.ssh.connect_timeout, jump=jump, keys=self.keys)
        try:
            t.connect()
        except UnreachableError:
            t.close()
            raise
        return t

    def _hop(self, name: str, hop: SshTarget) -> SshTransport:
        """The connected, shared transport of a ProxyJump hop (with the hops before it); a hop
        that failed is not tried again in this run."""
        key = _hop_key(hop)
        with self._lock:
            lock = self._host_locks.setdefault(f"hop {key}", threading.Lock())
        with lock:
            with self._lock:
                failed = self._hop_failed.get(key)
                t = self._hops.get(key)
            if failed is None and t is None:
                before = self._hop(name, hop.proxy_jump) if hop.proxy_jump is not None else None
                t = SshTransport(hop, self.policy, connect_timeout=self.site.ssh.connect_timeout, jump=before,
                                 keys=self.keys)
                with self._lock:
                    self._hops[key] = t
            if failed is None:
                assert t is not None
                try:
                    t.connect()
                    return t
                except UnreachableError as exc:
                    failed = exc
                    with self._lock:
                        self._hop_failed[key] = exc
        raise type(failed)(f"{name}: unreachable through the jump host {hop.name} (ProxyJump in the ssh config): "
                           f"{failed.message}", fix=failed.fix) from None

    def failed(self) -> dict[str, UnreachableError]:
        """Hosts found unreachable in this run, with why."""
        with self._lock:
            return dict(self._failed)

    def forget_failures(self) -> None:
        """A new run tries unreachable hosts again (open connections are kept: the TUI reuses
        one Connections for every plan, apply and doctor run of a site)."""
        with self._lock:
            self._failed.clear()

    def close(self) -> None:
        with self._lock:
            for t in [*reversed(list(self._open.values())), *reversed(list(self._hops.values()))]:
                t.close()  # jumped hosts before their jump host, each hop before the one it goes through
            self._open.clear()
            self._hops.clear()
            self._failed.clear()
            self._hop_failed.clear()

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
