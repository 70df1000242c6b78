#!/usr/bin/env bash
# The forwarder under load with SIPp on both sides (loopback, UDP), and in the
# same run Kamailio (stateful proxy: tm + rr, the route from dispatcher) to
# the same callee as the reference.
#
#   ops/bench/forwarder-calls.sh [RATE] [SECONDS]          calls per second, PDD
#   MODE=memory ops/bench/forwarder-calls.sh [CONCURRENT]  memory per active call
#
# Set-up (release builds): central initialised and serving; the SIPp callee
# registered at central as a provider (its key enrolled with a CSR, a one-line
# rate deck published); the forwarder initialised with a subscriber whose
# number forwards to +441632960001, enrolled with central as the payer. Every
# call goes: SIPp caller → forwarder (authorization, rule, route cache, ticket,
# media anchored in its relay, CDR and charge written) → SIPp callee. On-demand
# OPTIONS probes are off (probe_deadline_ms = 0): SIPp's callee scenario does
# not answer OPTIONS, and the post-dial delay is measured without probes.
#
# DB=postgres uses the PostgreSQL at $TEST_POSTGRES_URL (a fresh database).
# SKIP_KAMAILIO=1 measures the forwarder alone, SKIP_FORWARDER=1 Kamailio alone;
# KAMAILIO_RATE offers Kamailio another rate than the forwarder in the same run.
# KAMAILIO_CHILDREN (default 1, as in ops/bench/sip-b2bua.sh: with more workers
# Kamailio may pass a 180 on after the 200, which SIPp counts as a failed call)
# is Kamailio's number of UDP workers. Everything is bounded by SIPp's own
# limits and timeouts.
set -euo pipefail
MODE=${MODE:-rate}
RATE=${1:-200}
SECONDS_RUN=${2:-60}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SIPP_DIR="$ROOT/ops/sipp"
for c in sipp curl openssl python3; do
  command -v "$c" >/dev/null || { echo "$c missing (apt-get install sip-tester curl openssl python3)" >&2; exit 2; }
done
WORK=$(mktemp -d)
UAS_PORT=${UAS_PORT:-16070}
SUT_PORT=${SUT_PORT:-16060}
UAC_PORT=${UAC_PORT:-16080}
CENTRAL_PORT=${CENTRAL_PORT:-16443}
SUBSCRIBERS=${SUBSCRIBERS:-50}
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || echo "warning: cannot raise the open-file limit (ulimit -n)" >&2

echo "==> building central and the forwarder (release)"
(cd "$ROOT" && cargo build --release -q -p central -p forwarder)
CENTRAL="$ROOT/target/release/central"
FWD="$ROOT/target/release/forwarder"
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

echo "==> central"
D="$WORK/central"
"$CENTRAL" init --data "$D" >/dev/null
"$CENTRAL" serve --data "$D" --listen "127.0.0.1:$CENTRAL_PORT" >"$WORK/central.log" 2>&1 &
PIDS+=($!)
C="https://127.0.0.1:$CENTRAL_PORT"
for _ in $(seq 1 100); do curl -sf --cacert "$D/ca.crt" "$C/health" >/dev/null 2>&1 && break; sleep 0.1; done
OP=(--cacert "$D/ca.crt" --cert "$D/operator.crt" --key "$D/operator.key")
register() { # name sip-port -> "id token"
  curl -sSf "${OP[@]}" -H 'content-type: application/json' -d "{
      \"name\": \"$1\", \"sip_addresses\": [{\"address\": \"127.0.0.1:$2\", \"transport\": \"udp\"}],
      \"currency\": \"EUR\", \"contact\": \"noc@$1.example\"}" "$C/v1/providers" \
    | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["id"], v["enrollment_token"])'
}
read -r CALLEE_ID CALLEE_TOKEN < <(register callee-net "$UAS_PORT")
P="$WORK/callee-net"; mkdir -p "$P"
openssl genpkey -algorithm ed25519 -out "$P/key.pem" 2>/dev/null
openssl req -new -key "$P/key.pem" -subj "/CN=callee-net" -out "$P/csr.pem"
python3 -c 'import json,sys; print(json.dumps({"csr": open(sys.argv[1]).read(), "enrollment_token": sys.argv[2]}))' \
    "$P/csr.pem" "$CALLEE_TOKEN" \
  | curl -sSf --cacert "$D/ca.crt" -H 'content-type: application/json' -d @- "$C/v1/certificates" \
  | json "['certificate']" >"$P/cert.pem"
