"""`hubwizard plan` on hosts that are still bare, and on hosts that cannot be reached.

Against the real sshd "hosts" of tests/sshd.py: a step whose check looks at what an earlier
step installs is "would change (needs step X first)", never FAILED, and plan exits 0; a check
that raises is one line for people; an unreachable hub (and a node behind it) still gets every
step listed with its commands, "not checked", exit 3. The lab test does the same on bare lab
machines, where the Docker-needing checks open the Docker API of a host that has no Docker.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_site
from tests.sshd import free_port

HW = [sys.executable, "-m", "hubwizard.cli.main"]

# A tool step, a step whose check runs that tool (no `needs:`: the generic rule), a hub step
# and a node step that declares it needs it, and a step that declares it needs nothing.
RECIPES = """\
- id: tool
  title: Install a tool
  order: 10
  targets: all
  check:
    - test -x {{ cfg.storage.path }}/{{ host.name }}/bin/tool
  apply:
    - mkdir -p {{ cfg.storage.path }}/{{ host.name }}/bin
    - printf '#!/bin/sh\\ntest -f "$(dirname "$0")/on"\\n' > {{ cfg.storage.path }}/{{ host.name }}/bin/tool
    - chmod +x {{ cfg.storage.path }}/{{ host.name }}/bin/tool
- id: use-tool
  title: Turn the tool on
  order: 20
  targets: all
  check:
    - run: "{{ cfg.storage.path }}/{{ host.name }}/bin/tool"
  apply:
    - touch {{ cfg.storage.path }}/{{ host.name }}/bin/on
- id: publish
  title: Publish on the hub
  order: 30
  targets: hub
  check:
    - test -f {{ cfg.storage.path }}/published
  apply:
    - touch {{ cfg.storage.path }}/published
- id: consume
  title: Nodes consume what the hub published
  order: 40
  targets: nodes
  needs: [publish]
  check:
    - test -f {{ cfg.storage.path }}/{{ host.name }}/consumed
  apply:
    - cp {{ cfg.storage.path }}/published {{ cfg.storage.path }}/{{ host.name }}/consumed
- id: own-work
  title: Work of its own
  order: 50
  targets: all
  needs: []
  check:
    - test -f {{ cfg.storage.path }}/{{ host.name }}-own
  apply:
    - touch {{ cfg.storage.path }}/{{ host.name }}-own
"""
STEPS = ("tool", "use-tool", "publish", "consume", "own-work")


def _recipes(tmp_path: Path, text: str = RECIPES) -> Path:
    d = tmp_path / "recipes"
    d.mkdir(exist_ok=True)
    (d / "10-plan.yaml").write_text(text)
    return d


def hw(recipes: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*HW, *args, "--recipes", str(recipes)], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _states(doc: dict) -> dict[tuple[str, str], dict]:
    return {(s["id"], h): v for s in doc["steps"] for h, v in s["hosts"].items()}


def test_plan_on_bare_hosts_says_needs_step_first_and_exits_0(tmp_path, ssh_env):
    site, recipes = write_site(tmp_path, ssh_env), _recipes(tmp_path)
    res = hw(recipes, "plan", "-c", str(site), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    states = _states(json.loads(res.stdout))
    for host in ("hub", "node1"):
        assert states[("tool", host)]["state"] == "would-change"
        use = states[("use-tool", host)]
        assert (use["state"], use["needs"], use["status"]) == ("needs", "tool", "would-change")
        assert use["commands"] and "bin/on" in use["commands"][0]
        assert states[("own-work", host)]["state"] == "would-change"  # declared needs: []
    consume = states[("consume", "node1")]
    assert (consume["state"], consume["needs"]) == ("needs", "publish")
    assert consume["message"] == "needs step publish on hub first"

    human = hw(recipes, "plan", "-c", str(site))
    assert human.returncode == 0, human.stdout + human.stderr
    assert "would change  hub (needs step tool first)" in human.stdout
    assert "FAILED" not in human.stdout and "Traceback" not in human.stdout + human.stderr
    assert not list((tmp_path / "work").iterdir())  # plan changed nothing

    assert hw(recipes, "apply", "-c", str(site), "--yes").returncode == 0
    after = hw(recipes, "plan", "-c", str(site), "--json")
    assert after.returncode == 0
    assert {v["state"] for v in _states(json.loads(after.stdout)).values()} == {"unchanged"}


def test_a_check_that_raises_is_one_line_for_people(tmp_path, ssh_env):
    """A call check raising what a missing Docker API raises: "needs" after a pending step on that
    host; with nothing pending, one FAILED line that names the host, no exception text."""
    from hubwizard.cli.report import JsonCollector
    from hubwizard.engine import calls
    from hubwizard.session import open_site

    class ConnectionError(OSError):  # noqa: A001 - named as requests' is, as the Docker SDK raises it
        pass

    @calls.register("plan_test_docker_api")
    def _no_docker(ctx, **_):
        raise ConnectionError("('Connection aborted.', RemoteDisconnected('Remote end closed connection'))")

    recipes = _recipes(tmp_path, RECIPES + """\
