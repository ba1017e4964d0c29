"""Crash and resume, shared by the test suite and scripts/crashloop.py.

One crash point: a fresh site, `apply` started as its own process and SIGKILLed after a
random delay inside the time a full run takes; then the journal must read back, `status`
must answer, the next `apply` must finish with exit 0 and `verify` must pass.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CRASH_RECIPES = Path(__file__).resolve().parent / "data" / "recipes_crash"
DRIVER = [sys.executable, "-m", "tests.reliability.driver"]


def scale() -> int:
    """HUBWIZARD_RELIABILITY_SCALE multiplies iteration counts (default 1, the CI budget)."""
    try:
        return max(1, int(os.environ.get("HUBWIZARD_RELIABILITY_SCALE", "1")))
    except ValueError:
        return 1


def hw(*args: str, recipes: Path | None = CRASH_RECIPES, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the CLI (with the test calls registered) as a separate process."""
    extra = ["--recipes", str(recipes)] if recipes is not None else []
    return subprocess.run([*DRIVER, *args, *extra], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=ROOT)


@dataclass
class CrashPoint:
    delay: float
    killed: bool  # False: the run had already finished when the kill came
    journal_lines: int
    last_phase: str
    resume_code: int
    verify_code: int
    detail: str = ""

    @property
    def survived(self) -> bool:
        return self.resume_code == 0 and self.verify_code == 0 and not self.detail


def read_journal(path: Path) -> tuple[int, str, str]:
    """(complete records, phase of the last one, problem) — a torn last line is allowed, nothing else."""
    if not path.exists():
        return 0, "", ""
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline
    last = ""
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            return i, last, f"line {i + 1} of the journal is not JSON: {line[:80]!r}"
        last = rec.get("phase", "")
    from hubwizard.core.journal import Journal

    entries = Journal(path).entries()  # the engine's own reader must cope too
    if len(entries) != len(lines):
        return len(lines), last, f"Journal.entries() read {len(entries)} of {len(lines)} records"
    return len(lines), last, "" if not torn or not torn.endswith(b"\n") else "torn line"


def kill_apply_at(site: Path, delay: float, recipes: Path | None = CRASH_RECIPES, after_records: int = 0) -> bool:
    """Start `apply --yes` and SIGKILL it ``delay`` seconds after the journal holds
    ``after_records`` records (0: after the start); True if it was still running."""
    from hubwizard.core.journal import journal_path

    extra = ["--recipes", str(recipes)] if recipes is not None else []
    journal = journal_path(site, _site_name(site))
    proc = subprocess.Popen([*DRIVER, "apply", "-c", str(site), "--yes", *extra], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, cwd=ROOT)
    while after_records and proc.poll() is None and _records(journal) < after_records:
        time.sleep(0.01)
    try:
        proc.wait(delay)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def _records(journal: Path) -> int:
    try:
        return journal.read_bytes().count(b"\n")
    except OSError:
        return 0


def crash_point(site: Path, delay: float, recipes: Path | None = CRASH_RECIPES,
                settle: Callable[[], None] | None = None, after_records: int = 0) -> CrashPoint:
    """Kill at ``delay`` (after ``after_records`` journal records), then check the journal,
    status, resume and verify."""
    from hubwizard.core.journal import journal_path

    killed = kill_apply_at(site, delay, recipes, after_records)
    if settle is not None:
        settle()
    journal = journal_path(site, _site_name(site))
    count, last, problem = read_journal(journal)
    status = hw("status", "-c", str(site), "--json", recipes=recipes)
    if status.returncode != 0 or not json.loads(status.stdout or "{}").get("steps"):
        problem = problem or f"status failed after the kill: {status.stderr[-300:]}"
    resume = hw("apply", "-c", str(site), "--yes", recipes=recipes, timeout=600)
    verify = hw("verify", "-c", str(site), "--json", recipes=recipes, timeout=600)
    detail = problem
    if resume.returncode != 0:
        detail = detail or f"resume exit {resume.returncode}: {(resume.stdout + resume.stderr)[-800:]}"
    elif verify.returncode != 0:
        detail = detail or f"verify exit {verify.returncode}: {verify.stdout[-800:]}"
    return CrashPoint(delay, killed, count, last, resume.returncode, verify.returncode, detail)


def _site_name(site: Path) -> str:
    import tomllib

    return tomllib.loads(site.read_text())["site"]["name"]


def timed_full_run(site: Path, recipes: Path | None = CRASH_RECIPES) -> tuple[float, int]:
    """Seconds a clean apply of ``site`` takes, and the journal records it writes."""
    from hubwizard.core.journal import journal_path

    t0 = time.monotonic()
    res = hw("apply", "-c", str(site), "--yes", recipes=recipes, timeout=900)
    if res.returncode != 0:
        raise AssertionError(f"a clean apply failed: {res.stdout[-1500:]}{res.stderr[-1500:]}")
    return time.monotonic() - t0, _records(journal_path(site, _site_name(site)))


def moments(count: int, window: float, records: int, seed: int) -> list[tuple[int, float]]:
    """``count`` kill moments as (journal records to wait for, then seconds): even ones spread over
    the start-up time (one random moment per slice), odd ones just after a random journal record,
    so every step boundary and every moment inside a step gets its share however loaded the machine."""
    rng = random.Random(seed)
    startup = max(window / 3, 1.0)
    out = []
    for i in range(count):
        if i % 2 == 0:
            slice_ = startup / ((count + 1) // 2)
            out.append((0, round((i // 2) * slice_ + rng.uniform(0, slice_), 3)))
        else:
            out.append((rng.randint(1, max(records - 1, 1)), round(rng.uniform(0, 0.5), 3)))
    return out
