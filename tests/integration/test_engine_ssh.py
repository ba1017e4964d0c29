"""The engine against real sshd hosts: apply, converge, verify, status, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import BASIC_RECIPES, write_site

HW = [sys.executable, "-m", "hubwizard.cli.main"]


def hw(*args: str, timeout: float = 120, recipes: Path = BASIC_RECIPES) -> subprocess.CompletedProcess:
    return subprocess.run([*HW, *args, "--recipes", str(recipes)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def slower_recipes(tmp_path: Path, seconds: int) -> Path:
    """The basic recipes with the slow step sleeping ``seconds``: a resume started "at once" on a
    loaded machine (python start-up, SSH login) can take longer than the usual 3 s."""
    out = tmp_path / "recipes"
    out.mkdir()
    for f in BASIC_RECIPES.glob("*.yaml"):
        (out / f.name).write_text(f.read_text().replace("&& sleep 3 &&", f"&& sleep {seconds} &&"))
    assert "sleep 3 " not in "".join(f.read_text() for f in out.glob("*.yaml"))
    return out


def test_apply_converges_and_reports(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env)
    first = hw("apply", "-c", str(site), "--yes", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    doc = json.loads(first.stdout)
    assert {s["id"] for s in doc["steps"]} == {"make-dir", "write-domain", "slow"}
    assert all(h["status"] == "changed" for s in doc["steps"] for h in s["hosts"].values())
    assert (tmp_path / "work" / "node1" / "domain").read_text() == "hub.example.org\n"

    second = hw("apply", "-c", str(site), "--yes")
    assert second.returncode == 0, second.stderr
    assert "nothing changed" in second.stdout
    assert second.stdout.count("unchanged") >= 5  # one line per step and host

    verify = hw("verify", "-c", str(site), "--json")
    assert verify.returncode == 0
    checks = json.loads(verify.stdout)["checks"]
    assert len(checks) == 5 and all(c["ok"] for c in checks)

    status = hw("status", "-c", str(site), "--json")
    rows = json.loads(status.stdout)["steps"]
    assert rows[0]["hosts"] == {h: rows[0]["hosts"][h] for h in ("hub", "node1")}
    assert all(v["state"] == "done" for r in rows for v in r["hosts"].values())


def test_changed_input_reruns_only_that_step(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env)
    assert hw("apply", "-c", str(site), "--yes").returncode == 0
    site.write_text(site.read_text().replace("hub.example.org", "hub2.example.org"))
    plan = hw("plan", "-c", str(site), "--json")
    doc = {s["id"]: s for s in json.loads(plan.stdout)["steps"]}
    assert doc["write-domain"]["hosts"]["hub"]["status"] == "would-change"
    assert "hub2.example.org" in doc["write-domain"]["hosts"]["hub"]["commands"][0]
    assert doc["make-dir"]["hosts"]["hub"]["status"] == "unchanged"
    res = hw("apply", "-c", str(site), "--yes", "--json")
    doc = {s["id"]: s for s in json.loads(res.stdout)["steps"]}
    assert doc["write-domain"]["hosts"]["node1"]["status"] == "changed"
    assert doc["slow"]["hosts"]["hub"]["status"] == "unchanged"


def test_plan_changes_nothing(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env)
    res = hw("plan", "-c", str(site))
    assert res.returncode == 0, res.stderr
    assert "would change" in res.stdout and "mkdir -p" in res.stdout
    assert not (tmp_path / "work" / "hub").exists()


def _killed_in_the_slow_step(tmp_path: Path, ssh_env, recipes: Path = BASIC_RECIPES) -> tuple[Path, Path]:
    """An apply SIGKILLed while the slow step's `sleep 3` runs on the hub: (site, work folder)."""
    site = write_site(tmp_path, ssh_env)
    work = tmp_path / "work"
    proc = subprocess.Popen([*HW, "apply", "-c", str(site), "--yes", "--recipes", str(recipes)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (work / "slow.count").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return site, work


def test_sigkill_mid_step_then_resume(tmp_path, ssh_env):
    site, work = _killed_in_the_slow_step(tmp_path, ssh_env)
    journal = tmp_path / ".hubwizard" / "t" / "journal.jsonl"
    lines = journal.read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # every line valid after the kill
    assert json.loads(lines[-1])["phase"] == "started" and json.loads(lines[-1])["step"] == "slow"
    time.sleep(3.5)  # the orphaned remote command may finish; the resume must cope either way
    (work / "slow.done").unlink(missing_ok=True)
    res = hw("apply", "-c", str(site), "--yes", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = {s["id"]: s for s in json.loads(res.stdout)["steps"]}
    assert doc["make-dir"]["hosts"]["hub"]["status"] == "unchanged"
    assert doc["write-domain"]["hosts"]["node1"]["status"] == "unchanged"
    assert doc["slow"]["hosts"]["hub"]["status"] == "changed"


def test_resume_at_once_waits_for_the_killed_runs_command(tmp_path, ssh_env):
    """The killed apply's sleep goes on as an orphan holding the host lock: an apply started at
    once says it waits for it, then finds the step done by the orphan and does not run it again."""
    from hubwizard.remote.hostlock import WAITING

    recipes = slower_recipes(tmp_path, 15)
    site, work = _killed_in_the_slow_step(tmp_path, ssh_env, recipes)
    assert not (work / "slow.done").exists()
    res = hw("apply", "-c", str(site), "--yes", "-v", recipes=recipes)
    assert res.returncode == 0, res.stdout + res.stderr
    assert WAITING in res.stdout, res.stdout
    assert (work / "slow.count").read_text().count("run") == 1  # the orphan finished it; not run twice
    assert (work / "slow.done").exists()


def test_failure_names_host_step_command_fix(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env)
    res = hw("apply", "-c", str(site), "--yes", "--only", "write-domain")
    assert res.returncode == 1
    assert "FAILED" in res.stdout and "hub" in res.stdout
    assert "printf" in res.stdout and "No such file" in res.stdout
    assert "fix: run the make-dir step first" in res.stdout
    status = json.loads(hw("status", "-c", str(site), "--json").stdout)["steps"]
    assert {r["id"]: r for r in status}["write-domain"]["hosts"]["hub"]["state"] == "failed"


def test_unknown_host_key_refused_then_accepted(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env, known=False)
    res = hw("plan", "-c", str(site))
    assert res.returncode == 3
    out = res.stdout + res.stderr
    assert "not in" in out and "SHA256:" in out and "--accept-new-host-keys" in out
    res = hw("plan", "-c", str(site), "--accept-new-host-keys")
    assert res.returncode == 0, res.stderr
    assert "127.0.0.1" in (tmp_path / "known_hosts").read_text()


def test_changed_host_key_always_refused(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env)
    kh = tmp_path / "known_hosts"
    port = ssh_env["servers"][0].port
    other = Path(ssh_env["root"]) / "id_ed25519.pub"  # a different ed25519 key than the host's
    kind, key = other.read_text().split()[:2]
    lines = [ln for ln in kh.read_text().splitlines() if not ln.startswith(f"[127.0.0.1]:{port} ")]
    kh.write_text("\n".join([*lines, f"[127.0.0.1]:{port} {kind} {key}"]) + "\n")
    res = hw("plan", "-c", str(site), "--accept-new-host-keys")
    assert res.returncode == 3
    out = res.stdout + res.stderr
    assert "CHANGED" in out and "ssh-keygen -R" in out
