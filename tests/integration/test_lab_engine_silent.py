"""`lab status|down|up` against an engine that stops answering: a plain message and exit 1, never a hang.

Why: Docker 20.10's libnetwork deadlock left `docker network ls` unanswered forever, and every
lab command and test teardown hung with it. The engine here is tests/silent_engine.py (the real
Docker SDK talks to a socket that accepts and never replies), with the lab's timeouts shortened
through the environment so the test takes seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.silent_engine import SilentEngine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def short_socket() -> Iterator[Path]:
    """A unix socket path short enough for AF_UNIX (pytest's tmp paths can exceed 108 bytes)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="hw-eng-", dir="/tmp"))
    yield folder / "docker.sock"
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def _lab(engine: SilentEngine, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DOCKER_HOST": engine.url,
        "HUBWIZARD_LAB_DOCKER_PROBE": "2",
        "HUBWIZARD_LAB_DOCKER_TIMEOUT": "2",
        "HUBWIZARD_LAB_DOCKER_LOCK": str(tmp_path / "docker.lock"),
        "HUBWIZARD_HOME": str(tmp_path / "home"),
    }
    return subprocess.run(
        [sys.executable, "-m", "hubwizard.lab.cli", *args],
        capture_output=True,
        text=True,
        timeout=90,  # a hang fails here, with the command's name, long before pytest's limit
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


def _plain(done: subprocess.CompletedProcess[str], call: str) -> None:
    text = done.stdout + done.stderr
    if done.returncode == 0 or "Traceback" in text or f"does not answer `{call}`" not in done.stderr:
        pytest.fail(f"exit {done.returncode}:\n{text[-2000:]}")
    assert "Docker 20.10 deadlock" in done.stderr and "scripts/dockerd.sh restart" in done.stderr


@pytest.mark.parametrize("command", [["status", "--name", "silent"], ["down", "--name", "silent"]])
def test_network_ls_deadlock_is_named_not_waited_for(command: list[str], tmp_path: Path, short_socket: Path) -> None:
    engine = SilentEngine(short_socket, hang=("/networks",))
    try:
        done = _lab(engine, tmp_path, *command)
    finally:
        engine.close()
    _plain(done, "network ls")


def test_an_engine_that_answers_nothing_fails_lab_up_and_down(tmp_path: Path, short_socket: Path) -> None:
    engine = SilentEngine(short_socket, hang=("",))
    try:
        down = _lab(engine, tmp_path, "down", "--name", "silent")
        up = _lab(engine, tmp_path, "up", "--name", "silent", "-o", str(tmp_path / "s.toml"))
    finally:
        engine.close()
    _plain(down, "version")
    _plain(up, "version")
    assert not (tmp_path / "s.toml").exists()


def test_a_removal_that_hangs_on_a_busy_engine_says_so(tmp_path: Path, short_socket: Path) -> None:
    """`network ls` still answers: the engine is slow, not deadlocked, and the message says that."""
    engine = SilentEngine(short_socket, hang=("DELETE /containers/",))
    try:
        done = _lab(engine, tmp_path, "down", "--name", "silent")
    finally:
        engine.close()
    if done.returncode != 1 or "did not finish `container rm -f hwlab-silent-hub`" not in done.stderr:
        pytest.fail(f"exit {done.returncode}:\n{(done.stdout + done.stderr)[-2000:]}")
    assert "overloaded, not deadlocked" in done.stderr and "Traceback" not in done.stderr
