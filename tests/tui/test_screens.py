"""Pilot tests: each screen's behaviour at 80x24, keyboard only, against real sshd hosts."""

from __future__ import annotations

from hubwizard.screens.modals import ConfirmModal, FailureModal, HostKeyModal
from hubwizard.screens.monitor import MonitorScreen
from textual.widgets import DataTable, Input, RichLog, Static, Tree

from hubwizard.core.config import load_site
from tests.conftest import write_site
from tests.sshd import known_hosts_line
from tests.tui.conftest import make_app, settle
from tests.tui.fixtures import snapshot, static_source

SIZE = (80, 24)


async def test_start_screen_shows_the_journal(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env)
    app = make_app(site)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        table = app.screen.query_one("#journal", DataTable)
        assert table.row_count == 3
        assert [str(c) for c in table.get_row("make-dir")] == ["make-dir", "·", "·"]
        assert "0/5" in str(app.screen.query_one("#summary", Static).render())


async def test_start_screen_new_site_points_to_inventory(tmp_path):
    app = make_app(tmp_path / "new.toml")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "New site" in str(app.screen.query_one("#summary", Static).render())
        await pilot.press("p")  # plan without a site: refused with a hint
        await pilot.pause()
        assert type(app.screen).__name__ == "StartScreen"
        await pilot.press("i")
        await pilot.pause()
        assert type(app.screen).__name__ == "InventoryScreen"


async def test_plan_screen_lists_steps_and_commands(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env)
    app = make_app(site, start="plan")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        tree = app.screen.query_one(Tree)
        labels = [str(n.label) for n in tree.root.children]
        assert any("make-dir" in x and "would-change" in x for x in labels)
        leaves = []
        stack = list(tree.root.children)
        while stack:
            n = stack.pop()
            leaves.append(str(n.label))
            stack += n.children
        assert any(x.startswith("$ mkdir -p ") for x in leaves)
        assert not (tmp_path / "work" / "hub").exists()  # a plan changes nothing


async def test_run_screen_applies_and_resumes(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env)
    app = make_app(site, start="run")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("y")
        for _ in range(40):
            await settle(pilot, app, 1)
            if not app.screen_stack[-1].running:
                break
        run = app.screen
        assert "done" in str(run.query_one("#run-status", Static).render())
        steps = run.query_one("#steps", DataTable)
        assert str(steps.get_cell("make-dir", "node1")) == "changed"
        log = run.query_one("#log", RichLog)
        assert any("mkdir -p" in line.text for line in log.lines)
    assert (tmp_path / "work" / "node1" / "domain").exists()
    # quit and come back: the start screen reads the journal
    app2 = make_app(site)
    async with app2.run_test(size=SIZE) as pilot:
        await settle(pilot, app2)
        table = app2.screen.query_one("#journal", DataTable)
        assert [str(c) for c in table.get_row("write-domain")] == ["write-domain", "done", "done"]


async def test_run_screen_failure_panel_retry_skip(tmp_path, ssh_env, failing_recipes):
    site = write_site(tmp_path, ssh_env)
    app = make_app(site, start="run", recipes=failing_recipes)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("y")
        for _ in range(40):
            await settle(pilot, app, 1)
            if isinstance(app.screen, FailureModal):
                break
        modal = app.screen
        assert isinstance(modal, FailureModal)
        assert modal.step == "broken" and modal.host == "hub"
        assert "Unable to locate package" in modal.tail
        assert "apt-get update" in str(modal.query_one("#fix", Static).render())
        await pilot.press("r")  # retry: fails again, the panel comes back
        for _ in range(40):
            await settle(pilot, app, 1)
            if isinstance(app.screen, FailureModal):
                break
        assert isinstance(app.screen, FailureModal)
        await pilot.press("s")  # skip: the run goes on with the next step
        for _ in range(40):
            await settle(pilot, app, 1)
            if not app.screen.running:
                break
        assert str(app.screen.query_one("#steps", DataTable).get_cell("slow", "hub")) == "changed"


