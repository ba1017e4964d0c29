"""Crash and resume: SIGKILL `apply` at many moments of a full run on real sshd hosts.

Each crash point gets a fresh site (fresh hosts' state, fresh journal) so every moment of
a whole run can be hit: start-up, each step's check/apply/verify on three hosts in
parallel, file uploads, Python calls, the last record. After each kill: the journal reads
back (a torn last line is the only allowed damage), `status` answers, the next `apply`
exits 0, `verify` exits 0 and no half-written file is left behind.

Counts: 6 crash points x HUBWIZARD_RELIABILITY_SCALE (scripts/crashloop.py runs any count).
"""

from __future__ import annotations

import json
import os
import time

from tests.reliability.crash import crash_point, hw, moments, scale, timed_full_run
from tests.reliability.fleet import write_site

POINTS = 6
BUDGET = 180.0  # seconds per scale unit; a loaded CI machine stops early (at least 3 points)


def test_clean_run_is_idempotent(fleet, tmp_path):
    site = write_site(tmp_path, fleet)
    _, records = timed_full_run(site)
    assert records >= 24  # started + done for 12 (step, host) pairs
    again = hw("apply", "-c", str(site), "--yes", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    statuses = {h["status"] for s in json.loads(again.stdout)["steps"] for h in s["hosts"].values()}
    assert statuses == {"unchanged"}
    assert hw("verify", "-c", str(site)).returncode == 0


def test_sigkill_at_random_moments_then_resume(fleet, tmp_path, record_property):
    seed = int(os.environ.get("HUBWIZARD_RELIABILITY_SEED", time.time_ns() % 100000))
    window, records = timed_full_run(write_site(tmp_path / "clean", fleet))
    started = time.monotonic()
    points = []
    for i, (after, delay) in enumerate(moments(POINTS * scale(), window, records, seed)):
        if time.monotonic() - started > BUDGET * scale() and len(points) >= 3:
            break
        site = write_site(tmp_path / f"p{i}", fleet)
        point = crash_point(site, delay, after_records=after)  # no pause: the host lock makes the resume wait
        leftovers = sorted(p.name for p in (tmp_path / f"p{i}" / "work").rglob("*.part"))
        assert not leftovers, f"half-written files left after resume at {after} records + {delay}s: {leftovers}"
        points.append(point)
    failed = [p for p in points if not p.survived]
    record_property("crash_points_survived", len(points) - len(failed))
    print(f"\ncrash points: {len(points)} (seed {seed}, full run {window:.1f}s / {records} records), survived "
          f"{len(points) - len(failed)}; killed mid-run {sum(p.killed for p in points)}; journal records at kill: "
          f"{[p.journal_lines for p in points]}")
    assert not failed, "\n".join(f"kill at {p.delay}s: {p.detail}" for p in failed)
    assert sum(p.killed for p in points) >= len(points) - 1
