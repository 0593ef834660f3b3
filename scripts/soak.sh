#!/usr/bin/env bash
# The mixed soak of issue #23: one server (2 shards, ws:// and wss://,
# permessage-deflate, a 20 s idle timeout) under echo clients of three kinds
# (ws://, wss://, ws:// with permessage-deflate; `ricochet bench`, which
# fails on any wrong or missing echo) in back-to-back 10 s runs, while 100
# clients push 1 MiB messages and never read (scripts/soak_stuck_clients.py;
# the server ends them at their idle timeout and they come back). Every
# echo run must pass; RSS is sampled every 10 s; then SIGTERM, which must
# end the server with exit 0 within its grace period.
#
#   scripts/soak.sh [SECONDS]      (default 600; `make soak`)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TOTAL=${1:-600}
BIN=./target/release/ricochet
OUT=$(mktemp -d)
PORT=$((20000 + RANDOM % 10000)); TLS_PORT=$((PORT + 1)); METRICS=$((PORT + 2))
$BIN serve --listen 127.0.0.1:$PORT --tls-listen 127.0.0.1:$TLS_PORT --tls-self-signed \
  --permessage-deflate --idle-timeout 20s --shards 2 --metrics-listen 127.0.0.1:$METRICS \
  >"$OUT/server.out" 2>"$OUT/server.log" &
SERVER=$!
trap 'kill -9 $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$OUT/server.out" 2>/dev/null && break; sleep 0.1; done
python3 scripts/soak_stuck_clients.py 127.0.0.1 $PORT 100 "$SECONDS_TOTAL" >"$OUT/stuck.out" 2>&1 &
STUCK=$!
rss() { awk '/VmRSS/ {print $2}' /proc/$SERVER/status; }
echo "soak: ${SECONDS_TOTAL}s, server pid $SERVER, logs in $OUT"
echo "rss_kib at start: $(rss)"
runs=0; failed=0; end=$((SECONDS + SECONDS_TOTAL)); next_rss=$((SECONDS + 10))
kinds=("ws://127.0.0.1:$PORT/" "wss://127.0.0.1:$TLS_PORT/ --insecure" "ws://127.0.0.1:$PORT/ --deflate")
while [ $SECONDS -lt $end ]; do
  for k in "${kinds[@]}"; do
    # shellcheck disable=SC2086
    if $BIN bench $k --connections 20 --size 1K --duration 5s >"$OUT/run.$runs" 2>&1; then :; else
      failed=$((failed + 1)); echo "FAILED: bench $k (see $OUT/run.$runs)"; fi
    runs=$((runs + 1))
    if [ $SECONDS -ge $next_rss ]; then echo "t=${SECONDS}s rss_kib=$(rss)"; next_rss=$((SECONDS + 10)); fi
  done
done
wait $STUCK || true
cat "$OUT/stuck.out"
curl -s "http://127.0.0.1:$METRICS/metrics" | grep -E '^ricochet_timeouts_total|^ricochet_connections_open' || true
echo "rss_kib at end: $(rss)"
kill -TERM $SERVER
t0=$SECONDS; status=0; wait $SERVER || status=$?
echo "echo runs: $runs, failed: $failed; SIGTERM: exit $status after $((SECONDS - t0))s"
trap - EXIT
[ $failed -eq 0 ] && [ $status -eq 0 ]
