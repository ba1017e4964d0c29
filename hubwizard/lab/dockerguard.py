"""The lab's own use of the Docker engine: every call bounded in time, the fragile ones serialised.

Why: Debian's dockerd 20.10.24 deadlocked when two test groups created and removed labs at
once: `docker ps` still answered, `docker network ls` never did (libnetwork's endpoint deletion
waited on a network's mutex, every network lookup queued behind it), and every lab command and
test hung with it. So the lab (1) creates networks, starts containers and removes containers
and networks under one host-wide lock file, one process at a time; (2) gives every API call a
timeout; (3) when a call times out, asks `network ls` once more and, if that does not answer
either, says plainly that the engine is deadlocked and how to restart it, instead of hanging.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hubwizard.lab.spec import LabError, NoEngineError

LOCK_PATH = Path("/run/lock/hubwizard-lab-docker.lock")
RESTART_FIX = (
    "restart the engine: `bash scripts/dockerd.sh restart` if scripts/dockerd.sh started it, else "
    "`systemctl restart docker`; then remove what is left with `hubwizard lab down --name NAME`"
)


def _seconds(variable: str, default: float) -> float:
    """A timeout from the environment (tests shorten them), else the default."""
    try:
        return max(0.5, float(os.environ.get(variable, default)))
    except ValueError:
        return default


def probe_timeout() -> float:
    """How long `network ls` (the call the deadlock blocks) may take before we call the engine stuck."""
    return _seconds("HUBWIZARD_LAB_DOCKER_PROBE", 60)


def call_timeout() -> float:
    """How long any other API call of the lab may take (create, start, remove on a busy host)."""
    return _seconds("HUBWIZARD_LAB_DOCKER_TIMEOUT", 180)


def slow_timeout() -> float:
    """Image builds, pulls and pushes stream with long silences (apt inside a build step)."""
    return _seconds("HUBWIZARD_LAB_DOCKER_SLOW", 1800)


def lock_wait() -> float:
    """How long to wait for another lab process's Docker work before giving up."""
    return _seconds("HUBWIZARD_LAB_DOCKER_LOCK_WAIT", 900)


class EngineSilentError(LabError):
    """The Docker engine accepts connections but stops answering: a hang turned into an error."""

    title = "Docker engine does not answer"


def silent(call: str, seconds: float) -> EngineSilentError:
    """The plain message for an engine that stopped answering `call`."""
    return EngineSilentError(
        f"the Docker engine does not answer `{call}` for {seconds:.0f} s: a known Docker 20.10 deadlock "
        "(libnetwork waits on a network's lock; `docker ps` may still answer)",
        fix=RESTART_FIX,
    )


def is_timeout(exc: BaseException) -> bool:
    """Whether a docker/requests/urllib3 exception (or one it wraps) is a read or connect timeout.

    Only the HTTP client's own timeout types count: a socket timeout of the lab's own probes
    (sshd banner, pebble) is not the engine's.
    """
    import requests
    import urllib3

    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError):
            return True
        todo += [item.__cause__, item.__context__, *item.args]
    return False


def _base_url() -> str:
    from docker.utils import kwargs_from_env

    return kwargs_from_env().get("base_url") or "unix:///var/run/docker.sock"


def connect() -> Any:
    """A client whose calls time out, after checking that `network ls` answers in time.

    Raises NoEngineError when nothing listens, EngineSilentError when something listens but
    does not answer (the deadlocked engine).
    """
    import docker

    try:
        client = docker.from_env(timeout=probe_timeout())
    except docker.errors.DockerException as exc:
        if is_timeout(exc):
            raise silent("version", probe_timeout()) from None
        raise NoEngineError(
            f"no Docker engine answers on {_base_url()} ({_short(exc)})",
            fix="start one with `scripts/dockerd.sh start` (install it first with `apt-get install -y docker.io`), "
            "or set DOCKER_HOST to an engine that answers",
        ) from None
    check(client)
    client.api.timeout = call_timeout()
    return client


def slow_client(client: Any) -> Any:
    """A second client on the same engine for builds, pulls and pushes (long silences are normal)."""
    import docker

    return docker.from_env(version=client.api.api_version, timeout=slow_timeout())


def check(client: Any) -> None:
    """Ask `network ls` with the probe timeout: the call Docker 20.10's deadlock blocks first.

    On a client of its own: other threads keep using `client` with its own timeout.
    """
    import docker

    probe = docker.from_env(version=client.api.api_version, timeout=probe_timeout())
    try:
        probe.api.networks()
    except Exception as exc:
        if is_timeout(exc):
            raise silent("network ls", probe_timeout()) from None
        raise LabError(f"the Docker engine failed `network ls`: {_short(exc)}", fix=RESTART_FIX) from None
    finally:
        probe.close()


@contextlib.contextmanager
def answering(client: Any, call: str) -> Iterator[None]:
    """Turn a timeout of any API call inside into a plain message naming the call.

    Why the second question: a busy engine (many labs booting on 2 cores) can miss one timeout
    and still be healthy; only when `network ls` does not answer either is it the deadlock.
    """
    try:
        yield
    except LabError:
        raise
    except Exception as exc:
        if not is_timeout(exc):
            raise
        check(client)  # raises the deadlock message when the engine is stuck
        raise LabError(
            f"the Docker engine did not finish `{call}` within {client.api.timeout:.0f} s "
            "(it still answers `network ls`: overloaded, not deadlocked)",
            fix="wait for the other labs or builds on this machine, then run the command again",
        ) from None


@contextlib.contextmanager
def docker_lock(what: str) -> Iterator[None]:
    """One lab process at a time creates networks, starts containers, removes containers/networks."""
    with hold(_lock_path(), what, fix="if the Docker engine hangs: " + RESTART_FIX):
        yield


@contextlib.contextmanager
def hold(path: Path, what: str, fix: str) -> Iterator[None]:
    """An exclusive flock on ``path``, waited for at most lock_wait() seconds.

    Why flock: the kernel releases it when a process dies, so it is never stale. Why bounded:
    a holder that hangs makes the others fail naming its pid and task, not hang behind it.
    """
    deadline = time.monotonic() + lock_wait()
    with open(path, "a+") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(
                        f"waited {lock_wait():.0f} s for {path} (held by pid {_holder(path)}) to {what}",
                        fix="see what that process is doing (a lab command or a test run); " + fix,
                    ) from None
                time.sleep(0.2)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()} {what}\n")
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _lock_path() -> Path:
    """/run/lock (shared by every user of the engine); the lab's home when that is not writable."""
    override = os.environ.get("HUBWIZARD_LAB_DOCKER_LOCK")
    if override:
        return Path(override)
    if os.access(LOCK_PATH.parent, os.W_OK):
        return LOCK_PATH
    from hubwizard.lab import images as lab_images

    home = lab_images.home() / "lab"
    home.mkdir(parents=True, exist_ok=True)
    return home / ".docker.lock"


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
