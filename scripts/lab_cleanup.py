"""Remove lab objects (containers, volumes, networks labelled io.hubwizard.lab) created after
a given time: what one test run made, and nothing an admin's own rehearsal lab holds."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime


def _created(value: str) -> float:
    return datetime.fromisoformat(value[:26].rstrip("Z") + "+00:00" if "+" not in value else value).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--since", type=float, required=True, help="epoch seconds")
    args = parser.parse_args()
    try:
        import docker

        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:  # noqa: BLE001
        print(f"lab_cleanup: no Docker engine ({exc}); nothing to do")
        return 0
    names: set[str] = set()
    for c in client.containers.list(all=True, filters={"label": "io.hubwizard.lab"}):
        if _created(c.attrs["Created"]) >= args.since - 5:
            names.add(c.labels["io.hubwizard.lab"])
    for n in client.networks.list(filters={"label": "io.hubwizard.lab"}):
        if _created(n.attrs["Created"]) >= args.since - 5:
            names.add(n.attrs["Labels"]["io.hubwizard.lab"])
    for name in sorted(names):
        print(f"lab_cleanup: removing lab {name!r} left by this run")
        from hubwizard.lab.lifecycle import down

        try:
            down(name)
        except Exception as exc:  # noqa: BLE001
            print(f"lab_cleanup: {name}: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
