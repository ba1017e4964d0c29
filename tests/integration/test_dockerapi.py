"""The Docker SDK through our own SSH connection (docker system dial-stdio on a channel)."""

from __future__ import annotations

import pytest

from hubwizard.remote.dockerapi import client_for
from hubwizard.remote.transport import HostKeyPolicy, SshTarget, SshTransport
from tests.engine import docker_answers


@pytest.mark.skipif(not docker_answers(), reason="no Docker engine answers (scripts/dockerd.sh start)")
def test_sdk_over_our_connection(ssh_env, tmp_path):
    from tests.sshd import known_hosts_line

    s = ssh_env["servers"][0]
    kh = tmp_path / "kh"
    kh.write_text(known_hosts_line(s))
    t = SshTransport(SshTarget("h", "127.0.0.1", s.port, "root", (str(ssh_env["key"]),)), HostKeyPolicy(kh))
    client = client_for(t)
    try:
        assert client.ping()
        assert client.version()["Version"]
        for _ in range(5):
            client.containers.list()
        assert t._client is not None  # the same paramiko connection carried it all
    finally:
        client.close()
        t.close()


@pytest.fixture
def password_sudoer(ssh_env):
    from pathlib import Path

    from tests.sudo_user import password_sudoer as make

    with make("hwdock", Path(f"{ssh_env['key']}.pub")) as user:
        yield user


@pytest.mark.skipif(not docker_answers(), reason="no Docker engine answers (scripts/dockerd.sh start)")
def test_sdk_with_sudo_password(ssh_env, tmp_path, password_sudoer):
    """A non-root admin whose sudo asks for a password still reaches the Docker API."""
    from tests.sshd import known_hosts_line

    user, password = password_sudoer
    s = ssh_env["servers"][0]
    kh = tmp_path / "kh"
    kh.write_text(known_hosts_line(s))
    target = SshTarget("h", "127.0.0.1", s.port, user, (str(ssh_env["key"]),), None, password)
    t = SshTransport(target, HostKeyPolicy(kh))
    client = client_for(t)
    try:
        assert client.ping()
        assert isinstance(client.containers.list(), list)
    finally:
        client.close()
        t.close()
