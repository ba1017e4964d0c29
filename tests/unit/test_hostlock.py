"""The host lock wrapper, run by the shells a host runs commands with (bash as a login shell,
dash as sh under sudo), on a lock file of the test's own."""

from __future__ import annotations

import subprocess
import time

import pytest

from hubwizard.remote.hostlock import WAITING, locked, wait_until_free

SHELLS = ["bash", "sh"]


def run(shell: str, script: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([shell, "-c", script], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("shell", SHELLS)
def test_command_runs_in_the_same_shell_with_its_exit_code(shell, tmp_path):
    lock = str(tmp_path / "lock")
    res = run(shell, locked("x=4; echo \"got $x\"; exit 3  # a comment at the end", 5, lock))
    assert (res.returncode, res.stdout) == (3, "got 4\n")
    assert run(shell, locked("false", 5, lock)).returncode == 1
    assert run(shell, locked("true", 5, lock)).returncode == 0


@pytest.mark.parametrize("shell", SHELLS)
def test_second_command_waits_for_the_first(shell, tmp_path):
    lock = str(tmp_path / "lock")
    first = subprocess.Popen([shell, "-c", locked(f"touch {tmp_path}/a; sleep 1.5", 5, lock)])
    while not (tmp_path / "a").exists():
        time.sleep(0.02)
    t0 = time.monotonic()
    assert run(shell, locked("true", 5, lock)).returncode == 0
    waited = time.monotonic() - t0
    first.wait()
    assert waited > 0.8  # ordering, not speed: it could not start before the first ended


def test_lock_held_too_long_fails_naming_it(tmp_path):
    lock = str(tmp_path / "lock")
    holder = subprocess.Popen(["flock", lock, "sleep", "5"])
    try:
        time.sleep(0.3)
        res = run("sh", locked("echo never", 1, lock))
        assert res.returncode == 1 and "never" not in res.stdout and "another hubwizard command" in res.stderr
        res = run("sh", wait_until_free(1, lock))
        assert res.returncode == 1 and WAITING in res.stdout and "ps -ef" in res.stderr
    finally:
        holder.kill()
        holder.wait()


def test_a_daemon_started_by_the_command_does_not_keep_the_lock(tmp_path):
    lock = str(tmp_path / "lock")
    daemon = subprocess.Popen(["sh", "-c", locked("sleep 30 & echo $!", 5, lock)], stdout=subprocess.PIPE, text=True)
    pid = int(daemon.stdout.readline())
    daemon.wait()
    try:
        res = run("sh", wait_until_free(2, lock))
        assert res.returncode == 0 and WAITING not in res.stdout
    finally:
        subprocess.run(["kill", str(pid)])


def test_no_lock_file_no_wait(tmp_path):
    res = run("sh", wait_until_free(1, str(tmp_path / "missing")))
    assert res.returncode == 0 and not res.stdout
