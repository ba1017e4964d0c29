#!/usr/bin/env bash
# The test command (README, .ci/run): set up, lint, run the whole suite against real sshd
# servers and lab machines, run the README's first command (scripts/demo.sh) on fresh lab
# machines, then tear down everything this run started (lab containers, networks, volumes, and
# dockerd if it was not running before), even when a test fails, and in bounded time.
# Extra arguments go to pytest alone (e.g. scripts/test.sh tests/unit -x): no groups, no demo.
#
# The whole run: "rest" (unit, real sshd, TUI: mostly CPU, no lab) in the background, its log
# printed at the end; beside it, one after the other (never two groups creating and removing
# labs at once, the traffic under which Debian's dockerd 20.10.24 deadlocked: `docker ps`
# answered, `docker network ls` never did):
#   1. "demo": scripts/demo.sh under a lab name of its own, then `lab down` (log at the end);
#   2. "lab": the lab-marked tests, output live. If the lab group fails and the engine does not
#      answer `network ls`, an engine this run started is restarted and the lab group runs once
#      more.
set -uo pipefail
set -m # every group in a process group of its own: the cleanup stops a group with all it started
cd "$(dirname "$0")/.."

PROBE=${HUBWIZARD_TEST_PROBE:-60} # seconds `network ls` may take before the engine counts as stuck
# To check this script's own paths cheaply: the groups' test paths and the demo command.
read -r -a TEST_PATHS <<<"${HUBWIZARD_TEST_PATHS:-tests}"
DEMO=${HUBWIZARD_TEST_DEMO:-bash scripts/demo.sh}

engine_answers() {
    # engine_answers PATH SECONDS: the Docker API answers GET PATH in time (DOCKER_HOST or the default socket).
    case "${DOCKER_HOST:-}" in
    tcp://*) curl -fsS --max-time "$2" "http://${DOCKER_HOST#tcp://}$1" >/dev/null 2>&1 ;;
    unix://*) curl -fsS --max-time "$2" --unix-socket "${DOCKER_HOST#unix://}" "http://localhost$1" >/dev/null 2>&1 ;;
    *) curl -fsS --max-time "$2" --unix-socket /var/run/docker.sock "http://localhost$1" >/dev/null 2>&1 ;;
    esac
}

engine_was_up=0
engine_answers /_ping 3 && engine_was_up=1
bash scripts/setup.sh || { echo "test: setup failed" >&2; exit 1; }
started_at=$(date +%s)
# Every lab this run makes carries this run's id (io.hubwizard.lab.run): the cleanup removes those
# and never the labs of another run or engineer on the same engine.
export HUBWIZARD_LAB_RUN="test-$$-$started_at"
tmp="$(mktemp -d /tmp/hubwizard-tests.XXXXXX)"
groups=()

cleanup() {
    local code=$?
    trap - EXIT INT TERM
    for pid in "${groups[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    # Labs created by this run (and only those), bounded: a stuck engine must not hang CI.
    timeout -k 10 420 python3 scripts/lab_cleanup.py --since "$started_at" --run "$HUBWIZARD_LAB_RUN" ||
        echo "test: removing this run's labs did not finish; see above" >&2
    if [ "$engine_was_up" = 0 ]; then
        timeout -k 10 60 bash scripts/dockerd.sh stop || true
    fi
    rm -rf "$tmp"
    exit "$code"
}
trap cleanup EXIT
trap 'echo "test: interrupted" >&2; exit 130' INT TERM

run() {
    # run LOG CMD...: CMD in the background (LOG "-" keeps its output live); sets $pid.
    local log=$1
    shift
    if [ "$log" = - ]; then "$@" & else "$@" >"$log" 2>&1 & fi
    pid=$!
    groups+=("$pid")
}

finish() {
    # finish PID: wait for a group (interruptible, unlike a foreground command); its exit code in $status.
    status=0
    wait "$1" || status=$?
}

echo "test: ruff"
python3 -m ruff check . || exit 1
echo "test: mypy"
python3 -m mypy || exit 1

