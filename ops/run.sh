#!/usr/bin/env bash
# Builds the platform and runs it on loopback with the embedded default
# (SQLite, nothing to install): central with three providers that publish
# different prices, then route queries showing who would carry each call and
# why. Keeps running until Ctrl-C, which stops every process it started.
#
#   ops/run.sh            # data in ./data/demo (recreated at each run)
#   PORT=9443 ops/run.sh  # another HTTPS port (default 8443)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PORT="${PORT:-8443}"
DATA="$ROOT/data/demo"
C="https://127.0.0.1:$PORT"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "ops/run.sh needs '$1' ($2)" >&2; exit 1; }; }
need cargo "the Rust toolchain"
need curl "apt-get install curl"
need openssl "apt-get install openssl"
need python3 "apt-get install python3"

say "building central (release; the first build takes a few minutes)"
cargo build --release -p central
CENTRAL="$ROOT/target/release/central"

say "initialising central in $DATA"
rm -rf "$DATA"
mkdir -p "$DATA"
"$CENTRAL" init --data "$DATA/central" --server-name 127.0.0.1 >"$DATA/init.log" 2>&1 \
    || { cat "$DATA/init.log" >&2; exit 1; }
D="$DATA/central"

PIDS=()
stop() {
    trap - INT TERM EXIT
    if [ ${#PIDS[@]} -gt 0 ]; then
        printf '\n==> stopping (%s)\n' "${PIDS[*]}"
        kill -TERM "${PIDS[@]}" 2>/dev/null || true
        wait "${PIDS[@]}" 2>/dev/null || true
    fi
}
trap stop EXIT
trap 'exit 130' INT TERM

say "starting central on $C (log: $DATA/central.log)"
"$CENTRAL" serve --data "$D" --listen "127.0.0.1:$PORT" >"$DATA/central.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
    curl -sf --cacert "$D/ca.crt" "$C/health" >/dev/null 2>&1 && break
    kill -0 "${PIDS[0]}" 2>/dev/null || { cat "$DATA/central.log" >&2; exit 1; }
    sleep 0.1
done
curl -sf --cacert "$D/ca.crt" "$C/health" >/dev/null || { echo "central did not come up" >&2; exit 1; }

OP=(--cacert "$D/ca.crt" --cert "$D/operator.crt" --key "$D/operator.key")
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

port=5070
for name in carrier-a carrier-b carrier-c; do
    say "registering $name, enrolling its key and publishing its rate deck"
    P="$DATA/$name"; mkdir -p "$P"
    reg=$(curl -sSf "${OP[@]}" -H 'content-type: application/json' -d "{
        \"name\": \"$name\",
        \"sip_addresses\": [{\"address\": \"127.0.0.1:$port\", \"transport\": \"udp\"}],
        \"currency\": \"EUR\", \"contact\": \"noc@$name.example\"}" "$C/v1/providers")
    id=$(echo "$reg" | json "['id']")
    token=$(echo "$reg" | json "['enrollment_token']")
    # The provider makes its own key and CSR; central certifies it.
    openssl genpkey -algorithm ed25519 -out "$P/key.pem" 2>/dev/null
    chmod 600 "$P/key.pem"
    openssl req -new -key "$P/key.pem" -subj "/CN=$name" -out "$P/csr.pem"
    python3 -c 'import json,sys; print(json.dumps({"csr": open(sys.argv[1]).read(), "enrollment_token": sys.argv[2]}))' \
        "$P/csr.pem" "$token" \
        | curl -sSf --cacert "$D/ca.crt" -H 'content-type: application/json' -d @- "$C/v1/certificates" \
        | json "['certificate']" >"$P/cert.pem"
    curl -sSf --cacert "$D/ca.crt" --cert "$P/cert.pem" --key "$P/key.pem" -X PUT \
        -H 'content-type: text/csv' --data-binary "@ops/demo/$name.csv" \
        "$C/v1/providers/$id/rates" | python3 -c 'import json,sys; v=json.load(sys.stdin); print("   rate version", v.get("version", v))'
    port=$((port + 1))
done

show_routes() {
    local number=$1 extra=${2:-}
    printf '\n   %s%s\n' "$number" "${extra:+  ($extra)}"
    curl -sSf --cacert "$D/ca.crt" -G --data-urlencode "number=$number" ${extra:+--data "$extra"} "$C/v1/routes" | python3 ops/demo/show_routes.py
}

say "who will carry a call, at what price (each provider's own longest matching prefix, cheapest first)"
show_routes "+49 30 1234567"
show_routes "+49 171 2345678"
show_routes "+44 20 7946 0000"
show_routes "+1 212 555 0100" "max_rate=0.0100"
show_routes "+81 3 1234 5678"

say "central is running"
cat <<MSG
   API:      $C/v1/   (root certificate: $D/ca.crt)
   try:      curl --cacert $D/ca.crt '$C/v1/routes?number=%2B4930123456'
   health:   curl --cacert $D/ca.crt $C/health
   metrics:  curl --cacert $D/ca.crt $C/metrics
   operator: curl --cacert $D/ca.crt --cert $D/operator.crt --key $D/operator.key $C/v1/providers
   Ctrl-C stops it.
MSG
wait "${PIDS[0]}"
