"""An exec request the SSH server refuses is tried again on a new session.

Seen in the lab (CI, 2026-12-02): paramiko answers a refused exec with "Channel closed." (or with
an older error the connection kept, an EOFError) although the connection is up; the command never
started, so hubwizard opens another session. A real paramiko SSH server on 127.0.0.1 refuses the
first exec requests and runs the next one.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from hubwizard.remote.transport import HostKeyPolicy, SshTarget, SshTransport


class _Server(paramiko.ServerInterface):
    def __init__(self, refusals: int, execs: list[bytes]) -> None:
        self.refusals, self.execs = refusals, execs

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        if self.refusals > 0:
            self.refusals -= 1
            return False
        self.execs.append(command)
        threading.Thread(target=_answer, args=(channel,), daemon=True).start()
        return True


def _answer(channel: paramiko.Channel) -> None:
    time.sleep(0.3)  # after paramiko's server sent its "exec accepted" (OpenSSH's order)
    channel.sendall(b"hello\n")
    channel.send_exit_status(0)
    channel.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, list[bytes], Path, list[_Server]]]:
    host_key = paramiko.Ed25519Key.from_private_key_file(_keygen(tmp_path / "host"))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    execs: list[bytes] = []
    servers: list[_Server] = []
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            t = paramiko.Transport(conn)
            t.add_server_key(host_key)
            t.start_server(server=servers[0])
            transports.append(t)

    servers.append(_Server(2, execs))
    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], execs, _keygen(tmp_path / "client"), servers
    listener.close()
    for t in transports:
        t.close()


def _keygen(path: Path) -> Path:
    """paramiko cannot write ed25519 keys: ssh-keygen does."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def _transport(tmp_path: Path, port: int, key: Path) -> SshTransport:
    policy = HostKeyPolicy(tmp_path / "kh", confirm=lambda host, fp: True)
    return SshTransport(SshTarget("node1", "127.0.0.1", port, "admin", (str(key),)), policy, connect_timeout=5)


def test_a_refused_exec_is_tried_again_and_the_command_runs(tmp_path, server):
    port, execs, key, servers = server
    t = _transport(tmp_path, port, key)
    try:
        res = t.run("echo hello", sudo=False, timeout=20)
    finally:
        t.close()
    assert res.ok and res.stdout.strip() == "hello", res
    assert servers[0].refusals == 0 and execs == [b"echo hello"]  # refused twice, then ran once


def test_an_exec_refused_every_time_fails_with_the_hosts_name(tmp_path, server):
    port, execs, key, servers = server
    servers[0].refusals = 100
    t = _transport(tmp_path, port, key)
    try:
        with pytest.raises(Exception) as err:
            t.run("echo hello", sudo=False, timeout=20)
    finally:
        t.close()
    assert "node1" in str(err.value) and not execs
