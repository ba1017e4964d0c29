"""The host lock lives where only root can write (issue 12, Low): a local user cannot plant a
symlink or a file of their own at the lock's name for root's commands to follow or block on.
Real root shell and a real non-root user on this machine."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from hubwizard.remote.hostlock import LOCK, locked

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as root and as a test user")


@pytest.fixture
def plain_user():
    name = "hwlockuser"
    subprocess.run(["userdel", "-r", name], capture_output=True)
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
    yield name
    subprocess.run(["userdel", "-r", name], capture_output=True)


def test_lock_directory_is_roots_alone(plain_user, tmp_path):
    assert not LOCK.startswith("/run/lock/") and not LOCK.startswith("/tmp/")
    res = subprocess.run(["sh", "-c", locked("echo locked-run", 5)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and res.stdout == "locked-run\n", res.stderr
    d = Path(LOCK).parent
    st = d.stat()
    assert st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    planted = subprocess.run(["su", plain_user, "-c", f"ln -s {victim} {d}/planted; : > {d}/planted2"],
                             capture_output=True, text=True)
    assert planted.returncode != 0 and not (d / "planted").exists() and not (d / "planted2").exists()
    assert victim.read_text() == "precious\n"


def test_non_root_command_still_runs(plain_user):
    res = subprocess.run(["su", plain_user, "-c", locked("echo as-user", 5)], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0 and res.stdout == "as-user\n", res.stderr
