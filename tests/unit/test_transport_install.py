"""put() under sudo installs root-owned files: a non-root SSH user (sudo with a password) must not
own, and so be able to rewrite, what root runs later. The upload goes through a private folder
that is gone afterwards. Real sshd, real user, real sudo (tests/sudo_user.py)."""

from __future__ import annotations

import secrets
import shutil
import stat
from pathlib import Path

import pytest

from hubwizard.remote.transport import HostKeyPolicy, LocalTransport, SshTarget, SshTransport
from tests.sshd import keygen, known_hosts_line, start_sshd


@pytest.fixture
def sudoer_transport(tmp_path):
    """An SshTransport logged in as a fresh non-root user whose sudo asks for a password."""
    from tests.sudo_user import password_sudoer

    if not shutil.which("sshd") and not Path("/usr/sbin/sshd").exists():
        pytest.skip("openssh-server is not installed")
    key = keygen(tmp_path / "id_ed25519")
    authorized = tmp_path / "authorized_keys"
    authorized.write_text((tmp_path / "id_ed25519.pub").read_text())
    server = start_sshd(tmp_path, authorized)
    (tmp_path / "kh").write_text(known_hosts_line(server))
    try:
        with password_sudoer("hwinst", Path(f"{key}.pub")) as (user, password):
            target = SshTarget("node1", "127.0.0.1", server.port, user, (str(key),), sudo_password=password)
            t = SshTransport(target, HostKeyPolicy(tmp_path / "kh"))
            yield t
            t.close()
    finally:
        server.stop()


def _leftovers(user: str) -> list[Path]:
    import pwd

    uid = pwd.getpwnam(user).pw_uid
    return [p for p in Path("/tmp").glob(".hubwizard-*") if p.lstat().st_uid == uid]


def test_sudo_put_is_root_owned_with_its_mode(sudoer_transport):
    t = sudoer_transport
    dest = Path(f"/tmp/hw-install-{secrets.token_hex(4)}")
    try:
        t.put(b"#!/bin/sh\necho run by root\n", f"{dest}/sbin/job", mode=0o750, sudo=True)
        st = (dest / "sbin" / "job").stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o750)
        assert (dest / "sbin" / "job").read_bytes() == b"#!/bin/sh\necho run by root\n"
        assert not _leftovers(t.user)  # the private upload folder is gone
        assert sorted(p.name for p in (dest / "sbin").iterdir()) == ["job"]  # no staged file left
        assert not t.run(f"echo x >> {dest}/sbin/job").ok  # the login user cannot rewrite it
        t.put(b"second\n", f"{dest}/sbin/job", mode=0o644, sudo=True)  # replacing keeps root:root
        st = (dest / "sbin" / "job").stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode), (dest / "sbin" / "job").read_text()) == (0, 0o644, "second\n")
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def test_put_without_sudo_stays_the_users(sudoer_transport):
    import pwd

    t = sudoer_transport
    home = Path(pwd.getpwnam(t.user).pw_dir)
    t.put(b"mine\n", f"{home}/notes/a.txt", mode=0o600)
    st = (home / "notes" / "a.txt").stat()
    assert st.st_uid == pwd.getpwnam(t.user).pw_uid and stat.S_IMODE(st.st_mode) == 0o600
    assert not _leftovers(t.user)


def test_sudo_put_that_fails_names_the_path_and_cleans_up(sudoer_transport):
    t = sudoer_transport
    with pytest.raises(OSError) as err:
        t.put(b"x", "/proc/hw-cannot-write-here/file", sudo=True)
    assert "node1" in str(err.value) and "/proc/hw-cannot-write-here/file" in str(err.value)
    assert not _leftovers(t.user)


def test_local_put_uses_a_private_folder_and_removes_it(tmp_path):
    before = set(Path("/tmp").glob(".hubwizard-*"))
    LocalTransport().put(b"local\n", f"{tmp_path}/deep/f", mode=0o640, sudo=False)
    assert (tmp_path / "deep" / "f").read_text() == "local\n"
    assert stat.S_IMODE((tmp_path / "deep" / "f").stat().st_mode) == 0o640
    assert set(Path("/tmp").glob(".hubwizard-*")) <= before
