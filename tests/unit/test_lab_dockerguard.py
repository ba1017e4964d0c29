"""The lab's Docker lock (one process at a time, bounded wait) and what counts as the engine timing out."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hubwizard.lab import dockerguard
from hubwizard.lab.spec import LabError

HOLDER = textwrap.dedent(
    """
    import fcntl, sys
    fh = open(sys.argv[1], "a+")
    fcntl.flock(fh, fcntl.LOCK_EX)
    fh.seek(0); fh.truncate(); fh.write("4242 remove lab other\\n"); fh.flush()
    print("held", flush=True)
    sys.stdin.readline()
    """
)


@pytest.fixture
def lock_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "docker.lock"
    monkeypatch.setenv("HUBWIZARD_LAB_DOCKER_LOCK", str(path))
    monkeypatch.setenv("HUBWIZARD_LAB_DOCKER_LOCK_WAIT", "1")
    return path


def test_a_held_lock_is_waited_for_then_reported_with_its_holder(lock_env: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_env)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LabError) as caught, dockerguard.docker_lock("create network hwlab-x"):
            pass
        assert "4242 remove lab other" in str(caught.value) and "create network hwlab-x" in str(caught.value)
        assert "scripts/dockerd.sh restart" in str(caught.value)
    finally:
        holder.communicate("\n", timeout=30)
    with dockerguard.docker_lock("create network hwlab-x"):  # free again once the holder is gone
        assert lock_env.read_text().split()[1:] == ["create", "network", "hwlab-x"]


def test_threads_of_one_process_take_turns(lock_env: Path) -> None:
    """Machines start in parallel threads: the flock (one open file each) serialises them too."""
    import threading

    inside: list[int] = []
    overlaps: list[int] = []

    def work(i: int) -> None:
        with dockerguard.docker_lock(f"start {i}"):
            inside.append(i)
            if len(inside) > 1:
                overlaps.append(i)
            threading.Event().wait(0.05)
            inside.remove(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert overlaps == []


def test_only_the_http_clients_timeouts_count_as_the_engine_timing_out() -> None:
    import docker.errors
    import requests

    read = requests.exceptions.ReadTimeout("UnixHTTPConnectionPool(host='localhost'): Read timed out.")
    try:
        raise docker.errors.DockerException("Error while fetching server API version") from read
    except docker.errors.DockerException as wrapped:
        assert dockerguard.is_timeout(wrapped)
    assert dockerguard.is_timeout(read)
    assert not dockerguard.is_timeout(RuntimeError("pebble at 10.0.0.3:15000 does not answer: timed out"))
    assert not dockerguard.is_timeout(TimeoutError("sshd banner"))


def test_the_deadlock_message_names_the_call_the_time_and_the_restart() -> None:
    err = dockerguard.silent("network ls", 60)
    assert str(err).startswith("the Docker engine does not answer `network ls` for 60 s: a known Docker 20.10 deadlock")
    assert "bash scripts/dockerd.sh restart" in str(err) and err.exit_code != 0


def test_timeouts_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBWIZARD_LAB_DOCKER_PROBE", "7")
    monkeypatch.setenv("HUBWIZARD_LAB_DOCKER_TIMEOUT", "nonsense")
    assert dockerguard.probe_timeout() == 7 and dockerguard.call_timeout() == 180
