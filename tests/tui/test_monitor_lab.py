"""The real `hubwizard monitor` in a real terminal (tmux) against the lab's swarm: the screen
shows the lab's nodes, with the hub as Leader, and a refresh keeps the tables up to date."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.tui.labswarm import down, ensure_lab, ensure_swarm

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab_site(tmp_path_factory):
    site = tmp_path_factory.mktemp("labtui") / "site.toml"
    started = ensure_lab(site)
    try:
        ensure_swarm(site)
        yield site
    finally:
        if started:
            down()


def _screen(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


def test_monitor_shows_the_lab_nodes(lab_site: Path):
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed")
    session = f"hwtui-{uuid.uuid4().hex[:6]}"
    cmd = f"{sys.executable} -m hubwizard.cli monitor -c {lab_site} --interval 1"
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
        assert "3 nodes" in screen and "4 API calls" in screen, screen
        # keyboard: the services tab, then quit
        subprocess.run(["tmux", "send-keys", "-t", session, "2"], check=True)
        time.sleep(1.5)
        assert "NAME" in _screen(session) and "REPLICAS" in _screen(session)
        subprocess.run(["tmux", "send-keys", "-t", session, "C-q"], check=True)
        time.sleep(1.0)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
