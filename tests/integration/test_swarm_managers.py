"""[swarm] managers = 3 on a real 1 hub + 2 nodes lab (issue 16 item 4): apply makes both nodes
managers, verify passes; with dockerd stopped on one of them the swarm still answers on the hub
and verify names the down manager with the fix; started again, verify passes.

Brings its own lab: pytest -m lab tests/integration/test_swarm_managers.py
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.integration.lab_fixture import docker_client_or_skip, unique_name
from tests.integration.test_day2 import _on_host
from tests.swarm_lab import hubwizard

pytestmark = [pytest.mark.lab, pytest.mark.timeout(3600)]

DOWN = "node2"  # a manager that is not the hub
MANAGERS = ("docker node ls --filter role=manager --format "
            "'{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}}'")


def _run(*args: str, what: str) -> tuple[int, str]:
    t0 = time.monotonic()
    res = hubwizard(*args)
    print(f"\n[time] {what}: {time.monotonic() - t0:.0f} s, exit {res.returncode}")
    return res.returncode, res.stdout + res.stderr


@pytest.fixture(scope="module")
def lab_site(tmp_path_factory: pytest.TempPathFactory):
    docker_client_or_skip()
    site_path = tmp_path_factory.mktemp("managers") / "site.toml"
    name = unique_name("m3-")
    try:
        up = hubwizard("lab", "up", "--name", name, "--nodes", "2", "-o", str(site_path), timeout=1500)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        text = site_path.read_text()
        assert not re.search(r"^\[swarm\]", text, flags=re.M)
        site_path.write_text(text + "\n[swarm]\nmanagers = 3\n")
        yield site_path
    finally:
        hubwizard("lab", "down", "--name", name, timeout=600)


def _verified(site_path: Path, what: str) -> str:
    """verify (JSON) passes; the swarm-managers check's own words."""
    code, out = _run("verify", "-c", str(site_path), "--json", what=what)
    doc = json.loads(out[out.find("{"):])
    check = next((c for c in doc.get("checks", []) if c["step"] == "swarm-managers"), None)
    print(f"\n[verify] {what}: exit {code}; swarm-managers: {check and check['detail']}")
    failed = [c for c in doc.get("checks", []) if not c["ok"]]
    assert code == 0 and not failed, json.dumps(failed, indent=1)[-4000:]
    assert check is not None and check["ok"], doc
    return str(check["detail"])


def _managers(site_path: Path) -> list[str]:
    return _on_host(site_path, "hub", MANAGERS).splitlines()


def test_three_managers_survive_one_down(lab_site: Path) -> None:
    code, plan = _run("plan", "-c", str(lab_site), what="plan (bare lab, managers = 3)")
    assert "swarm-managers" in plan, plan[-4000:]

    code, out = _run("apply", "-c", str(lab_site), "--yes", what="apply (1 hub + 2 nodes, managers = 3)")
    assert code == 0, out[-6000:]
    managers = _managers(lab_site)
    print("\n[managers] " + "\n[managers] ".join(managers))
    assert len(managers) == 3 and sum("Leader" in m for m in managers) == 1, managers
    assert "3 managers, all reachable" in _verified(lab_site, "verify (all up)")

    _on_host(lab_site, DOWN, "systemctl stop docker.socket docker.service")
    try:
        # the swarm still answers on the hub (2 of 3 managers hold the quorum) and sees node2 go
        deadline = time.monotonic() + 120
        managers = _managers(lab_site)
        while time.monotonic() < deadline and not any("Unreachable" in m for m in managers):
            time.sleep(3)
            managers = _managers(lab_site)
        print("\n[managers, node2 down] " + "\n[managers, node2 down] ".join(managers))
        assert len(managers) == 3, managers
        code, out = _run("verify", "-c", str(lab_site), what=f"verify ({DOWN}'s dockerd stopped)")
        assert code == 1, out[-6000:]
        line = next((x for x in out.splitlines() if f"{DOWN} unreachable" in x), "")
        print(f"\n[verify, {DOWN} down] " + "\n[verify, down] ".join(x for x in out.splitlines() if DOWN in x))
        assert "keeps its quorum (2 of 3)" in line and f"start dockerd on {DOWN}" in line, out[-6000:]
    finally:
        _on_host(lab_site, DOWN, "systemctl start docker.service")

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not all("Ready" in m and "Unreachable" not in m for m in _managers(lab_site)):
        time.sleep(3)
    assert "3 managers, all reachable" in _verified(lab_site, f"verify ({DOWN} started again)")
