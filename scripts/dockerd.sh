#!/bin/sh
# Start, stop or inspect a Docker engine for hubwizard's lab and tests.
#
# Why: machines of this project's kind ship only a docker *client*; Debian's docker.io gives
# the engine but nothing starts it (no systemd as PID 1 in many CI containers). This script
# starts dockerd in the background only when none answers on /var/run/docker.sock, and `stop`
# kills only the process it started itself (recorded in its own pidfile), never anything else.
set -eu

SOCK=/var/run/docker.sock
LOG=/var/log/hubwizard-dockerd.log
PIDFILE=/run/hubwizard-dockerd.pid
WAIT=${HUBWIZARD_DOCKERD_WAIT:-60}

answers() {
    # The engine answers when its API replies to a ping on the socket.
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --max-time 3 --unix-socket "$SOCK" http://localhost/_ping >/dev/null 2>&1
    else
        docker -H "unix://$SOCK" version >/dev/null 2>&1
    fi
}

our_pid() {
    # Print the PID we recorded if that process still runs dockerd; nothing otherwise.
    [ -f "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE")
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
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

stop() {
    if ! pid=$(our_pid); then
        echo "dockerd: none started by this script is running"
        rm -f "$PIDFILE"
        return 0
    fi
    echo "dockerd: stopping pid $pid"
    kill -TERM "$pid"
    i=0
    while [ -d "/proc/$pid" ] && [ "$i" -lt 150 ]; do
        sleep 0.2
        i=$((i + 1))
    done
    if [ -d "/proc/$pid" ]; then
        echo "dockerd: pid $pid still running after 30s; left alone" >&2
        return 1
    fi
    rm -f "$PIDFILE"
    echo "dockerd: stopped"
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
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
