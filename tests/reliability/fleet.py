"""Real OpenSSH servers on 127.0.0.1 that a test may stop, restart, or cut off mid-command.

tests/sshd.py starts servers for the whole session; the fault suites need servers of their own
whose listener can be stopped and started again on the same port with the same host key, and
whose per-connection children can be killed to drop one SSH session.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.sshd import SSHD, free_port, keygen


@dataclass
class Server:
    """One restartable sshd: same port, same host key, same config across restarts."""

    port: int
    root: Path
    proc: subprocess.Popen | None = None

    @property
    def cfg(self) -> Path:
        return self.root / "sshd_config"

    @property
    def host_pub(self) -> str:
        return (self.root / "host_ed25519.pub").read_text()

    def known_hosts_line(self) -> str:
        kind, key = self.host_pub.split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}\n"

    def start(self) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.cfg)], stderr=subprocess.DEVNULL)
        _wait_port(self.port, up=True)

    def children(self) -> list[int]:
        """PIDs of this listener's per-connection sshd processes (monitor and session: they hold
        the TCP connection). Commands the sessions run are left alone, as on a real network drop."""
        if self.proc is None:
            return []
        table = _procs()
        out, frontier = [], [self.proc.pid]
        while frontier:
            parent = frontier.pop()
            for pid, (ppid, comm) in table.items():
                if ppid == parent and comm.startswith("sshd"):
                    out.append(pid)
                    frontier.append(pid)
        return out

    def sessions(self) -> list[int]:
        """Every process below the listener (sessions and the commands they run)."""
        if self.proc is None:
            return []
        table = _procs()
        out, frontier = [], [self.proc.pid]
        while frontier:
            parent = frontier.pop()
            kids = [pid for pid, (ppid, _) in table.items() if ppid == parent]
            out += kids
            frontier += kids
        return out

    def drop_sessions(self) -> int:
        """Kill every live SSH session of this server; the listener stays up."""
        pids = self.children()
        for pid in pids:
            _kill(pid)
        return len(pids)

    def stop(self) -> None:
        """Stop the listener and every session it started: the host's sshd is gone."""
        if self.proc is None:
            return
        kids = self.children()
        self.proc.kill()
        self.proc.wait(5)
        for pid in kids:
            _kill(pid)
        self.proc = None
        _wait_port(self.port, up=False)


@dataclass
class Fleet:
    """A few servers sharing one client key, as a site's hosts."""

    root: Path
    key: Path
    servers: list[Server] = field(default_factory=list)

    def stop(self) -> None:
        for s in self.servers:
            s.stop()

    def wait_idle(self, timeout: float = 20) -> bool:
        """Wait until no SSH session of any server is alive (a killed client's remote commands
        ended): what an admin's pause before re-running gives, made explicit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(s.sessions() for s in self.servers):
                return True
            time.sleep(0.1)
        return False


def start_fleet(root: Path, count: int = 2, *, authorized_extra: str = "") -> Fleet:
    root.mkdir(parents=True, exist_ok=True)
    key = keygen(root / "id_ed25519")
    authorized = root / "authorized_keys"
    authorized.write_text((root / "id_ed25519.pub").read_text() + authorized_extra)
    fleet = Fleet(root, key)
    for _ in range(count):
        port = free_port()
        d = root / f"sshd-{port}"
        d.mkdir()
        hostkey = keygen(d / "host_ed25519")
        (d / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {hostkey}\nPidFile {d}/pid\n"
            f"AuthorizedKeysFile {authorized} .ssh/authorized_keys\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "StrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
            "AllowTcpForwarding yes\nMaxSessions 50\nMaxStartups 50\n"
        )
        server = Server(port, d)
        server.start()
        fleet.servers.append(server)
    return fleet


def write_site(tmp_path: Path, fleet: Fleet, *, name: str = "rel", domain: str = "hub.example.org",
               user: str = "root", sudo: str | None = None, jump: bool = False, known: bool = True,
               extra: str = "", secrets: dict[str, str] | None = None) -> Path:
    """A site whose hosts are the fleet's servers (the first is the hub); storage.path = tmp/work."""
    work = tmp_path / "work"
    work.mkdir(parents=True, exist_ok=True)
    kh = tmp_path / "known_hosts"
    kh.write_text("".join(s.known_hosts_line() for s in fleet.servers) if known else "")
    hosts = ""
    for i, s in enumerate(fleet.servers):
        host = "hub" if i == 0 else f"node{i}"
        hosts += (f'[[hosts]]\nname = "{host}"\naddress = "127.0.0.1"\nport = {s.port}\n'
                  f'role = "{"hub" if i == 0 else "node"}"\nuser = "{user}"\nkey = "{fleet.key}"\n'
                  f'internal_address = "127.0.0.1"\n')
        if sudo:
            hosts += f'sudo = "{sudo}"\n'
        if jump and i > 0:
            hosts += 'jump = "hub"\n'
        hosts += "\n"
    site = tmp_path / f"{name}.toml"
    (tmp_path / "no-ssh-config").write_text("")  # a named ssh config must exist (an empty one: none)
    login = "" if "[oauth]" in extra else '[oauth]\nprovider = "dummy"\ni_understand_anyone_can_log_in = true\n\n'
    site.write_text(
        f'[site]\nname = "{name}"\ndomain = {json.dumps(domain)}\nemail = "a@example.org"\nsubnet = "127.0.0.0/8"\n\n'
        f'[ssh]\nknown_hosts = "{kh}"\nconfig = "{tmp_path}/no-ssh-config"\nconnect_timeout = 5\n\n'
        f'[storage]\npath = "{work}"\n\n{login}{extra}\n{hosts}'
    )
    if secrets:
        from hubwizard.core.secrets import write_secrets

        write_secrets(site, secrets)
    return site


def _procs() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command name), from /proc."""
    out: dict[int, tuple[int, str]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        out[int(d.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), comm)
    return out


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _wait_port(port: int, *, up: bool, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            if up:
                return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise TimeoutError(f"sshd on port {port} did not {'start' if up else 'stop'}")
