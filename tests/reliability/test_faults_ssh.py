"""Faults that need only sshd: the node's sshd stopped, its connection dropped mid-command,
a wrong sudo password. Each must name host, step, cause and fix; a resume must complete once
the fault is gone."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.reliability.crash import DRIVER, ROOT, hw
from tests.reliability.fleet import Server, write_site


def _journal(site: Path) -> Path:
    return site.parent / ".hubwizard" / "rel" / "journal.jsonl"


def _wait_record(site: Path, step: str, host: str, phase: str = "started", timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        j = _journal(site)
        if j.exists():
            for line in j.read_text().splitlines():
                rec = json.loads(line)
                if (rec["step"], rec["host"], rec["phase"]) == (step, host, phase):
                    return
        time.sleep(0.05)
    raise TimeoutError(f"no {phase} record for {step} on {host}")


def _host_entry(doc: dict, host: str) -> tuple[str, dict]:
    """The (step id, host result) of the first failure of ``host`` in an apply --json document."""
    for step in doc["steps"]:
        entry = step["hosts"].get(host)
        if entry and entry["status"] in ("failed", "unreachable"):
            return step["id"], entry
    raise AssertionError(f"no failure of {host} in {json.dumps(doc)[:2000]}")


def _assert_named(doc: dict, human: str, host: str, step: str, cause: str, fix: str) -> None:
    """The failure names host, step, cause and fix — in --json and in the human output."""
    got_step, entry = _host_entry(doc, host)
    assert got_step == step
    text = " ".join([entry["message"], entry.get("output_tail") or "", entry.get("command") or ""])
    assert cause.lower() in text.lower(), text
    assert entry["fix"] and fix.lower() in entry["fix"].lower(), entry
    assert host in human and step in human and "fix:" in human and cause.lower() in human.lower(), human


def _apply_in_background(site: Path):
    import subprocess

    return subprocess.Popen([*DRIVER, "apply", "-c", str(site), "--yes", "--json", "--recipes",
                             str(Path(__file__).parent / "data" / "recipes_crash")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            cwd=ROOT)


def _human_rerun_fails(site: Path) -> str:
    res = hw("apply", "-c", str(site), "--yes")
    assert res.returncode in (1, 3)
    return res.stdout + res.stderr


def _resume_completes(site: Path) -> None:
    res = hw("apply", "-c", str(site), "--yes", timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert hw("verify", "-c", str(site)).returncode == 0


def test_node_sshd_stopped(own_fleet, tmp_path):
    site = write_site(tmp_path, own_fleet)
    node: Server = own_fleet.servers[1]
    node.stop()
    res = hw("apply", "-c", str(site), "--yes", "--json")
    assert res.returncode == 3, res.stdout + res.stderr
    human = _human_rerun_fails(site)
    _assert_named(json.loads(res.stdout), human, "node1", "prepare", "connection refused", "sshd")
    node.start()
    _resume_completes(site)


def test_node_sshd_stopped_mid_run(own_fleet, tmp_path):
    site = write_site(tmp_path, own_fleet)
    proc = _apply_in_background(site)
    _wait_record(site, "ledger", "node1")
    own_fleet.servers[1].stop()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, out + err
    doc = json.loads(out)
    step, entry = _host_entry(doc, "node1")
    # the session dropped with the server; the engine reconnects once and is refused: either way
    # the cause is named
    cause = entry["message"].lower()
    assert step == "ledger" and ("dropped" in cause or "connection refused" in cause) and entry["fix"], entry
    human = _human_rerun_fails(site)  # the host is still down: named before anything runs there
    assert "node1" in human and "fix:" in human and "connection refused" in human.lower(), human
    own_fleet.servers[1].start()
    _resume_completes(site)


def test_connection_dropped_during_a_command(own_fleet, tmp_path):
    site = write_site(tmp_path, own_fleet)
    proc = _apply_in_background(site)
    _wait_record(site, "accumulate", "node1")
    time.sleep(0.3)  # inside the five-line loop
    assert own_fleet.servers[1].drop_sessions() > 0
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, out + err
    step, entry = _host_entry(json.loads(out), "node1")
    assert step == "accumulate", entry
    assert "connection dropped" in entry["message"] and entry["fix"], entry
    own_fleet.wait_idle()
    _resume_completes(site)


@pytest.fixture
def sudo_user(own_fleet):
    """A local user with a password and a sudoers entry that asks for it; removed afterwards."""
    from tests.sudo_user import password_sudoer

    with password_sudoer("hwrel", Path(f"{own_fleet.key}.pub")) as user:
        yield user


def test_wrong_sudo_password(own_fleet, tmp_path, sudo_user):
    from hubwizard.cli.secretscan import scan_site
    from hubwizard.core.secrets import write_secrets

    user, password = sudo_user
    wrong = "wrong-" + password[::-1]
    site = write_site(tmp_path, own_fleet, user=user, sudo="password", secrets={"sudo_password": wrong})
    started = time.time()
    res = hw("apply", "-c", str(site), "--yes", "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    human = _human_rerun_fails(site)
    _assert_named(json.loads(res.stdout), human, "hub", "prepare", "sudo", "sudo_password")
    report = scan_site(site, since=started, outputs={"apply --json": res.stdout + res.stderr, "apply": human},
                       extra={"sudo_password": wrong, "right sudo password": password})
    assert report.clean, [str(f) for f in report.findings]
    write_secrets(site, {"sudo_password": password})
    _resume_completes(site)
