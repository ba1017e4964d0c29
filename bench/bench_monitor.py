#!/usr/bin/env python3
"""Monitor refresh cost on a lab swarm with 100 services and 300 tasks.

What it measures: one refresh = the model's fetch (Docker API calls through the SSH
connection, counted at the HTTP adapter) + the screen's render of the largest tables
(services, tasks) in a headless Textual app. The call count must not grow with the number
of services; the target is a refresh under 150 ms.

Setup (idempotent, nothing pulled from Docker Hub): N services of R replicas labelled
io.hubwizard.bench=1. By default their tasks stay pending (a placement constraint no node
matches: real tasks in the API, no containers on a 2-core machine); with --running,
busybox-static from Debian goes on every machine, a FROM-scratch image `hwbench/busybox:1`
is built on each, and every task runs `busybox sleep`.

    hubwizard lab up --name tui --with-docker -o /tmp/tuilab/site.toml   # (and swarm init/join)
    python bench/bench_monitor.py -c /tmp/tuilab/site.toml [--services 100 --replicas 3] [--cleanup]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.tui.labswarm import IMAGE, ensure_image  # noqa: E402 - after the path is set

LABEL = "io.hubwizard.bench"


def prepare(conns, site, client, services: int, replicas: int, running: bool) -> None:
    """The services (created once, left in place): with ``running``, an image on every machine
    and tasks that sleep; otherwise tasks the scheduler holds pending (no node matches their
    constraint), which costs the lab no containers at all but are real tasks in the API."""
    if running:
        ensure_image(conns, site)
    from docker.types import ServiceMode

    have = {s.name for s in client.services.list(filters={"label": LABEL})}
    for i in range(services):
        name = f"bench-{i:03d}"
        if name not in have:
            client.services.create(IMAGE, command=["/bin/busybox", "sleep", "86400"], name=name, labels={LABEL: "1"},
                                   mode=ServiceMode("replicated", replicas=replicas),
                                   constraints=[] if running else ["node.labels.hwbench==never"])
    want = services * replicas
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        state = "running" if running else "pending"
        ready = sum(1 for t in client.api.tasks(filters={"label": LABEL, "desired-state": "running"})
                    if t["Status"]["State"] == state)
        print(f"\r  {ready}/{want} bench tasks {state}", end="", flush=True)
        if ready >= want:
            print()
            return
        time.sleep(5)
    print("\n  (not all tasks are running yet; measuring anyway)")


def cleanup(client) -> None:
    for s in client.services.list(filters={"label": LABEL}):
        s.remove()
    print("bench services removed")


async def measure(model, rounds: int) -> dict[str, list[float]]:
    """Fetch + render, ``rounds`` times, in a headless app at 120x40.

    A refresh renders the visible tab only; the tasks tab (300 rows) is the largest. "steady"
    is the usual refresh (the table is brought to the new snapshot: only changed cells are
    redrawn); "full" throws the table away first (first display, or every row changed)."""
    from hubwizard.screens.monitor import MonitorScreen

    from hubwizard.app import HubwizardApp

    app = HubwizardApp(None, start="monitor", source_factory=lambda: model, interval=3600)
    out: dict[str, list[float]] = {"fetch": [], "render_steady": [], "render_full": [], "calls": [],
                                   "cpu_fetch": [], "cpu_render_steady": [], "cpu_render_full": []}
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, MonitorScreen)
        await pilot.press("3")  # the tasks tab is the one shown
        await pilot.pause()
        for _ in range(rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            snap = model.fetch()
            out["fetch"].append(time.perf_counter() - t0)
            out["cpu_fetch"].append(time.process_time() - c0)
            out["calls"].append(snap.api_calls)
            screen.snapshot = snap
            for kind in ("steady", "full"):
                if kind == "full":
                    screen._shown.pop("tasks", None)
                t0, c0 = time.perf_counter(), time.process_time()
                screen._fill("tasks")
                await pilot._wait_for_screen()  # the table's own updates (widths, rows) are processed
                screen._refresh_layout()
                screen._compositor.render_full_update()  # the whole frame is composed into lines
                out[f"render_{kind}"].append(time.perf_counter() - t0)
                out[f"cpu_render_{kind}"].append(time.process_time() - c0)
                await pilot.pause()
        out["counts"] = [len(snap.nodes), len(snap.services), len(snap.tasks)]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description="time one monitor refresh on a lab swarm")
    p.add_argument("-c", "--config", required=True, metavar="SITE")
    p.add_argument("--services", type=int, default=100)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--no-setup", action="store_true", help="measure what is there")
    p.add_argument("--running", action="store_true",
                   help="tasks really run (busybox sleep: one container each) instead of pending")
    p.add_argument("--cleanup", action="store_true", help="remove the bench services and exit")
    args = p.parse_args()

    from hubwizard import monitor
    from hubwizard.core.config import load_site
    from hubwizard.core.secrets import load_secrets

    site, secrets = load_site(args.config), load_secrets(args.config)
    model, conns = monitor.connect(site, secrets)
    try:
        if args.cleanup:
            cleanup(model.client)
            return 0
        if not args.no_setup:
            prepare(conns, site, model.client, args.services, args.replicas, args.running)
        model.fetch()  # warm: SSH channel open, events window read
        res = asyncio.run(measure(model, args.rounds))
    finally:
        conns.close()
    ms = {k: [v * 1000 for v in res[k]] for k in ("fetch", "render_steady", "render_full", "cpu_fetch",
                                                    "cpu_render_steady", "cpu_render_full")}
    refresh = [f + r for f, r in zip(ms["fetch"], ms["render_steady"], strict=True)]
    worst = [f + r for f, r in zip(ms["fetch"], ms["render_full"], strict=True)]
    nodes, services, tasks = res["counts"]
    print(f"swarm: {nodes} nodes, {services} services, {tasks} tasks; {args.rounds} rounds")
    print(f"Docker API calls per refresh: {sorted(set(res['calls']))}")
    with open("/proc/loadavg") as fh:
        print(f"machine load average: {fh.read().split()[0]} (2 cores)")
    for name, values in (*ms.items(), ("refresh (fetch + steady render)", refresh),
                         ("refresh, full redraw", worst)):
        if name.startswith("cpu_"):
            name = name.removeprefix("cpu_") + " (CPU time of this process)"
        print(f"  {name:<32} median {statistics.median(values):7.1f} ms   max {max(values):7.1f} ms")
    ok = statistics.median(refresh) < 150 and len(set(res["calls"])) == 1
    print("target (< 150 ms, fixed call count):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
