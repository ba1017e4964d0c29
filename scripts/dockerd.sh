#!/bin/sh
# Start, stop or inspect a Docker engine for hubwizard's lab and tests.
#
# Why: machines of this project's kind ship only a docker *client*; Debian's docker.io gives
# the engine but nothing starts it (no systemd as PID 1 in many CI containers). This script
# starts dockerd in the background only when none answers on /var/run/docker.sock, and `stop`
# and `restart` act only on the process it started itself (recorded in its own pidfile), never
# on anything else. `restart` exists for Debian's dockerd 20.10.24, which can deadlock (`docker
# ps` answers, `docker network ls` never does) when labs are created and removed at once.
set -eu

# The HUBWIZARD_DOCKERD_* overrides let tests drive this script against an engine of their own.
SOCK=${HUBWIZARD_DOCKERD_SOCK:-/var/run/docker.sock}
LOG=${HUBWIZARD_DOCKERD_LOG:-/var/log/hubwizard-dockerd.log}
PIDFILE=${HUBWIZARD_DOCKERD_PIDFILE:-/run/hubwizard-dockerd.pid}
WAIT=${HUBWIZARD_DOCKERD_WAIT:-60}
STOP_WAIT=${HUBWIZARD_DOCKERD_STOP_WAIT:-30}

answers() {
    # The engine answers when its API replies to a ping on the socket.
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --max-time 3 --unix-socket "$SOCK" http://localhost/_ping >/dev/null 2>&1
    else
        docker -H "unix://$SOCK" version >/dev/null 2>&1
    fi
}

alive() {
    # Process $1 exists and is not a zombie (in many containers PID 1 never reaps orphans).
    [ -d "/proc/$1" ] && [ "$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null)" != Z ]
}

our_pid() {
    # Print the PID we recorded if that process still runs dockerd; nothing otherwise.
    [ -f "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE")
    [ -n "$pid" ] && alive "$pid" || return 1
    case "$(cat "/proc/$pid/comm" 2>/dev/null)" in dockerd) echo "$pid" ;; *) return 1 ;; esac
}

raise_inotify() {
    # systemd in every lab machine takes inotify instances from one host-wide root budget;
    # Debian's 128 stops machines from booting at about the twentieth.
    for kv in max_user_instances=8192 max_user_watches=1048576; do
        key=${kv%%=*} want=${kv#*=}
        have=$(cat "/proc/sys/fs/inotify/$key" 2>/dev/null || echo "$want")
        if [ "$have" -lt "$want" ]; then
            echo "$want" >"/proc/sys/fs/inotify/$key" 2>/dev/null &&
                echo "dockerd: raised fs.inotify.$key from $have to $want" ||
                echo "dockerd: fs.inotify.$key is $have; lab machines may not boot (sysctl -w fs.inotify.$key=$want)" >&2
        fi
    done
}

start() {
    raise_inotify
    if answers; then
        echo "dockerd: an engine already answers on $SOCK"
        return 0
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        echo "dockerd: not installed; install Debian's engine: apt-get install -y docker.io" >&2
        return 1
    fi
    if pid=$(our_pid); then
        echo "dockerd: started earlier (pid $pid) but does not answer yet; waiting"
    else
        echo "dockerd: starting (log $LOG)"
        # setsid: the engine must outlive this shell and its terminal.
        setsid dockerd -H "unix://$SOCK" >>"$LOG" 2>&1 </dev/null &
        echo $! >"$PIDFILE"
    fi
    i=0
    while [ "$i" -lt "$((WAIT * 5))" ]; do
        if answers; then
            echo "dockerd: ready (pid $(cat "$PIDFILE"))"
            return 0
        fi
        if ! our_pid >/dev/null; then
            echo "dockerd: exited while starting; last lines of $LOG:" >&2
            tail -n 20 "$LOG" >&2
            rm -f "$PIDFILE"
            return 1
        fi
        sleep 0.2
        i=$((i + 1))
    done
    echo "dockerd: no answer after ${WAIT}s; see $LOG" >&2
    return 1
}

gone_within() {
    # Wait up to $2 seconds for process $1 to exit; true when it did.
    i=0
    while alive "$1" && [ "$i" -lt "$(($2 * 5))" ]; do
        sleep 0.2
        i=$((i + 1))
    done
    ! alive "$1"
}

stop() {
    if ! pid=$(our_pid); then
        echo "dockerd: none started by this script is running"
        rm -f "$PIDFILE"
        return 0
    fi
    echo "dockerd: stopping pid $pid"
    kill -TERM "$pid"
    if ! gone_within "$pid" "$STOP_WAIT"; then
        echo "dockerd: pid $pid still running after ${STOP_WAIT}s; left alone" >&2
        return 1
    fi
    rm -f "$PIDFILE"
    echo "dockerd: stopped"
}

restart() {
    # Only an engine this script started: anyone else's engine is restarted the way it was started.
    if ! pid=$(our_pid); then
        if answers; then
            echo "dockerd: the engine on $SOCK was not started by this script; restart it the way it was" \
                "started (e.g. systemctl restart docker)" >&2
            return 1
        fi
        rm -f "$PIDFILE"
        start
        return
    fi
    echo "dockerd: restarting pid $pid"
    kill -TERM "$pid"
    if ! gone_within "$pid" "$STOP_WAIT"; then
        # A deadlocked engine may never finish shutting down: it is ours, so kill it.
        echo "dockerd: pid $pid did not stop within ${STOP_WAIT}s (deadlocked?); killing it"
        kill -KILL "$pid" 2>/dev/null || true
        if ! gone_within "$pid" 10; then
            echo "dockerd: pid $pid survives SIGKILL; see $LOG" >&2
            return 1
        fi
    fi
    rm -f "$PIDFILE"
    start
}

status() {
    if answers; then
        if pid=$(our_pid); then
            echo "dockerd: answering on $SOCK (started by this script, pid $pid)"
        else
            echo "dockerd: answering on $SOCK (not started by this script)"
        fi
        return 0
    fi
    echo "dockerd: no engine answers on $SOCK"
    return 1
}

case "${1:-}" in
start) start ;;
stop) stop ;;
restart) restart ;;
status) status ;;
*)
    echo "usage: $0 start|stop|restart|status" >&2
    exit 2
    ;;
esac