- id: docker-check
  title: A check on the Docker API
  order: 60
  targets: hub
  needs: []
  check:
    - call: plan_test_docker_api
  apply:
    - run: "true"
""")
    site = write_site(tmp_path, ssh_env)
    session = open_site(site, recipes_dir=str(recipes), prompt=lambda _: "")
    for only, want in ((None, "needs"), ("docker-check", "failed")):
        sink = JsonCollector()
        engine = session.engine(sink)
        try:
            summary = engine.run("plan", only=only)
        finally:
            engine.conns.close()
        (result,) = [r for r in summary.results if r.step == "docker-check"]
        doc = json.loads(sink.document("plan", summary.exit_code))
        assert _states(doc)[("docker-check", "hub")]["state"] == want
        if want == "needs":
            assert result.needs == "tool" and summary.exit_code == 0
        else:
            assert summary.exit_code == 1
            assert result.message == ("could not check: the Docker engine on hub does not answer "
                                      "(is dockerd installed and running?)")
            assert "RemoteDisconnected" not in result.message and "\n" not in result.message


def _hub_down_site(tmp_path: Path, ssh_env, *, node_through_hub: bool) -> Path:
    """The hub's address is 127.0.0.1 on a port where nothing listens."""
    site = write_site(tmp_path, ssh_env)
    hub_port = ssh_env["servers"][0].port
    text = site.read_text().replace(f"port = {hub_port}\n", f"port = {free_port()}\n", 1)
    if node_through_hub:
        text = text.replace('name = "node1"\n', 'name = "node1"\njump = "hub"\n', 1)
    site.write_text(text)
    return site


def test_unreachable_hub_and_node_behind_it_every_step_listed_exit_3(tmp_path, ssh_env):
    site, recipes = _hub_down_site(tmp_path, ssh_env, node_through_hub=True), _recipes(tmp_path)
    res = hw(recipes, "plan", "-c", str(site))
    assert res.returncode == 3, res.stdout + res.stderr
    out = res.stdout
    for step in STEPS:
        assert f"== {step}:" in out
    assert out.count("hub - not checked: host unreachable") == 4  # every step on the hub
    assert out.count("node1 - not checked: unreachable through hub") == 4
    assert "$ mkdir -p" in out and "$ touch" in out and "$ cp" in out
    assert out.count("fix: ") == 1, out  # why and the fix once, not per step and host
    assert "Traceback" not in out + res.stderr

    doc = json.loads(hw(recipes, "plan", "-c", str(site), "--json").stdout)
    assert doc["exit_code"] == 3
    states = _states(doc)
    assert len(states) == 8 and {v["state"] for v in states.values()} == {"unreachable"}
    assert all(v["commands"] for v in states.values())


def test_unreachable_hub_still_checks_the_nodes_that_answer(tmp_path, ssh_env):
    site, recipes = _hub_down_site(tmp_path, ssh_env, node_through_hub=False), _recipes(tmp_path)
    res = hw(recipes, "plan", "-c", str(site), "--json")
    assert res.returncode == 3, res.stdout + res.stderr
    states = _states(json.loads(res.stdout))
    assert states[("tool", "node1")]["state"] == "would-change"
    assert states[("use-tool", "node1")]["state"] == "needs"
    assert states[("tool", "hub")]["state"] == "unreachable"
    assert states[("tool", "hub")]["commands"]


