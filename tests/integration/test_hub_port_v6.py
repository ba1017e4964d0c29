"""Port 8000 over IPv6 (issue 12 item 14): docker-proxy listens on [::]:8000 itself, so the IPv4
DOCKER-USER rule never sees an IPv6 connection to it. Two network namespaces of the test's own
(a "hub" and a "node", joined by a veth pair with private fd77:: addresses; nothing leaves this
machine): a listener on [::]:8000 in the hub stands for docker-proxy. Before the guard the node
connects; after the guard script of hubwizard-hub-port.service it is refused, while the hub
itself still reaches the port over loopback."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time

import pytest

from hubwizard.actions.hub_service import _GUARD_CHECK, _GUARD_SCRIPT, HUB_PORT

LISTEN = f"""
import socket
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", {HUB_PORT})); s.listen(16); print("up", flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"hub\\n"); c.close()
"""
CONNECT = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3); print(c.recv(10).decode().strip())
except OSError as e:
    print("refused:", type(e).__name__); sys.exit(1)
"""


def _ns(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, check=check, timeout=30)


@pytest.fixture
def two_hosts():
    if not shutil.which("ip") or not shutil.which("ip6tables"):
        pytest.skip("needs iproute2 and iptables")
    tag = secrets.token_hex(3)
    hub, node = f"hw6hub{tag}", f"hw6node{tag}"
    made = []
    try:
        for ns in (hub, node):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            made.append(ns)
        subprocess.run(["ip", "link", "add", f"h6a{tag}", "netns", hub, "type", "veth", "peer", "name", f"h6b{tag}",
                        "netns", node], check=True)
        for ns, dev, addr in ((hub, f"h6a{tag}", "fd77::1/64"), (node, f"h6b{tag}", "fd77::2/64")):
            _ns(ns, "ip", "link", "set", "lo", "up")
            _ns(ns, "ip", "-6", "addr", "add", addr, "dev", dev, "nodad")
            _ns(ns, "ip", "link", "set", dev, "up")
        listener = subprocess.Popen(["ip", "netns", "exec", hub, sys.executable, "-c", LISTEN], stdout=subprocess.PIPE,
                                    text=True)
        assert listener.stdout.readline().strip() == "up"
        try:
            yield hub, node
        finally:
            listener.kill()
            listener.wait()
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _connect(ns: str, addr: str) -> str:
    for _ in range(20):  # the veth link may take a moment to come up
        res = _ns(ns, sys.executable, "-c", CONNECT, addr, str(HUB_PORT), check=False)
        if "OSError" not in res.stdout and "TimeoutError" not in res.stdout:
            return res.stdout.strip()
        time.sleep(0.2)
    return res.stdout.strip()


def test_ipv6_port_8000_refused_from_another_host_after_the_guard(two_hosts):
    hub, node = two_hosts
    assert _connect(node, "fd77::1") == "hub"  # the attack: the port answers over IPv6 without the guard
    assert _ns(hub, "sh", "-c", _GUARD_CHECK, check=False).returncode != 0  # the check sees it missing
    res = _ns(hub, "sh", "-c", _GUARD_SCRIPT, check=False)
    assert res.returncode == 0, res.stderr
    assert _ns(hub, "sh", "-c", _GUARD_CHECK, check=False).returncode == 0
    assert _connect(node, "fd77::1").startswith("refused")
    assert _connect(hub, "::1") == "hub"  # nginx on the hub still reaches it
    assert _connect(hub, "127.0.0.1") == "hub"
    assert _ns(hub, "sh", "-c", _GUARD_SCRIPT, check=False).returncode == 0  # re-applied: one rule, not two
    rules = _ns(hub, "ip6tables", "-S", "INPUT").stdout
    assert rules.count(f"--dport {HUB_PORT}") == 1, rules
