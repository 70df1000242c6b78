#!/usr/bin/env bash
# Builds the platform and runs the whole network on loopback (SQLite, nothing
# to install): central, three provider gateways with different prices and
# distances, a callee behind them (`dial answer`), and a home provider's
# forwarder with a subscriber, her number and a forwarding rule. Then it
# places calls through the forwarder with `dial` and shows, for each, the
# candidates with prices and latencies and why the chosen one won, a
# failover, the CDRs and the charges. Keeps running (call the forwarder from
# a softphone) until Ctrl-C, which stops every process it started.
#
#   ops/run.sh                    # data in ./data/demo (recreated at each run)
#   PORT=9443 ops/run.sh          # another central HTTPS port (default 8443)
#   SIP_PORT=5080 ops/run.sh      # another forwarder SIP port (default 5060)
#   CALLS=0 ops/run.sh            # start everything, place no demo calls
#   PROFILE=dev ops/run.sh        # the debug build (default: profile "demo", optimised)
#
# Other ports: API_PORT (forwarder API, 8444), GATEWAY_PORT (first of three
# gateway SIP ports, 5071), CALLEE_PORT (5090), METRICS_PORT (first of three
# gateway metrics ports, 9102), MEDIA_PORT (first of the RTP ranges, 30000).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PORT="${PORT:-8443}"
SIP_PORT="${SIP_PORT:-5060}"
API_PORT="${API_PORT:-8444}"
GATEWAY_PORT="${GATEWAY_PORT:-5071}"
CALLEE_PORT="${CALLEE_PORT:-5090}"
METRICS_PORT="${METRICS_PORT:-9102}"
MEDIA_PORT="${MEDIA_PORT:-30000}"
CALLS="${CALLS:-1}"
DATA="$ROOT/data/demo"
C="https://127.0.0.1:$PORT"
PROFILE="${PROFILE:-demo}"
case "$PROFILE" in dev) BIN="$ROOT/target/debug" ;; *) BIN="$ROOT/target/$PROFILE" ;; esac

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }
die() { printf 'ops/run.sh: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "needs '$1' ($2)"; }
need cargo "the Rust toolchain"
need curl "apt-get install curl"
need openssl "apt-get install openssl"
need python3 "apt-get install python3"

# Name -> PID of everything started here; Ctrl-C (or any exit) stops them all.
declare -A PID=()
stop_all() {
    trap - INT TERM EXIT
    local pids=()
    for name in "${!PID[@]}"; do pids+=("${PID[$name]}"); done
    if [ ${#pids[@]} -gt 0 ]; then
        printf '\n==> stopping %s\n' "${!PID[*]}"
        kill -TERM "${pids[@]}" 2>/dev/null || true
        # Bounded wait; anything still there after 10 s is killed.
        for _ in $(seq 1 100); do
            local alive=0
            for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
            [ "$alive" = 0 ] && break
            sleep 0.1
        done
        kill -KILL "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# start NAME LOG CMD...: runs CMD in the background, stdout+stderr to LOG.
start() {
    local name=$1 log=$2
    shift 2
    "$@" >"$log" 2>&1 &
    PID[$name]=$!
}
stop() {
    local name=$1
    [ -n "${PID[$name]:-}" ] || return 0
    kill -TERM "${PID[$name]}" 2>/dev/null || true
    wait "${PID[$name]}" 2>/dev/null || true
    unset "PID[$name]"
}
# wait_for NAME LOG PATTERN: until LOG has PATTERN; fails if NAME exits.
wait_for() {
    local name=$1 log=$2 pattern=$3
    for _ in $(seq 1 300); do
        grep -q -- "$pattern" "$log" 2>/dev/null && return 0
        kill -0 "${PID[$name]}" 2>/dev/null || { cat "$log" >&2; die "$name exited"; }
        sleep 0.1
    done
    cat "$log" >&2
    die "$name did not start (no '$pattern' in $log)"
}
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

say "building central, provider-gateway, dial and forwarder (profile '$PROFILE'; the first build takes several minutes)"
build_start=$SECONDS
cargo build --profile "$PROFILE" -p central -p forwarder -p provider-sdk --bin central --bin forwarder \
    --bin provider-gateway --bin dial
build_done=$SECONDS
note "built in $((build_done - build_start)) s"
CENTRAL="$BIN/central" GATEWAY="$BIN/provider-gateway" DIAL="$BIN/dial" FWD="$BIN/forwarder"

say "initialising central in $DATA/central"
rm -rf "$DATA"
mkdir -p "$DATA"
"$CENTRAL" init --data "$DATA/central" --server-name 127.0.0.1 >"$DATA/central-init.log" 2>&1 \
    || { cat "$DATA/central-init.log" >&2; exit 1; }
D="$DATA/central"
OP=(--cacert "$D/ca.crt" --cert "$D/operator.crt" --key "$D/operator.key")

say "starting central on $C (log: $DATA/central.log)"
start central "$DATA/central.log" "$CENTRAL" serve --data "$D" --listen "127.0.0.1:$PORT"
for _ in $(seq 1 100); do
    curl -sf --cacert "$D/ca.crt" "$C/health" >/dev/null 2>&1 && break
    kill -0 "${PID[central]}" 2>/dev/null || { cat "$DATA/central.log" >&2; exit 1; }
    sleep 0.1
done
curl -sf --cacert "$D/ca.crt" "$C/health" >/dev/null || die "central did not come up"

# register NAME SIP_ADDR: the operator registers a participant; prints its enrollment token.
register() {
    curl -sSf "${OP[@]}" -H 'content-type: application/json' -d "{
        \"name\": \"$1\",
        \"sip_addresses\": [{\"address\": \"$2\", \"transport\": \"udp\"}],
        \"currency\": \"EUR\", \"contact\": \"noc@$1.example\"}" "$C/v1/providers" \
        | json "['enrollment_token']"
}

say "starting the callee behind the gateways: dial answer on udp 127.0.0.1:$CALLEE_PORT"
python3 - "$DATA/callee.wav" "$DATA/caller.wav" <<'PY'
# Two 8 kHz mono tones: what the callee plays (a falling two-tone) and what
# callers play (a rising one), so each recording shows the other side.
import math, struct, sys, wave
def tone(path, freqs, secs=1.5):
    with wave.open(path, "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
        n = int(secs * 8000)
        w.writeframes(b"".join(
            struct.pack("<h", int(6000 * math.sin(2 * math.pi * freqs[i * len(freqs) // n] * i / 8000)))
            for i in range(n)))
tone(sys.argv[1], [880, 660])
tone(sys.argv[2], [440, 550])
PY
start callee "$DATA/callee.log" "$DIAL" answer --listen "127.0.0.1:$CALLEE_PORT" \
    --play "$DATA/callee.wav" --record "$DATA/recordings"
wait_for callee "$DATA/callee.log" "listening on"

# Three providers: name, SIP delay each way (ms; stands for distance).
NAMES=(carrier-a carrier-b carrier-c)
DELAYS=(0 5 40)
gateway_config() { # NAME INDEX [extra env for the knobs is given at start]
    local name=$1 i=$2 dir="$DATA/$1"
    mkdir -p "$dir"
    cp "ops/demo/$name.csv" "$dir/rates.csv"
    cat >"$dir/gateway.toml" <<TOML
[central]
central_url = "$C"
root_certificate = "../central/ca.crt"
key = "$name.key"
certificate = "$name.crt"
name = "$name"

[sip]
listen = "127.0.0.1:$((GATEWAY_PORT + i))"
termination = "sip:{number}@127.0.0.1:$CALLEE_PORT"

[media]
first_port = $((MEDIA_PORT + 100 * (i + 1)))
last_port = $((MEDIA_PORT + 100 * (i + 1) + 99))

[rates]
deck = "rates.csv"
currency = "EUR"

[ledger]
spool = "spool"

[metrics]
listen = "127.0.0.1:$((METRICS_PORT + i))"

[demo]
sip_delay_ms = ${DELAYS[$i]}
TOML
}
# start_gateway NAME LOG [ENV=VALUE...]
start_gateway() {
    local name=$1 log="$DATA/$1/$2"
    shift 2
    start "$name" "$log" env "$@" "$GATEWAY" --config "$DATA/$name/gateway.toml"
    wait_for "$name" "$log" "listening on udp"
}
for i in 0 1 2; do
    name=${NAMES[$i]}
    say "$name: registered by central's operator, enrolls its own key, publishes ops/demo/$name.csv (SIP 127.0.0.1:$((GATEWAY_PORT + i)), ${DELAYS[$i]} ms away)"
    token=$(register "$name" "127.0.0.1:$((GATEWAY_PORT + i))")
    gateway_config "$name" "$i"
    start_gateway "$name" gateway.log PROVIDER_GATEWAY_ENROLLMENT_TOKEN="$token"
    note "$(sed 's/\x1b\[[0-9;]*m//g' "$DATA/$name/gateway.log" | grep -o 'rate deck published.*' | head -1)"
    note "health: $(curl -sf "http://127.0.0.1:$((METRICS_PORT + i))/health")"
done

show_routes() {
    printf '\n   %s\n' "$1"
    curl -sSf --cacert "$D/ca.crt" -G --data-urlencode "number=$1" "$C/v1/routes" | python3 ops/demo/show_routes.py
}
say "what central answers: who will carry a call, at what price (each provider's own longest matching prefix)"
show_routes "+44 20 7946 0000"
show_routes "+1 212 555 0100"

say "initialising the forwarder of home-telecom in $DATA/forwarder (SIP udp 127.0.0.1:$SIP_PORT, API https://127.0.0.1:$API_PORT)"
F="$DATA/forwarder"
"$FWD" init --data "$F" --server-name 127.0.0.1 --api-listen "127.0.0.1:$API_PORT" >"$DATA/forwarder-init.log" 2>&1 \
    || { cat "$DATA/forwarder-init.log" >&2; exit 1; }
cp "$D/ca.crt" "$F/central-ca.crt"
cat >>"$F/forwarder.toml" <<TOML

[sip]
listen = "127.0.0.1:$SIP_PORT"
[sip.ingress]
trusted = ["127.0.0.1"]

[central]
central_url = "$C"
name = "home-telecom"

[routing]
currency = "EUR"
probe_deadline_ms = 300
probe_interval_secs = 5

[media]
first_port = $MEDIA_PORT
last_port = $((MEDIA_PORT + 99))

[plans.standard]
kind = "markup"
currency = "EUR"
connect_fee = "0.05"
first_increment = 60
next_increment = 60
markup_percent = "20"

# Monthly statements, on the 1st at 02:00 in each subscriber's zone; without
# a [mail] table they are written to $F/outbox/ as .eml files.
[statements]
schedule = "0 0 2 1 * *"
[statements.destination_types]
"44" = "United Kingdom"
"1" = "North America"
TOML
export FORWARDER_DATA="$F"
fwd() { "$FWD" "$@"; }
ADA=$(fwd subscriber add --name "Ada Lovelace" --email ada@example.net --time-zone Europe/Berlin \
    --plan standard --currency EUR --daily-cap 5.00 --max-calls 2 | json "['id']")
fwd number add "$ADA" "+49 30 111 1111" >/dev/null
fwd rule set "$ADA" --name london --target "+442079460000:20" >/dev/null
fwd account payment "$ADA" 10.00 --key demo-topup-ada >/dev/null
BOB=$(fwd subscriber add --name "Bob Baker" --email bob@example.net --time-zone America/New_York \
    --plan standard --currency EUR | json "['id']")
fwd number add "$BOB" "+49 30 222 2222" >/dev/null
fwd rule set "$BOB" --name office --target "+12125550100" >/dev/null
fwd account payment "$BOB" 5.00 --key demo-topup-bob >/dev/null
note "subscriber $ADA Ada Lovelace: +49 30 111 1111 forwarded to +44 20 7946 0000 (London), prepaid 10.00 EUR"
note "plan standard: the provider's cost + 20 % + 0.05 EUR per call, billed by the started minute"
note "subscriber $BOB Bob Baker:    +49 30 222 2222 forwarded to +1 212 555 0100 (New York), prepaid 5.00 EUR"

token=$(register home-telecom "127.0.0.1:$SIP_PORT")
say "starting the forwarder (log: $F/serve.log); it enrolls with central at its first start"
start forwarder "$F/serve.log" env FORWARDER_ENROLLMENT_TOKEN="$token" RUST_LOG=info "$FWD" serve
wait_for forwarder "$F/serve.log" "SIP listening on udp"
wait_for forwarder "$F/serve.log" "forwarder credential ready"

# call NUMBER LABEL: a call from the "upstream carrier" (dial --via) to the forwarder.
n=0
call() {
    n=$((n + 1))
    note "dial --via 127.0.0.1:$SIP_PORT --from +15550100 --play caller.wav --duration 3 $1"
    "$DIAL" --via "127.0.0.1:$SIP_PORT" --from +15550100 --play "$DATA/caller.wav" \
        --record "$DATA/recordings/caller-$n.wav" --duration 3 "$1" | sed 's/^/   /' || true
}
# show_last SUBSCRIBER: the newest CDR of the subscriber, once closed.
show_last() {
    local id
    for _ in $(seq 1 50); do
        id=$(fwd cdr list "$1" --limit 1 | python3 -c '
import json, sys
v = json.load(sys.stdin)
cdrs = v.get("cdrs", v) if isinstance(v, dict) else v
print(cdrs[0]["id"] if cdrs and cdrs[0]["status"] not in ("open", "answered") else "")')
        [ -n "$id" ] && break
        sleep 0.2
    done
    [ -n "$id" ] || { note "(no closed CDR yet)"; return; }
    fwd cdr show "$id" | python3 ops/demo/show_call.py
}

if [ "$CALLS" != "0" ]; then
    say "call 1: to Ada's number; London is cheapest at carrier-c, but carrier-a is within 5 % and nearer"
    call "+49 30 111 1111"
    show_last "$ADA"

    say "call 2: to Bob's number; New York: carrier-b is cheapest by far"
    call "+49 30 222 2222"
    show_last "$BOB"

    say "call 3: carrier-a's network fails (restarted with demo.reject_calls = 503): failover"
    stop carrier-a
    start_gateway carrier-a gateway-failing.log PROVIDER_GATEWAY_DEMO_REJECT_CALLS=503
    call "+49 30 111 1111"
    show_last "$ADA"
    stop carrier-a
    start_gateway carrier-a gateway-restored.log
    note "carrier-a restarted without the fault"

    say "the CDRs (forwarder cdr list)"
    for sub in "$ADA" "$BOB"; do
        fwd cdr list "$sub" --limit 10 | python3 ops/demo/report.py cdrs
    done

    say "charges and balances (forwarder account show)"
    for sub in "$ADA" "$BOB"; do
        fwd account show "$sub" | python3 ops/demo/report.py account "$sub"
    done

    say "what the callee heard and recorded ($DATA/recordings)"
    sed 's/^/   /' "$DATA/callee.log"

    say "carrier-c's /metrics (http://127.0.0.1:$((METRICS_PORT + 2))/metrics, non-zero series)"
    curl -sf "http://127.0.0.1:$((METRICS_PORT + 2))/metrics" \
        | grep -E '^provider_gateway_[a-z_]+(\{[^}]*\})? [1-9]' | sed 's/^/   /' || true

    say "what central settles between home-telecom (the payer) and each provider"
    sleep 1
    curl -sSf "${OP[@]}" -H 'accept: text/csv' -G \
        --data-urlencode "from=$(date -u -d '1 day ago' +%Y-%m-%dT%H:%M:%SZ)" \
        --data-urlencode "to=$(date -u -d 'tomorrow' +%Y-%m-%dT%H:%M:%SZ)" \
        "$C/v1/settlements" | python3 ops/demo/report.py settlements

    say "a billing statement for Ada"
    # This month's period ends on the 1st of next month at 02:00 in Ada's
    # zone: the run is made as if it were just after that.
    AFTER=$(date -u -d "$(date -u +%Y-%m-01) +1 month +3 hours" +%Y-%m-%dT%H:%M:%SZ)
    note "the monthly statement run as it will happen at $AFTER (forwarder statements run --now)"
    fwd statements run --now "$AFTER" --subscriber "$ADA" >"$DATA/statement-run.json"
    SID=$(fwd statements list | python3 -c '
import json, sys
v = json.load(sys.stdin)
rows = v.get("statements", v) if isinstance(v, dict) else v
ada = [r for r in rows if str(r.get("subscriber_id")) == sys.argv[1]]
print(ada[-1]["id"] if ada else "")' "$ADA")
    if [[ -n "$SID" ]]; then
        fwd statements show "$SID" --format text | sed 's/^/   /'
        note "the e-mail as sent (HTML, text and a CSV of the calls): $(ls "$F"/outbox/statement."$SID".*.eml 2>/dev/null | head -n 1)"
    else
        note "no statement was created: see $DATA/statement-run.json"
    fi
fi

say "the network is running (build $((build_done - build_start)) s, everything else $((SECONDS - build_done)) s)"
cat <<MSG
   Call from a softphone (SIP over UDP, no registration, from 127.0.0.1):
       sip:+49301111111@127.0.0.1:$SIP_PORT    Ada, forwarded to London  (the callee answers and plays a tone)
       sip:+49302222222@127.0.0.1:$SIP_PORT    Bob, forwarded to New York
   CDRs:      FORWARDER_DATA=$F $FWD cdr list $ADA
   balance:   FORWARDER_DATA=$F $FWD account show $ADA
   central:   curl --cacert $D/ca.crt '$C/v1/routes?number=%2B442079460000'
   metrics:   curl --cacert $D/ca.crt $C/metrics;  curl http://127.0.0.1:$METRICS_PORT/metrics (carrier-a)
   forwarder: curl --cacert $F/ca.crt https://127.0.0.1:$API_PORT/metrics
   logs:      $DATA/*.log, $DATA/carrier-*/gateway.log, $F/serve.log
   Ctrl-C stops everything.
MSG
while true; do
    for name in "${!PID[@]}"; do
        kill -0 "${PID[$name]}" 2>/dev/null && continue
        # Gone: after a terminal's Ctrl-C every process stops by itself (status 0).
        status=0
        wait "${PID[$name]}" 2>/dev/null || status=$?
        unset "PID[$name]"
        [ "$status" = 0 ] && { printf '\n==> %s stopped\n' "$name"; exit 0; }
        die "$name stopped unexpectedly with status $status (see its log in $DATA)"
    done
    sleep 1 &
    wait $! || true
done
