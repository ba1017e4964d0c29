"""Real OpenSSH servers on 127.0.0.1 ports for tests: each one a "host" of a site.

They all run on this machine, so a marker file created "on a host" is visible here."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sshd:
    port: int
    proc: subprocess.Popen
    host_pub: str

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def start_sshd(root: Path, authorized: Path, port: int | None = None, extra_config: str = "") -> Sshd:
    """Start ``sshd -D`` with its own host key; return once it accepts connections.

    ``extra_config``: more sshd_config lines (e.g. a ``MaxSessions`` limit), each ending in a newline."""
    port = port or free_port()
    d = root / f"sshd-{port}"
    d.mkdir(parents=True)
    hostkey = keygen(d / "host_ed25519")
    cfg = d / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {hostkey}\nPidFile {d}/pid\n"
        f"AuthorizedKeysFile {authorized} .ssh/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "StrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n" + extra_config
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return Sshd(port, proc, (d / "host_ed25519.pub").read_text())


def known_hosts_line(s: Sshd) -> str:
    kind, key = s.host_pub.split()[:2]
    return f"[127.0.0.1]:{s.port} {kind} {key}\n"
