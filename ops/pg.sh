#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the test suite.
#   ops/pg.sh start   -> starts it (if not running) and prints the URL to export as TEST_POSTGRES_URL
#   ops/pg.sh stop    -> stops it and deletes its data
# Uses the Debian PostgreSQL server packages (postgresql-15 or newer).
set -euo pipefail
PORT="${PG_PORT:-54329}"
DIR="${PG_DIR:-/tmp/platform-test-pg}"

bindir() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"; return
    fi
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$d" ] || { echo "pg.sh: no PostgreSQL server found; install postgresql (apt-get install postgresql)" >&2; exit 1; }
    echo "$d"
}

# initdb refuses to run as root: run the server as the 'postgres' user then.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home "$DIR" postgres
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

case "${1:-}" in
start)
    BIN=$(bindir)
    if [ ! -f "$DIR/data/PG_VERSION" ]; then
        mkdir -p "$DIR"
        [ "$(id -u)" = 0 ] && { id postgres >/dev/null 2>&1 || useradd --system --home "$DIR" postgres; chown postgres "$DIR"; }
        as_pg "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 >"$DIR/initdb.log" 2>&1 \
            || { cat "$DIR/initdb.log" >&2; exit 1; }
    fi
    if ! as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
        as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
            -o "-h 127.0.0.1 -p $PORT -k $DIR -c fsync=off -c synchronous_commit=off -c max_connections=300" start >/dev/null \
            || { cat "$DIR/server.log" >&2; exit 1; }
    fi
    echo "postgres://postgres@127.0.0.1:$PORT/postgres"
    ;;
stop)
    BIN=$(bindir)
    if [ -f "$DIR/data/PG_VERSION" ]; then
        as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
    ;;
*)
    echo "usage: $0 start|stop" >&2; exit 2;;
esac
