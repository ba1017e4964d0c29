"""Start-up costs an admin feels: `hubwizard --help` and the TUI's first painted screen.

Why both ways for the TUI: under tmux is what a person sees (a real terminal, time from the
command to the first text on screen); headless `run_test()` isolates Textual's own mount and
first render from terminal start-up.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def hubwizard_exe() -> str:
    """The console script itself, not a pyenv shim (a shim adds its own bash start-up)."""
    beside = Path(sys.executable).parent / "hubwizard"
    return str(beside) if beside.exists() else (shutil.which("hubwizard") or "hubwizard")


def time_command(argv: list[str], runs: int, warmup: int = 2) -> tuple[list[float], str]:
    """Wall times of ``argv`` (stdout discarded): hyperfine when installed, else a Python loop."""
    if shutil.which("hyperfine"):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            cmd = ["hyperfine", "-N", "--warmup", str(warmup), "--runs", str(runs), "--export-json", out.name,
                   "--style", "none", shlex.join(argv)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode == 0:
                data = json.loads(Path(out.name).read_text())
                return list(data["results"][0]["times"]), "hyperfine -N"
    for _ in range(warmup):
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times, "python subprocess loop"


def tui_first_paint_tmux(site: str | None, runs: int, timeout: float = 30.0) -> list[float]:
    """Seconds from launching `hubwizard [-c SITE]` in a fresh tmux window to the first text on it.

    Uses its own tmux server socket (-L) so it never touches anyone else's sessions."""
    if not shutil.which("tmux"):
        return []
    cmd = [hubwizard_exe(), *(["-c", site] if site else [])]
    times = []
    for i in range(runs):
        sock, name = f"hwbench-{os.getpid()}-{i}", "tui"  # a fresh tmux server per run
        try:
            t0 = time.perf_counter()
            subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-s", name, "-x", "120", "-y", "40",
                            shlex.join(cmd)], check=True, env={**os.environ, "TERM": "xterm-256color"})
            while time.perf_counter() - t0 < timeout:
                screen = subprocess.run(["tmux", "-L", sock, "capture-pane", "-p", "-t", name],
                                        capture_output=True, text=True).stdout
                if "hubwizard" in screen.lower() or len(screen.strip()) > 40:
                    times.append(time.perf_counter() - t0)
                    break
                time.sleep(0.01)
        finally:
            subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)
    return times


_HEADLESS = r"""
import asyncio, sys
from hubwizard.app import HubwizardApp
async def main():
    app = HubwizardApp(sys.argv[1] if len(sys.argv) > 1 else None)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        print("painted", flush=True)
asyncio.run(main())
"""


def tui_first_paint_headless(site: str | None, runs: int) -> list[float]:
    """Seconds from starting Python to the app mounted and its first screen rendered (run_test)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", _HEADLESS, *([site] if site else [])],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("painted"):
                times.append(time.perf_counter() - t0)
                break
        proc.wait(timeout=60)
    return times
