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
    if [ -n "${rest_pid:-}" ]; then kill "$rest_pid" 2>/dev/null || true; fi
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
pytest_args=(-q -p no:cacheprovider --durations=25)
if [ $# -gt 0 ]; then
    python3 -m pytest "${pytest_args[@]}" "$@"
    code=$?
else
    # Two groups at once: the lab tests mostly wait on lab machines (apt, dockerd, Swarm), the
    # rest (unit, real sshd, TUI) mostly uses the CPU. Each has its own temp dir; the rest's
    # report follows the lab's.
    tmp="$(mktemp -d /tmp/hubwizard-tests.XXXXXX)"
    python3 -m pytest "${pytest_args[@]}" --basetemp="$tmp/rest" -m "not lab" tests > "$tmp/rest.log" 2>&1 &
    rest_pid=$!
    python3 -m pytest "${pytest_args[@]}" --basetemp="$tmp/lab" -m lab tests
    code=$?
    wait "$rest_pid"
    rest_code=$?
    echo "test: the tests without a lab (run beside the lab tests):"
    cat "$tmp/rest.log"
    rm -rf "$tmp"
    [ "$code" = 5 ] && code=0  # no lab test collected (none marked): the other group decides
    [ "$rest_code" != 0 ] && [ "$code" = 0 ] && code=$rest_code
fi
if [ "$code" = 5 ]; then
    echo "test: pytest collected no tests" >&2
fi
exit "$code"