async def test_unknown_host_key_is_confirmed_in_a_modal(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env, known=False)
    app = make_app(site, start="plan")
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(50):
            await pilot.pause(0.1)
            if isinstance(app.screen, HostKeyModal):
                break
        modal = app.screen
        assert isinstance(modal, HostKeyModal)
        assert "SHA256:" in modal.fingerprint
        await pilot.press("y")
        for _ in range(50):
            await pilot.pause(0.1)
            if isinstance(app.screen, HostKeyModal):
                await pilot.press("y")
        await settle(pilot, app)
        # the plan went on with the confirmed keys (the modal is asked from the engine's pool threads)
        assert "failed" not in str(app.screen.query_one("#plan-status", Static).render())
    # exactly the keys the hosts presented, one line each, nothing else
    known = (tmp_path / "known_hosts").read_text()
    assert sorted(known.splitlines()) == sorted(known_hosts_line(s).strip() for s in ssh_env["servers"])


async def test_settings_validate_as_typed_and_save(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env)
    app = make_app(site, start="settings")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        domain = app.screen.query_one("#q-site-domain", Input)
        domain.value = "not a domain!"
        await pilot.pause()
        assert domain.has_class("invalid")
        assert "host name" in str(app.screen.query_one("#err-site-domain", Static).render())
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "not saved" in str(app.screen.query_one("#verdict", Static).render())
        domain.value = "hub.school.example"
        await pilot.pause()
        assert not domain.has_class("invalid")
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert load_site(site).site.domain == "hub.school.example"
    assert len(load_site(site).hosts) == 2


async def test_inventory_adds_and_probes_a_host(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env)
    port = ssh_env["servers"][1].port
    app = make_app(site, start="inventory")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        scr = app.screen
        scr.query_one("#f-name", Input).value = "Bad_Name"
        await pilot.pause()
        assert scr.query_one("#f-name", Input).has_class("invalid")
        scr.query_one("#f-name", Input).value = "node2"
        scr.query_one("#f-address", Input).value = "127.0.0.1"
        scr.query_one("#f-port", Input).value = str(port)
        await pilot.pause()
        scr.action_add()
        app.draft()["hosts"][-1]["key"] = str(ssh_env["key"])  # the form has no key field; ssh-agent/config do
        await settle(pilot, app, 5)
        report = scr.reports.get("node2")
        assert report is not None
        scr.probe_host("node2")
        await settle(pilot, app, 5)
        report = scr.reports["node2"]
        assert report.reachable and report.sudo and report.cpus >= 1 and report.memory > 0, report
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert [h.name for h in load_site(site).hosts] == ["hub", "node1", "node2"]


async def test_monitor_tabs_filter_drill_and_actions():
    source = static_source(snapshot())
    app = make_app(None, start="monitor", recipes=None, source_factory=lambda: source, interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        mon = app.screen
        assert isinstance(mon, MonitorScreen)
        nodes = mon.query_one("#nodes-table", DataTable)
        assert [str(nodes.get_row_at(0)[i]) for i in (0, 2)] == ["hub", "Leader"]
        # polls go on, never overlapping
        await pilot.pause(0.7)
        assert mon.polls >= 2
        # hidden tabs are not rendered
        assert "services" in mon.dirty
        await pilot.press("2")
        await pilot.pause()
        assert "services" not in mon.dirty
        svc = mon.query_one("#services-table", DataTable)
        assert [str(c) for c in svc.get_row("s3bob")][:2] == ["jupyter-bob", "0/1"]
        # Enter drills down into the service's tasks, loaded lazily
        svc.move_cursor(row=svc.get_row_index("s3bob"))
        await pilot.press("enter")
        await settle(pilot, app)
        tasks = mon.query_one("#tasks-table", DataTable)
        assert mon.active == "tasks" and tasks.row_count == 2
        assert any("No such image" in str(c) for c in tasks.get_row("t3"))
        await pilot.press("escape")  # back to every task
        await pilot.pause()
        assert tasks.row_count == 4
        # / filters
        await pilot.press("slash", "a", "l", "i", "c", "e")
        await pilot.pause()
        assert tasks.row_count == 1
        await pilot.press("escape")
        await pilot.pause()
        assert tasks.row_count == 4
        # an action asks first; nothing renders while the modal is open
        await pilot.press("1")
        await pilot.pause()
        nodes.move_cursor(row=2)
        await pilot.press("D")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        renders = mon.renders
        await pilot.pause(0.6)
        assert mon.renders == renders
        await pilot.press("y")
        await settle(pilot, app)
        assert source.done == ["drain n3node2000000"]
        # logs show the node of each line
        await pilot.press("2")
        await pilot.pause()
        svc.move_cursor(row=svc.get_row_index("s2alice"))
        await pilot.press("l")
        await settle(pilot, app)
        logs = mon.query_one("#logs-table", DataTable)
        assert mon.active == "logs" and str(logs.get_row_at(0)[1]) == "node1"


async def test_monitor_scale_asks_for_replicas():
    source = static_source(snapshot())
    app = make_app(None, start="monitor", recipes=None, source_factory=lambda: source)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("2")
        await pilot.pause()
        await pilot.press("S")
        await pilot.pause()
        await pilot.press("backspace", "3", "enter")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot, app)
        assert source.done == ["scale s2alice 3"]  # the first service by name


