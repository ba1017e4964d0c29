"""The last backup's line in the monitor and in the run screen's cluster panel: shown under
the status when [backups] is on (red when the run failed), absent when the model has none."""

from __future__ import annotations

import dataclasses

from hubwizard.screens.cluster import ClusterPanel
from hubwizard.screens.monitor import MonitorScreen
from textual.app import App, ComposeResult
from textual.widgets import Static

from tests.tui.conftest import make_app, settle
from tests.tui.fixtures import snapshot, static_source

FAILED = "backup: failed 2026-12-02 02:00 UTC (see `journalctl -u hubwizard-backup` on hub)"


async def _monitor_line(snap) -> tuple[bool, str, object]:
    app = make_app(None, start="monitor", recipes=None, source_factory=lambda: static_source(snap))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        assert isinstance(app.screen, MonitorScreen)
        line = app.screen.query_one("#backup", Static)
        return line.display, str(line.render()), getattr(line.content, "style", "")


async def test_monitor_shows_the_backup_line_and_hides_it_when_off():
    shown, text, _style = await _monitor_line(snapshot())
    assert shown and text == "backup: 2026-11-22 01:40 UTC (1 h ago), 12.4 MiB, repo ok"
    shown, text, style = await _monitor_line(dataclasses.replace(snapshot(), backup=FAILED))
    assert shown and text == FAILED and "red" in str(style)
    shown, _text, _style = await _monitor_line(dataclasses.replace(snapshot(), backup=""))
    assert not shown


class _PanelApp(App):
    def compose(self) -> ComposeResult:
        yield ClusterPanel(lambda: static_source(snapshot()))


async def test_cluster_panel_shows_the_backup_line():
    app = _PanelApp()
    async with app.run_test(size=(80, 24)) as pilot:
        panel = app.query_one(ClusterPanel)
        line = panel.query_one("#cluster-backup", Static)
        assert not line.display  # nothing read yet
        panel.draw(snapshot())
        await pilot.pause()
        assert line.display and "12.4 MiB, repo ok" in str(line.render())
        panel.draw(dataclasses.replace(snapshot(), backup=""))
        await pilot.pause()
        assert not line.display
