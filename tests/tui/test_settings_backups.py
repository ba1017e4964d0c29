"""The settings form offers backups (issue 15 part 2) at 80x24 with the keyboard alone: Tab
reaches the switch, space turns it on, the target's row appears, a bad target is refused as
typed, Ctrl+S saves [backups] and puts a generated backup_password in the 0600 secrets file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from textual.widgets import Static, Switch

from hubwizard.core.config import load_site
from hubwizard.core.secrets import secrets_path
from tests.tui.conftest import make_app
from tests.tui.demo import write_demo_site


@pytest.fixture
def demo_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return Path(os.path.relpath(write_demo_site(tmp_path)))


async def test_backups_from_the_settings_form_with_the_keyboard(demo_site):
    app = make_app(demo_site, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        scr = app.screen
        assert not scr.query_one("#row-backups-target").display  # off: no target asked
        for _ in range(60):  # Tab through the form to the backups switch
            if app.focused is not None and app.focused.id == "q-backups-enabled":
                break
            await pilot.press("tab")
        assert isinstance(app.focused, Switch) and app.focused.id == "q-backups-enabled"
        await pilot.press("space")
        await pilot.pause()
        assert scr.query_one("#row-backups-target").display
        await pilot.press("tab")
        assert app.focused.id == "q-backups-target"
        await pilot.press(*"ftp://x")
        await pilot.pause()
        assert "not a backup target" in str(scr.query_one("#err-backups-target", Static).render())
        await pilot.press("ctrl+u")  # clear the line (to its start)
        await pilot.press(*"sftp:backup@10.0.0.99:/srv/backups")
        await pilot.pause()
        assert not scr.query_one("#err-backups-target", Static).display
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "made backup_password" in str(scr.query_one("#verdict", Static).render())
    site = load_site(demo_site)
    assert site.backups.enabled and site.backups.target == "sftp:backup@10.0.0.99:/srv/backups"
    secrets = secrets_path(demo_site)
    assert 'backup_password = "' in secrets.read_text() and (secrets.stat().st_mode & 0o777) == 0o600
