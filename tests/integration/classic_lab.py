"""The classic track's lab, shared by test_classic.py and test_doctor.py.

A lab (hub + 2 nodes with docker.io) is brought up once per test session and the classic
track applied to it; both test modules import the fixture below, and a module-level cache
makes it one lab, torn down at the end of the session (config cleanup) whatever happened.
With HUBWIZARD_CLASSIC_LAB=NAME an already running lab of that name is reused and left up
(handy while developing: `hubwizard lab up --name NAME --with-docker`); with also
HUBWIZARD_CLASSIC_SITE=PATH, that lab's classic site file (applied by hand) is used as is.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.lab_fixture import docker_client_or_skip, running_lab

_CACHE: dict[str, Any] = {}


@dataclass
class ClassicLab:
    site_path: Path
    record: dict[str, Any]

    def ip(self, host: str) -> str:
        return self.record["machines"][host]["ip"]

    def session(self):
        from hubwizard.session import open_site

        return open_site(self.site_path, prompt=None)

    def connections(self, session=None):
        from hubwizard.remote.connections import Connections

        s = session or self.session()
        return Connections(s.site, s.secrets)

    @property
    def tls_dir(self) -> Path:
        return self.site_path.parent / ".hubwizard" / "classic-site" / "tls"


def classic_site_text(lab_site: str) -> str:
    """The lab's swarm-mode site file turned into a classic one with lab stand-ins."""
    text = lab_site.replace('track = "swarm-mode"', 'track = "classic"')
    text = text.replace(f'name = "{_site_name(lab_site)}"', 'name = "classic-site"', 1)
    return text + '\n[classic]\nlab_stand_ins = true  # lab only: no Docker Hub here\n'


def _site_name(text: str) -> str:
    import tomllib

    return tomllib.loads(text)["site"]["name"]


def _apply(site_path: Path) -> Any:
    from hubwizard.session import open_site

    session = open_site(site_path, prompt=None)
    engine = session.engine(lambda e: None)
    try:
        return engine.run("apply")
    finally:
        engine.conns.close()


def _make(directory: Path, stack: contextlib.ExitStack) -> ClassicLab:
    from hubwizard.lab import lifecycle as lab

    reuse = os.environ.get("HUBWIZARD_CLASSIC_LAB")
    record = lab.load_record(reuse) if reuse else None
    given = os.environ.get("HUBWIZARD_CLASSIC_SITE")  # that lab's classic site, already applied by hand
    if record is not None and given:
        return ClassicLab(Path(given), record)
    if record is not None:
        lab_site = Path(record["site_path"])
    else:
        up = stack.enter_context(running_lab(directory, with_docker=True, nodes=2))
        record, lab_site = up.record, up.site_path
    site = directory / "classic-site.toml"
    site.write_text(classic_site_text(lab_site.read_text()))
    secrets = lab_site.with_name(lab_site.stem + ".secrets.toml")
    shutil.copy(secrets, site.with_name("classic-site.secrets.toml"))
    site.with_name("classic-site.secrets.toml").chmod(0o600)
    made = ClassicLab(site, record)
    _same_users_everywhere(made)
    summary = _apply(site)
    failed = [r for r in summary.results if r.status in ("failed", "unreachable")]
    assert not failed, f"the classic track did not apply on the lab: {failed}"
    return made


def _same_users_everywhere(lab: ClassicLab) -> None:
    """The tutorial's accounts: each site user with one UID on every host (classic-uids checks it)."""
    from hubwizard.actions.classic import site_users

    session = lab.session()
    for uid, user in enumerate(site_users(session.site), start=2001):
        for host in record_hosts(lab):
            ssh(lab, host, f"id {user} >/dev/null 2>&1 || {{ groupadd -g {uid} {user} && useradd -M -u {uid} -g {uid} {user}; }}")


def record_hosts(lab: ClassicLab) -> list[str]:
    return [name for name, m in lab.record["machines"].items() if m.get("role") in ("hub", "node")]


@pytest.fixture(scope="session", name="classic_lab")
def classic_lab_fixture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ClassicLab:
    """A lab with the classic track applied (stand-ins for the consul and swarm images)."""
    if "lab" in _CACHE:
        return _CACHE["lab"]
    docker_client_or_skip()
    stack = contextlib.ExitStack()
    request.config.add_cleanup(stack.close)
    # Not tmp_path_factory: other pytest runs of the same user prune old numbered temp folders,
    # which would delete this session's CA and keys under its feet.
    folder = Path(tempfile.mkdtemp(prefix="hubwizard-classic-"))
    stack.callback(shutil.rmtree, folder, True)
    _CACHE["lab"] = _make(folder, stack)
    return _CACHE["lab"]


def ssh(lab: ClassicLab, host: str, command: str, *, check: bool = True):
    """Run a command as root on a lab machine over the site's own SSH connection."""
    conns = lab.connections()
    try:
        res = conns.get(host).run(command, sudo=True, timeout=300)
    finally:
        conns.close()
    if check:  # a join token never reaches the test report
        assert res.ok, re.sub(r"SWMTKN-[\w-]+", "SWMTKN-(redacted)", f"{host}: {command}: {res.output}")
    return res


# the tests' own restart of dockerd: cleared of a start limit hit by the restarts before it, and
# tried again once (a loaded machine can miss dockerd's start timeout)
START_DOCKERD = ("for i in 1 2 3; do systemctl reset-failed docker.service docker.socket 2>/dev/null; "
                 "systemctl start docker && exit 0; sleep 3; done; exit 1")


def clone_engine_key(lab: ClassicLab, source: str = "node1", target: str = "node2") -> None:
    """Make ``target`` a careless clone of ``source``: its dockerd restarted with a copy of
    /etc/docker/key.json, so both engines have one ID."""
    conns = lab.connections()
    try:
        key = conns.get(source).get("/etc/docker/key.json")
        t = conns.get(target)
        t.run("systemctl stop docker.socket docker.service", sudo=True)
        t.put(key, "/etc/docker/key.json", mode=0o600, sudo=True)
        started = t.run(START_DOCKERD, sudo=True, timeout=180)
        assert started.ok, f"{target}: dockerd does not start again: {started.output[-800:]}"
    finally:
        conns.close()