printf '44,0.0100,0,1,1,,UK\n' >"$P/deck.csv"
curl -sSf --cacert "$D/ca.crt" --cert "$P/cert.pem" --key "$P/key.pem" -X PUT \
    -H 'content-type: text/csv' --data-binary "@$P/deck.csv" "$C/v1/providers/$CALLEE_ID/rates" >/dev/null
read -r HOME_ID HOME_TOKEN < <(register home-telecom 5060)
# Wait until central's index answers with the callee's route.
for _ in $(seq 1 100); do
  curl -sf --cacert "$D/ca.crt" "$C/v1/routes?number=%2B441632960001" | grep -q callee-net && break
  sleep 0.1
done

echo "==> forwarder (database: ${DB:-sqlite})"
F="$WORK/forwarder"
INIT=(init --data "$F" --api-listen 127.0.0.1:0)
if [[ "${DB:-sqlite}" == postgres ]]; then
  [[ -n "${TEST_POSTGRES_URL:-}" ]] || { echo "DB=postgres needs TEST_POSTGRES_URL (ops/pg.sh start)" >&2; exit 2; }
  name="bench_fwd_$$"
  psql "$TEST_POSTGRES_URL" -qc "CREATE DATABASE $name" >/dev/null
  INIT+=(--database-url "${TEST_POSTGRES_URL%/*}/$name")
fi
"$FWD" "${INIT[@]}" >/dev/null
cat >>"$F/forwarder.toml" <<TOML

[sip]
listen = "127.0.0.1:$SUT_PORT"
setup_timeout_ms = 5000
[sip.ingress]
trusted = ["127.0.0.1"]
rate_per_sec = 1000000
burst = 1000000

[central]
central_url = "$C"
root_certificate = "$D/ca.crt"
key = "home.key"
certificate = "home.crt"
name = "home-telecom"

[routing]
currency = "EUR"
cache_ttl_secs = 3600
probe_deadline_ms = 0
probe_interval_secs = 0

[media]
first_port = 20000
last_port = 59999
timeout_secs = 120

# A connect fee: SIPp's calls last one billable second, which at the
# callee's rate rounds to nothing, and every call is to be charged (a
# ledger entry and the balance moved).
[plans.standard]
kind = "markup"
currency = "EUR"
connect_fee = "0.01"
first_increment = 1
next_increment = 1
markup_percent = "20"
TOML
export FORWARDER_DATA="$F"
# SUBSCRIBERS subscribers, one number each; the load calls them in turn
# (one subscriber taking hundreds of new calls a second would serialise on
# its own account, which no real subscriber does).
echo "==> $SUBSCRIBERS subscribers"
echo SEQUENTIAL >"$WORK/numbers.csv"
for i in $(seq 1 "$SUBSCRIBERS"); do
  n=$(printf '+4930111%05d' "$i")
  id=$("$FWD" subscriber add --name "Bench $i" --email "b$i@example.net" --time-zone Europe/Berlin \
      --plan standard --currency EUR | json "['id']")
  "$FWD" number add "$id" "$n" >/dev/null
  "$FWD" rule set "$id" --target "+441632960001:30" >/dev/null
  "$FWD" account payment "$id" 1000000 --key "bench-$i" >/dev/null
  echo "$n" >>"$WORK/numbers.csv"
  if [[ $i == 1 ]]; then NUMBER=$n; fi
done
FORWARDER_ENROLLMENT_TOKEN="$HOME_TOKEN" RUST_LOG=warn "$FWD" serve >"$WORK/forwarder.out" 2>"$WORK/forwarder.log" &
FPID=$!
PIDS+=("$FPID")
for _ in $(seq 1 100); do grep -q "SIP listening" "$WORK/forwarder.out" 2>/dev/null && break; sleep 0.1; done
sleep 1

# SIPp runs without retransmissions (-nr), so a datagram dropped anywhere
# leaves a call hanging until the timeout: its sockets get 4 MiB buffers
# (its default is 64 KiB, which a burst of answers overflows), and each run
# reports the machine's UDP receive-buffer drops (RcvbufErrors), so a run
# that lost datagrams says so.
SIPP_BUF=(-buff_size 4194304)
udp_drops() { awk '/^Udp:/ && $2 ~ /^[0-9]+$/ {print $6; exit}' /proc/net/snmp; }

