#!/usr/bin/env bash
# Start a throwaway PostgreSQL (Debian's packages) for the test suite, self-contained in DIR.
#
#   eval "$(scripts/start_postgres.sh DIR)"             # for tests: no fsync
#   eval "$(scripts/start_postgres.sh DIR --durable)"   # for benchmarks: fsync as shipped
#
# initdb into DIR/data, then pg_ctl start: the server listens on 127.0.0.1 only, on a free
# port, with no Unix socket outside DIR, and accepts one superuser (`rostering`) by password
# (scram-sha-256), logging every connection. stdout carries only `export
# ROSTERING_TEST_POSTGRES_*=...` lines (the DSN the tests connect with, the server's log);
# diagnostics go to stderr. Stop it with scripts/stop_postgres.sh DIR.
# PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user that
# Debian's package creates.
set -euo pipefail

die() {
    echo "start_postgres: error: $*" >&2
    exit 1
}

[[ ($# -eq 1 || ($# -eq 2 && $2 == --durable)) && -n $1 ]] || die "usage: $0 DIR [--durable]"
DURABLE=${2:-}
command -v python3 >/dev/null || die "python3 not found"

# Debian installs each major version under /usr/lib/postgresql/<major>/bin; take the newest.
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[[ -n $BIN && -x $BIN/initdb && -x $BIN/pg_ctl ]] ||
    die "PostgreSQL's server is not installed (apt-get install postgresql)"

mkdir -p "$1"
DIR=$(cd "$1" && pwd -P)
DATA=$DIR/data
LOG=$DIR/postgres.log
[[ -e $DATA ]] && die "$DATA exists; stop that server with scripts/stop_postgres.sh $DIR and remove it"

as_owner=()
if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root and there is no 'postgres' user to own the cluster"
    chown postgres: "$DIR"
    as_owner=(runuser -u postgres --)
fi

PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
PWFILE=$DIR/pwfile
(umask 077 && printf '%s\n' "$PASSWORD" >"$PWFILE")
[[ ${#as_owner[@]} -gt 0 ]] && chown postgres: "$PWFILE"
"${as_owner[@]}" "$BIN/initdb" --pgdata="$DATA" --username=rostering --pwfile="$PWFILE" \
    --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 --no-instructions >"$DIR/initdb.log" 2>&1 ||
    die "initdb failed: $(cat "$DIR/initdb.log")"
rm -f "$PWFILE"

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# A port picked via bind(0) can be taken before postgres binds it; retry with a new one.
started=""
for attempt in 1 2 3; do
    port=$(free_port)
    options="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$DIR"
    options+=" -c max_connections=200"
    # fsync off: a test cluster need not survive a power cut, and the tests write a lot.
    [[ -n $DURABLE ]] || options+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    # Each connection is logged, so tests can count how many the pipeline opens.
    options+=" -c log_connections=on"
    # Extra server settings for a benchmark (e.g. pg_stat_statements), space-separated `-c` options.
    options+="${ROSTERING_POSTGRES_OPTIONS:+ $ROSTERING_POSTGRES_OPTIONS}"
    if "${as_owner[@]}" "$BIN/pg_ctl" start --pgdata="$DATA" --log="$LOG" --wait --timeout=30 \
        --options="$options" >/dev/null 2>&1; then
        started=1
        break
    fi
    grep -qiE 'could not bind|address already in use' "$LOG" 2>/dev/null ||
        die "postgres did not start; log: $(tail -n 20 "$LOG" 2>/dev/null)"
    echo "start_postgres: warning: port $port was taken (attempt $attempt); retrying" >&2
done
[[ -n $started ]] || die "could not start postgres on a free port; log: $(tail -n 20 "$LOG")"

emit() { printf 'export %s=%q\n' "$1" "$2"; }
emit ROSTERING_TEST_POSTGRES_DSN "postgresql://rostering:$PASSWORD@127.0.0.1:$port/postgres"
emit ROSTERING_TEST_POSTGRES_DATA "$DATA"
emit ROSTERING_TEST_POSTGRES_LOG "$LOG"