def test_whole_swarm_track_listed_when_the_hub_address_is_unreachable(tmp_path):
    """The real recipes, a 1+2 site whose hub is 127.0.0.1 on a closed port and whose nodes sit
    behind it: every step of the track is listed with what it would run, exit 3."""
    from hubwizard.core.steps import load_steps

    text = (Path(__file__).parents[1] / "data" / "render-site.toml").read_text()
    text = text.replace('address = "203.0.113.10"\n', f'address = "127.0.0.1"\nport = {free_port()}\n')
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "ssh_config").write_text("")
    text = text.replace("[docker]", f'[ssh]\nknown_hosts = "{tmp_path}/known_hosts"\nconfig = "{tmp_path}/ssh_config"\n'
                                    "\n[docker]")
    site = tmp_path / "site.toml"
    site.write_text(text)
    secrets = tmp_path / "site.secrets.toml"
    secrets.write_text('oauth_client_secret = "not-a-real-secret"\n')
    secrets.chmod(0o600)
    res = subprocess.run([*HW, "plan", "-c", str(site)], capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 3, res.stdout + res.stderr
    for step in load_steps("swarm-mode"):
        assert f"== {step.id}:" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr and "not-a-real-secret" not in res.stdout
    doc = json.loads(subprocess.run([*HW, "plan", "-c", str(site), "--json"], capture_output=True, text=True,
                                    timeout=120, stdin=subprocess.DEVNULL).stdout)
    assert doc["exit_code"] == 3
    states = _states(doc)
    assert {v["state"] for v in states.values()} == {"unreachable", "skipped"}
    assert any("apt-get install" in c for c in states[("docker", "hub")]["commands"])
    assert states[("swarm-join", "node2")]["message"] == "not checked: unreachable through hub (hub is unreachable)"
    assert states[("prepull", "node1")]["commands"] == ["prepull_images()"]


# ------------------------------------------------------------------ the lab: bare machines


def _lab(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    return subprocess.run([*HW, "lab", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.mark.lab
def test_plan_on_bare_lab_machines(tmp_path):
    from tests.integration.lab_fixture import docker_client_or_skip

    docker_client_or_skip()
    name = f"plan-bare-{os.getpid()}"
    site = tmp_path / "site.toml"
    try:
        up = _lab("up", "--name", name, "--nodes", "1", "-o", str(site))
        assert up.returncode == 0, up.stdout + up.stderr
        res = subprocess.run([*HW, "plan", "-c", str(site)], capture_output=True, text=True, timeout=600,
                             stdin=subprocess.DEVNULL)
        out = res.stdout + res.stderr
        assert res.returncode == 0, out
        assert "FAILED" not in out and "Traceback" not in out and "RemoteDisconnected" not in out
        for step in ("hub-image", "prepull", "hub-service"):
            block = out.split(f"== {step}:", 1)[1].split("\n==", 1)[0]
            assert re.search(r"would change  \S+ \(needs step [\w-]+ (on \S+ )?first\)", block), block
        assert "would change  hub (needs step docker first)" in out.split("== hub-image:", 1)[1]

        doc = json.loads(subprocess.run([*HW, "plan", "-c", str(site), "--json"], capture_output=True, text=True,
                                        timeout=600, stdin=subprocess.DEVNULL).stdout)
        assert doc["exit_code"] == 0
        states = _states(doc)
        assert states[("docker", "hub")]["state"] == "would-change"
        assert states[("hub-image", "hub")]["state"] == "needs" and states[("hub-image", "hub")]["needs"] == "docker"
        assert all(states[("prepull", h)]["state"] == "needs" for h in ("hub", "node1"))
    finally:
        down = _lab("down", "--name", name, timeout=600)
        assert down.returncode == 0, down.stdout + down.stderr
