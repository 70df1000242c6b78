#!/usr/bin/env bash
# Statement run at scale: rating/rendering of every statement on SQLite, then
# sending to a real SMTP server (aiosmtpd) on loopback, messages per second.
#
#   ops/bench/statements.sh                       # 100,000 subscribers, 10 M calls
#   STATEMENTS_BENCH_SUBSCRIBERS=10000 STATEMENTS_BENCH_CALLS=1000000 ops/bench/statements.sh
#
# STATEMENTS_BENCH_DIR=/path keeps the generated database for the next run;
# STATEMENTS_BENCH_SEND (default 5000) is how many statements are sent.
set -euo pipefail
cd "$(dirname "$0")/../.."

py=""
for c in "${SMTP_TEST_PYTHON:-}" python3 /usr/bin/python3; do
    if [ -n "$c" ] && "$c" -c "import aiosmtpd" 2>/dev/null; then py=$c; break; fi
done
if [ -z "$py" ]; then
    echo "ops/bench/statements.sh: needs python3 with aiosmtpd (apt-get install python3-aiosmtpd)" >&2
    exit 1
fi

out=$(mktemp -d)
fifo="$out/ready"
mkfifo "$fifo"
"$py" forwarder/tests/smtp_server.py "$out/mail" --count-only >"$fifo" &
smtp=$!
trap 'kill $smtp 2>/dev/null || true; rm -rf "$out"' EXIT
read -r ready port <"$fifo"
[ "$ready" = READY ] || { echo "SMTP server did not start" >&2; exit 1; }
echo "==> aiosmtpd on 127.0.0.1:$port (pid $smtp)"

STATEMENTS_BENCH_SMTP_PORT=$port cargo bench -p forwarder --bench statements
echo "==> the server counted $(cat "$out/mail/count" 2>/dev/null || echo '<100') messages, using $(ps -o times= -p "$smtp" | tr -d ' ') s of CPU"