async def test_doctor_screen_lists_real_checks(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env)
    app = make_app(site, start="doctor")
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(120):
            await settle(pilot, app, 1)
            if app.screen.diagnoses:
                break
        scr = app.screen
        table = scr.query_one("#checks", DataTable)
        assert table.row_count == len(scr.diagnoses) > 0
        ssh_rows = [d for d in scr.diagnoses if d.check == "ssh"]
        assert all(d.ok for d in ssh_rows)
        assert "checks" in str(scr.query_one("#doctor-status", Static).render())


async def test_doctor_fix_runs_only_after_confirmation(tmp_path, ssh_env, monkeypatch):
    from hubwizard.screens.doctor import DoctorScreen

    from hubwizard.doctor import model as doctor

    fixed: list[str] = []

    def fake_apply_fix(session, connections, diagnosis, sink=None):  # the stub lives in this test only
        fixed.append(diagnosis.check)
        return doctor.Diagnosis(diagnosis.check, diagnosis.host, True, "fixed")

    monkeypatch.setattr(doctor, "apply_fix", fake_apply_fix)
    site = write_site(tmp_path, ssh_env)
    screen = DoctorScreen(autostart=False)
    app = make_app(site, screen=screen)
    bad = doctor.Diagnosis("disk-space", "node1", False, "/var/nfs is 97% full", "df says so",
                           "remove old images", ("docker image prune -af",))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen.post_message(DoctorScreen.Diagnosed([doctor.Diagnosis("ssh", "hub", True, "reachable"), bad]))
        await pilot.pause()
        await pilot.press("down", "f")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal) and "docker image prune" in app.screen.body
        await pilot.press("n")  # refused: nothing runs
        await settle(pilot, app)
        assert fixed == []
        await pilot.press("f")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot, app)
        assert fixed == ["disk-space"]
        assert str(screen.query_one("#checks", DataTable).get_row_at(1)[2]) == "ok"


async def test_run_screen_stays_responsive_under_an_output_flood(tmp_path, ssh_env):
    release = tmp_path / "release"  # the step waits for it (not a fixed sleep: a loaded machine is slow)
    recipes = tmp_path / "flood"
    recipes.mkdir()
    (recipes / "10-flood.yaml").write_text(
        "- id: flood\n  title: Lots of output\n  description: Prints 20000 lines, then waits.\n  order: 10\n"
        "  targets: hub\n  check:\n    - test -f /nonexistent/flood\n"
        f"  apply:\n    - seq 1 20000; for i in $(seq 600); do test -f {release} && break; sleep 0.2; done\n")
    site = write_site(tmp_path, ssh_env)
    app = make_app(site, start="run", recipes=recipes)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("y")
        run = app.screen
        for _ in range(1200):
            await pilot.pause(0.05)
            if run.lines_written >= 20000 or not run.running:
                break
        status = str(run.query_one("#run-status", Static).render())
        assert run.running and run.lines_written >= 20000, (status, run.lines_written)
        await pilot.press("l")  # a key during the flood is handled (no timing asserted: the machine may be loaded)
        await pilot.pause()
        assert run.query_one("#right").has_class("wide")
        assert run.flushes < run.lines_written / 50  # lines were merged into few UI updates
        release.touch()
        for _ in range(300):
            await pilot.pause(0.2)
            if not run.running:
                break
        assert str(run.query_one("#steps", DataTable).get_cell("flood", "hub")) == "changed"


