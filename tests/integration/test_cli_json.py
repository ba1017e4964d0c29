"""--json for scripts: stdout is one JSON document (a run, or the one error shape), in success
and in failure; the monitor exits 3 when the hub cannot be reached."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import BASIC_RECIPES, write_site
from tests.sshd import free_port

HW = [sys.executable, "-m", "hubwizard.cli.main"]
ERROR_KEYS = {"error", "message", "host", "step", "fix", "exit_code"}

FAILING = """\
- id: breaks
  title: A step whose command fails
  order: 10
  tracks: [swarm-mode]
  targets: hub
  apply:
    - echo the disk is full >&2; exit 4
"""


def hw(*args: str, recipes: Path = BASIC_RECIPES, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*HW, *args, "--recipes", str(recipes)], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _closed_hub(site: Path, ssh_env) -> None:
    hub_port = ssh_env["servers"][0].port
    site.write_text(site.read_text().replace(f"port = {hub_port}\n", f"port = {free_port()}\n", 1))


def test_apply_json_success_and_step_failure_are_one_document(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env)
    ok = hw("apply", "-c", str(site), "--yes", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["exit_code"] == 0

    recipes = tmp_path / "failing"
    recipes.mkdir()
    (recipes / "10.yaml").write_text(FAILING)
    bad = hw("apply", "-c", str(site), "--yes", "--json", recipes=recipes)
    assert bad.returncode == 1
    doc = json.loads(bad.stdout)  # the whole of stdout: nothing for people around it
    assert doc["steps"][0]["hosts"]["hub"]["status"] == "failed"
    assert "the disk is full" in doc["steps"][0]["hosts"]["hub"]["output_tail"]


def test_apply_json_unreachable_hub_and_bad_input_are_json(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env)
    _closed_hub(site, ssh_env)
    down = hw("apply", "-c", str(site), "--yes", "--json")
    assert down.returncode == 3
    doc = json.loads(down.stdout)
    assert doc["exit_code"] == 3

    no_yes = hw("apply", "-c", str(site), "--json")
    err = json.loads(no_yes.stdout)
    assert no_yes.returncode == 2 and set(err) == ERROR_KEYS and "--yes" in err["message"]

    missing = hw("apply", "-c", str(tmp_path / "nope.toml"), "--yes", "--json")
    err = json.loads(missing.stdout)
    assert missing.returncode == 2 and set(err) == ERROR_KEYS and err["error"] == "bad input"

    flag = hw("apply", "-c", str(site), "--yes", "--json", "--no-such-flag")
    err = json.loads(flag.stdout)
    assert flag.returncode == 2 and set(err) == ERROR_KEYS and "--no-such-flag" in err["message"]


def test_monitor_exits_3_when_the_hub_is_unreachable(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env)
    _closed_hub(site, ssh_env)
    res = hw("monitor", "-c", str(site))
    assert res.returncode == 3, res.stdout + res.stderr
    assert "cannot reach a host" in res.stderr and "Traceback" not in res.stderr
