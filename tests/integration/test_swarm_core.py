"""The swarm-mode track's cluster steps 1-7, for real, on a lab of 1 hub + 2 nodes (the session's
shared swarm lab, tests/swarm_lab.py, whose spare stays out of the site until test_swarm_full).

From fresh machines (no Docker): preflight -> docker -> swarm init -> join -> network ->
NFS storage -> quotas (off in the lab site), then a second apply must change nothing, and
verify must pass with one line per check and host. Join tokens must appear nowhere. With
quotas switched on in a copy of the site, the quota step must say plainly what is missing.
Wall times are printed (pytest -s shows them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.swarm_lab import shared_lab

ROOT = Path(__file__).resolve().parents[2]
LAB = "core-it"
CORE_STEPS = ("010-preflight", "020-docker", "030-swarm-init", "040-swarm-join", "045-swarm-guard", "050-network",
              "060-storage", "070-quotas")

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(1800)]




def hubwizard(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hubwizard.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def lab(swarm_lab, tmp_path_factory):
    """Fresh machines (no Docker): the session's shared swarm lab when nothing ran on it yet
    (test_swarm_full then goes on from here), else a lab of this module's own."""
    if swarm_lab.take_fresh():
        yield _with_core_recipes(swarm_lab.site, swarm_lab.work, swarm_lab.name)
        return
    work = tmp_path_factory.mktemp("core")
    with shared_lab(work, LAB) as own:
        yield _with_core_recipes(own.site, work, LAB)


def _with_core_recipes(site: Path, work: Path, name: str) -> dict:
    recipes = work / "core-recipes"
    recipes.mkdir(exist_ok=True)
    for step in CORE_STEPS:
        shutil.copy(ROOT / "recipes" / f"{step}.yaml", recipes)
    return {"site": site, "recipes": recipes, "work": work, "name": name}


def _doc(res: subprocess.CompletedProcess) -> dict:
    try:
        return json.loads(res.stdout)
    except ValueError:
        raise AssertionError(f"not one JSON document on stdout:\n{res.stdout}\n{res.stderr}") from None


def _statuses(doc: dict) -> dict[tuple[str, str], str]:
    return {(s["id"], h): r["status"] for s in doc["steps"] for h, r in s["hosts"].items()}


