"""From site-file hosts to open transports: ~/.ssh/config applied, jump hosts chained,
one connection per host for the whole run.

A host that cannot be reached is remembered for the run: asking again fails at once with the
same error (one timeout per host, not one per step), and a host behind an unreachable jump host
is reported "unreachable through JUMP" without trying. A site host used as a jump host lends
its own connection to the hosts behind it (one connection to a bastion, not one per node)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from hubwizard.core.config import Host, Site
from hubwizard.core.errors import UnreachableError
from hubwizard.core.secrets import Secrets
from hubwizard.remote.transport import HostKeyPolicy, LocalTransport, SshTarget, SshTransport, Transport


def _ssh_config(path: str | None):
    import paramiko

    cfg = paramiko.SSHConfig()
    p = Path(path or "~/.ssh/config").expanduser()
    if p.exists():
        with p.open() as fh:
            cfg.parse(fh)
    return cfg


def _parse_jump(spec: str) -> tuple[str | None, str, int]:
    """``user@host:port`` (first hop of a ProxyJump list) -> parts."""
    first = spec.split(",")[0].strip()
    user, _, hostport = first.rpartition("@")
    host, _, port = hostport.partition(":")
    return (user or None), host, int(port) if port else 22


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
    ) -> None:
        self.site = site
        self.on_connecting = on_connecting  # (host, address, timeout): a connection is slow to open
        self.secrets = secrets
        known = site.ssh.known_hosts or "~/.ssh/known_hosts"
        if confirm is None and accept_new_host_keys:
            confirm = lambda host, fp: True  # noqa: E731 - the admin said yes on the command line
        self.policy = HostKeyPolicy(known, confirm)
        self._sshcfg = _ssh_config(site.ssh.config)
        self._open: dict[str, Transport] = {}
        self._failed: dict[str, UnreachableError] = {}
        self._host_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def target(self, host: Host) -> SshTarget:
        """Where to connect: the site file wins over ~/.ssh/config, which fills the gaps."""
        entry = self._sshcfg.lookup(host.address)
        hostname = entry.get("hostname", host.address)
        port = host.port if host.port != 22 else int(entry.get("port", 22))
        user = host.user if host.user != "root" or "user" not in entry else entry["user"]
        keys = [host.key] if host.key else []
        keys += entry.get("identityfile", [])
        if not keys:
            keys = [k for k in ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa") if os.path.exists(os.path.expanduser(k))]
        jump: SshTarget | None = None
        if host.jump:
            jump = self.target(self.site.host(host.jump))
        elif "proxyjump" in entry and entry["proxyjump"].lower() != "none":
            juser, jhost, jport = _parse_jump(entry["proxyjump"])
            jentry = self._sshcfg.lookup(jhost)
            jump = SshTarget(
                name=f"{host.name}-jump",
                hostname=jentry.get("hostname", jhost),
                port=jport if jport != 22 else int(jentry.get("port", 22)),
                user=juser or jentry.get("user", user),
                key_files=tuple(jentry.get("identityfile", keys)),
            )
        password = self.secrets.get("sudo_password") if host.sudo == "password" else None
        return SshTarget(host.name, hostname, port, user, tuple(keys), jump, password)

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
        t = SshTransport(self.target(host), self.policy, connect_timeout=self.site.ssh.connect_timeout, jump=jump)
        try:
            t.connect()
        except UnreachableError:
            t.close()
            raise
        return t

    def failed(self) -> dict[str, UnreachableError]:
        """Hosts found unreachable in this run, with why."""
        with self._lock:
            return dict(self._failed)

    def close(self) -> None:
        with self._lock:
            for t in reversed(list(self._open.values())):  # jumped hosts before their jump host
                t.close()
            self._open.clear()
            self._failed.clear()

    def __enter__(self) -> Connections:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
