"""The TUI holds one SSH connection per host for a site, whatever the number of runs (issue 14
item 10): the real app, driven by keys, against real sshd servers; connections counted as the
kernel sees them (established TCP sockets to each sshd's port)."""

from __future__ import annotations

import time
from pathlib import Path

from hubwizard.screens.modals import ConfirmModal
from hubwizard.screens.plan import PlanScreen
from hubwizard.screens.run import RunScreen

from tests.conftest import write_site
from tests.tui.conftest import make_app, settle

SIZE = (80, 24)


def established(port: int) -> int:
    """Client sockets connected to 127.0.0.1:port (the sshd side is not counted)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if state == "01" and int(remote.split(":")[1], 16) == port:
            count += 1
    return count


def per_host(ssh_env) -> list[int]:
    return [established(s.port) for s in ssh_env["servers"]]


def steady(count, tries: int = 50) -> list[int]:
    """The counts once they stop changing (five equal readings in a row)."""
    last, same = count(), 0
    for _ in range(tries):
        time.sleep(0.1)
        now = count()
        same = same + 1 if now == last else 0
        last = now
        if same >= 5:
            break
    return last


def settled(ok, tries: int = 50) -> bool:
    """A closed socket leaves ESTABLISHED when paramiko's reader thread has stopped: a moment later."""
    for _ in range(tries):
        if ok():
            return True
        time.sleep(0.1)
    return ok()


async def _until(pilot, app, done, rounds: int = 60) -> None:
    for _ in range(rounds):
        await settle(pilot, app, 1)
        if done():
            return
    raise AssertionError(f"still waiting on {type(app.screen).__name__}")


async def test_two_plans_and_an_apply_hold_one_connection_per_host(tmp_path, ssh_env):
    site = write_site(tmp_path, ssh_env)
    before = steady(lambda: per_host(ssh_env))  # an earlier test's sockets may still be closing
    app = make_app(site)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("p")
        await _until(pilot, app, lambda: isinstance(app.screen, PlanScreen) and app.screen.code is not None)
        plans = app.screen
        assert [n - b for n, b in zip(per_host(ssh_env), before, strict=True)] == [1, 1]
        plans.code = None
        await pilot.press("r")  # a second plan
        await _until(pilot, app, lambda: plans.code is not None)
        assert [n - b for n, b in zip(per_host(ssh_env), before, strict=True)] == [1, 1]
        await pilot.press("a")
        await _until(pilot, app, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        await _until(pilot, app, lambda: isinstance(app.screen, RunScreen) and not app.screen.running)
        assert "done" in str(app.screen.query_one("#run-status").render())
        assert [n - b for n, b in zip(per_host(ssh_env), before, strict=True)] == [1, 1]
        assert sorted(app.connections()._open) == ["hub", "node1"]
        await pilot.press("escape", "escape")  # back on the start screen: the connections close
        await settle(pilot, app)
        assert type(app.screen).__name__ == "StartScreen"
        assert settled(lambda: per_host(ssh_env) == before)
        await pilot.press("p")  # a plan after that opens them again, once
        await _until(pilot, app, lambda: isinstance(app.screen, PlanScreen) and app.screen.code is not None)
        assert [n - b for n, b in zip(per_host(ssh_env), before, strict=True)] == [1, 1]
    assert settled(lambda: per_host(ssh_env) == before)  # the app closed them on exit
    assert (tmp_path / "work" / "node1" / "domain").exists()
