#!/bin/sh
# One-shot setup of the compose network (ops/compose.yaml), run in the
# central image once central answers: central's operator registers the
# three providers and the forwarder, and the one-time enrollment tokens are
# left in /tokens for their first start, with central's root certificate.
# Idempotent: a participant whose token file exists is not registered again.
set -eu
C=https://central:8443
D=/var/lib/central
OP="--cacert $D/ca.crt --cert $D/operator.crt --key $D/operator.key"
for _ in $(seq 1 120); do
    curl -sf --cacert "$D/ca.crt" "$C/health" >/dev/null && break
    sleep 1
done
cp "$D/ca.crt" /tokens/ca.crt
register() { # NAME ADDRESS
    [ -s "/tokens/$1" ] && { echo "$1: already registered"; return; }
    answer=$(curl -sSf $OP -H 'content-type: application/json' -d "{
        \"name\": \"$1\", \"sip_addresses\": [{\"address\": \"$2\", \"transport\": \"udp\"}],
        \"currency\": \"EUR\", \"contact\": \"noc@$1.example\"}" "$C/v1/providers")
    printf '%s' "$answer" | sed -n 's/.*"enrollment_token" *: *"\([^"]*\)".*/\1/p' >"/tokens/$1"
    [ -s "/tokens/$1" ] || { echo "$1: no token in $answer" >&2; exit 1; }
    echo "$1: registered"
}
register carrier-a 172.28.0.11:5071
register carrier-b 172.28.0.12:5071
register carrier-c 172.28.0.13:5071
register home-telecom 172.28.0.20:5060
