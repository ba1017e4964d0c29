#!/usr/bin/env python3
"""Drive the crash-and-resume suite with any count, outside pytest:

    python3 scripts/crashloop.py --count 50 [--seed N] [--hosts 3]

Starts its own sshd servers on 127.0.0.1 (tests/reliability/fleet.py), measures a clean full
apply of tests/reliability/data/recipes_crash, then for each crash point: a fresh site, `apply`
SIGKILLed at a moment spread over that window, the journal read back, `status`, the resume
`apply` (must exit 0), `verify` (must exit 0). Prints one line per point and the totals;
exit 0 only if every point survived.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reliability.crash import crash_point, moments, timed_full_run  # noqa: E402
from tests.reliability.fleet import start_fleet, write_site  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=20, help="crash points (default 20)")
    p.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    p.add_argument("--hosts", type=int, default=3, help="sshd hosts: hub + nodes (default 3)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="hubwizard-crashloop-") as tmp:
        root = Path(tmp)
        fleet = start_fleet(root / "fleet", args.hosts)
        try:
            window, records = timed_full_run(write_site(root / "clean", fleet))
            print(f"crashloop: full run {window:.1f}s ({records} journal records), {args.count} crash points, "
                  f"seed {args.seed}", flush=True)
            survived = killed = 0
            for i, (after, delay) in enumerate(moments(args.count, window, records, args.seed)):
                t0 = time.monotonic()
                point = crash_point(write_site(root / f"p{i}", fleet), delay, settle=fleet.wait_idle,
                                    after_records=after)
                leftovers = list((root / f"p{i}" / "work").rglob("*.part"))
                ok = point.survived and not leftovers
                survived += ok
                killed += point.killed
                print(f"  {i + 1:>3}  kill {after:>2} records + {delay:5.2f}s  killed={point.killed!s:<5} "
                      f"records={point.journal_lines:<3} last={point.last_phase or '-':<8} "
                      f"{'survived' if ok else 'FAILED: ' + point.detail[:300]}  ({time.monotonic() - t0:.0f}s)",
                      flush=True)
        finally:
            fleet.stop()
    print(f"crashloop: {survived}/{args.count} crash points survived ({killed} killed mid-run), seed {args.seed}")
    return 0 if survived == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
