#!/usr/bin/env python3
"""Regenerate docs/screenshots/*.svg: Textual's own SVG export of the screens.

With ``--lab SITE`` (a lab's site file, e.g. from `hubwizard lab up --name tuishots --nodes 1`)
the real app is driven by keys against that lab: the real plan, the real apply of the track's
steps with the live cluster panel, the journal, the monitor, the doctor, and a real failure
(a typo in the site's single-user image, then resume: `prepull` fails; the file is put back). Each of
those is saved at 120x40 and 80x24 as NAME-COLSxROWS.svg. Without ``--lab``, only the screens
that show no steps nor cluster (inventory, settings, host key) are drawn, from the fixed scenes
of tests/tui/demo.py at 120x40 (nothing contacted). Run from the directory of the site file,
so the pictures show a relative path:
    cd LABDIR && python /path/to/scripts/screenshots.py --lab tuishots.toml
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEMO_PICTURES = ("inventory", "settings", "hostkey")  # no steps, no cluster: the fixed scenes say it all
SIZES = ((120, 40), (80, 24))


def _calm(app: Any) -> None:
    from textual.widgets import Input

    for widget in app.screen.query(Input):  # a blinking cursor is a flaky pixel
        widget.cursor_blink = False
    app.title = "hubwizard"


async def shoot_demo(name: str, out: Path, size: tuple[int, int]) -> Path:
    from tests.tui.demo import SCENES

    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            app, before = SCENES[name](Path(tmp))
            async with app.run_test(size=size) as pilot:
                await before(pilot)
                _calm(app)
                await pilot.pause()
                return Path(app.save_screenshot(filename=f"{name}.svg", path=str(out)))
        finally:
            os.chdir(cwd)


# -- the real thing, on a lab ---------------------------------------------------------------------
async def until(pilot: Any, what: str, ok: Callable[[], bool], seconds: float) -> None:
    """Wait (pumping the app) until ``ok()``; say what was awaited if it never comes."""
    deadline = time.monotonic() + seconds
    while not ok():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: gave up waiting for {what} after {seconds:g} s "
                             f"(screen: {type(pilot.app.screen).__name__})")
        await pilot.pause(0.5)


async def both_sizes(pilot: Any, name: str, out: Path) -> None:
    """Save the screen as NAME-120x40.svg and NAME-80x24.svg (the terminal resized between)."""
    app = pilot.app
    for cols, rows in SIZES:
        await pilot.resize_terminal(cols, rows)
        await pilot.pause(0.3)
        _calm(app)
        await pilot.pause()
        print(app.save_screenshot(filename=f"{name}-{cols}x{rows}.svg", path=str(out)), flush=True)
    await pilot.resize_terminal(*SIZES[0])
    await pilot.pause(0.3)


def _status(screen: Any, selector: str) -> str:
    return str(screen.query_one(selector).render())


async def plan_and_apply(pilot: Any, out: Path) -> None:
    from hubwizard.screens.cluster import ClusterPanel
    from hubwizard.screens.modals import ConfirmModal
    from hubwizard.screens.plan import PlanScreen
    from hubwizard.screens.run import RunScreen

    app = pilot.app
    await pilot.press("p")
    await until(pilot, "the plan", lambda: isinstance(app.screen, PlanScreen) and app.screen.code is not None, 600)
    await pilot.press("down", "down", "down")  # a step's host line: its text shown whole below the tree
    await both_sizes(pilot, "plan", out)
    await pilot.press("a")
    await until(pilot, "the apply's confirmation", lambda: isinstance(app.screen, ConfirmModal), 30)
    await pilot.press("y")
    await until(pilot, "the run screen", lambda: isinstance(app.screen, RunScreen), 30)
    run = app.screen
    panel = run.query_one(ClusterPanel)

    def service_starting() -> bool:
        snap = panel.snapshot
        return not run.running or (snap is not None and not snap.error and len(snap.nodes) > 1
                                   and any(s.running < s.desired for s in snap.services))

    await until(pilot, "a service starting on the swarm", service_starting, 1800)
    shot = run.running  # else the apply ended first: the picture is its end
    if shot:
        await run_pictures(pilot, run, out)
    await until(pilot, "the end of the apply", lambda: not run.running, 1800)
    if run.failures:
        raise SystemExit(f"screenshots: the apply failed: {_status(run, '#run-status')}")
    if not shot:
        await run_pictures(pilot, run, out)
    await pilot.press("escape", "escape")  # back to the start screen: the journal of this apply
    await until(pilot, "the start screen", lambda: type(app.screen).__name__ == "StartScreen", 30)
    await pilot.pause(1)
    await both_sizes(pilot, "start", out)


async def run_pictures(pilot: Any, run: Any, out: Path) -> None:
    """The run screen at both sizes (log), then at 80x24 with the cluster in the log's place."""
    await both_sizes(pilot, "run", out)
    await pilot.resize_terminal(80, 24)
    await pilot.pause(0.3)
    await pilot.press("c")  # at 80x24 the cluster takes the log's place on `c`
    await pilot.pause(0.5)
    _calm(pilot.app)
    print(pilot.app.save_screenshot(filename="run-cluster-80x24.svg", path=str(out)), flush=True)
    run.cluster_choice = None  # back to "beside the log when wide"
    await pilot.resize_terminal(*SIZES[0])
    await pilot.pause(0.3)


