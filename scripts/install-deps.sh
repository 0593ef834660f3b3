#!/usr/bin/env bash
# Installs the Debian packages the tests need, if missing: python3-venv (the
# Python websockets client runs in a venv), python3-lib2to3 (the Autobahn
# suite is converted from Python 2), haproxy (a real load balancer health-
# checks the server), Node.js and npm (Node's ws is a client of the
# permessage-deflate tests), chromium (a real browser is another) and
# openssl (its s_client is a TLS client that sends an IP address as SNI),
# prometheus (promtool checks /metrics, and a real Prometheus scrapes it;
# installed without its recommended exporters, and its own service is not
# used), nats-server (the rooms-across-hosts tests start real NATS servers
# on loopback; its own service is not used). With --bench, also what `make bench` needs for its Go peers:
# golang-go and golang-github-gorilla-websocket-dev (gorilla's echo and chat-hub servers, built in GOPATH mode).
# Idempotent; as root it installs with apt-get, otherwise it says what to install.
set -euo pipefail
need=()
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
python3 -c 'import lib2to3' 2>/dev/null || need+=(python3-lib2to3)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || need+=(chromium)
command -v openssl >/dev/null || need+=(openssl)
command -v nats-server >/dev/null || need+=(nats-server)
if [ "${1:-}" = --bench ]; then
  command -v go >/dev/null || need+=(golang-go)
  [ -d /usr/share/gocode/src/github.com/gorilla/websocket ] || need+=(golang-github-gorilla-websocket-dev)
fi
bare=()
command -v promtool >/dev/null || bare+=(prometheus)
[ ${#need[@]} -eq 0 ] && [ ${#bare[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then
  run=()
elif command -v sudo >/dev/null; then
  run=(sudo)
else
  echo "install-deps: please install: ${need[*]} ${bare[*]}" >&2
  exit 1
fi
echo "install-deps: the tests need Debian packages this host lacks; installing with apt-get${run:+ (sudo)}: ${need[*]} ${bare[*]}" >&2
"${run[@]}" apt-get update -qq
[ ${#need[@]} -eq 0 ] || "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
[ ${#bare[@]} -eq 0 ] || "${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${bare[@]}"
