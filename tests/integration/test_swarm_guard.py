"""The swarm guard (issue 12 item 12): Swarm's ports answer the cluster's hosts only.

Three network namespaces of the test's own (nothing leaves this machine): a "hub" listening on
2377/tcp and 7946/tcp like dockerd, a "node" listed in the site, and a "stranger" on another
link. The guard unit's own ExecStart lines run in the hub; then the stranger is dropped and the
node still gets through. Before the guard the stranger gets through (the attack)."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time

import pytest

from hubwizard.actions.swarm_guard import unit_text

LISTEN = """
import socket, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(b"swarm\\n"); c.close()
for p in (2377, 7946):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
print("up", flush=True)
threading.Event().wait()
"""
CONNECT = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2); print(c.recv(10).decode().strip())
except OSError as e:
    print("refused:", type(e).__name__)
"""


def _ns(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, check=check, timeout=30)


@pytest.fixture
def three_hosts():
    if not shutil.which("ip") or not shutil.which("iptables"):
        pytest.skip("needs iproute2 and iptables")
    tag = secrets.token_hex(3)
    hub, node, stranger = f"hwsgh{tag}", f"hwsgn{tag}", f"hwsgs{tag}"
    made = []
    try:
        for ns in (hub, node, stranger):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            made.append(ns)
            _ns(ns, "ip", "link", "set", "lo", "up")
        for peer, net in ((node, "10.77.1"), (stranger, "10.77.2")):
            a, b = f"sg{net[-1]}a{tag}", f"sg{net[-1]}b{tag}"
            subprocess.run(["ip", "link", "add", a, "netns", hub, "type", "veth", "peer", "name", b, "netns", peer],
                           check=True)
            _ns(hub, "ip", "addr", "add", f"{net}.1/24", "dev", a)
            _ns(peer, "ip", "addr", "add", f"{net}.2/24", "dev", b)
            _ns(hub, "ip", "link", "set", a, "up")
            _ns(peer, "ip", "link", "set", b, "up")
        listener = subprocess.Popen(["ip", "netns", "exec", hub, sys.executable, "-c", LISTEN], stdout=subprocess.PIPE,
                                    text=True)
        assert listener.stdout.readline().strip() == "up"
        try:
            yield hub, node, stranger
        finally:
            listener.kill()
            listener.wait()
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _connect(ns: str, addr: str, port: int) -> str:
    for _ in range(15):
        out = _ns(ns, sys.executable, "-c", CONNECT, addr, str(port), check=False).stdout.strip()
        if out == "swarm" or "ConnectionRefused" in out or "Timeout" in out:
            return out
        time.sleep(0.2)  # the link is still coming up
    return out


def _run_unit(ns: str, text: str) -> None:
    """Run the unit's ExecStart lines in order, as systemd would (a leading '-' may fail)."""
    for line in text.splitlines():
        if not line.startswith("ExecStart="):
            continue
        cmd = line.removeprefix("ExecStart=")
        optional = cmd.startswith("-")
        res = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", cmd.removeprefix("-")], capture_output=True,
                             text=True)
        assert optional or res.returncode == 0, (cmd, res.stderr)


def test_stranger_dropped_cluster_host_admitted(three_hosts):
    hub, node, stranger = three_hosts
    assert _connect(stranger, "10.77.2.1", 2377) == "swarm"  # the attack works without the guard
    text = unit_text(["10.77.1.2"])
    _run_unit(hub, text)
    for port in (2377, 7946):
        assert _connect(node, "10.77.1.1", port) == "swarm"
        assert _connect(stranger, "10.77.2.1", port).startswith("refused")
    _run_unit(hub, text)  # re-applied when Docker starts again: chains refilled, one jump each
    rules = _ns(hub, "iptables", "-S", "INPUT").stdout
    assert rules.count("HUBWIZARD-SWARM-IN") == 1, rules
    assert _connect(node, "10.77.1.1", 2377) == "swarm"
    assert _connect(stranger, "10.77.2.1", 2377).startswith("refused")
