#!/usr/bin/env bash
# Call rate through the B2BUA harness with SIPp on both sides (loopback, UDP),
# and, in the same run, through Kamailio (stateful proxy: tm + rr, one worker)
# as the reference.
#
#   ops/bench/sip-b2bua.sh [RATE] [SECONDS]
#
# For each system: SIPp callee (uas_answer.xml), the system under test, SIPp
# caller (uac_call.xml) at RATE calls/s until RATE*SECONDS calls are done.
# A figure is valid only with zero failed calls. Everything is bounded:
# SIPp stops after RATE*SECONDS calls or a global timeout of SECONDS+30 s.
# Set SKIP_KAMAILIO=1 to measure the B2BUA alone.
set -euo pipefail
RATE=${1:-200}
SECONDS_RUN=${2:-60}
CALLS=$((RATE * SECONDS_RUN))
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SIPP_DIR="$ROOT/ops/sipp"
command -v sipp >/dev/null || { echo "sipp missing: apt-get install sip-tester" >&2; exit 2; }
WORK=$(mktemp -d)
UAS_PORT=${UAS_PORT:-15070}
SUT_PORT=${SUT_PORT:-15060}
UAC_PORT=${UAC_PORT:-15080}
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# Runs one load against 127.0.0.1:$SUT_PORT; prints "label successful failed wall rate".
run_load() {
  local label=$1
  sipp -sf "$SIPP_DIR/uas_answer.xml" -i 127.0.0.1 -p "$UAS_PORT" -nr -m "$CALLS" \
       -timeout "$((SECONDS_RUN + 30))s" </dev/null >"$WORK/$label-uas.out" 2>&1 &
  local uas=$!
  PIDS+=("$uas")
  sleep 1
  local start end rc
  start=$(date +%s.%N)
  set +e
  (cd "$WORK" && sipp -sf "$SIPP_DIR/uac_call.xml" -i 127.0.0.1 -p "$UAC_PORT" -s callee \
       -r "$RATE" -m "$CALLS" -l "$((RATE * 4))" -nr \
       -timeout "$((SECONDS_RUN + 30))s" -timeout_error \
       -trace_stat -trace_err -stf "$WORK/$label-stat.csv" -fd 1 \
       "127.0.0.1:$SUT_PORT" </dev/null >/dev/null 2>&1)
  rc=$?
  set -e
  end=$(date +%s.%N)
  # SIPp lingers on SIGTERM while it drains calls; the run is over, stop it hard.
  kill -KILL "$uas" 2>/dev/null || true
  wait "$uas" 2>/dev/null || true
  local ok failed wall
  ok=$(awk -F';' 'NR==1{for(i=1;i<=NF;i++) if($i=="SuccessfulCall(C)") c=i} NR>1{v=$c} END{print v}' "$WORK/$label-stat.csv")
  failed=$(awk -F';' 'NR==1{for(i=1;i<=NF;i++) if($i=="FailedCall(C)") c=i} NR>1{v=$c} END{print v}' "$WORK/$label-stat.csv")
  wall=$(echo "$end - $start" | bc)
  echo "$label: target ${RATE} calls/s for ${SECONDS_RUN}s ($CALLS calls): successful=$ok failed=$failed sipp_exit=$rc wall=${wall}s achieved=$(echo "scale=1; $ok / $wall" | bc) calls/s"
  [[ "$failed" == "0" && "$rc" == "0" ]] || echo "$label: FAILED CALLS: not a valid figure"
}

(cd "$ROOT" && cargo build --release -q -p provider-sdk --example sip_b2bua)
"$ROOT/target/release/examples/sip_b2bua" --listen "127.0.0.1:$SUT_PORT" \
    --target "sip:callee@127.0.0.1:$UAS_PORT" --attempt-timeout-ms 5000 2>"$WORK/b2bua.log" &
B2B=$!
PIDS+=("$B2B")
sleep 1
run_load b2bua
kill "$B2B"; wait "$B2B" 2>/dev/null || true

if [[ -z "${SKIP_KAMAILIO:-}" ]]; then
  command -v kamailio >/dev/null || { echo "kamailio missing: apt-get install kamailio" >&2; exit 2; }
  MODS=$(dirname "$(find /usr/lib -name tm.so -path '*kamailio*' | head -n 1)")
  cat >"$WORK/kamailio.cfg" <<CFG
#!KAMAILIO
debug=0
log_stderror=yes
children=1
auto_aliases=no
listen=udp:127.0.0.1:$SUT_PORT
mpath="$MODS/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
request_route {
  if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
  if (\$tt != \$null) {
    # In-dialog: SIPp sends to the callee's Contact without a Route set.
    loose_route();
    t_relay();
    exit;
  }
  if (\$rm == "CANCEL") { if (t_check_trans()) { t_relay(); } exit; }
  record_route();
  \$du = "sip:127.0.0.1:$UAS_PORT";
  t_relay();
}
CFG
  kamailio -f "$WORK/kamailio.cfg" -DD -E -Y "$WORK" -m 1024 -M 64 2>"$WORK/kamailio.log" &
  KAM=$!
  PIDS+=("$KAM")
  sleep 2
  run_load kamailio
  kill "$KAM"; wait "$KAM" 2>/dev/null || true
fi
echo "logs and SIPp statistics in $WORK"
