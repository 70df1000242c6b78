#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a developer's.
#
# - Installs what the tests need when it is missing (Debian packages via apt-get when run
#   as root; otherwise it says exactly what to install and stops).
# - Starts throwaway services on loopback (PostgreSQL) and stops them afterwards.
# - Runs every test of the workspace against SQLite and PostgreSQL.
#
# Extra arguments are passed to `cargo test` (e.g. `ops/test.sh -p central`).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: SIPp (real SIP peer), the PostgreSQL server,
# openssl + curl (a provider enrolling with keys and CSRs made by OpenSSL), and
# python3-aiosmtpd (the real SMTP server the statement tests send to).
NEEDED_PKGS=(sip-tester postgresql openssl curl python3-aiosmtpd)
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for p in "${NEEDED_PKGS[@]}"; do have_pkg "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "==> installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "ops/test.sh: missing Debian packages: ${missing[*]}" >&2
        echo "install them with:  sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

# Throwaway PostgreSQL on loopback unless the caller gave one.
started_pg=0
if [ -z "${TEST_POSTGRES_URL:-}" ]; then
    echo "==> starting a throwaway PostgreSQL on 127.0.0.1"
    TEST_POSTGRES_URL=$(ops/pg.sh start)
    export TEST_POSTGRES_URL
    started_pg=1
fi
cleanup() { if [ "$started_pg" = 1 ]; then ops/pg.sh stop; fi; }
trap cleanup EXIT

# The RFC 4475 torture corpus lives beside the repository.
if [ -z "${CONFORMANCE_DIR:-}" ] && [ -d ../shared/conformance/rfc4475 ]; then
    CONFORMANCE_DIR=$(cd ../shared/conformance/rfc4475 && pwd)
    export CONFORMANCE_DIR
fi

echo "==> cargo test (SQLite always; PostgreSQL at $TEST_POSTGRES_URL)"
cargo test --workspace "$@"