def _worker_token(name: str) -> str:
    res = subprocess.run(["docker", "exec", f"hwlab-{name}-hub", "docker", "swarm", "join-token", "-q", "worker"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_preflight_on_fresh_machines(lab):
    """Before Docker: every probe passes, ports are probed through the temporary listener."""
    from hubwizard.core.events import CheckResult
    from hubwizard.session import open_site

    session = open_site(lab["site"], recipes_dir=str(lab["recipes"]), prompt=None)
    checks: list[CheckResult] = []
    engine = session.engine(lambda e: checks.append(e) if isinstance(e, CheckResult) else None)
    try:
        t0 = time.monotonic()
        summary = engine.run("verify", only="preflight")
        print(f"\n[time] preflight on fresh machines: {time.monotonic() - t0:.1f} s")
    finally:
        engine.conns.close()
    assert summary.exit_code == 0, [c for c in checks if not c.ok]
    assert len(checks) == 6 * 3  # one line per check and host
    ports = {c.host: c.detail for c in checks if c.name.startswith("Swarm ports")}
    for node in ("node1", "node2"):
        assert "2377/tcp open" in ports[node] and "not refused" in ports[node]
        assert "temporary listener on the hub" in ports[node]


def test_apply_verify_and_second_apply_unchanged(lab):
    site, recipes = str(lab["site"]), str(lab["recipes"])
    t0 = time.monotonic()
    first = hubwizard("apply", "-c", site, "--recipes", recipes, "--yes", "--json")
    t_first = time.monotonic() - t0
    doc = _doc(first)
    assert first.returncode == 0, json.dumps(doc, indent=1)[-4000:]
    statuses = _statuses(doc)
    assert statuses[("swarm-init", "hub")] == "changed"
    assert statuses[("swarm-join", "node1")] == statuses[("swarm-join", "node2")] == "changed"
    assert statuses[("quotas", "hub")] == "skipped"  # quotas are off in the lab site

    t0 = time.monotonic()
    second = hubwizard("apply", "-c", site, "--recipes", recipes, "--yes", "--json")
    t_second = time.monotonic() - t0
    assert second.returncode == 0, second.stdout[-3000:]
    again = _statuses(_doc(second))
    assert {s for (step, _), s in again.items() if step != "quotas"} == {"unchanged"}, again

    t0 = time.monotonic()
    verify = hubwizard("verify", "-c", site, "--recipes", recipes)
    t_verify = time.monotonic() - t0
    assert verify.returncode == 0, verify.stdout[-3000:]
    lines = [ln for ln in verify.stdout.splitlines() if ln.split()[:1] in (["pass"], ["FAIL"], ["skip"])]
    assert not [ln for ln in lines if ln.strip().startswith("FAIL")]
    skipped = [ln for ln in lines if ln.strip().startswith("skip") and "overlay traffic encrypted" not in ln]
    # the container lab's kernel has no NFS client: each node says so, and that homes are NOT on NFS
    assert all("kernel has no NFS client" in ln or "NOT on NFS" in ln for ln in skipped), skipped
    assert sum("NOT on NFS" in ln for ln in skipped) == 2, skipped
    for host in ("hub", "node1", "node2"):
        assert any(f" {host} " in ln and "Swarm ports" in ln for ln in lines)
    for node in ("node1", "node2"):
        assert any(node in ln and "Ready as worker" in ln for ln in lines)
        assert any(node in ln and "test write through NFS" in ln and "pass" in ln for ln in lines)
    print(f"\n[time] first apply (fresh -> verified): {t_first:.0f} s; second apply: {t_second:.0f} s; "
          f"verify: {t_verify:.0f} s")

    token = _worker_token(lab["name"])
    assert token.startswith("SWMTKN-")
    journal = "".join(p.read_text() for p in Path(site).parent.rglob("journal.jsonl"))
    for text in (first.stdout, first.stderr, second.stdout, verify.stdout, journal):
        assert token not in text and token.split("-")[-1] not in text


def test_swarm_ports_refuse_a_stranger_and_overlay_encryption_is_said(lab):
    """Issue 12 item 12, for real: this machine is on the lab's network but is no host of the
    site: after apply, the hub's 2377/7946 do not answer it (SSH still does, the control), and
    verify says whether the overlay is encrypted (the lab kernel may lack ESP: then plainly NOT)."""
    import socket

    from hubwizard.core.config import load_site

    site = load_site(Path(lab["site"]))
    hub = site.hub_host
    addr = hub.internal_address or hub.address

    def answers(port: int) -> bool:
        try:
            socket.create_connection((addr, port), timeout=3).close()
            return True
        except OSError:
            return False

    assert answers(hub.port)  # the control: the hub is up and reachable from here
    assert not answers(2377) and not answers(7946)
    verify = hubwizard("verify", "-c", str(lab["site"]), "--recipes", str(lab["recipes"]))
    assert verify.returncode == 0, verify.stdout[-3000:]
    said = [ln.strip() for ln in verify.stdout.splitlines() if "overlay traffic encrypted" in ln]
    assert len(said) == 1 and (said[0].startswith("pass") or "NOT encrypted: the kernel of" in said[0]), verify.stdout
    print("\n[overlay] " + said[0])


def test_quota_step_says_what_is_missing(lab):
    """With quotas on in a copy of the site, the step fails with the missing pieces and the fix."""
    src = Path(lab["site"])
    copy = src.with_name("quota-site.toml")
    copy.write_text(src.read_text() + "\n[quotas]\nenabled = true\n")
    shutil.copy(src.with_name(src.stem + ".secrets.toml"), copy.with_name("quota-site.secrets.toml"))
    res = hubwizard("apply", "-c", str(copy), "--recipes", str(lab["recipes"]), "--yes", "--only", "quotas")
    assert res.returncode == 1, res.stdout
    out = res.stdout
    assert "XFS project quotas unavailable" in out
    assert "not XFS" in out or "without project quotas" in out or "no XFS quota support" in out
    assert "fix:" in out
    config = subprocess.run(["sh", "-c", "zcat /proc/config.gz 2>/dev/null | grep XFS_QUOTA"], capture_output=True,
                            text=True).stdout
    if "is not set" in config:  # the lab's kernel is this machine's kernel
        assert "CONFIG_XFS_QUOTA is not set" in out


def test_node_leaves_and_apply_rejoins_it(lab):
    """swarm_leave drops node2 (and the manager forgets it); apply --only swarm-join brings it back."""
    from hubwizard.core.events import discard
    from hubwizard.engine import calls as actions
    from hubwizard.engine.calls import StepContext
    from hubwizard.session import open_site

    session = open_site(lab["site"], recipes_dir=str(lab["recipes"]), prompt=None)
    engine = session.engine(discard)
    try:
        host = session.site.host("node2")
        ctx = StepContext("teardown", host, engine.conns.get("node2"), session.site, engine.facts, session.secrets,
                          engine.state, discard, engine.conns, engine.context(host))
        left = actions.get("swarm_leave")(ctx)
        assert left.ok and left.changed, left.message
        assert "removed from the manager's node list" in left.message
        assert actions.get("swarm_left")(ctx).ok
        hub_ctx = StepContext("teardown", session.site.hub_host, engine.conns.get("hub"), session.site, engine.facts,
                              session.secrets, engine.state, discard, engine.conns, {})
        refused = actions.get("swarm_leave")(hub_ctx)
        assert not refused.ok and "force needed" in refused.message
    finally:
        engine.conns.close()
    res = hubwizard("apply", "-c", str(lab["site"]), "--recipes", str(lab["recipes"]), "--yes", "--json",
                    "--only", "swarm-join")
    assert res.returncode == 0, res.stdout[-3000:]
    statuses = _statuses(_doc(res))
    assert statuses[("swarm-join", "node2")] == "changed" and statuses[("swarm-join", "node1")] == "unchanged"


def test_node_that_left_on_its_own_rejoins_without_a_ghost(lab):
    """`docker swarm leave --force` on node1 alone leaves its old entry down in the manager's list;
    the re-join removes it, so `docker node ls` shows one node1, ready (not a down ghost forever)."""
    hub, node1 = f"hwlab-{lab['name']}-hub", f"hwlab-{lab['name']}-node1"

    def node1_states() -> list[str]:
        res = subprocess.run(["docker", "exec", hub, "docker", "node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
                             capture_output=True, text=True, timeout=60)
        return sorted(line.split()[1].lower() for line in res.stdout.splitlines() if line.split()[0] == "node1")

    subprocess.run(["docker", "exec", node1, "docker", "swarm", "leave", "--force"], capture_output=True, timeout=60)
    deadline = time.monotonic() + 60
    while node1_states() != ["down"] and time.monotonic() < deadline:
        time.sleep(2)
    assert node1_states() == ["down"]
    res = hubwizard("apply", "-c", str(lab["site"]), "--recipes", str(lab["recipes"]), "--yes", "--json",
                    "--only", "swarm-join")
    assert res.returncode == 0, res.stdout[-3000:]
    statuses = _statuses(_doc(res))
    assert statuses[("swarm-join", "node1")] == "changed" and statuses[("swarm-join", "node2")] == "unchanged"
    assert node1_states() == ["ready"]
