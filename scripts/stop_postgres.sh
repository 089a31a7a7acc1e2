#!/usr/bin/env bash
# Stop the PostgreSQL started by scripts/start_postgres.sh DIR (pg_ctl stop, fast mode: open
# sessions are ended). Idempotent: succeeds when it is already gone.
set -euo pipefail

[[ $# -eq 1 && -n $1 ]] || {
    echo "usage: $0 DIR" >&2
    exit 2
}
[[ -d $1/data ]] || exit 0
DIR=$(cd "$1" && pwd -P)
[[ -s $DIR/data/postmaster.pid ]] || exit 0
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
as_owner=()
[[ $(id -u) -eq 0 ]] && as_owner=(runuser -u postgres --)
"${as_owner[@]}" "$BIN/pg_ctl" stop --pgdata="$DIR/data" --mode=fast --wait --timeout=30 >/dev/null