# Runs one load against 127.0.0.1:$SUT_PORT; prints the figure line.
run_load() {
  local label=$1 RATE=${2:-$RATE}
  local calls=$((RATE * SECONDS_RUN))
  local drops0
  drops0=$(udp_drops)
  sipp -sf "$SIPP_DIR/uas_answer.xml" -i 127.0.0.1 -p "$UAS_PORT" -nr -m "$calls" "${SIPP_BUF[@]}" \
       -timeout "$((SECONDS_RUN + 60))s" </dev/null >"$WORK/$label-uas.out" 2>&1 &
  local uas=$!
  PIDS+=("$uas")
  sleep 1
  local start end rc
  start=$(date +%s.%N)
  set +e
  (cd "$WORK" && sipp -sf "$SIPP_DIR/uac_call_many.xml" -inf "$WORK/numbers.csv" \
       -i 127.0.0.1 -p "$UAC_PORT" \
       -r "$RATE" -m "$calls" -l "$((RATE * 4))" -nr "${SIPP_BUF[@]}" \
       -timeout "$((SECONDS_RUN + 60))s" -timeout_error \
       -trace_stat -trace_err -stf "$WORK/$label-stat.csv" -fd 1 \
       "127.0.0.1:$SUT_PORT" </dev/null >/dev/null 2>&1)
  rc=$?
  set -e
  end=$(date +%s.%N)
  kill -KILL "$uas" 2>/dev/null || true
  wait "$uas" 2>/dev/null || true
  local ok failed wall
  ok=$(awk -F';' 'NR==1{for(i=1;i<=NF;i++) if($i=="SuccessfulCall(C)") c=i} NR>1{v=$c} END{print v}' "$WORK/$label-stat.csv")
  failed=$(awk -F';' 'NR==1{for(i=1;i<=NF;i++) if($i=="FailedCall(C)") c=i} NR>1{v=$c} END{print v}' "$WORK/$label-stat.csv")
  wall=$(echo "$end - $start" | bc)
  echo "$label: target ${RATE} calls/s for ${SECONDS_RUN}s ($calls calls): successful=$ok failed=$failed sipp_exit=$rc wall=${wall}s achieved=$(echo "scale=1; $ok / $wall" | bc) calls/s"
  echo "$label: UDP datagrams dropped at a full receive buffer during the run: $(( $(udp_drops) - drops0 ))"
  [[ "$failed" == "0" && "$rc" == "0" ]] || echo "$label: FAILED CALLS: not a valid figure"
}

if [[ "$MODE" == memory ]]; then
  CONC=${1:-5000}
  HOLD_MS=$(( (CONC / 250 + 20) * 1000 ))
  rss() { awk '/VmRSS/{print $2}' "/proc/$FPID/status"; }
  sipp -sf "$SIPP_DIR/uas_answer.xml" -i 127.0.0.1 -p "$UAS_PORT" -nr -m "$CONC" "${SIPP_BUF[@]}" \
       -timeout "$((HOLD_MS / 1000 + 60))s" </dev/null >"$WORK/mem-uas.out" 2>&1 &
  PIDS+=($!)
  sleep 1
  idle=$(rss)
  (cd "$WORK" && exec sipp -sf "$SIPP_DIR/uac_call_hold.xml" -i 127.0.0.1 -p "$UAC_PORT" -s "$NUMBER" \
       -r 250 -m "$CONC" -l "$CONC" -d "$HOLD_MS" -nr "${SIPP_BUF[@]}" -timeout "$((HOLD_MS / 1000 + 60))s" \
       -trace_stat -stf "$WORK/mem-stat.csv" -fd 1 "127.0.0.1:$SUT_PORT" </dev/null >/dev/null 2>&1) &
  PIDS+=($!)
  # All calls are up once the ramp (CONC/250 s) is over; take the peak then.
  sleep $((CONC / 250 + 8))
  up=$(awk -F';' 'NR==1{for(i=1;i<=NF;i++) if($i=="CurrentCall") c=i} NR>1{v=$c} END{print v}' "$WORK/mem-stat.csv")
  busy=$(rss)
  echo "forwarder RSS idle ${idle} KiB, with ${up} calls up ${busy} KiB: $(( (busy - idle) / (up > 0 ? up : 1) )) KiB per call"
  exit 0
fi

