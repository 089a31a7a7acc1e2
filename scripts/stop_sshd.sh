#!/usr/bin/env bash
# Stop the sshd started by scripts/start_sshd.sh DIR. Idempotent: succeeds when it is
# already gone. Only signals the pid in DIR/sshd.pid (after checking it is that sshd)
# and that process's descendants (open SFTP sessions).
set -euo pipefail

[[ $# -eq 1 && -n $1 ]] || {
    echo "usage: $0 DIR" >&2
    exit 2
}
[[ -d $1 ]] || exit 0
DIR=$(cd "$1" && pwd -P)
PID_FILE=$DIR/sshd.pid
[[ -s $PID_FILE ]] || exit 0
pid=$(tr -dc '0-9' <"$PID_FILE")
[[ -n $pid ]] || {
    rm -f "$PID_FILE"
    exit 0
}

# Make sure the pid was not recycled by an unrelated process.
if [[ ! -r /proc/$pid/cmdline ]] || ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "-f $DIR/sshd_config"; then
    rm -f "$PID_FILE"
    exit 0
fi

descendants() { # pids of all descendants of $1, via /proc (no procps needed)
    local parent=$1 stat rest child
    for stat in /proc/[0-9]*/stat; do
        rest=$(cat "$stat" 2>/dev/null) || continue
        rest=${rest##*) }            # drop "pid (comm) "
        read -r _ ppid _ <<<"$rest" # state ppid ...
        if [[ $ppid == "$parent" ]]; then
            child=${stat#/proc/}
            child=${child%/stat}
            echo "$child"
            descendants "$child"
        fi
    done
}

alive() { # running and not a zombie (an orphaned zombie may never be reaped in a container)
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

pids=("$pid")
mapfile -t -O 1 pids < <(descendants "$pid")
kill -TERM "${pids[@]}" 2>/dev/null || true
for _ in $(seq 1 50); do # at most ~5 s
    still=()
    for p in "${pids[@]}"; do alive "$p" && still+=("$p"); done
    ((${#still[@]} == 0)) && break
    sleep 0.1
done
if ((${#still[@]} > 0)); then
    kill -KILL "${still[@]}" 2>/dev/null || true
    for _ in $(seq 1 20); do
        alive "$pid" || break
        sleep 0.1
    done
fi
rm -f "$PID_FILE"
