"""One swarm-mode lab (1 hub + 2 nodes + 1 spare) shared by every module that needs the track
applied: a full apply costs minutes, so the session makes one and its users take turns.

Who uses it, in the order pytest runs them (file names decide it):
  integration/test_swarm_core  steps 1-7 from fresh machines (it brings its own lab if the
                               shared one was used already, e.g. with -p randomly);
  integration/test_swarm_full  the rest of the track, re-apply, verify, OAuth, add-node of the
                               spare, teardown and a fresh apply killed once and resumed;
  reliability/test_lab         kill points, faults, the secret scan and the exposure checks;
  tui/test_monitor_lab         the real monitor in tmux, and its actions.
Each module leaves the lab converged (verify passes), and each works alone: `converged()`
applies whatever is missing, from fresh machines if need be.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def hubwizard(*args: str, timeout: float = 2400) -> subprocess.CompletedProcess:
    """The real CLI in its own process, as an admin runs it (no stdin)."""
    return subprocess.run([sys.executable, "-m", "hubwizard.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)


@dataclass
class SwarmLab:
    """The shared lab: its name, site file, record; whether anything was applied to it yet."""

    name: str
    work: Path
    record: dict[str, Any]
    fresh: bool = True
    outputs: dict[str, str] = field(default_factory=dict)  # what runs printed, for the secret scan

    @property
    def site(self) -> Path:
        return self.work / "site.toml"

    @property
    def journal(self) -> Path:
        return self.work / ".hubwizard" / self.name / "journal.jsonl"

    def take_fresh(self) -> bool:
        """True once, for the first user that needs fresh machines; the lab is then not fresh."""
        fresh, self.fresh = self.fresh, False
        return fresh

    def converged(self) -> None:
        """Apply the whole track (unchanged and quick when it already is); it must end with exit 0."""
        self.fresh = False
        res = hubwizard("apply", "-c", str(self.site), "--yes")
        self.outputs[f"apply (converge) {len(self.outputs)}"] = res.stdout + res.stderr
        assert res.returncode == 0, f"the shared lab does not converge:\n{res.stdout[-4000:]}\n{res.stderr[-2000:]}"


@contextlib.contextmanager
def shared_lab(work: Path, name: str) -> Iterator[SwarmLab]:
    """`lab up --nodes 2 --spares 1` (a second try when a machine misses its boot deadline on a
    loaded host), always `lab down` afterwards."""
    from hubwizard.lab import lifecycle as lab_mod

    site = work / "site.toml"
    t0 = time.monotonic()
    try:
        for _attempt in range(2):
            up = hubwizard("lab", "up", "--name", name, "--nodes", "2", "--spares", "1", "-o", str(site),
                           timeout=1200)
            if up.returncode == 0:
                break
        assert up.returncode == 0, up.stdout + up.stderr
        print(f"\n[time] shared swarm lab up: {time.monotonic() - t0:.0f} s")
        yield SwarmLab(name=name, work=work, record=lab_mod.load_record(name))
    finally:
        hubwizard("lab", "down", "--name", name, timeout=600)
