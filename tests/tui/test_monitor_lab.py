"""The real `hubwizard monitor` in a real terminal (tmux) against the lab's swarm (the session's
shared swarm lab, converged: tests/swarm_lab.py): the screen shows the lab's nodes, with the hub
as Leader, and a refresh keeps the tables up to date."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab_site(swarm_lab):
    """The session's shared swarm lab, converged (the hub service, nginx and the NFS export
    included: the monitor sees what an admin's cluster has)."""
    swarm_lab.converged()
    return swarm_lab.site


def _screen(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


def test_monitor_shows_the_lab_nodes(lab_site: Path):
    from hubwizard.core.config import load_site

    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed")
    session = f"hwtui-{uuid.uuid4().hex[:6]}"
    cmd = f"{sys.executable} -m hubwizard.cli.main monitor -c {lab_site} --interval 1"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", cmd], check=True)
    try:
        screen = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            screen = _screen(session)
            if all(word in screen for word in ("hub", "node1", "node2", "Leader")):
                break
            time.sleep(0.5)
        lines = screen.splitlines()
        assert any("hub" in ln and "manager" in ln and "Leader" in ln and "ready" in ln for ln in lines), screen
        assert any("node1" in ln and "worker" in ln and "active" in ln for ln in lines), screen
        assert any("node2" in ln and "worker" in ln for ln in lines), screen
        assert f"{len(load_site(lab_site).active_hosts)} nodes" in screen and "4 API calls" in screen, screen
        # keyboard: the services tab, then quit
        subprocess.run(["tmux", "send-keys", "-t", session, "2"], check=True)
        time.sleep(1.5)
        assert "NAME" in _screen(session) and "REPLICAS" in _screen(session)
        subprocess.run(["tmux", "send-keys", "-t", session, "C-q"], check=True)
        time.sleep(1.0)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_model_actions_and_logs_on_the_lab(lab_site: Path):
    """Drill-downs, logs with node names, drain/activate, scale, force-update and remove, for real."""
    from docker.types import ServiceMode

    from hubwizard import monitor
    from hubwizard.core.config import load_site
    from hubwizard.core.secrets import load_secrets
    from tests.tui.labswarm import IMAGE, ensure_image

    site = load_site(lab_site)
    model, conns = monitor.connect(site, load_secrets(lab_site))
    name = f"hwtui-{uuid.uuid4().hex[:6]}"
    try:
        ensure_image(conns, site)
        svc = model.client.services.create(
            IMAGE, command=["/bin/busybox", "sh", "-c", "while true; do echo hello from $(hostname); sleep 1; done"],
            name=name, mode=ServiceMode("replicated", replicas=2))

        def wait(pred, what: str, timeout: float = 120):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                snap = model.fetch()
                if pred(snap):
                    return snap
                time.sleep(1)
            raise AssertionError(f"timed out waiting for {what}: {snap}")

        snap = wait(lambda s: any(v.name == name and v.running == 2 for v in s.services), "2 running replicas")
        assert snap.api_calls == 4
        row = next(v for v in snap.services if v.name == name)
        tasks = model.tasks_of_service(row.id)
        assert {t.service for t in tasks} == {name} and all(t.node for t in tasks)
        node_names = {n.hostname for n in snap.nodes}
        time.sleep(3)
        lines = model.logs(row.id)
        assert lines and all(ln.node in node_names for ln in lines), lines[:3]
        assert any("hello from" in ln.text for ln in lines)

        model.scale(row.id, 3)
        wait(lambda s: any(v.name == name and v.desired == 3 and v.running == 3 for v in s.services), "3 replicas")
        before = {t.id for t in model.tasks_of_service(row.id) if t.desired == "running"}
        model.force_update(row.id)
        wait(lambda s: {t.id for t in s.tasks if t.service == name and t.desired == "running"} - before, "new tasks")

        node2 = next(n for n in snap.nodes if n.hostname == "node2")
        model.drain(node2.id)
        wait(lambda s: any(n.hostname == "node2" and n.availability == "drain" for n in s.nodes), "node2 drained")
        wait(lambda s: not any(t.node == "node2" and t.desired == "running" for t in s.tasks if t.service == name),
             "tasks moved off the drained node2")
        model.activate(node2.id)
        wait(lambda s: any(n.hostname == "node2" and n.availability == "active" for n in s.nodes), "node2 active")

        model.remove(row.id)
        svc = None
        wait(lambda s: not any(v.name == name for v in s.services), "service removed")
    finally:
        with contextlib.suppress(Exception):
            if svc is not None:
                svc.remove()
        conns.close()