async def monitor_and_doctor(pilot: Any, out: Path) -> None:
    from hubwizard.screens.doctor import DoctorScreen
    from hubwizard.screens.monitor import MonitorScreen

    app = pilot.app
    await pilot.press("m")
    await until(pilot, "the monitor's first refresh", lambda: isinstance(app.screen, MonitorScreen)
                and app.screen.polls >= 2 and not app.screen.snapshot.error, 120)
    await both_sizes(pilot, "monitor", out)
    await pilot.press("3")
    await pilot.pause(1)
    await both_sizes(pilot, "monitor-tasks", out)
    await pilot.press("escape")
    await pilot.press("d")
    await until(pilot, "the doctor", lambda: isinstance(app.screen, DoctorScreen)
                and "running the checks" not in _status(app.screen, "#doctor-status"), 600)
    await both_sizes(pilot, "doctor", out)
    await pilot.press("escape")


async def failure(pilot: Any, out: Path) -> None:
    """A real failure as an admin makes one: a typo in the site file's [images] singleuser tag,
    then `a` (resume) on the start screen: the hub image is rebuilt with it and `prepull` fails
    with the registry's answer and its fix. The site file is put back afterwards."""
    from hubwizard.screens.modals import ConfirmModal, FailureModal
    from hubwizard.screens.run import RunScreen

    app = pilot.app
    site = Path(app.site_path)
    good = site.read_text()
    image = app.session().site.images.singleuser
    try:
        site.write_text(good.replace(f'"{image}"', f'"{image[:-1]}"'))  # latest -> lates
        app.screen.load()  # the start screen reads the changed site
        await pilot.press("a")
        await until(pilot, "the confirmation", lambda: isinstance(app.screen, ConfirmModal), 30)
        await pilot.press("y")
        await until(pilot, "the failure panel", lambda: isinstance(app.screen, FailureModal), 1800)
        await pilot.pause(1)
        await both_sizes(pilot, "run-failure", out)
        await pilot.press("a")  # abort: the journal keeps what is done
        await until(pilot, "the run screen", lambda: isinstance(app.screen, RunScreen), 30)
    finally:
        site.write_text(good)


async def shoot_lab(site: Path, out: Path) -> None:
    from hubwizard.app import HubwizardApp

    app = HubwizardApp(site, start="start", interval=2.0)
    async with app.run_test(size=SIZES[0]) as pilot:
        await pilot.pause(1)
        await plan_and_apply(pilot, out)
        await monitor_and_doctor(pilot, out)
        await failure(pilot, out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", metavar="SITE", help="a lab's site file: the real screens, driven against it")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TZ", "UTC")
    if args.lab:
        asyncio.run(shoot_lab(Path(args.lab), out))
    for name in DEMO_PICTURES:
        print(asyncio.run(shoot_demo(name, out, SIZES[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
