"""Why a host cannot be reached, said for real on 127.0.0.1: a closed port, a TCP listener that
never speaks SSH, one that answers something else, an sshd that refuses our key; and a host that
failed once is not tried again in the same run."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hubwizard.core.config import load_site
from hubwizard.core.errors import UnreachableError
from hubwizard.core.secrets import Secrets
from hubwizard.remote.connections import Connections
from hubwizard.remote.transport import HostKeyPolicy, SshTarget, SshTransport
from tests.conftest import write_site
from tests.sshd import free_port, keygen, known_hosts_line, start_sshd

RAW = ("SSHException", "EOFError", "Errno", "paramiko", "Traceback")


@contextmanager
def listener(reply: bytes | None = None) -> Iterator[tuple[int, list[int]]]:
    """A TCP server on 127.0.0.1 that is not sshd: silent (``reply`` None) or answering ``reply``
    and closing. Yields (port, accepted count)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    accepted, held, stop = [0], [], threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            accepted[0] += 1
            if reply is None:
                held.append(conn)
            else:
                conn.sendall(reply)
                conn.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        yield srv.getsockname()[1], accepted
    finally:
        stop.set()
        th.join()
        for c in held:
            c.close()
        srv.close()


def _connect(tmp_path: Path, port: int, key: str = "/nonexistent", timeout: float = 1.5) -> UnreachableError:
    t = SshTransport(SshTarget("node1", "127.0.0.1", port, "admin", (key,)), HostKeyPolicy(tmp_path / "kh"),
                     connect_timeout=timeout)
    with pytest.raises(UnreachableError) as err:
        t.connect()
    t.close()
    assert not any(word in str(err.value) for word in RAW), str(err.value)
    return err.value


def test_closed_port_is_refused_address_port_hint(tmp_path):
    err = _connect(tmp_path, free_port())
    assert "node1" in err.message and "connection refused" in err.message and "127.0.0.1:" in err.message
    assert "port" in err.fix and "sshd" in err.fix


def test_tcp_timeout_is_address_port_firewall(tmp_path):
    """A listener whose backlog is full drops the SYN, as a firewall would: a TCP timeout."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(0)
        port = srv.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2):  # fills the backlog
            err = _connect(tmp_path, port, timeout=1)
    assert "no answer from 127.0.0.1:" in err.message and "timed out" in err.message
    assert "firewall" in err.fix and "port" in err.fix


def test_silent_listener_is_not_an_ssh_server(tmp_path):
    with listener() as (port, accepted):
        err = _connect(tmp_path, port)
    assert "no SSH banner" in err.message and "not an SSH server" in err.message
    assert "port" in err.fix and "sshd_config" in err.fix
    assert accepted[0] == 1  # a timeout is not tried again


def test_http_server_on_the_port_is_not_an_ssh_server(tmp_path):
    with listener(b"HTTP/1.1 400 Bad Request\r\n\r\n") as (port, accepted):
        err = _connect(tmp_path, port)
    assert "no SSH banner" in err.message and "MaxStartups" in err.message
    assert accepted[0] == 3  # closed at once: maybe MaxStartups, so tried again twice


def test_wrong_key_is_user_and_key(tmp_path, monkeypatch):
    if not shutil.which("sshd") and not Path("/usr/sbin/sshd").exists():
        pytest.skip("openssh-server is not installed")
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)  # only the key we name
    right, wrong = keygen(tmp_path / "right"), keygen(tmp_path / "wrong")
    authorized = tmp_path / "authorized_keys"
    authorized.write_text((tmp_path / "right.pub").read_text())
    server = start_sshd(tmp_path, authorized)
    try:
        (tmp_path / "kh").write_text(known_hosts_line(server))
        err = _connect(tmp_path, server.port, key=str(wrong))
    finally:
        server.stop()
    assert "login as admin@127.0.0.1" in err.message and "refused" in err.message
    assert "user (admin)" in err.fix and "authorized_keys" in err.fix
    assert right  # the right key exists; the server was up


def test_a_failed_host_is_remembered_for_the_run(tmp_path):
    with listener() as (port, accepted):
        env = {"root": tmp_path, "key": tmp_path / "none", "servers": []}
        site = write_site(tmp_path, env)
        site.write_text(site.read_text().replace("[ssh]\n", "[ssh]\nconnect_timeout = 1\n", 1)
                        + f'[[hosts]]\nname = "hub"\naddress = "127.0.0.1"\nport = {port}\nrole = "hub"\n\n'
                        + f'[[hosts]]\nname = "node1"\naddress = "127.0.0.1"\nport = {free_port()}\nrole = "node"\n'
                        + 'jump = "hub"\n')
        conns = Connections(load_site(site), Secrets())
        errors = []
        for name in ("hub", "hub", "node1", "node1"):
            with pytest.raises(UnreachableError) as err:
                conns.get(name)
            errors.append(err.value)
        conns.close()
        assert accepted[0] == 1  # one attempt at the hub, one timeout in all
    assert errors[0] is errors[1] and errors[2] is errors[3]
    assert errors[2].message.startswith("node1: unreachable through hub") and "no SSH banner" in errors[2].message


def _slow_hub_site(tmp_path: Path, port: int) -> Path:
    env = {"root": tmp_path, "key": tmp_path / "none", "servers": []}
    site = write_site(tmp_path, env)
    site.write_text(site.read_text().replace("[ssh]\n", "[ssh]\nconnect_timeout = 3\n", 1)
                    + f'[[hosts]]\nname = "hub"\naddress = "127.0.0.1"\nport = {port}\nrole = "hub"\n')
    return site


def test_a_slow_host_is_announced_once_and_a_quick_refusal_not(tmp_path):
    """While a connection hangs, the admin is told what is waited for and for how long at most."""
    said: list[tuple[str, str, float]] = []
    with listener() as (port, _accepted):
        conns = Connections(load_site(_slow_hub_site(tmp_path, port)), Secrets(),
                            on_connecting=lambda *args: said.append(args))
        with pytest.raises(UnreachableError):
            conns.get("hub")
        conns.close()
    assert said == [("hub", "127.0.0.1", 3.0)]
    said.clear()
    closed = tmp_path / "closed"
    closed.mkdir()
    conns = Connections(load_site(_slow_hub_site(closed, free_port())), Secrets(),
                        on_connecting=lambda *args: said.append(args))
    with pytest.raises(UnreachableError):
        conns.get("hub")
    conns.close()
    assert said == []  # refused at once: nothing to wait for, nothing said


def test_plan_says_which_host_it_waits_for(tmp_path):
    """`hubwizard plan` on a hub that accepts TCP but never answers: the wait is named on stderr
    ("connecting to hub (127.0.0.1, 3 s)…"), then the plan exits 3 (host unreachable)."""
    import subprocess
    import sys

    with listener() as (port, _accepted):
        site = _slow_hub_site(tmp_path, port)
        res = subprocess.run([sys.executable, "-m", "hubwizard.cli.main", "plan", "-c", str(site)],
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert "connecting to hub (127.0.0.1, 3 s)" in res.stderr, res.stderr[-2000:]
    assert res.returncode == 3, res.stdout[-2000:] + res.stderr[-2000:]
    assert not any(word in res.stdout + res.stderr for word in RAW)
