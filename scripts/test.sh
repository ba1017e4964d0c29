#!/usr/bin/env bash
# The test command (README, .ci/run): set up, lint, run the whole suite against real sshd
# servers and lab machines, then tear down everything this run started (lab containers,
# networks, volumes, and dockerd if it was not running before), even when a test fails.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -x).
set -uo pipefail
cd "$(dirname "$0")/.."

engine_was_up=0
if curl -fsS --max-time 3 --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null 2>&1; then
    engine_was_up=1
fi
bash scripts/setup.sh || { echo "test: setup failed" >&2; exit 1; }
started_at=$(date +%s)

cleanup() {
    # Labs created by this run (and only those): by creation time of their labelled objects.
    python3 scripts/lab_cleanup.py --since "$started_at" || true
    if [ "$engine_was_up" = 0 ]; then
        bash scripts/dockerd.sh stop || true
    fi
}
trap cleanup EXIT

echo "test: ruff"
python3 -m ruff check . || exit 1

echo "test: pytest"
args=("$@")
if [ ${#args[@]} -eq 0 ]; then
    args=(tests)
fi
python3 -m pytest -q -p no:cacheprovider --durations=15 "${args[@]}"
code=$?
if [ "$code" = 5 ]; then
    echo "test: pytest collected no tests" >&2
fi
exit "$code"
