#!/usr/bin/env bash
# HTTPS route queries per second against a real `central serve`, with
# keep-alive, from wrk on loopback (wrk shares the machine's cores).
#
#   ops/bench/central-routes.sh
#
# Knobs (environment): PROVIDERS (200), PREFIXES per provider (1000),
# DURATION seconds (20), CONNS (64), THREADS (1). Everything is bounded: the
# server is stopped and its data deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
PROVIDERS="${PROVIDERS:-200}"
PREFIXES="${PREFIXES:-1000}"
DURATION="${DURATION:-20}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-1}"
command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl missing: apt-get install curl" >&2; exit 1; }

cargo build --release -p central --bin central >&2
BIN="$PWD/target/release/central"
WORK="$(mktemp -d)"
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN" init --data "$WORK/data" --server-name 127.0.0.1 >/dev/null 2>&1
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
RUST_LOG=warn "$BIN" serve --data "$WORK/data" --listen "127.0.0.1:$PORT" >"$WORK/serve.out" 2>"$WORK/serve.log" &
PID=$!
BASE="https://127.0.0.1:$PORT"
OP=(--silent --show-error --fail-with-body --cacert "$WORK/data/ca.crt" --cert "$WORK/data/operator.crt" --key "$WORK/data/operator.key")
for _ in $(seq 1 100); do curl "${OP[@]}" "$BASE/health" >/dev/null 2>&1 && break; sleep 0.1; done

echo "loading $PROVIDERS providers x $PREFIXES prefixes" >&2
for p in $(seq 1 "$PROVIDERS"); do
    id=$(curl "${OP[@]}" -H 'content-type: application/json' \
        -d "{\"name\":\"p$p\",\"sip_addresses\":[{\"address\":\"127.0.0.1:$((5060 + p))\",\"transport\":\"udp\"}],\"currency\":\"EUR\",\"contact\":\"bench\"}" \
        "$BASE/v1/providers" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    # Country codes, then area codes: every provider covers +49 30 and
    # others, with its own prices.
    awk -v n="$PREFIXES" -v seed="$p" 'BEGIN {
        srand(seed); split("1 7 20 27 30 31 32 33 34 39 41 43 44 45 46 47 48 49 61 81 86 90 91", cc, " ");
        count = 0
        for (i = 1; i in cc && count < n; i++) { printf "%s,0.%04d,0,60,60\n", cc[i], 100 + int(rand() * 9000); count++ }
        for (d = 0; count < n; d++) { c = cc[(d % length(cc)) + 1]; printf "%s%03d,0.%04d,0,60,60\n", c, int(d / length(cc)), 10 + int(rand() * 9000); count++ }
    }' >"$WORK/deck.csv"
    curl "${OP[@]}" -X PUT -H 'content-type: text/csv' --data-binary "@$WORK/deck.csv" "$BASE/v1/providers/$id/rates" >/dev/null
done
want=$((PROVIDERS * PREFIXES))
for _ in $(seq 1 600); do
    have=$(curl "${OP[@]}" "$BASE/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["index"]["entries"])')
    [ "$have" = "$want" ] && break
    sleep 0.1
done
echo "index entries: $have (expected $want)" >&2
echo "sample answer:" >&2
curl "${OP[@]}" "$BASE/v1/routes?number=%2B4930123456&limit=10" | head -c 400 >&2; echo >&2

cat >"$WORK/routes.lua" <<'LUA'
local numbers = {"%2B4930123456", "%2B442071234567", "%2B33142685300", "%2B12125551234", "%2B8613800138000", "%2B4989123456"}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/v1/routes?number=" .. numbers[(i % #numbers) + 1] .. "&limit=10")
end
LUA
echo "wrk -t$THREADS -c$CONNS -d${DURATION}s (keep-alive, HTTPS, limit=10)" >&2
wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/routes.lua" "$BASE/"
