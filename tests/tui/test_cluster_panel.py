"""The run screen's live cluster panel (issue 14 item 13): a real apply against real sshd hosts
through the real app; the panel reads the swarm through the monitor's Source (a scripted one:
there is no swarm behind these sshd servers), and starts once the swarm step is done."""

from __future__ import annotations

from pathlib import Path

import pytest
from hubwizard.screens.cluster import ClusterPanel
from hubwizard.screens.run import RunScreen

from tests.conftest import write_site
from tests.tui.conftest import basic_plus, make_app, settle
from tests.tui.fixtures import swarm_coming_up


@pytest.fixture
def swarm_recipes(tmp_path: Path) -> Path:
    """The basic track with a step named as the real swarm step between its steps."""
    return basic_plus(tmp_path, "15-swarm.yaml",
                      "- id: swarm-init\n  title: The swarm (a marker here)\n  order: 15\n  targets: hub\n"
                      "  check:\n    - test -f {{ cfg.storage.path }}/swarm\n"
                      "  apply:\n    - touch {{ cfg.storage.path }}/swarm\n")


async def _apply(pilot, app) -> RunScreen:
    await pilot.pause()
    await pilot.press("y")
    for _ in range(60):
        await settle(pilot, app, 1)
        if isinstance(app.screen, RunScreen) and not app.screen.running:
            return app.screen
    raise AssertionError("the apply did not finish")


async def _polls(pilot, panel: ClusterPanel, n: int) -> None:
    for _ in range(100):
        if panel.polls >= n:
            return
        await pilot.pause(0.05)
    raise AssertionError(f"{panel.polls} polls, waited for {n}")


async def test_at_80x24_the_cluster_is_a_toggle_and_shows_the_swarm_coming_up(tmp_path, ssh_env, swarm_recipes):
    source = swarm_coming_up()
    app = make_app(write_site(tmp_path, ssh_env), start="run", recipes=swarm_recipes,
                   source_factory=lambda: source, interval=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        run = await _apply(pilot, app)
        panel = run.query_one(ClusterPanel)
        assert panel.started and not panel.display  # the swarm exists; the log keeps its place
        assert source.fetches == 0  # nothing read while nobody can see it
        await pilot.press("c")
        await _polls(pilot, panel, 1)
        assert panel.display and not run.query_one("#log").display
        assert [r[0] for r in panel.rows("nodes")] == ["hub"]
        assert panel.rows("services") == [("jupyterhub", "0/1", "replicated")]
        source.advance()  # node1 joins, the hub service runs
        await _polls(pilot, panel, panel.polls + 2)
        assert [r[0] for r in panel.rows("nodes")] == ["hub", "node1"]
        assert panel.rows("services") == [("jupyterhub", "1/1", "replicated")]
        assert "4 API calls a refresh" in str(panel.query_one("#cluster-status").render())
        assert not run.query_one("#steps").region.overlaps(panel.region)  # the steps keep their place
        await pilot.press("c")  # back to the log: the polls stop
        await pilot.pause()
        assert run.query_one("#log").display and not panel.display
        seen = source.fetches
        await pilot.pause(0.5)
        assert source.fetches <= seen + 1  # at most the poll already on its way


async def test_wide_the_cluster_sits_beside_the_log_once_the_swarm_exists(tmp_path, ssh_env, swarm_recipes):
    source = swarm_coming_up()
    app = make_app(write_site(tmp_path, ssh_env), start="run", recipes=swarm_recipes,
                   source_factory=lambda: source, interval=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert not app.screen_stack[-2].query_one(ClusterPanel).display  # before the swarm: only the log
        run = await _apply(pilot, app)
        panel = run.query_one(ClusterPanel)
        await _polls(pilot, panel, 1)
        assert panel.display and run.query_one("#log").display
        assert not panel.region.overlaps(run.query_one("#log").region)
        assert [r[0] for r in panel.rows("nodes")] == ["hub"]


async def test_no_swarm_step_no_panel(tmp_path, ssh_env):
    """The basic track (like the classic one) has no swarm: nothing is ever read."""
    source = swarm_coming_up()
    app = make_app(write_site(tmp_path, ssh_env), start="run", source_factory=lambda: source, interval=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        run = await _apply(pilot, app)
        assert not run.query_one(ClusterPanel).started and source.fetches == 0
