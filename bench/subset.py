"""Run `hubwizard verify` or `apply` on a chosen subset of steps, as its own process.

Why: two comparisons need the engine on something narrower than the whole track, without
touching the recipes or the CLI:
  --shell-only   verify only the shell-able items (run: and file:), the very commands the
                 Ansible playbook and the ssh loop run (verifyplan.restricted_steps);
  --steps A,B    only these steps (the ones that converge on the lab today, when the track
                 is not finished yet).
It runs as its own process, like `hubwizard verify`, so start-up costs count the same way.

    python bench/subset.py verify SITE [--steps A,B,...] [--shell-only]
    python bench/subset.py apply  SITE [--steps A,B,...]

Prints one JSON line: exit code, per-status host counts, failed checks.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import verifyplan  # noqa: E402

from hubwizard.core.events import discard  # noqa: E402
from hubwizard.session import open_site  # noqa: E402


def chosen_steps(steps: list, ids: str | None, shell_only: bool) -> list:
    """The session's steps, cut down to ``ids`` (comma-separated) and/or their shell-able checks."""
    if ids:
        wanted = set(ids.split(","))
        steps = [s for s in steps if s.id in wanted]
    return verifyplan.restricted_steps(steps) if shell_only else steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["verify", "apply"])
    p.add_argument("site")
    p.add_argument("--steps", help="comma-separated step ids (default: every step of the track)")
    p.add_argument("--shell-only", action="store_true", help="verify: only run: and file: items")
    args = p.parse_args(argv)
    session = open_site(args.site, prompt=None)
    steps = chosen_steps(session.steps, args.steps, args.shell_only)
    if not steps:  # Engine.run(steps=[]) would mean "every step"
        print(json.dumps({"exit_code": 0, "checks": 0, "hosts": {}, "failed": []}))
        return 0
    engine = session.engine(discard)
    try:
        summary = engine.run(args.mode, steps=steps)
    finally:
        engine.conns.close()
    failed = [f"{c.step}/{c.host}: {c.name}" for c in summary.checks if not c.ok and not c.skipped]
    failed += [f"{r.step}/{r.host}: {r.message}" for r in summary.results if r.status in ("failed", "unreachable")]
    print(json.dumps({"exit_code": summary.exit_code, "checks": len(summary.checks),
                      "hosts": dict(Counter(r.status for r in summary.results)), "failed": failed}))
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