async def test_monitor_stops_polling_when_it_cannot_connect():
    calls: list[int] = []

    def refuse():
        from hubwizard.core.errors import HostKeyError

        calls.append(1)
        raise HostKeyError("host 10.0.0.1 is not in known_hosts; it presents ssh-ed25519 SHA256:x", fix="compare it")

    app = make_app(None, start="monitor", recipes=None, source_factory=refuse, interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.pause(0.5)
        assert calls == [1]  # not asked again at every poll
        status = str(app.screen.query_one("#status", Static).render())
        assert "known_hosts" in status and "press r" in status
        await pilot.press("r")
        await settle(pilot, app)
        assert calls == [1, 1]


async def test_monitor_shows_brackets_as_text():
    snap = snapshot()
    snap.tasks[2] = type(snap.tasks[2])(**{**snap.tasks[2].__dict__, "error": "[E] no [bold]suitable[/bold] node"})
    app = make_app(None, start="monitor", recipes=None, source_factory=lambda: static_source(snap))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("3")
        await pilot.pause()
        row = app.screen.query_one("#tasks-table", DataTable).get_row(snap.tasks[2].id)
        assert str(row[-1]) == "[E] no [bold]suitable[/bold] node"


async def test_new_site_from_inventory_to_settings_to_file(tmp_path, ssh_env):
    site = tmp_path / "fresh.toml"
    port = ssh_env["servers"][0].port
    app = make_app(site)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("i")
        await pilot.pause()
        inv = app.screen
        assert inv.query_one("#f-name", Input).value == "hub"  # the first host is the hub
        await pilot.press("tab", *"127.0.0.1", "tab", "tab", "tab", *str(port), "enter")  # name, address, role, user, port
        for _ in range(100):  # the probe meets an unknown host key (~/.ssh/known_hosts): refuse it
            await pilot.pause(0.1)
            if isinstance(app.screen, HostKeyModal):
                break
        assert isinstance(app.screen, HostKeyModal)
        await pilot.press("n")
        await settle(pilot, app, 3)
        assert [h["name"] for h in app.draft()["hosts"]] == ["hub"]
        assert not inv.reports["hub"].reachable and "not in" in inv.reports["hub"].error
        await pilot.press("ctrl+s")  # no domain yet: not saved, the settings open
        await pilot.pause()
        assert type(app.screen).__name__ == "SettingsScreen"
        assert not site.exists()
        settings = app.screen
        settings.query_one("#q-site-domain", Input).value = "hub.fresh.example"
        settings.query_one("#q-site-email", Input).value = "me@fresh.example"
        await pilot.pause()  # the suggested login is GitHub: it needs its client and an admin
        settings.query_one("#q-oauth-client_id", Input).value = "Iv1.fresh"
        settings.query_one("#q-secrets-oauth_client_secret", Input).value = "s3cret-fresh"
        settings.query_one("#q-hub-admin_users", Input).value = "alice"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        verdict = str(settings.query_one("#verdict", Static).render())
        assert "saved" in verdict and "not saved" not in verdict, verdict
    loaded = load_site(site)
    assert loaded.site.name == "fresh" and loaded.site.domain == "hub.fresh.example"
    assert [(h.name, h.role, h.port) for h in loaded.hosts] == [("hub", "hub", port)]
