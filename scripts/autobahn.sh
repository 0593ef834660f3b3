#!/usr/bin/env bash
# Starts `ricochet serve` on a free loopback port, runs the Autobahn|Testsuite
# fuzzingclient (cases 1-10) against it, stops the server. Exit status 0 only
# when every case is OK. AUTOBAHN_TLS=1 serves wss:// (a self-signed
# certificate: the suite sends no SNI and checks no certificate).
# AUTOBAHN_CASES and AUTOBAHN_EXCLUDE pick other cases (the permessage-deflate
# groups 12 and 13: AUTOBAHN_CASES='12.*,13.*' AUTOBAHN_EXCLUDE='' with
# --permessage-deflate among the serve flags).
# Usage: [AUTOBAHN_TLS=1] scripts/autobahn.sh PATH/TO/ricochet [extra serve flags...]
set -euo pipefail
BIN=${1:?usage: scripts/autobahn.sh PATH/TO/ricochet [serve flags...]}; shift
HERE=$(cd "$(dirname "$0")/.." && pwd)
# The suite's runner ships in scripts/autobahn/ (built from PyPI packages on
# first use, cached under ~/.cache/autobahn-py3); AUTOBAHN_DIR picks another.
SUITE=${AUTOBAHN_DIR:-$HERE/scripts/autobahn}
OUT=${AUTOBAHN_OUT:-$HERE/autobahn-reports}
LOG=$(mktemp)
if [ "${AUTOBAHN_TLS:-0}" = 1 ]; then
  LISTEN=(--tls-listen 127.0.0.1:0 --tls-self-signed); SCHEME=wss
else
  LISTEN=(--listen 127.0.0.1:0); SCHEME=ws
fi
"$BIN" serve "${LISTEN[@]}" "$@" > "$LOG.out" 2> "$LOG" &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -f "$LOG" "$LOG.out"' EXIT
for _ in $(seq 100); do
  grep -q '^listening on ' "$LOG.out" 2>/dev/null && break
  kill -0 $PID 2>/dev/null || { cat "$LOG" >&2; exit 1; }
  sleep 0.1
done
ADDR=$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$LOG.out" | head -n 1)
[ -n "$ADDR" ] || { echo "autobahn.sh: server did not start" >&2; cat "$LOG" >&2; exit 1; }
"$SUITE/run.sh" "$SCHEME://$ADDR" --out "$OUT" --require-ok \
  --cases "${AUTOBAHN_CASES:-*}" --exclude "${AUTOBAHN_EXCLUDE-12.*,13.*}"
