"""The Docker SDK through our own SSH connection (docker system dial-stdio on a channel)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from hubwizard.dockerapi import client_for
from hubwizard.transport import HostKeyPolicy, SshTarget, SshTransport


def _engine() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "version"], capture_output=True, timeout=20).returncode == 0


@pytest.mark.skipif(not _engine(), reason="no Docker engine answers (scripts/dockerd.sh start)")
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
    """A local user whose sudo asks for a password, logging in with the test key; removed afterwards."""
    import secrets
    from pathlib import Path

    if not shutil.which("sudo") or not shutil.which("useradd"):
        pytest.skip("sudo and useradd are needed (scripts/setup.sh installs them)")
    name, password = "hwdock", "pw-" + secrets.token_urlsafe(12)
    subprocess.run(["userdel", "-r", name], capture_output=True)
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
    ssh_dir = Path(f"/home/{name}/.ssh")
    ssh_dir.mkdir(parents=True, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(Path(f"{ssh_env['key']}.pub").read_text())
    subprocess.run(["chown", "-R", f"{name}:{name}", str(ssh_dir)], check=True)
    sudoers = Path(f"/etc/sudoers.d/{name}-test")
    sudoers.write_text(f"{name} ALL=(ALL) ALL\n")
    sudoers.chmod(0o440)
    try:
        yield name, password
    finally:
        sudoers.unlink(missing_ok=True)
        subprocess.run(["userdel", "-r", name], capture_output=True)


@pytest.mark.skipif(not _engine(), reason="no Docker engine answers (scripts/dockerd.sh start)")
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
