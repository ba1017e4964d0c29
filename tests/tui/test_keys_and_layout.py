"""The TUI as an admin drives it at 80x24, keyboard only (issue 14 items 4, 5, 6 and 14).

Every test presses keys through the real app on the demo site (tests/tui/demo.py): nothing
is contacted, the screens that would reach hosts get their events posted as workers post them."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from hubwizard.screens.doctor import DoctorScreen
from hubwizard.screens.modals import AdviceModal, ConfirmModal, HelpModal
from hubwizard.screens.monitor import MonitorScreen
from hubwizard.screens.plan import PlanScreen
from hubwizard.screens.run import RunScreen
from rich.console import Console
from textual.widgets import DataTable, Input, Label, Select, Static

from hubwizard.core.events import HostResult, Progress, StepStarted
from hubwizard.doctor import model as doctor
from tests.conftest import BASIC_RECIPES
from tests.tui.conftest import make_app, settle
from tests.tui.demo import write_demo_site
from tests.tui.fixtures import snapshot, static_source

SIZE = (80, 24)


@pytest.fixture
def demo_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo site (hub + node1 + node2, none reachable: no screen here connects)."""
    monkeypatch.chdir(tmp_path)
    return Path(os.path.relpath(write_demo_site(tmp_path)))


def screen_text(app: Any) -> str:
    """The screen as the terminal shows it, as plain text (what export_screenshot draws)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True,
                      color_system="truecolor", legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def name(app: Any) -> str:
    return type(app.screen).__name__


# -- item 4: each screen's CSS stays on its screen -------------------------------------------
async def test_settings_after_inventory_keeps_wide_drop_downs(demo_site):
    app = make_app(demo_site)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("i")
        await pilot.pause()
        assert name(app) == "InventoryScreen"
        await pilot.press("escape", "s")
        await pilot.pause()
        assert name(app) == "SettingsScreen"
        selects = [s for s in app.screen.query(Select) if s.display and s.region.height]
        assert selects, "the settings show drop-downs"
        answers = [i.region.width for i in app.screen.query(".answer") if i.display and i.region.height]
        widths = [(s.id, s.region.width) for s in selects]
        assert all(w >= 20 and w == max(answers) for _id, w in widths), (widths, answers)  # as wide as the inputs
        assert "swarm-mode" in screen_text(app)  # the value whole, not `swar` / `m-mo`


# -- item 5: q/Esc back or quit, ? everywhere, destructive keys ask -------------------------
async def test_q_and_escape_go_back_and_quit_from_the_first_screen(demo_site):
    source = static_source(snapshot())
    app = make_app(demo_site, source_factory=lambda: source)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        for key, back in (("m", "q"), ("m", "escape"), ("s", "escape"), ("i", "escape")):
            await pilot.press(key)
            await settle(pilot, app)
            assert name(app) != "StartScreen", key
            await pilot.press(back)
            await pilot.pause()
            assert name(app) == "StartScreen", (key, back)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


@pytest.mark.parametrize("make", [lambda: PlanScreen(autostart=False), lambda: DoctorScreen(autostart=False),
                                  lambda: RunScreen(autostart=False)], ids=["plan", "doctor", "run"])
async def test_q_quits_when_the_screen_is_the_first_one(demo_site, make):
    app = make_app(demo_site, screen=make())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_stand_alone_monitor_quits_on_q_and_escape():
    for key in ("q", "escape"):
        source = static_source(snapshot())
        app = make_app(None, start="monitor", recipes=None, source_factory=lambda s=source: s)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, app)
            await pilot.press("slash", "x")  # Esc first leaves the filter...
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, MonitorScreen) and app.screen.filter_text == ""
            await pilot.press(key)  # ...then quits
            await pilot.pause()
        assert app.return_code == 0, key


SCREENS = {
    "start": (None, ["Inventory", "Settings", "Plan", "Apply…", "Monitor", "Doctor", "Quit"]),
    "inventory": (None, ["Save", "Probe all", "Back"]),
    "settings": (None, ["Save", "Back"]),
    "plan": (lambda: PlanScreen(autostart=False), ["Apply…", "Re-plan", "Back"]),
    "run": (lambda: RunScreen(autostart=False), ["Log size", "Back"]),
    "doctor": (lambda: DoctorScreen(autostart=False), ["Fix…", "Re-check", "Back"]),
    "monitor": (None, ["Drain…", "Scale…", "Remove…", "Filter", "Back/quit"]),
}


@pytest.mark.parametrize("screen", list(SCREENS))
async def test_question_mark_lists_the_keys_on_every_screen(demo_site, screen):
    make, expected = SCREENS[screen]
    source = static_source(snapshot())
    app = make_app(demo_site, start=screen, screen=make() if make else None, source_factory=lambda: source)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        before = app.screen
        text_field = isinstance(app.focused, Input)
        await pilot.press("f1" if text_field else "question_mark")  # in a text field `?` is typed
        await pilot.pause()
        assert isinstance(app.screen, HelpModal), screen
        shown = [what for _keys, what in app.screen.rows]
        assert all(e in shown for e in expected), (screen, shown)
        assert "Keys" in shown
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is before
        footer = screen_text(app).splitlines()[-1]
        assert ("f1 Keys" if text_field else "? Keys") in footer, footer


async def test_monitor_cluster_changes_need_a_capital_and_a_yes():
    source = static_source(snapshot())
    app = make_app(None, start="monitor", recipes=None, source_factory=lambda: source)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        mon = app.screen
        mon.query_one("#nodes-table", DataTable).move_cursor(row=2)
        await pilot.press("d", "a", "x", "f", "s")  # the lowercase letters change nothing
        await settle(pilot, app)
        assert app.screen is mon and source.done == []
        footer = screen_text(app).splitlines()[-1]
        assert "D Drain…" in footer and "X Remove…" not in footer  # only what applies to a node
        await pilot.press("D")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal) and "Drain node node2" in app.screen.title_text
        await pilot.press("n")
        await settle(pilot, app)
        assert source.done == []
        await pilot.press("D", "y")
        await settle(pilot, app)
        assert source.done == ["drain n3node2000000"]
        await pilot.press("2")
        await pilot.pause()
        footer = screen_text(app).splitlines()[-1]
        assert "X Remove…" in footer and "D Drain…" not in footer
        for key, verb in (("X", "Remove service"), ("F", "Force-update service")):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, ConfirmModal) and verb in app.screen.title_text
            await pilot.press("escape")
            await pilot.pause()
        assert source.done == ["drain n3node2000000"]


async def test_doctor_shows_advice_without_asking_to_run_it(demo_site, monkeypatch):
    ran: list[str] = []
    monkeypatch.setattr(doctor, "apply_fix", lambda *a, **k: ran.append("fix"))  # must never be called
    screen = DoctorScreen(autostart=False)
    app = make_app(demo_site, screen=screen)
    advice = doctor.Diagnosis("ssh", "hub", False, "cannot connect to 203.0.113.10:22: timed out",
                              "no answer on port 22", "check that the machine is up and sshd runs")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen.post_message(DoctorScreen.Diagnosed([advice]))
        await pilot.pause()
        await pilot.press("f")
        await pilot.pause()
        assert isinstance(app.screen, AdviceModal), type(app.screen)
        text = screen_text(app)
        assert "sshd runs" in text and "Yes" not in text
        await pilot.press("enter")
        await settle(pilot, app)
        assert app.screen is screen and ran == []


# -- item 6: the inventory form --------------------------------------------------------------
async def test_inventory_fields_have_labels_hints_and_room(demo_site):
    app = make_app(demo_site, start="inventory")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        scr = app.screen
        inputs = list(scr.query("#form Input"))
        assert [i.id for i in inputs] == ["f-name", "f-address", "f-user", "f-port", "f-jump"]
        for field in [*inputs, scr.query_one("#f-role", Select)]:
            label = field.parent.query_one(Label)
            assert str(label.render()).strip(), f"{field.id} has no label"
            assert label.region.y < field.region.y  # above its field, on screen
        for field in inputs:
            hint = field.placeholder
            assert hint.startswith(("e.g.", "default")), hint  # reads as a hint, never as a value
        address = scr.query_one("#f-address", Input)
        assert address.region.width >= 20, address.region
        text = screen_text(app)
        for label in ("Name", "Address", "Role", "SSH user", "Port", "Jump host"):
            assert label in text, label
        for field in inputs:
            assert field.placeholder in text, f"{field.placeholder!r} is cut"
        # keyboard only: type a host, ctrl+a adds it from inside a field (port 1 on loopback: refused at once)
        await pilot.press(*"node3", "tab", *"127.0.0.1", "tab", "tab", "tab", "1", "ctrl+a")
        await settle(pilot, app)
        assert [h["name"] for h in app.draft()["hosts"]][-1] == "node3"
        assert app.draft()["hosts"][-1]["port"] == 1 and not scr.reports["node3"].reachable


# -- item 14: the run screen at 80x24 ---------------------------------------------------------
async def test_run_screen_shows_every_host_column_and_keeps_progress_apart(demo_site):
    screen = RunScreen(autostart=False)
    app = make_app(demo_site, screen=screen, recipes=BASIC_RECIPES)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        hosts = ("hub", "node1", "node2")
        events: list[Any] = [StepStarted("make-dir", "A folder per host", hosts)]
        events += [HostResult("make-dir", h, "unreachable") for h in hosts]
        events += [Progress("write-domain", "node2", "waiting for preflight's temporary port listener to end (s)", 3,
                            5)]
        screen.post_message(RunScreen.Events(events))
        screen.query_one("#run-status", Static).update("running from make-dir…")
        await pilot.pause()
        await pilot.pause()
        lines = screen_text(app).splitlines()
        header = next(line for line in lines if "STEP" in line)
        assert all(h in header.split() for h in hosts), header
        row = next(line for line in lines if line.strip().startswith("make-dir"))
        assert row.split().count("unreachable") == 3, row
        label = next(line for line in lines if "temporary port" in line)
        assert "node2: waiting" in label and "STEP" not in label and "unreachable" not in label, label
        status = screen.query_one("#run-status", Static).region
        for widget in (screen.query_one("#steps"), screen.query_one("#bars")):
            assert not status.overlaps(widget.region)
        assert not screen.query_one("#steps").region.overlaps(screen.query_one("#right").region)
        await pilot.press("l")  # a bigger log still leaves the table its host columns
        await pilot.pause()
        header = next(line for line in screen_text(app).splitlines() if "STEP" in line)
        assert all(h in header.split() for h in hosts), header


async def test_run_screen_with_the_real_steps_shows_every_host_column_at_80x24(demo_site):
    """The swarm-mode track's own steps (the longest ids) on a hub + 2 nodes: with the log pane,
    with the cluster panel in its place (`c`), with the log back and bigger (`l`), every host
    column and the running step stay on screen."""
    screen = RunScreen(autostart=False)
    source = static_source(snapshot())  # the cluster panel reads this, never the demo site's addresses
    app = make_app(demo_site, screen=screen, recipes=None, source_factory=lambda: source, interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        hosts = ("hub", "node1", "node2")
        longest = max((s.id for s in app.session().steps), key=len)
        last = app.session().steps[-1].id  # the running step is the table's last row: it must stay in view
        screen.post_message(RunScreen.Events([StepStarted(longest, "the longest step id", hosts)]
                                             + [HostResult(longest, h, "unchanged") for h in hosts]
                                             + [StepStarted(last, "the last step", ("hub",))]))
        await pilot.pause()
        for key in ("", "c", "c l"):  # the cluster in the log's place, then the log back and bigger
            for k in key.split():
                await pilot.press(k)
                await pilot.pause()
                await pilot.pause()
            if key == "c":
                assert screen.query_one("#cluster").display and not screen.query_one("#log").display
            lines = screen_text(app).splitlines()
            header = next(line for line in lines if "STEP" in line)
            assert all(h in header.split() for h in hosts), (key, header)
            assert any(line.split()[:2] == [last, "running"] for line in lines), (key, lines)
            if not key:  # the widest row: three status cells beside the longest step id
                row = next(line for line in lines if line.strip().startswith(longest))
                assert row.split().count("unchanged") == 3, (key, row)
        await pilot.press("c")
        for _ in range(50):  # the panel drew the swarm (hub, node1, node2) below the table
            await pilot.pause(0.05)
            if "node2" in screen_text(app).split("STEP")[-1].split(longest)[-1]:
                break
        assert "jupyterhub" in screen_text(app)
