#!/usr/bin/env bash
# RTP relay benchmark: this project's relay and rtpengine's userspace relay,
# under the same load in the same run, each pinned to one core.
#
# For each rate (packets per second of 172-byte G.711 RTP, one 20 ms stream
# per call, so rate/50 calls) it prints three lines:
#   direct: the load generator's own loopback baseline (no relay)
#   ours:   through provider-sdk's relay (one forwarding thread)
#   rtpengine: through rtpengine --table=-1 (userspace forwarding)
# and the ratio of packets relayed per CPU-second (pps_per_core). A final
# saturation run offers SAT_RATE packets per second to each relay.
#
# Every run is bounded: SECONDS_PER_RUN seconds of load (default 10).
# Needs: rtpengine (Debian package rtpengine-daemon), taskset (util-linux).
set -euo pipefail
cd "$(dirname "$0")/../.."

RATES="${RATES:-20000 50000 100000}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
SAT_RATE="${SAT_RATE:-300000}"
SAT_CALLS="${SAT_CALLS:-2000}"
RELAY_CPU="${RELAY_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"
NG_OURS="${NG_OURS:-127.0.0.1:22230}"
NG_RTPE="${NG_RTPE:-127.0.0.1:22231}"

for tool in rtpengine taskset; do
  command -v "$tool" >/dev/null || { echo "FAILED: $tool not found (apt-get install rtpengine-daemon util-linux)" >&2; exit 1; }
done

cargo build --release -q -p provider-sdk --example rtp_relay_bench
BIN=target/release/examples/rtp_relay_bench

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

taskset -c "$RELAY_CPU" "$BIN" relay --ng "$NG_OURS" --ports 30000-39999 --workers 1 &
OURS_PID=$!
PIDS+=("$OURS_PID")
taskset -c "$RELAY_CPU" rtpengine --table=-1 --interface=127.0.0.1 --listen-ng="$NG_RTPE" \
  --foreground --log-stderr --log-level=3 --num-threads=1 --delete-delay=0 \
  --port-min=40000 --port-max=59999 &
RTPE_PID=$!
PIDS+=("$RTPE_PID")
sleep 2

echo "# $(date -u +%FT%TZ) $(nproc) cores, relays pinned to CPU $RELAY_CPU, load generator to CPU $LOAD_CPU"
echo "# rtpengine $(rtpengine --version 2>&1 | head -1)"

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

run() { # label rate [extra load options...]
  local label=$1 rate=$2; shift 2
  taskset -c "$LOAD_CPU" "$BIN" load --rate "$rate" --seconds "$SECONDS_PER_RUN" --label "$label" "$@"
}

for rate in $RATES; do
  run direct "$rate" --direct
  ours=$(run ours "$rate" --ng "$NG_OURS" --pid "$OURS_PID"); echo "$ours"
  rtpe=$(run rtpengine "$rate" --ng "$NG_RTPE" --pid "$RTPE_PID"); echo "$rtpe"
  o=$(echo "$ours" | field pps_per_core); r=$(echo "$rtpe" | field pps_per_core)
  echo "ratio at $rate pps: ours/rtpengine packets per CPU-second = $(awk -v o="$o" -v r="$r" 'BEGIN{ if (r>0) printf "%.2f", o/r; else print "n/a" }')"
done

ours=$(run ours-saturation "$SAT_RATE" --calls "$SAT_CALLS" --ng "$NG_OURS" --pid "$OURS_PID"); echo "$ours"
rtpe=$(run rtpengine-saturation "$SAT_RATE" --calls "$SAT_CALLS" --ng "$NG_RTPE" --pid "$RTPE_PID"); echo "$rtpe"
o=$(echo "$ours" | field received_pps); r=$(echo "$rtpe" | field received_pps)
echo "saturation: ours/rtpengine delivered pps = $(awk -v o="$o" -v r="$r" 'BEGIN{ if (r>0) printf "%.2f", o/r; else print "n/a" }')"
