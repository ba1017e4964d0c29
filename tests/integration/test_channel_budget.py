"""One SSH connection under sshd's MaxSessions: work beyond the limit waits instead of failing,
jumped hosts and Docker API calls share the budget, and a server that keeps refusing is named
with its cause and fix. Real sshd servers with a lowered MaxSessions (tests/sshd.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hubwizard.core.config import load_site
from hubwizard.core.errors import UnreachableError
from hubwizard.core.secrets import Secrets
from hubwizard.remote.channels import ChannelBudget, ChannelRefusedError
from hubwizard.remote.connections import Connections
from hubwizard.remote.transport import HostKeyPolicy, SshTarget, SshTransport
from tests.conftest import BASIC_RECIPES, write_site
from tests.sshd import Sshd, keygen, known_hosts_line, start_sshd

RAW = ("ChannelException", "Connect failed", "paramiko", "Traceback")


@pytest.fixture
def lab(tmp_path):
    """Start sshd servers with extra config on demand; a client key; all stopped afterwards."""
    if not shutil.which("sshd") and not Path("/usr/sbin/sshd").exists():
        pytest.skip("openssh-server is not installed (the README's test command installs it)")
    key = keygen(tmp_path / "id_ed25519")
    authorized = tmp_path / "authorized_keys"
    authorized.write_text((tmp_path / "id_ed25519.pub").read_text())
    servers: list[Sshd] = []

    def start(extra: str = "") -> Sshd:
        servers.append(start_sshd(tmp_path, authorized, extra_config=extra))
        (tmp_path / "kh").write_text("".join(known_hosts_line(s) for s in servers))
        return servers[-1]

    start.key, start.root = key, tmp_path  # type: ignore[attr-defined]
    yield start
    for s in servers:
        s.stop()


def _transport(lab, server: Sshd, name: str = "hub", **kw) -> SshTransport:
    target = SshTarget(name, "127.0.0.1", server.port, "root", (str(lab.key),))
    return SshTransport(target, HostKeyPolicy(lab.root / "kh"), **kw)


def _many(fn, n: int = 20) -> list:
    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(fn, range(n)))


@pytest.mark.parametrize("max_sessions", [4, 2])
def test_parallel_commands_wait_for_a_free_session(lab, max_sessions):
    t = _transport(lab, lab(f"MaxSessions {max_sessions}\n"))
    try:
        results = _many(lambda i: t.run(f"sleep 0.3; echo {i}"))
        assert [r.stdout.strip() for r in results] == [str(i) for i in range(20)]
        assert all(r.ok for r in results)
        assert t.budget.limit <= max_sessions  # learned from the first refusal
        assert t.budget.peak <= max_sessions
    finally:
        t.close()


def test_sftp_puts_alongside_commands(lab, tmp_path):
    t = _transport(lab, lab("MaxSessions 4\n"))
    out = tmp_path / "puts"

    def work(i: int):
        if i % 2:
            return t.run(f"sleep 0.2; echo {i}").stdout.strip() == str(i)
        t.put(f"file {i}\n".encode(), f"{out}/f{i}", mode=0o640)
        return t.get(f"{out}/f{i}") == f"file {i}\n".encode()

    try:
        assert all(_many(work))
        assert sorted(p.name for p in out.iterdir()) == sorted(f"f{i}" for i in range(0, 20, 2))
        assert oct((out / "f0").stat().st_mode & 0o777) == "0o640"
    finally:
        t.close()


def _site(lab, tmp_path: Path, hub: Sshd, nodes: list[Sshd], *, timeout: float = 5) -> Path:
    """tests/conftest.py's site for these servers, every node reached through the hub."""
    site = write_site(tmp_path, {"root": lab.root, "key": lab.key, "servers": [hub, *nodes]})
    text = site.read_text().replace("[ssh]\n", f"[ssh]\nconnect_timeout = {timeout}\n", 1)
    for i in range(1, len(nodes) + 1):
        text = text.replace(f'name = "node{i}"\n', f'name = "node{i}"\njump = "hub"\n', 1)
    site.write_text(text)
    return site


def test_jumped_nodes_and_commands_on_the_jump_host(lab, tmp_path):
    """The hub's sshd allows 4 sessions; its connection also carries three nodes' tunnels."""
    hub = lab("MaxSessions 4\n")
    nodes = [lab() for _ in range(3)]
    conns = Connections(load_site(_site(lab, tmp_path, hub, nodes)), Secrets())
    try:
        def work(i: int) -> bool:
            name = "hub" if i % 2 else f"node{i % 3 + 1}"
            res = conns.get(name).run(f"sleep 0.3; echo {name} {i}")
            return res.ok and res.stdout.strip() == f"{name} {i}"

        assert all(_many(work, 24))
        hub_t = conns.get("hub")
        assert isinstance(hub_t, SshTransport) and hub_t.budget.peak <= 4
        node_t = conns.get("node1")
        assert isinstance(node_t, SshTransport) and node_t._jump_transport() is hub_t  # one connection to the hub
    finally:
        conns.close()


