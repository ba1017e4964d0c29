"""preflight's temporary port listener, run for real on this machine on free high ports.

The CI failure of 2026-12-01: an apply killed during preflight left its listener holding the
TCP ports; the resumed run could bind only the UDP ones, the old listener then expired, and the
nodes' probe read 'refused'. A new listener must end the old one (by the PID it wrote) and bind
everything; TTL 0 only stops it (swarm-init, so Docker can bind 2377 at once).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from hubwizard.actions import probes


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listener(home: Path, ttl: float, tcp: int, udp: int) -> str:
    cmd = probes._listener_command(ttl).replace(
        f"{probes._ports_arg(probes.SWARM_TCP)} {probes._ports_arg(probes.SWARM_UDP)}", f"{tcp} {udp}")
    res = subprocess.run(["bash", "-c", cmd], env={**os.environ, "HOME": str(home)},
                         capture_output=True, text=True, timeout=30, check=True)
    return res.stdout.strip()


def _tcp_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def _gone(pid: int) -> bool:
    """Ended: no such process, or a zombie its new parent has not reaped yet."""
    for _ in range(30):
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def _pid(home: Path) -> int:
    return int((home / ".hubwizard-preflight-listener.pid").read_text())


def test_a_second_listener_takes_over_the_first_and_ttl_zero_stops_it(tmp_path: Path) -> None:
    tcp, udp = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    try:
        assert _listener(tmp_path, 60, tcp, udp) == f"{tcp}/tcp {udp}/udp"
        first = _pid(tmp_path)
        assert _tcp_open(tcp)
        # A resumed run: the killed run's listener still holds the ports.
        assert _listener(tmp_path, 60, tcp, udp) == f"{tcp}/tcp {udp}/udp"
        second = _pid(tmp_path)
        assert second != first and _gone(first)
        assert _tcp_open(tcp)
        assert _listener(tmp_path, 0, tcp, udp) == "stopped"
        assert _gone(second)
        assert not _tcp_open(tcp)
    finally:
        pidfile = tmp_path / ".hubwizard-preflight-listener.pid"
        if pidfile.exists() and not _gone(_pid(tmp_path)):
            os.kill(_pid(tmp_path), 15)


def test_a_pid_that_is_not_a_listener_is_left_alone(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / ".hubwizard-preflight-listener.pid").write_text(f"{sleeper.pid}\n")
        assert _listener(tmp_path, 0, _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)) == "stopped"
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
