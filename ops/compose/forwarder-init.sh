#!/bin/sh
# One-shot: `forwarder init` in the volume on the first run, with a sample
# subscriber (Ada: +49 30 111 1111 forwarded to +44 20 7946 0000, 10 EUR).
set -eu
DIR=/var/lib/forwarder
[ -e "$DIR/ca.crt" ] && { echo "forwarder already initialised"; exit 0; }
forwarder init --data "$DIR" --server-name forwarder --server-name 127.0.0.1 \
    --api-listen 0.0.0.0:8444 --database-url "$FORWARDER_DATABASE_URL"
export FORWARDER_DATA="$DIR"
forwarder --config /etc/forwarder/forwarder.toml subscriber add --name "Ada Lovelace" \
    --email ada@example.net --time-zone Europe/Berlin --plan standard --currency EUR
forwarder --config /etc/forwarder/forwarder.toml number add 1 "+49 30 111 1111"
forwarder --config /etc/forwarder/forwarder.toml rule set 1 --target "+442079460000:20"
forwarder --config /etc/forwarder/forwarder.toml account payment 1 10.00 --key compose-topup