if [[ -z "${SKIP_FORWARDER:-}" ]]; then
# CPU seconds (user + system) the forwarder and the PostgreSQL server
# processes have used so far: the cost per call, whatever the machine's
# other load does to the achieved rate.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{t += $14 + $15} END {printf "%.2f", t / hz}' "$@" 2>/dev/null; }
pg_cpu() { cpu_of $(pgrep -u postgres -x postgres | sed 's|.*|/proc/&/stat|'); }
f0=$(cpu_of "/proc/$FPID/stat"); p0=$(pg_cpu)
run_load forwarder
f1=$(cpu_of "/proc/$FPID/stat"); p1=$(pg_cpu)
echo "forwarder CPU: $(echo "$f1 - $f0" | bc) s for $((RATE * SECONDS_RUN)) calls ($(echo "scale=3; ($f1 - $f0) * 1000 / ($RATE * $SECONDS_RUN)" | bc) ms per call)"
if [[ "${DB:-sqlite}" == postgres ]]; then
  echo "PostgreSQL server CPU: $(echo "$p1 - $p0" | bc) s ($(echo "scale=3; ($p1 - $p0) * 1000 / ($RATE * $SECONDS_RUN)" | bc) ms per call)"
fi
# CDRs and charges: every call written, and the post-dial delay the
# forwarder added (INVITE in → INVITE out, from the CDRs). Read once the
# forwarder has stopped: while it still closes calls, a subscriber's CDRs
# and balance, read one after the other, could differ by a close between.
kill "$FPID"; wait "$FPID" 2>/dev/null || true
for i in $(seq 1 "$SUBSCRIBERS"); do
  "$FWD" cdr list "$i" --limit 10000000 >"$WORK/cdrs-$i.json"
  "$FWD" account show "$i" --limit 1 >"$WORK/account-$i.json"
done
python3 - "$WORK" "$SUBSCRIBERS" <<'PY'
import json, sys
from decimal import Decimal
work, n = sys.argv[1], int(sys.argv[2])
cdrs, drift = [], 0
for i in range(1, n + 1):
    mine = json.load(open(f"{work}/cdrs-{i}.json"))
    cdrs += mine
    # Charged means the balance moved: a million paid in, less every price.
    spent = sum(Decimal(c["rating"]["price"]) for c in mine if c.get("rating"))
    balance = Decimal(json.load(open(f"{work}/account-{i}.json"))["standing"]["balance"])
    drift += balance != Decimal(1000000) - spent
done = [c for c in cdrs if c["status"] == "completed"]
charged = [c for c in done if c.get("rating") and Decimal(c["rating"]["price"]) > 0]
pdd = sorted(c["attempts"][0]["started_after_ms"] for c in done if c.get("attempts"))
q = lambda p: pdd[min(len(pdd) - 1, int(p * len(pdd)))] if pdd else float("nan")
print(f"forwarder CDRs: {len(cdrs)} written, {len(done)} completed, {len(charged)} charged; "
      f"balances {'all match the charges' if not drift else f'WRONG for {drift} subscribers'}")
print(f"forwarder post-dial delay (INVITE in -> INVITE out): p50 {q(0.5):.3f} ms, p99 {q(0.99):.3f} ms, max {pdd[-1] if pdd else 0:.3f} ms")
PY
else
  kill "$FPID"; wait "$FPID" 2>/dev/null || true
fi

if [[ -z "${SKIP_KAMAILIO:-}" ]]; then
  command -v kamailio >/dev/null || { echo "kamailio missing: apt-get install kamailio" >&2; exit 2; }
  MODS=$(dirname "$(find /usr/lib -name tm.so -path '*kamailio*' | head -n 1)")
  echo "1 sip:127.0.0.1:$UAS_PORT" >"$WORK/dispatcher.list"
  cat >"$WORK/kamailio.cfg" <<CFG
#!KAMAILIO
debug=0
log_stderror=yes
children=${KAMAILIO_CHILDREN:-1}
auto_aliases=no
listen=udp:127.0.0.1:$SUT_PORT
mpath="$MODS/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "dispatcher.so"
modparam("dispatcher", "list_file", "$WORK/dispatcher.list")
modparam("dispatcher", "ds_ping_interval", 0)
request_route {
  if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
  if (\$tt != \$null) { loose_route(); t_relay(); exit; }
  if (\$rm == "CANCEL") { if (t_check_trans()) { t_relay(); } exit; }
  record_route();
  if (!ds_select_dst("1", "4")) { sl_send_reply("503", "No Destination"); exit; }
  t_relay();
}
CFG
  kamailio -f "$WORK/kamailio.cfg" -DD -E -Y "$WORK" -m 1024 -M 64 2>"$WORK/kamailio.log" &
  KAM=$!
  PIDS+=("$KAM")
  sleep 2
  run_load kamailio "${KAMAILIO_RATE:-$RATE}"
  kill "$KAM"; wait "$KAM" 2>/dev/null || true
fi
echo "logs and SIPp statistics in $WORK"
