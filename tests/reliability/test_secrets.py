"""Secrets: the scanner itself, then real runs (passing and failing) whose every output, the
journal, the render output and the hosts' files are scanned. Secret files must be 0600."""

from __future__ import annotations

import json
import os
import secrets as pysecrets
import time
from pathlib import Path

import pytest

from hubwizard.cli.secretscan import MIN_LEN, Scanner, main, scan_host, scan_site
from hubwizard.remote.transport import HostKeyPolicy, SshTarget, SshTransport
from tests.reliability.crash import hw
from tests.reliability.fleet import write_site

RECIPES = Path(__file__).parent / "data" / "recipes_secrets"
TOKEN = "SWMTKN-1-49nj1cmql0jkz5s954yi3oex3nedyz0fb0xx14ie39trti4wxv-8vxv8rssmk743ojnwacrr2e7c"


def _values() -> dict[str, str]:
    return {name: f"{name[:3]}-{pysecrets.token_urlsafe(16)}"
            for name in ("oauth_client_secret", "registry_password", "sudo_password", "hub_api_token")}


# ----------------------------------------------------------------------------- the scanner


def test_scanner_finds_values_and_token_shapes(tmp_path):
    values = _values()
    scanner = Scanner(values)
    f = tmp_path / "log.txt"
    f.write_text(f"ok\npassword={values['registry_password']}\n{TOKEN}\n")
    found = scanner.file(f)
    assert {(x.secret, x.line) for x in found} == {("registry_password", 2), ("join token", 3)}
    assert all(values["registry_password"] not in str(x) for x in found)
    assert not scanner.text("SWMTKN-1-********", "output", "masked")  # a masked token is fine


def test_scan_site_local_and_modes(tmp_path):
    values = _values()
    site = tmp_path / "s.toml"
    site.write_text('[site]\nname = "s"\n')
    from hubwizard.core.secrets import write_secrets

    write_secrets(site, values)
    assert scan_site(site, since=time.time()).clean
    state = tmp_path / ".hubwizard" / "s"
    state.mkdir(parents=True)
    (state / "journal.jsonl").write_text(json.dumps({"message": values["oauth_client_secret"]}) + "\n")
    os.chmod(tmp_path / "s.secrets.toml", 0o644)
    report = scan_site(site, outputs={"plan": f"x {values['sudo_password']}"}, since=time.time())
    kinds = sorted((f.problem, f.secret if f.problem == "leak" else "") for f in report.findings)
    assert kinds == [("leak", "oauth_client_secret"), ("leak", "sudo_password"), ("mode", "")]


def test_short_values_are_reported_not_scanned(tmp_path):
    site = tmp_path / "s.toml"
    site.write_text('[site]\nname = "s"\n')
    report = scan_site(site, extra={"sudo_password": "ab"})
    assert report.clean and any(str(MIN_LEN) in n for n in report.notes)


def test_cli_exit_codes(tmp_path, capsys):
    site = tmp_path / "s.toml"
    site.write_text('[site]\nname = "s"\n')
    assert main(["-c", str(site), "--no-hosts"]) == 0
    capsys.readouterr()
    (tmp_path / "leak").write_text(TOKEN)
    assert main(["-c", str(site), "--no-hosts", "--path", str(tmp_path / "leak"), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["findings"][0]["secret"] == "join token" and TOKEN not in json.dumps(doc)
    assert main(["-c", str(tmp_path / "missing.toml")]) == 2


# ----------------------------------------------------------------------------- real runs


@pytest.fixture
def secret_site(fleet, tmp_path):
    values = _values()
    site = write_site(tmp_path, fleet, secrets=values)
    return site, values


def _host(fleet, tmp_path) -> SshTransport:
    kh = tmp_path / "known_hosts"
    s = fleet.servers[0]
    return SshTransport(SshTarget("hub", "127.0.0.1", s.port, "root", (str(fleet.key),)), HostKeyPolicy(kh))


def test_failing_then_passing_runs_leak_nothing(fleet, tmp_path, secret_site):
    site, values = secret_site
    outputs: dict[str, str] = {}
    stdouts: dict[str, str] = {}
    started = time.time()

    def run(name: str, *args: str) -> int:
        res = hw(*args, "-c", str(site), recipes=RECIPES)
        outputs[name] = res.stdout + res.stderr  # everything is scanned for secrets
        stdouts[name] = res.stdout  # --json: the one document (warnings go to stderr)
        return res.returncode

    assert run("plan", "plan") == 0
    assert run("plan --json", "plan", "--json") == 0
    assert run("failing apply -v", "apply", "--yes", "-v") == 1
    assert run("failing apply --json", "apply", "--yes", "--json") == 1
    failed = json.loads(stdouts["failing apply --json"])
    assert failed["steps"][-1]["id"] == "fails-loudly"
    assert "********" in outputs["failing apply -v"]  # the output was there, masked
    assert run("status", "status", "--json") == 0
    (tmp_path / "work" / "allow").touch()
    assert run("apply -v", "apply", "--yes", "-v") == 0
    assert run("verify", "verify", "--json") == 0
    render = tmp_path / "render"
    assert run("render", "render", "-o", str(render)) == 0

    report = scan_site(site, outputs=outputs, paths=[render, tmp_path / "work"], extra={"join token": TOKEN},
                       since=started)
    assert report.clean, [str(f) for f in report.findings]
    assert report.scanned >= len(outputs) + 3
    t = _host(fleet, tmp_path)
    try:
        host_report = scan_host(t, "hub", Scanner({**values, "join token": TOKEN}), [str(tmp_path / "work")])
        assert host_report.clean, [str(f) for f in host_report.findings]
        # a positive control: the same scan finds a planted copy, and names it without the value
        (tmp_path / "work" / "planted.conf").write_text(f"password = {values['registry_password']}\n")
        planted = scan_host(t, "hub", Scanner(values), [str(tmp_path / "work")])
        assert [(f.path, f.secret) for f in planted.findings] == [(str(tmp_path / "work" / "planted.conf"),
                                                                   "registry_password")]
    finally:
        t.close()
    assert (tmp_path / f"{site.stem}.secrets.toml").stat().st_mode & 0o777 == 0o600


def test_tui_log_capture_leaks_nothing(fleet, tmp_path):
    """The wizard's run screen on the same misbehaving steps: its whole log (every line, not just
    the visible ones), its status line, the failure panel and a screenshot carry no secret."""
    import asyncio

    from hubwizard.screens.run import RunScreen
    from textual.widgets import RichLog

    from hubwizard.app import HubwizardApp

    values = _values()
    site = write_site(tmp_path, fleet, secrets=values)
    captured: dict[str, str] = {}

    async def drive() -> None:
        app = HubwizardApp(site, start="run", recipes_dir=str(RECIPES))
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await pilot.press("y")
            run = next(s for s in app.screen_stack if isinstance(s, RunScreen))
            for _ in range(300):
                await app.workers.wait_for_complete()
                await pilot.pause(0.1)
                if not run.running:
                    break
            await pilot.pause(0.3)
            log = run.query_one("#log", RichLog)
            captured["tui log"] = "\n".join(line.text for line in log.lines)
            captured["tui failures"] = "\n".join(f"{f.message}\n{f.output_tail}\n{f.fix}" for f in run.failures)
            captured["tui screenshot"] = app.export_screenshot()
            assert run.failures and run.failures[0].step == "fails-loudly"

    asyncio.run(drive())
    assert "********" in captured["tui log"]  # the secrets were printed, and masked
    report = scan_site(site, outputs=captured, extra={"join token": TOKEN}, since=time.time() - 600)
    assert report.clean, [str(f) for f in report.findings]