pytest_args=(-q -p no:cacheprovider --durations=25 --tb=short)
if [ $# -gt 0 ]; then
    echo "test: pytest $*"
    run - python3 -m pytest "${pytest_args[@]}" "$@"
    finish "$pid"
    code=$status
    [ "$code" = 5 ] && echo "test: pytest collected no tests" >&2
    exit "$code"
fi

run_demo() {
    # The README's first command on fresh lab machines, under a name no admin's lab has, then `lab down`.
    local name="ci-demo-$$" code=0
    echo "test: demo: DEMO_NAME=$name $DEMO"
    DEMO_NAME="$name" DEMO_SITE="$tmp/demo/site.toml" $DEMO || code=$?
    echo "test: demo: hubwizard lab down --name $name"
    if ! timeout -k 10 600 hubwizard lab down --name "$name"; then
        echo "test: demo: lab down --name $name failed"
        [ "$code" = 0 ] && code=1
    fi
    return "$code"
}

lab_group() {
    # lab_group N: the lab tests on the session's shared labs (attempt N).
    python3 -m pytest "${pytest_args[@]}" --basetemp="$tmp/lab$1" -m "lab and not own_lab" "${TEST_PATHS[@]}"
}

own_group() {
    # own_group N: the lab tests that bring up labs of their own (tests/conftest.py OWN_LAB_MODULES).
    python3 -m pytest "${pytest_args[@]}" --basetemp="$tmp/own$1" -m own_lab "${TEST_PATHS[@]}"
}

engine_stuck_retry() {
    # engine_stuck_retry CODE GROUP: after a failed group, when the engine no longer answers
    # `network ls`, restart an engine this run started and run GROUP once more; the result in $status.
    status=$1
    [ "$status" = 0 ] || [ "$status" = 5 ] && return 0
    engine_answers /networks "$PROBE" && return 0
    echo "test: the Docker engine does not answer \`network ls\` for $PROBE s: a known Docker 20.10 deadlock"
    if [ "$engine_was_up" != 0 ]; then
        echo "test: this run did not start that engine, so it does not restart it: restart it" \
            "(bash scripts/dockerd.sh restart if that script started it, else systemctl restart docker)" \
            "and run the tests again" >&2
        return 0
    fi
    echo "test: restarting the engine this run started (bash scripts/dockerd.sh restart) and running $2 once more"
    if ! timeout -k 10 180 bash scripts/dockerd.sh restart; then
        echo "test: the engine did not restart; $2 is not run again" >&2
        return 0
    fi
    timeout -k 10 420 python3 scripts/lab_cleanup.py --since "$started_at" --run "$HUBWIZARD_LAB_RUN"
    run - "$2" 2
    finish "$pid"
    echo "test: $2 after the engine's restart: exit $status"
}

echo "test: the tests without a lab, in the background (log at the end)"
run "$tmp/rest.log" python3 -m pytest "${pytest_args[@]}" --basetemp="$tmp/rest" -m "not lab" "${TEST_PATHS[@]}"
rest_pid=$pid
echo "test: 1. the README's first command, scripts/demo.sh (log at the end)"
run "$tmp/demo.log" run_demo
finish "$pid"
demo_code=$status
echo "test: demo exit $demo_code"

# The lab tests in two groups at once: those on the session's shared labs (output live) and those
# that bring labs of their own (log at the end). Lab machines spend most of their time waiting
# (apt, pulls, services starting), and the lab code serialises the engine's network and removal
# calls across processes (hubwizard/lab/dockerguard.py), the traffic of the 20.10 deadlock.
echo "test: 2. the lab tests: shared labs (live) and own labs (log at the end), side by side"
run "$tmp/own.log" own_group 1
own_pid=$pid
run - lab_group 1
finish "$pid"
lab_code=$status
finish "$own_pid"
own_code=$status
engine_stuck_retry "$lab_code" lab_group
lab_code=$status
engine_stuck_retry "$own_code" own_group
own_code=$status
[ "$own_code" = 5 ] && own_code=0
[ "$lab_code" = 5 ] && lab_code=0
finish "$rest_pid"
rest_code=$status
[ "$rest_code" = 5 ] && rest_code=0 # none collected: the other groups decide

echo "test: the tests without a lab:"
cat "$tmp/rest.log"
echo "test: the lab tests with labs of their own:"
cat "$tmp/own.log"
echo "test: the README's first command, scripts/demo.sh:"
cat "$tmp/demo.log"
echo "test: lab exit $lab_code, own-lab exit $own_code, rest exit $rest_code, demo exit $demo_code"
for code in "$lab_code" "$own_code" "$rest_code" "$demo_code"; do
    [ "$code" != 0 ] && exit "$code"
done
exit 0