def test_docker_api_shares_the_budget(lab):
    from hubwizard.remote.dockerapi import client_for
    from tests.engine import docker_answers

    if not shutil.which("docker") or not docker_answers():
        pytest.skip("no Docker engine answers (scripts/dockerd.sh start)")
    t = _transport(lab, lab("MaxSessions 3\n"))
    clients = [client_for(t, timeout=60) for _ in range(4)]

    def work(i: int) -> bool:
        if i % 2:
            return t.run(f"sleep 0.2; echo {i}").ok
        return bool(clients[i % 4].ping()) and isinstance(clients[(i + 1) % 4].containers.list(), list)

    try:
        assert all(_many(work, 16))
        assert t.budget.peak <= 3
    finally:
        for c in clients:
            c.close()
        t.close()


def test_budget_above_the_server_limit_is_retried_then_named(lab):
    """Forced to believe 10 while sshd allows 2, both held by long commands: the third command
    is refused, retried with back-off, then reported with host, cause and fix."""
    t = _transport(lab, lab("MaxSessions 2\n"), budget=ChannelBudget("hub", 10, learn=False))
    try:
        holders = [threading.Thread(target=t.run, args=("sleep 6",)) for _ in range(2)]
        for h in holders:
            h.start()
        while t.budget.held() < 2:
            pass
        with pytest.raises(ChannelRefusedError) as err:
            t.run("echo three")
        text = str(err.value)
        assert t.budget.refusals >= 3
        assert "hub" in text and "MaxSessions" in text and "sshd_config" in (err.value.fix or "")
        assert not any(word in text for word in RAW), text
        for h in holders:
            h.join()
        assert t.run("echo after").stdout.strip() == "after"  # free again once they ended
    finally:
        t.close()


def test_server_allowing_no_sessions_is_named_by_the_cli(lab, tmp_path):
    """`MaxSessions 0` (a forwarding-only bastion): plan exits 3 and says why, in plain words."""
    site = write_site(tmp_path, {"root": lab.root, "key": lab.key, "servers": [lab("MaxSessions 0\n"), lab()]})
    res = subprocess.run([sys.executable, "-m", "hubwizard.cli.main", "plan", "-c", str(site), "--recipes",
                          str(BASIC_RECIPES)], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    out = res.stdout + res.stderr
    assert res.returncode == 3, out
    assert "hub" in out and "MaxSessions" in out and "fix:" in out, out
    assert not any(word in out for word in RAW), out


def test_unreachable_jump_host_fails_its_nodes_at_once(lab, tmp_path):
    hub, node = lab(), lab()
    hub.stop()
    conns = Connections(load_site(_site(lab, tmp_path, hub, [node])), Secrets())
    try:
        with pytest.raises(UnreachableError) as first:
            conns.get("hub")
        with pytest.raises(UnreachableError) as through:
            conns.get("node1")
        assert "unreachable through hub" in through.value.message and "connection refused" in through.value.message
        assert through.value.fix == first.value.fix
        with pytest.raises(UnreachableError) as again:
            conns.get("hub")
        assert again.value is first.value  # remembered, not tried again
        assert set(conns.failed()) == {"hub", "node1"}
    finally:
        conns.close()


def test_apply_and_verify_through_a_hub_allowing_one_session(lab, tmp_path):
    """The engine end to end: three nodes reached through a hub whose sshd allows one session per
    connection (the hub's steps, the host lock and the tunnels share it); apply then verify pass."""
    hub = lab("MaxSessions 1\n")
    site = _site(lab, tmp_path, hub, [lab() for _ in range(3)])
    for command in ("apply", "verify"):
        res = subprocess.run([sys.executable, "-m", "hubwizard.cli.main", command, "-c", str(site), "--recipes",
                              str(BASIC_RECIPES), *(["--yes"] if command == "apply" else [])],
                             capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert res.returncode == 0, res.stdout + res.stderr
        assert not any(word in res.stdout + res.stderr for word in RAW)
    assert all((tmp_path / "work" / name / "domain").exists() for name in ("hub", "node1", "node2", "node3"))


def test_jumped_node_with_a_closed_port_names_the_jump_host(lab, tmp_path):
    from tests.sshd import free_port

    hub, node = lab(), lab()
    site = _site(lab, tmp_path, hub, [node])
    site.write_text(site.read_text().replace(f"port = {node.port}\n", f"port = {free_port()}\n"))
    conns = Connections(load_site(site), Secrets())
    try:
        with pytest.raises(UnreachableError) as err:
            conns.get("node1")
        assert "the jump host hub cannot connect to 127.0.0.1:" in err.value.message
        assert "from hub" in (err.value.fix or "") and not any(word in str(err.value) for word in RAW)
        assert conns.get("hub").run("echo ok").stdout.strip() == "ok"  # the hub itself is fine
    finally:
        conns.close()
