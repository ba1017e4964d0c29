"""Shared fixtures: real sshd "hosts" on 127.0.0.1, and a site file pointing at them."""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import settings

from tests.sshd import keygen, known_hosts_line, start_sshd

ROOT = Path(__file__).resolve().parent.parent
BASIC_RECIPES = ROOT / "tests" / "data" / "recipes_basic"

# Property tests: in CI a fixed seed (a failing example is found again by the next run, and
# print_blob gives the line that replays it) and no example database (CI machines are fresh);
# locally random examples plus the default database in .hypothesis/, which replays past
# failures first. A 5 s deadline flags an example that is pathologically slow without turning
# a loaded 2-core machine into flaky failures; a hang is pytest-timeout's job (pyproject).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, deadline=timedelta(seconds=5))
settings.register_profile("dev", print_blob=True, deadline=timedelta(seconds=5))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "dev"))

# Per-test time limits (pytest-timeout, method "thread": a hang dumps every thread's stack and
# names the test). pyproject's default (300 s) fits unit, sshd and TUI tests; these need more,
# because a test's limit also covers the fixtures it sets up first: a lab test may pay for
# building the lab images (~4 min the first time) and booting a lab, or for the shared swarm
# lab's first apply (~9 min); the reliability suites run whole apply loops (crash points,
# hundreds of hostile examples, whose shrinking Hypothesis itself stops after 5 min).
# A module's own `pytest.mark.timeout(...)` wins over these.
LAB_TIMEOUT = 1800
RELIABILITY_TIMEOUT = 900
# Session fixtures that install first (charged to whichever test asks for them first):
# hub_python pip-installs JupyterHub into a venv on a fresh machine.
SLOW_FIXTURES = {"hub_python": 1200}


# The shared swarm lab's first user gets fresh machines (tests/swarm_lab.py): test_swarm_core
# applies steps 1-7 from scratch. Run it before every other lab test, or it brings a lab of its
# own (a second full apply) because test_browser.py and others sort before it.
FRESH_FIRST = "test_swarm_core.py"
# Lab modules that bring up labs of their own (not the session's shared swarm lab): marked
# own_lab here, in one place, so scripts/test.sh can run them beside the shared-lab modules.
# A module's session fixtures stay within one group (test_classic and test_classic_hub share one).
# test_hub_spec_diff and test_registry_tls_lab have labs of their own too but stay with the
# shared group, which is the shorter of the two.
OWN_LAB_MODULES = frozenset({
    "test_classic.py", "test_classic_hub.py", "test_doctor.py",  # the session's classic lab
    "test_nfs_isolation.py", "test_backup.py", "test_day2.py", "test_nfs_host.py",
    "test_classic_ha.py",  # hub + node1 + spare1 of its own (a replica manager, a clone)
})


def _fresh_lab_first(items: list[pytest.Item]) -> None:
    first = [i for i in items if i.path.name == FRESH_FIRST]
    if not first:
        return
    rest = [i for i in items if i.path.name != FRESH_FIRST]
    at = next((n for n, i in enumerate(rest) if i.get_closest_marker("lab") is not None), len(rest))
    items[:] = rest[:at] + first + rest[at:]


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _fresh_lab_first(items)
    for item in items:
        if item.path.name in OWN_LAB_MODULES and item.get_closest_marker("lab") is not None:
            item.add_marker(pytest.mark.own_lab)
    for item in items:
        if item.get_closest_marker("timeout") is not None:
            continue
        limits = [SLOW_FIXTURES[f] for f in getattr(item, "fixturenames", ()) if f in SLOW_FIXTURES]
        if item.get_closest_marker("lab") is not None:
            limits.append(LAB_TIMEOUT)
        elif "reliability" in item.path.parts:
            limits.append(RELIABILITY_TIMEOUT)
        if limits:
            item.add_marker(pytest.mark.timeout(max(limits)))


@pytest.fixture(scope="session")
def ssh_env(tmp_path_factory):
    """Two sshd servers and a client key; torn down at the end of the session."""
    if not shutil.which("sshd") and not Path("/usr/sbin/sshd").exists():
        pytest.skip("openssh-server is not installed (the README's test command installs it)")
    root = tmp_path_factory.mktemp("ssh")
    key = keygen(root / "id_ed25519")
    authorized = root / "authorized_keys"
    authorized.write_text((root / "id_ed25519.pub").read_text())
    servers = [start_sshd(root, authorized) for _ in range(2)]
    yield {"root": root, "key": key, "servers": servers}
    for s in servers:
        s.stop()


@pytest.fixture
def ssh_transport(ssh_env, tmp_path):
    """Our SSH transport, as root, to the first of ssh_env's servers; closed afterwards."""
    from hubwizard.remote.transport import HostKeyPolicy, SshTarget, SshTransport
    from tests.sshd import known_hosts_line

    s = ssh_env["servers"][0]
    kh = tmp_path / "kh"
    kh.write_text(known_hosts_line(s))
    t = SshTransport(SshTarget("h", "127.0.0.1", s.port, "root", (str(ssh_env["key"]),)), HostKeyPolicy(kh))
    yield t
    t.close()


# test sites log in with the open dummy login, which the site file accepts only when it says so
LAB_LOGIN = '[oauth]\nprovider = "dummy"\ni_understand_anyone_can_log_in = true\n\n'


def write_site(tmp_path: Path, ssh_env, *, domain: str = "hub.example.org", known: bool = True,
               extra: str = "") -> Path:
    """A site whose hosts are the test sshd servers; storage.path is a fresh work dir."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    kh = tmp_path / "known_hosts"
    kh.write_text("".join(known_hosts_line(s) for s in ssh_env["servers"]) if known else "")
    hosts = ""
    for i, s in enumerate(ssh_env["servers"]):
        role = "hub" if i == 0 else "node"
        name = "hub" if i == 0 else f"node{i}"
        hosts += (f'[[hosts]]\nname = "{name}"\naddress = "127.0.0.1"\nport = {s.port}\nrole = "{role}"\n'
                  f'user = "root"\nkey = "{ssh_env["key"]}"\ninternal_address = "127.0.0.1"\n\n')
    site = tmp_path / "site.toml"
    (tmp_path / "no-ssh-config").write_text("")  # a named ssh config must exist (an empty one: none)
    login = "" if "[oauth]" in extra else LAB_LOGIN
    site.write_text(
        f'[site]\nname = "t"\ndomain = "{domain}"\nemail = "a@example.org"\nsubnet = "127.0.0.0/8"\n\n'
        f'[ssh]\nknown_hosts = "{kh}"\nconfig = "{tmp_path}/no-ssh-config"\n\n'
        f'[storage]\npath = "{work}"\n\n{login}{extra}\n{hosts}'
    )
    return site


@pytest.fixture(scope="session")
def swarm_lab(tmp_path_factory):
    """The swarm-mode lab shared by the track, reliability and monitor tests (tests/swarm_lab.py)."""
    from tests.engine import docker_answers
    from tests.integration.lab_fixture import unique_name
    from tests.swarm_lab import shared_lab

    if not docker_answers():
        pytest.skip("no Docker engine answers (scripts/dockerd.sh start)")
    with shared_lab(tmp_path_factory.mktemp("swarm-lab"), unique_name("sw")) as lab:
        yield lab
