"""scripts/dockerd.sh start|restart|stop against a stand-in `dockerd` on a socket of its own.

Why a stand-in: the machine's real engine serves every engineer's labs and must not be stopped
by a test. The stand-in is an executable named `dockerd` (so the script's pid check sees the
same name in /proc/PID/comm) that answers `/_ping` on the socket given with -H; with
STUBBORN=1 it ignores SIGTERM, as a deadlocked engine may never finish shutting down.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE = """#!{python}
import http.server, os, signal, socketserver, sys
if os.environ.get("STUBBORN") == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
path = sys.argv[sys.argv.index("-H") + 1].removeprefix("unix://")
if os.path.exists(path):
    os.unlink(path)
class Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"OK")
    def address_string(self):
        return "unix"
    def log_message(self, *args):
        pass
socketserver.UnixStreamServer(path, Ping).serve_forever()
"""


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    folder = Path(tempfile.mkdtemp(prefix="hw-dockerd-", dir="/tmp"))  # short: AF_UNIX paths
    (folder / "bin").mkdir()
    fake = folder / "bin" / "dockerd"
    fake.write_text(FAKE.format(python=sys.executable))
    fake.chmod(0o755)
    values = {
        **os.environ,
        "PATH": f"{folder / 'bin'}:{os.environ['PATH']}",
        "HUBWIZARD_DOCKERD_SOCK": str(folder / "d.sock"),
        "HUBWIZARD_DOCKERD_LOG": str(folder / "d.log"),
        "HUBWIZARD_DOCKERD_PIDFILE": str(folder / "d.pid"),
        "HUBWIZARD_DOCKERD_WAIT": "20",
        "HUBWIZARD_DOCKERD_STOP_WAIT": "1",
    }
    yield values
    pidfile = folder / "d.pid"
    if pidfile.exists() and pidfile.read_text().strip().isdigit():
        pid = int(pidfile.read_text())
        if _alive(pid) and Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd":
            os.kill(pid, 9)  # only the stand-in this test started
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def _script(env: dict[str, str], command: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(ROOT / "scripts" / "dockerd.sh"), command], capture_output=True, text=True,
                          timeout=120, env={**env, **extra})


def _alive(pid: int) -> bool:
    """Running, not a zombie (PID 1 of many containers never reaps orphans)."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _pid(done: subprocess.CompletedProcess[str]) -> int:
    found = re.search(r"ready \(pid (\d+)\)", done.stdout)
    if not found:
        pytest.fail(f"exit {done.returncode}: {done.stdout[-1000:]} {done.stderr[-1000:]}")
    return int(found.group(1))


def test_restart_replaces_a_stuck_engine_it_started(env: dict[str, str]) -> None:
    first = _pid(_script(env, "start", STUBBORN="1"))
    done = _script(env, "restart")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "did not stop within 1s" in done.stdout and "killing it" in done.stdout
    second = _pid(done)
    assert second != first and not _alive(first)
    stopped = _script(env, "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not _alive(second)


def test_restart_leaves_an_engine_it_did_not_start_alone(env: dict[str, str]) -> None:
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    import threading

    other.bind(env["HUBWIZARD_DOCKERD_SOCK"])
    other.listen(4)

    def answer() -> None:
        conn, _ = other.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        done = _script(env, "restart")
    finally:
        other.close()
    assert done.returncode == 1
    assert "not started by this script" in done.stderr and "systemctl restart docker" in done.stderr
