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


def _flaky_client(ssh_env, tmp_path, closes: int):
    """A client whose first ``closes`` channels end before relaying a byte (as a dial-stdio that
    exits at once), the next ones relay to the real engine; the count file says how many started."""
    from hubwizard.remote.dockerapi import _channel_client
    from tests.sshd import known_hosts_line

    s = ssh_env["servers"][0]
    kh = tmp_path / "kh"
    kh.write_text(known_hosts_line(s))
    count = tmp_path / "channels"
    count.write_text("")
    script = tmp_path / "flaky-dial-stdio"
    script.write_text(f"#!/bin/sh\necho x >> {count}\n"
                      f"[ $(wc -l < {count}) -le {closes} ] && exit 0\nexec docker system dial-stdio\n")
    script.chmod(0o755)
    t = SshTransport(SshTarget("h", "127.0.0.1", s.port, "root", (str(ssh_env["key"]),)), HostKeyPolicy(kh))
    return t, _channel_client(t, str(script), 30, None), count


@pytest.mark.skipif(not docker_answers(), reason="no Docker engine answers (scripts/dockerd.sh start)")
def test_a_read_whose_channel_closed_unanswered_is_sent_again(ssh_env, tmp_path):
    """Seen in CI: verify's first Docker API read met 'Remote end closed connection without
    response'; a read is sent again on a new channel (twice at most), and then answers."""
    t, client, count = _flaky_client(ssh_env, tmp_path, closes=2)
    try:
        assert client.info()["ID"]
        assert len(count.read_text().splitlines()) == 3
    finally:
        client.close()
        t.close()


@pytest.mark.skipif(not docker_answers(), reason="no Docker engine answers (scripts/dockerd.sh start)")
def test_a_write_is_never_sent_twice_and_a_dead_engine_is_still_named(ssh_env, tmp_path):
    import requests

    t, client, count = _flaky_client(ssh_env, tmp_path, closes=99)
    try:
        with pytest.raises(requests.exceptions.ConnectionError):
            client.api.post(client.api._url("/networks/create"), json={"Name": "hubwizard-never"})
        assert len(count.read_text().splitlines()) == 1
        with pytest.raises(requests.exceptions.ConnectionError, match="Remote end closed"):
            client.info()
        assert len(count.read_text().splitlines()) == 1 + 3  # a read: tried three times, then named
    finally:
        client.close()
        t.close()
