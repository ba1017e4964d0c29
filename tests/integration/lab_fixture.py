"""Lab fixtures for integration tests: a real lab, brought up once, always brought down.

Why a context manager plus thin fixtures: tests of several engineers run their own labs at the
same time on one Docker engine, so every lab here has a name unique to this process, and the
teardown runs whatever happened (failed asserts, Ctrl-C). Import into a conftest:

    from tests.integration.lab_fixture import lab_with_docker, lab  # noqa: F401
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

_counter = itertools.count(1)


def docker_client_or_skip() -> Any:
    """A client for the host's engine, or skip the test saying how to get one."""
    try:
        import docker

        client = docker.from_env(timeout=300)
        client.ping()
        return client
    except Exception as exc:  # noqa: BLE001 - any failure here means: no engine to test against
        pytest.skip(f"no Docker engine answers ({type(exc).__name__}); start one with scripts/dockerd.sh start")


def unique_name(prefix: str = "t") -> str:
    """A lab name no other test process uses: prefix, pid, counter (fits the 24-char rule)."""
    return f"{prefix}{os.getpid()}-{next(_counter)}"


@dataclass
class Lab:
    """A lab brought up for a test: its name, site file, secrets and record."""

    name: str
    site_path: Path
    record: dict[str, Any]

    @property
    def secrets_path(self) -> Path:
        return self.site_path.with_name(self.site_path.stem + ".secrets.toml")

    @property
    def secrets(self) -> dict[str, str]:
        return tomllib.loads(self.secrets_path.read_text())

    def site(self) -> Any:
        from hubwizard.core.config import load_site

        return load_site(self.site_path)


@contextlib.contextmanager
def running_lab(directory: Path, name: str | None = None, **options: Any) -> Iterator[Lab]:
    """Bring a lab up (options as LabSpec fields: nodes, spares, user, with_docker...), yield it,
    and always bring it down."""
    from hubwizard.lab import lifecycle as lab

    docker_client_or_skip()
    name = name or unique_name()
    spec = lab.LabSpec(name=name, **options)
    site_path = Path(directory) / f"{name}.toml"
    try:
        record = lab.up(spec, site_path, progress=lambda _m: None)
        yield Lab(name=name, site_path=site_path, record=record)
    finally:
        lab.down(name, progress=lambda _m: None)


@pytest.fixture(scope="session")
def lab_with_docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A hub and two nodes with docker.io running, shared by the whole session."""
    with running_lab(tmp_path_factory.mktemp("lab"), with_docker=True, nodes=2) as up:
        yield up


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A hub and two fresh Debian machines (no docker yet): what the recipes start from."""
    with running_lab(tmp_path_factory.mktemp("lab"), nodes=2) as up:
        yield up
