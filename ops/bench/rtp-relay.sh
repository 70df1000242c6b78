#!/usr/bin/env bash
# RTP relay benchmark: this project's relay and rtpengine's userspace relay,
# under the same load in the same run, each pinned to one core.
#
# For each rate (packets per second of 172-byte G.711 RTP, one 20 ms stream
# per call, so rate/50 calls) it prints three lines:
#   direct: the load generator's own loopback baseline (no relay)
#   ours:   through provider-sdk's relay (one forwarding thread)
#   rtpengine: through rtpengine --table=-1 (userspace forwarding)
# REPEAT times, interleaved, then a table of medians and the ratio of packets
# relayed per CPU-second (pps_per_core). A final saturation run offers
# SAT_RATE packets per second over SAT_CALLS calls to each relay.
#
# Every run is bounded: SECONDS_PER_RUN seconds of load (default 10).
# Needs: rtpengine (Debian package rtpengine-daemon), taskset (util-linux).
set -euo pipefail
cd "$(dirname "$0")/../.."

RATES="${RATES:-20000 50000 100000}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
SAT_RATE="${SAT_RATE:-300000}"
SAT_CALLS="${SAT_CALLS:-2000}"
REPEAT="${REPEAT:-3}"
SAT_REPEAT="${SAT_REPEAT:-1}"
SAT_SECONDS="${SAT_SECONDS:-5}"
RELAY_CPU="${RELAY_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"
NG_OURS="${NG_OURS:-127.0.0.1:22230}"
NG_RTPE="${NG_RTPE:-127.0.0.1:22231}"
# The machine is shared: relays and load generator get the same priority.
# Loopback delivery runs in softirq context, which a loaded machine defers to
# ksoftirqd; a real-time class keeps both relays and the load generator
# ahead of other jobs (none of them spins, so they use only what they need).
PRIO="${PRIO:-chrt -f 10}"

for tool in rtpengine taskset; do
  command -v "$tool" >/dev/null || { echo "FAILED: $tool not found (apt-get install rtpengine-daemon util-linux)" >&2; exit 1; }
done

cargo build --release -q -p provider-sdk --example rtp_relay_bench
BIN=target/release/examples/rtp_relay_bench

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

$PRIO taskset -c "$RELAY_CPU" "$BIN" relay --ng "$NG_OURS" --ports 30000-39999 --workers 1 &
OURS_PID=$!
PIDS+=("$OURS_PID")
$PRIO taskset -c "$RELAY_CPU" rtpengine --table=-1 --interface=127.0.0.1 --listen-ng="$NG_RTPE" \
  --foreground --log-stderr --log-level=3 --num-threads=1 --delete-delay=0 \
  --port-min=40000 --port-max=59999 &
RTPE_PID=$!
PIDS+=("$RTPE_PID")
sleep 2

echo "# $(date -u +%FT%TZ) $(nproc) cores, relays pinned to CPU $RELAY_CPU, load generator to CPU $LOAD_CPU"
echo "# rtpengine $(rtpengine --version 2>&1 | head -1)"

RESULTS=$(mktemp)

run() { # label rate [extra load options...]
  local label=$1 rate=$2; shift 2
  $PRIO taskset -c "$LOAD_CPU" "$BIN" load --rate "$rate" --seconds "$SECONDS_PER_RUN" --label "$label" "$@" | tee -a "$RESULTS"
}

# Interleaved repetitions: the machine is noisy, so each figure below is
# the median of REPEAT runs and every single run is printed as well.
for rate in $RATES; do
  for rep in $(seq "$REPEAT"); do
    run direct "$rate" --direct
    run ours "$rate" --ng "$NG_OURS" --pid "$OURS_PID"
    run rtpengine "$rate" --ng "$NG_RTPE" --pid "$RTPE_PID"
  done
done
# Saturation keeps both cores busy at real-time priority: short and once by default.
for rep in $(seq "$SAT_REPEAT"); do
  SECONDS_PER_RUN=$SAT_SECONDS run ours-saturation "$SAT_RATE" --calls "$SAT_CALLS" --ng "$NG_OURS" --pid "$OURS_PID"
  SECONDS_PER_RUN=$SAT_SECONDS run rtpengine-saturation "$SAT_RATE" --calls "$SAT_CALLS" --ng "$NG_RTPE" --pid "$RTPE_PID"
done

echo
echo "# medians of $REPEAT runs (saturation: $SAT_REPEAT) (latency is one-way through the relay incl. both loopback hops; direct = no relay)"
printf '%-22s %8s %12s %9s %9s %9s %10s %14s\n' system rate received_pps loss% p50_us p99_us relay_cpu% pps_per_core
awk '
  function med(key,   n, i, j, t, a) {
    n = split(vals[key], a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n ? a[int((n + 1) / 2)] : "-"
  }
  {
    label = $1; sub(":", "", label)
    for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    f["p50"] = ""; f["p99"] = ""
    for (i = 2; i <= NF; i++) { if ($i ~ /^p50=/) f["p50"] = substr($i, 5); if ($i ~ /^p99=/) f["p99"] = substr($i, 5) }
    k = label SUBSEP f["rate"]
    if (!(k in seen)) { seen[k] = 1; order[++n] = k }
    sub("%", "", f["loss"]); sub("%", "", f["relay_cpu"]); sub(">", "", f["p99"]); sub(">", "", f["p50"])
    split("received_pps loss p50 p99 relay_cpu pps_per_core", names, " ")
    for (m in names) vals[k SUBSEP names[m]] = vals[k SUBSEP names[m]] " " (f[names[m]] == "" ? "-" : f[names[m]])
    delete f
  }
  END {
    for (i = 1; i <= n; i++) {
      split(order[i], kr, SUBSEP)
      printf "%-22s %8s %12s %9s %9s %9s %10s %14s\n", kr[1], kr[2], med(order[i] SUBSEP "received_pps"), med(order[i] SUBSEP "loss"),
        med(order[i] SUBSEP "p50"), med(order[i] SUBSEP "p99"), med(order[i] SUBSEP "relay_cpu"), med(order[i] SUBSEP "pps_per_core")
      r[kr[1], kr[2]] = med(order[i] SUBSEP "pps_per_core"); d[kr[1], kr[2]] = med(order[i] SUBSEP "received_pps")
    }
    print ""
    for (i = 1; i <= n; i++) {
      split(order[i], kr, SUBSEP)
      if (kr[1] == "ours" && r["rtpengine", kr[2]] > 0)
        printf "ratio at %s pps: ours/rtpengine packets relayed per CPU-second = %.2f\n", kr[2], r["ours", kr[2]] / r["rtpengine", kr[2]]
      if (kr[1] == "ours-saturation" && d["rtpengine-saturation", kr[2]] > 0)
        printf "saturation (%s pps offered): ours/rtpengine delivered pps = %.2f\n", kr[2], d["ours-saturation", kr[2]] / d["rtpengine-saturation", kr[2]]
    }
  }' "$RESULTS"
rm -f "$RESULTS"
