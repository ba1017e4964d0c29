"""The SSH login user need not be in the docker group (issue 12, Low): the group is root without
sudo, so it is a site option ([docker] admin_in_docker_group), off by default.

A real non-root sudoer (not in the docker group) on real sshd, the real Docker engine of this
machine: plan and verify of the docker step reach Docker through sudo and pass the group and
version items; the apply would not add the user; with the option on, the same user is reported
missing from the group (the control)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hubwizard.core.events import HostResult
from hubwizard.session import open_site
from tests.conftest import write_site
from tests.engine import docker_answers

pytestmark = pytest.mark.skipif(not docker_answers(), reason="no Docker engine answers (scripts/dockerd.sh start)")
USER = "hwdnogroup"
ITEMS = ("admin user in the docker group", "docker info answers, version high enough")


@pytest.fixture(scope="module")
def sudoer(ssh_env):
    from tests.sudo_user import password_sudoer

    with password_sudoer(USER, Path(f"{ssh_env['key']}.pub"), nopasswd=True) as found:
        groups = subprocess.run(["id", "-nG", USER], capture_output=True, text=True).stdout.split()
        assert "docker" not in groups
        yield found


def _site(tmp_path: Path, ssh_env, extra: str = "") -> Path:
    site = write_site(tmp_path, ssh_env, extra=extra)
    text = site.read_text().replace('user = "root"', f'user = "{USER}"')
    site.write_text(text)
    return site


def _engine(site: Path):
    session = open_site(site, prompt=None)
    events: list = []
    return session.engine(events.append), events


def _items(site: Path, phase: str) -> dict[str, tuple[bool, str]]:
    """The docker step's group and version items on the hub, run for real (label -> ok, output)."""
    engine, _ = _engine(site)
    try:
        step = next(s for s in engine.steps if s.id == "docker")
        host = engine.site.host("hub")
        ctx = engine.context(host)
        out = {}
        for item in getattr(step, phase):
            if item.label in ITEMS:
                res = engine._exec(step, host, phase, item, ctx)
                out[item.label] = (res.ok, res.output)
        return out
    finally:
        engine.conns.close()


def _plan_commands(site: Path) -> list[str]:
    engine, events = _engine(site)
    try:
        engine.run("plan", only="docker", hosts={"hub"})
    finally:
        engine.conns.close()
    return [c for e in events if isinstance(e, HostResult) and e.step == "docker" for c in e.commands]


@pytest.mark.parametrize("phase", ["check", "verify"])
def test_docker_checks_pass_without_the_group_through_sudo(tmp_path, ssh_env, sudoer, phase):
    items = _items(_site(tmp_path, ssh_env), phase)
    assert set(items) == set(ITEMS)
    for label, (ok, output) in items.items():
        assert ok, (label, output)
    assert "hubwizard uses sudo" in items[ITEMS[0]][1]
    assert "Docker " in items[ITEMS[1]][1]  # docker info answered, through sudo


def test_plan_never_adds_the_user_unless_the_site_asks(tmp_path, ssh_env, sudoer):
    site = _site(tmp_path, ssh_env)
    assert not any("usermod" in c for c in _plan_commands(site))
    asked = _site(tmp_path, ssh_env, extra="\n[docker]\nadmin_in_docker_group = true\n")
    assert any(f"usermod -aG docker {USER}" in c for c in _plan_commands(asked))
    ok, output = _items(asked, "verify")[ITEMS[0]]
    assert not ok and "not in the docker group" in output  # the control: the option on asks for it
