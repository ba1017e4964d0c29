"""Ctrl+S in the wizard's settings on an existing site file: the admin's comments and explicit
values stay, only the changed answer changes, SITE.bak holds the file as it was (issue 14 item 3)."""

from __future__ import annotations

from textual.widgets import Input

from hubwizard.core.config import load_site
from tests.conftest import write_site
from tests.tui.conftest import make_app


async def test_ctrl_s_keeps_the_admins_comments_and_backs_up(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env)
    text = site.read_text()
    text = "# our hub: ask Ana first\n" + text.replace('subnet = "127.0.0.0/8"', 'subnet = "127.0.0.0/8"  # loopback sshds')
    text = text.replace('user = "root"\n', 'user = "root"  # the default, written on purpose\n', 1)
    site.write_text(text)
    app = make_app(site, start="settings")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.screen.query_one("#q-site-domain", Input).value = "hub.school.example"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
    saved = site.read_text()
    assert saved.startswith("# our hub: ask Ana first\n")
    assert 'subnet = "127.0.0.0/8"  # loopback sshds' in saved
    assert 'user = "root"  # the default, written on purpose' in saved
    assert load_site(site).site.domain == "hub.school.example"
    assert site.with_name(site.name + ".bak").read_text() == text
