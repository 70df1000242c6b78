#!/usr/bin/env bash
# Call rate through the B2BUA harness with SIPp on both sides (loopback, UDP).
#
#   ops/bench/sip-b2bua.sh [RATE] [SECONDS]
#
# Starts SIPp as callee (uas_answer.xml), the B2BUA (release build) and SIPp
# as caller (uac_call.xml) at RATE calls/s for SECONDS, then prints SIPp's
# counters. The run passes only with zero failed calls. Bounded: SIPp stops
# after RATE*SECONDS calls and a global timeout of SECONDS+30 s.
set -euo pipefail
RATE=${1:-200}
SECONDS_RUN=${2:-60}
CALLS=$((RATE * SECONDS_RUN))
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SIPP_DIR="$ROOT/ops/sipp"
command -v sipp >/dev/null || { echo "sipp missing: apt-get install sip-tester" >&2; exit 2; }
WORK=$(mktemp -d)
UAS_PORT=${UAS_PORT:-15070}
B2B_PORT=${B2B_PORT:-15060}
UAC_PORT=${UAC_PORT:-15080}
cleanup() {
  [[ -n "${B2B_PID:-}" ]] && kill "$B2B_PID" 2>/dev/null || true
  [[ -n "${UAS_PID:-}" ]] && kill "$UAS_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

(cd "$ROOT" && cargo build --release -q -p provider-sdk --example sip_b2bua)
B2B_BIN="$ROOT/target/release/examples/sip_b2bua"

cd "$WORK"
sipp -sf "$SIPP_DIR/uas_answer.xml" -i 127.0.0.1 -p "$UAS_PORT" -nr -m "$CALLS" \
     -timeout "$((SECONDS_RUN + 30))s" </dev/null >/dev/null 2>&1 &
UAS_PID=$!
"$B2B_BIN" --listen "127.0.0.1:$B2B_PORT" --target "sip:callee@127.0.0.1:$UAS_PORT" \
    --attempt-timeout-ms 5000 2> "$WORK/b2bua.log" &
B2B_PID=$!
sleep 1
START=$(date +%s.%N)
set +e
sipp -sf "$SIPP_DIR/uac_call.xml" -i 127.0.0.1 -p "$UAC_PORT" -s callee \
     -r "$RATE" -m "$CALLS" -l "$((RATE * 2))" -nr \
     -timeout "$((SECONDS_RUN + 30))s" -timeout_error \
     -trace_stat -stf "$WORK/stat.csv" -fd 1 \
     "127.0.0.1:$B2B_PORT" >/dev/null 2>&1
RC=$?
set -e
END=$(date +%s.%N)
LAST=$(tail -n 1 "$WORK/stat.csv")
HEAD=$(head -n 1 "$WORK/stat.csv")
field() { # name -> value from the last stat line
  awk -F';' -v name="$1" 'NR==1{for(i=1;i<=NF;i++) if($i==name) c=i} NR>1{v=$c} END{print v}' "$WORK/stat.csv"
}
OK=$(field SuccessfulCall\(C\))
FAILED=$(field FailedCall\(C\))
ELAPSED=$(echo "$END - $START" | bc)
echo "rate_target=$RATE calls/s duration_target=${SECONDS_RUN}s calls=$CALLS"
echo "successful=$OK failed=$FAILED sipp_exit=$RC wall=${ELAPSED}s"
echo "achieved=$(echo "scale=1; $OK / $ELAPSED" | bc) calls/s"
[[ "$FAILED" == "0" && "$RC" == "0" ]] || { echo "FAILED CALLS: not a valid figure" >&2; exit 1; }
