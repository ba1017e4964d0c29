"""`plan --diff` and `--limit` against real sshd hosts: a file the plan would change shows its
unified diff (read from the host), an unchanged one none; `--limit` runs only the hosts named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_site

HW = [sys.executable, "-m", "hubwizard.cli.main"]

# One step that writes a real asset (daemon.json) into each host's work folder.
RECIPE = """\
- id: daemon-file
  title: daemon.json in the work folder
  order: 10
  tracks: [swarm-mode]
  targets: all
  check:
    - file: daemon.json.j2
      path: "{{ cfg.storage.path }}/{{ host.name }}-daemon.json"
      sudo: false
  apply:
    - file: daemon.json.j2
      path: "{{ cfg.storage.path }}/{{ host.name }}-daemon.json"
      sudo: false
"""


def hw(recipes: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*HW, *args, "--recipes", str(recipes)], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def _site(tmp_path: Path, ssh_env) -> tuple[Path, Path]:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "10-file.yaml").write_text(RECIPE)
    return write_site(tmp_path, ssh_env), recipes


def test_plan_diff_shows_only_the_file_that_would_change(tmp_path, ssh_env):
    site, recipes = _site(tmp_path, ssh_env)
    applied = hw(recipes, "apply", "-c", str(site), "--yes", "--json")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    work = tmp_path / "work"
    node_file = work / "node1-daemon.json"
    wanted = node_file.read_text()
    node_file.write_text(wanted.replace('"max-file": "3"', '"max-file": "9"'))

    res = hw(recipes, "plan", "-c", str(site), "--diff")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"== diff node1: {node_file}" in res.stdout
    assert '-    "max-file": "9"' in res.stdout and '+    "max-file": "3"' in res.stdout
    assert f"hub: {work / 'hub-daemon.json'}" not in res.stdout  # unchanged: no diff

    doc = json.loads(hw(recipes, "plan", "-c", str(site), "--diff", "--json").stdout)
    assert [(d["host"], d["path"]) for d in doc["diffs"]] == [("node1", str(node_file))]
    assert node_file.read_text() != wanted  # plan --diff only read


def test_plan_diff_of_a_missing_file_is_the_whole_file(tmp_path, ssh_env):
    site, recipes = _site(tmp_path, ssh_env)
    doc = json.loads(hw(recipes, "plan", "-c", str(site), "--diff", "--json", "--limit", "hub").stdout)
    (d,) = doc["diffs"]
    assert d["host"] == "hub" and "+  \"log-driver\": \"json-file\"," in d["diff"]
    assert {h for s in doc["steps"] for h in s["hosts"]} == {"hub"}  # --limit: only the hub was planned
    assert not (tmp_path / "work" / "hub-daemon.json").exists()


def test_limit_runs_only_the_hosts_named(tmp_path, ssh_env):
    site, recipes = _site(tmp_path, ssh_env)
    res = hw(recipes, "apply", "-c", str(site), "--yes", "--json", "--limit", "node1")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "work" / "node1-daemon.json").exists()
    assert not (tmp_path / "work" / "hub-daemon.json").exists()
    verify = hw(recipes, "verify", "-c", str(site), "--limit", "node1,hub")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_limit_to_an_unknown_host_is_bad_input(tmp_path, ssh_env):
    site, recipes = _site(tmp_path, ssh_env)
    res = hw(recipes, "plan", "-c", str(site), "--limit", "hub,nod1")
    assert res.returncode == 2
    assert "'nod1'" in res.stderr and "hub, node1" in res.stderr
    doc = json.loads(hw(recipes, "apply", "-c", str(site), "--yes", "--json", "--limit", "nod1").stdout)
    assert doc["exit_code"] == 2 and "nod1" in doc["message"]


def test_a_file_holding_a_secret_is_withheld(tmp_path, ssh_env):
    """The host's copy holds the registry password (someone pasted it there): the diff names the
    file and says why it is not shown; the password appears nowhere in the output."""
    import os

    site, recipes = _site(tmp_path, ssh_env)
    secret = "pw-4f9c1e-very-secret"
    secrets = tmp_path / "site.secrets.toml"
    secrets.write_text(f'registry_password = "{secret}"\n')
    os.chmod(secrets, 0o600)
    (tmp_path / "work" / "hub-daemon.json").write_text(f'{{"registry-password": "{secret}"}}\n')
    for args in (("--diff",), ("--diff", "--json")):
        res = hw(recipes, "plan", "-c", str(site), "--limit", "hub", *args)
        assert res.returncode == 0, res.stdout + res.stderr
        assert secret not in res.stdout + res.stderr
        assert "(content withheld: holds a secret)" in res.stdout
