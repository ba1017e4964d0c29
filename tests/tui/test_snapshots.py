"""Snapshot tests of the main screens at 80x24 and 120x40 (pytest-textual-snapshot).

The scenes are tests/tui/demo.py (scripts/screenshots.py draws inventory, settings and host key from them).
After an intended change of a screen: `pytest tests/tui/test_snapshots.py --snapshot-update`."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tests.tui.demo import SCENES

MAIN = ("start", "inventory", "settings", "plan", "run-failure", "monitor", "monitor-tasks", "doctor", "hostkey")


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("scene", MAIN)
def test_screen(scene, size, snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    app, before = SCENES[scene](tmp_path)

    async def steady(pilot) -> None:
        await before(pilot)
        for widget in pilot.app.screen.query(Input):  # a blinking cursor is a flaky pixel
            widget.cursor_blink = False
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=steady)
