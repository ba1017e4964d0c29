"""A locked SSH key in the TUI (issue 14 item 9): with no agent key accepted, the app asks the
key's passphrase in a modal (hidden input) and logs in; Escape gives up with the error that names
`ssh-add KEY`. The real app, a real sshd, a key locked by ssh-keygen -p."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading

import pytest
from hubwizard.screens.modals import PassphraseModal

from hubwizard.core.errors import UnreachableError
from tests.conftest import write_site
from tests.tui.conftest import make_app, settle

PASSPHRASE = "correct horse battery"


def _locked_site(tmp_path, ssh_env, monkeypatch):
    """The test sshds' site, its key a copy locked with a passphrase; no ssh-agent to fall back on."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    locked = tmp_path / "id_locked"
    shutil.copy(ssh_env["key"], locked)
    locked.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-N", PASSPHRASE, "-f", str(locked)], check=True,
                   capture_output=True)
    site = write_site(tmp_path, ssh_env)
    site.write_text(site.read_text().replace(f'key = "{ssh_env["key"]}"', f'key = "{locked}"'))
    return site, locked


def _login_in_a_thread(app) -> dict:
    """What an engine worker does: open the hub's connection and run a command (a thread: it may ask)."""
    out: dict = {}

    def work() -> None:
        try:
            out["stdout"] = app.connections().get("hub").run("echo logged-in").stdout
        except UnreachableError as exc:
            out["error"] = f"{exc.message} fix: {exc.fix}"
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    out["thread"] = thread
    return out


async def _until(pilot, app, done, rounds: int = 100) -> None:
    for _ in range(rounds):
        await settle(pilot, app, 1)
        if done():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"still waiting on {type(app.screen).__name__}")


@pytest.mark.timeout(120)
async def test_locked_key_passphrase_asked_in_a_modal_then_logged_in(tmp_path, ssh_env, monkeypatch):
    site, locked = _locked_site(tmp_path, ssh_env, monkeypatch)
    app = make_app(site)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        out = _login_in_a_thread(app)
        await _until(pilot, app, lambda: isinstance(app.screen, PassphraseModal))
        modal = app.screen
        assert modal.host == "hub" and modal.path.endswith("id_locked")
        await pilot.press(*PASSPHRASE)
        assert PASSPHRASE not in str(modal.query_one("#value").render())  # typed hidden
        await pilot.press("enter")
        await _until(pilot, app, lambda: not out["thread"].is_alive())
        assert out.get("stdout", "").strip() == "logged-in", out


@pytest.mark.timeout(120)
async def test_escape_gives_up_and_the_error_names_ssh_add(tmp_path, ssh_env, monkeypatch):
    site, locked = _locked_site(tmp_path, ssh_env, monkeypatch)
    app = make_app(site)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        out = _login_in_a_thread(app)
        await _until(pilot, app, lambda: isinstance(app.screen, PassphraseModal))
        await pilot.press("escape")
        await _until(pilot, app, lambda: not out["thread"].is_alive())
        assert "ssh-add" in out.get("error", "") and "id_locked" in out["error"], out
