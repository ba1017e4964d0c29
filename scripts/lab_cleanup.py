"""Remove the labs one test run made: objects labelled io.hubwizard.lab.run=RUN (scripts/test.sh
exports HUBWIZARD_LAB_RUN, which every lab stamps on what it creates), created after --since.
Nothing an admin's own rehearsal lab holds, and nothing of another test run on the same engine
(other engineers' runs create labs at the same time).

Bounded in time like every lab command (hubwizard.lab.dockerguard): an engine that stops
answering is reported once, with the restart to do, and the script ends instead of hanging.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime


def _created(value: str) -> float:
    return datetime.fromisoformat(value[:26].rstrip("Z") + "+00:00" if "+" not in value else value).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--since", type=float, required=True, help="epoch seconds")
    parser.add_argument("--run", required=True, help="the run's HUBWIZARD_LAB_RUN")
    args = parser.parse_args()
    from hubwizard.lab.dockerguard import EngineSilentError, answering, connect
    from hubwizard.lab.spec import LabError

    try:
        client = connect()
    except EngineSilentError as exc:
        print(f"lab_cleanup: {exc}", file=sys.stderr)
        return 1
    except LabError as exc:
        print(f"lab_cleanup: no Docker engine ({exc.message}); nothing to do")
        return 0
    names: set[str] = set()
    flt = {"label": [f"io.hubwizard.lab.run={args.run}", "io.hubwizard.lab"]}
    with answering(client, "container ls / network ls"):
        for c in client.containers.list(all=True, filters=flt):
            if _created(c.attrs["Created"]) >= args.since - 5:
                names.add(c.labels["io.hubwizard.lab"])
        for n in client.networks.list(filters=flt):
            if _created(n.attrs["Created"]) >= args.since - 5:
                names.add(n.attrs["Labels"]["io.hubwizard.lab"])
    for name in sorted(names):
        print(f"lab_cleanup: removing lab {name!r} left by this run")
        from hubwizard.lab.lifecycle import down

        try:
            down(name, client=client)
        except EngineSilentError as exc:
            print(f"lab_cleanup: {name}: {exc}", file=sys.stderr)
            return 1  # every further lab would wait as long again
        except Exception as exc:  # noqa: BLE001
            print(f"lab_cleanup: {name}: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # noqa: BLE001 - a cleanup never ends in a traceback
        print(f"lab_cleanup: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
