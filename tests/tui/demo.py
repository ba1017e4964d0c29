"""Prepared app states for snapshot tests, and for the screenshots that show no steps nor cluster
(inventory, settings, host key: scripts/screenshots.py; the others come from a real lab run).

Each scene builds a HubwizardApp on a site file in ``root`` and returns it with a coroutine
to run before the picture is taken. Nothing is contacted: the screens get the same event and
model objects the engine and the monitor produce, posted as their workers would post them."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hubwizard.app import HubwizardApp
from hubwizard.core.events import HostResult, Progress, StepFinished, StepStarted
from tests.conftest import BASIC_RECIPES
from tests.tui.fixtures import snapshot, static_source

Scene = tuple[HubwizardApp, Callable[[Any], Awaitable[None]]]

SITE = """[site]
name = "workshop"
domain = "hub.example.org"
email = "admin@example.org"

[[hosts]]
name = "hub"
address = "203.0.113.10"
role = "hub"
user = "ubuntu"

[[hosts]]
name = "node1"
address = "10.0.0.11"
role = "node"
jump = "hub"

[[hosts]]
name = "node2"
address = "10.0.0.12"
role = "node"
jump = "hub"

[oauth]
provider = "dummy"
i_understand_anyone_can_log_in = true
"""


def write_demo_site(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    site = root / "workshop.toml"
    site.write_text(SITE)
    journal = root / ".hubwizard" / "workshop" / "journal.jsonl"
    journal.parent.mkdir(parents=True, exist_ok=True)
    rows = [("make-dir", h, "done") for h in ("hub", "node1", "node2")]
    rows += [("write-domain", "hub", "done"), ("write-domain", "node1", "done"), ("write-domain", "node2", "failed")]
    journal.write_text("".join(json.dumps({"ts": 1795000000.0 + i, "run": "r1", "step": s, "host": h, "phase": p,
                                           "digest": "d", "message": ""}) + "\n" for i, (s, h, p) in enumerate(rows)))
    return site


async def _settle(pilot: Any) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def _app(root: Path, screen: Any = None, start: str = "start", recipes: Path = BASIC_RECIPES, **kw: Any) -> HubwizardApp:
    site = Path(os.path.relpath(write_demo_site(root)))  # relative: pictures do not show a temp dir
    return HubwizardApp(site, start=start, recipes_dir=str(recipes), screen=screen, **kw)


def start_scene(root: Path, recipes: Path = BASIC_RECIPES) -> Scene:
    return _app(root, recipes=recipes), _settle


def monitor_scene(root: Path, recipes: Path = BASIC_RECIPES) -> Scene:
    source = static_source(snapshot())
    return _app(root, start="monitor", recipes=recipes, source_factory=lambda: source, interval=2.0), _settle


def monitor_tasks_scene(root: Path, recipes: Path = BASIC_RECIPES) -> Scene:
    app, _ = monitor_scene(root, recipes)

    async def before(pilot: Any) -> None:
        await _settle(pilot)
        await pilot.press("3")
        await pilot.pause()

    return app, before


def inventory_scene(root: Path, recipes: Path = BASIC_RECIPES) -> Scene:
    from hubwizard.screens.inventory import InventoryScreen

    from hubwizard.remote.hostprobe import HostReport

    screen = InventoryScreen()
    screen.reports = {
        "hub": HostReport("hub", True, True, "Debian GNU/Linux 12 (bookworm)", "20.10.24+dfsg1", 2, 8 * 2**30, 40 * 2**30),
        "node1": HostReport("node1", True, True, "Ubuntu 24.04.1 LTS", "", 4, 16 * 2**30, 90 * 2**30),
        "node2": HostReport("node2", False, error="node2: cannot connect to 10.0.0.12:22: timed out"),
    }
    return _app(root, screen=screen, recipes=recipes), _settle


def settings_scene(root: Path, recipes: Path = BASIC_RECIPES) -> Scene:
    app = _app(root, start="settings", recipes=recipes)

    async def before(pilot: Any) -> None:
        await _settle(pilot)
        from textual.widgets import Input

        pilot.app.screen.query_one("#q-site-email", Input).value = "admin@example"
        await pilot.pause()

    return app, before


PLAN_EVENTS = [
    StepStarted("make-dir", "A folder per host", ("hub", "node1", "node2")),
    HostResult("make-dir", "hub", "unchanged", "already in the desired state"),
    HostResult("make-dir", "node1", "unchanged", "already in the desired state"),
    HostResult("make-dir", "node2", "would-change", "not in the desired state",
               commands=("mkdir -p /var/nfs/node2",)),
    StepFinished("make-dir", "would-change"),
    StepStarted("write-domain", "Write the domain into a file", ("hub", "node1", "node2")),
    HostResult("write-domain", "hub", "would-change", "inputs changed since last apply",
               commands=("printf '%s\\n' hub.example.org > /var/nfs/hub/domain",)),
    HostResult("write-domain", "node1", "unchanged", "already in the desired state"),
    HostResult("write-domain", "node2", "unreachable", "node2: cannot connect to 10.0.0.12:22: timed out",
               fix="check the address and port in the site file, that the machine is up and sshd runs"),
    StepFinished("write-domain", "failed"),
    StepStarted("slow", "A slow step (for crash tests)", ("hub",)),
    HostResult("slow", "hub", "would-change", "not in the desired state",
               commands=("echo run >> /var/nfs/slow.count && sleep 3 && touch /var/nfs/slow.done",)),
    StepFinished("slow", "would-change"),
]


def plan_scene(root: Path, recipes: Path = BASIC_RECIPES) -> Scene:
    from hubwizard.screens.plan import PlanScreen

    screen = PlanScreen(autostart=False)

    async def before(pilot: Any) -> None:
        await pilot.pause()
        for e in PLAN_EVENTS:
            screen.post_message(PlanScreen.Event(e))
        screen.post_message(PlanScreen.Done(3))
        await pilot.pause()
        await pilot.press("down", "down", "down", "enter")
        await pilot.pause()

    return _app(root, screen=screen, recipes=recipes), before


def run_scene(root: Path, recipes: Path = BASIC_RECIPES, failure: bool = False) -> Scene:
    from hubwizard.screens.run import RunScreen

    screen = RunScreen(autostart=False)

    async def before(pilot: Any) -> None:
        await pilot.pause()
        events: list[Any] = [StepStarted("make-dir", "A folder per host", ("hub", "node1", "node2"))]
        events += [HostResult("make-dir", h, "unchanged") for h in ("hub", "node1")]
        events += [HostResult("make-dir", "node2", "changed"), StepFinished("make-dir", "changed"),
                   StepStarted("write-domain", "Write the domain into a file", ("hub", "node1", "node2")),
                   HostResult("write-domain", "hub", "changed"), HostResult("write-domain", "node1", "unchanged"),
                   Progress("write-domain", "node2", "pulling lab/singleuser:latest", 3, 5)]
        if failure:
            events += [HostResult("write-domain", "node2", "failed", "failed: printf '%s\\n' hub.example.org > "
                                  "/var/nfs/node2/domain", "printf '%s\\n' hub.example.org > /var/nfs/node2/domain",
                                  "sh: 1: cannot create /var/nfs/node2/domain: No such file or directory",
                                  "run the make-dir step first")]
        screen.post_message(RunScreen.Events(events))
        with screen._lock:
            screen._lines += ["node2$ mkdir -p /var/nfs/node2", "hub$ printf '%s\\n' hub.example.org > /var/nfs/hub/domain",
                              "node2| Pulling from lab/singleuser", "node2| 3f4ca61aafcd: Pull complete",
                              "node2| 8ef5a2b1c0de: Downloading  48.2MB/80.1MB"]
        screen.running = not failure
        await pilot.pause()
        screen.flush()
        if failure:
            screen.post_message(RunScreen.Finished(1))
        await pilot.pause()
        await pilot.pause()

    return _app(root, screen=screen, recipes=recipes), before


def run_failure_scene(root: Path, recipes: Path = BASIC_RECIPES) -> Scene:
    return run_scene(root, recipes, failure=True)


def doctor_scene(root: Path, recipes: Path = BASIC_RECIPES) -> Scene:
    from types import SimpleNamespace

    from hubwizard.screens.doctor import DoctorScreen

    def diag(check: str, host: str, ok: bool, summary: str, detail: str = "", fix_title: str | None = None,
             fix_commands: tuple[str, ...] = (), skipped: bool = False) -> Any:
        return SimpleNamespace(check=check, host=host, ok=ok, summary=summary, detail=detail, fix_title=fix_title,
                               fix_commands=fix_commands, skipped=skipped)

    found = [
        diag("ssh", "hub", True, "reachable, sudo works"),
        diag("ssh", "node1", True, "reachable, sudo works"),
        diag("swarm-members", "hub", False, "node2 is Down in `docker node ls`",
             "node2 left the swarm or its dockerd stopped", "rejoin node2 to the swarm",
             ("docker swarm leave --force", "docker swarm join --token <worker token> 10.0.0.10:2377")),
        diag("nfs-export", "hub", True, "/var/nfs exported to 10.0.0.0/24"),
        diag("quota", "hub", False, "cannot check: this kernel has no quota support", skipped=True),
        diag("hub-service", "hub", True, "jupyterhub 1/1 running on hub"),
    ]
    screen = DoctorScreen(autostart=False)

    async def before(pilot: Any) -> None:
        await pilot.pause()
        screen.post_message(DoctorScreen.Diagnosed(found))
        await pilot.pause()
        await pilot.press("down", "down")
        await pilot.pause()

    return _app(root, screen=screen, recipes=recipes), before


def hostkey_scene(root: Path, recipes: Path = BASIC_RECIPES) -> Scene:
    from hubwizard.screens.modals import HostKeyModal

    app = _app(root, recipes=recipes)

    async def before(pilot: Any) -> None:
        await _settle(pilot)
        pilot.app.push_screen(HostKeyModal("203.0.113.10", "ssh-ed25519 SHA256:Zx4bq3c0n5m1Jt2QfG8pD7rW9aLkV6yHs1uE0oTiBnM"))
        await pilot.pause()

    return app, before


SCENES: dict[str, Callable[..., Scene]] = {
    "start": start_scene, "inventory": inventory_scene, "settings": settings_scene, "plan": plan_scene,
    "run": run_scene, "run-failure": run_failure_scene, "monitor": monitor_scene, "monitor-tasks": monitor_tasks_scene,
    "doctor": doctor_scene, "hostkey": hostkey_scene,
}
