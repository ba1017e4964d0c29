"""The sudo password never reaches a command's stdin (issue 12 item 7).

With `sudo -S` the password went first on every command's stdin; when sudo did not ask (a
NOPASSWD rule, a cached timestamp) the command read it: `docker login --password-stdin` sent it
to the registry, `docker secret create -` stored it. Real sshd, real users, real sudo: a root
command reading stdin gets exactly its stdin, with a sudoer that must type a password and with
one whose rule is NOPASSWD (the site still names a password)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubwizard.remote.transport import HostKeyPolicy, LocalTransport, SshTarget, SshTransport
from tests.engine import docker_answers
from tests.sshd import known_hosts_line

DATA = "line one\nsecond line with spaces  \n\\no escape\n"


@pytest.fixture(params=["password", "nopasswd"])
def sudoer(request, ssh_env):
    from tests.sudo_user import password_sudoer

    name = "hwsudo" if request.param == "password" else "hwnopw"
    with password_sudoer(name, Path(f"{ssh_env['key']}.pub"), nopasswd=request.param == "nopasswd") as user:
        yield user


def _transport(ssh_env, tmp_path, user: str, password: str | None) -> SshTransport:
    s = ssh_env["servers"][0]
    kh = tmp_path / "kh"
    kh.write_text(known_hosts_line(s))
    return SshTransport(SshTarget("h", "127.0.0.1", s.port, user, (str(ssh_env["key"]),), None, password),
                        HostKeyPolicy(kh))


def test_root_command_reads_exactly_its_stdin(ssh_env, tmp_path, sudoer):
    user, password = sudoer
    t = _transport(ssh_env, tmp_path, user, password)
    try:
        for _ in range(2):  # the second run: sudo's timestamp may be cached now; still no password
            res = t.run("id -u; cat", sudo=True, stdin=DATA)
            assert res.ok, res.output
            assert res.stdout == "0\n" + DATA
            assert password not in res.stdout + res.stderr
        empty = t.run("cat | wc -c", sudo=True)  # no stdin at all: the command reads nothing
        assert empty.ok and empty.stdout.strip() == "0", empty.output
    finally:
        t.close()


def test_password_not_in_the_root_commands_environment(ssh_env, tmp_path, sudoer):
    user, password = sudoer
    t = _transport(ssh_env, tmp_path, user, password)
    try:
        res = t.run("env; cat /proc/$$/environ | tr '\\0' '\\n'", sudo=True)
        assert res.ok and password not in res.output, res.output
    finally:
        t.close()


def test_wrong_password_is_tried_once_and_named(ssh_env, tmp_path, ssh_user_password):
    """A wrong password costs one attempt for the connection (not three per command, which
    pam_faillock would count); every sudo command then returns sudo's own refusal."""
    user, password = ssh_user_password
    t = _transport(ssh_env, tmp_path, user, "wrong-" + password)
    try:
        first = t.run("cat", sudo=True, stdin="data\n")
        second = t.run("true", sudo=True)
        assert not first.ok and not second.ok
        assert "incorrect password attempt" in first.output and first.output == second.output
        assert "data" not in first.output
        assert t.run("id -un").stdout.strip() == user  # plain commands still run
    finally:
        t.close()


@pytest.fixture
def ssh_user_password(ssh_env):
    from tests.sudo_user import password_sudoer

    with password_sudoer("hwwrong", Path(f"{ssh_env['key']}.pub")) as user:
        yield user


def test_local_transport_same_rule(sudoer):
    """LocalTransport (hubwizard on the hub itself) wraps sudo the same way."""
    import os
    import subprocess

    user, password = sudoer
    if os.geteuid() != 0:
        pytest.skip("needs root to act as the test user")
    script = (
        "import sys; from hubwizard.remote.transport import LocalTransport; "
        f"r = LocalTransport('l', sudo_password={password!r}).run('cat', sudo=True, stdin=sys.stdin.read()); "
        "sys.stdout.write(r.stdout); sys.exit(r.exit_code)"
    )
    root = str(Path(__file__).resolve().parents[2])
    res = subprocess.run(["su", user, "-c", f"cd {root} && python3 -c {_q(script)}"], input=DATA, text=True,
                         capture_output=True, env={**os.environ, "USER": user})
    assert res.returncode == 0, res.stderr
    assert res.stdout == DATA
    assert LocalTransport is not None


def _q(s: str) -> str:
    import shlex

    return shlex.quote(s)


@pytest.mark.skipif(not docker_answers(), reason="no Docker engine answers (scripts/dockerd.sh start)")
def test_docker_api_with_nopasswd_and_a_site_password(ssh_env, tmp_path):
    """The Docker API channel (dial-stdio under sudo) works when sudo does not ask: the password
    line used to be relayed to dockerd as the start of the HTTP stream."""
    from hubwizard.remote.dockerapi import client_for
    from tests.sudo_user import password_sudoer

    with password_sudoer("hwdnopw", Path(f"{ssh_env['key']}.pub"), nopasswd=True) as (user, password):
        t = _transport(ssh_env, tmp_path, user, password)
        client = client_for(t)
        try:
            assert client.ping()
            assert isinstance(client.containers.list(), list)
        finally:
            client.close()
            t.close()
