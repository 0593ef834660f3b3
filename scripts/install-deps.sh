#!/usr/bin/env bash
# Installs the Debian packages the tests need, if missing: python3-venv (the
# Python websockets client runs in a venv), python3-lib2to3 (the Autobahn
# suite is converted from Python 2), haproxy (a real load balancer health-
# checks the server), Node.js and npm (Node's ws is a client of the
# permessage-deflate tests) and chromium (a real browser is another). Idempotent; as root it installs with apt-get, otherwise
# it says what to install.
set -euo pipefail
need=()
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
python3 -c 'import lib2to3' 2>/dev/null || need+=(python3-lib2to3)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
elif command -v sudo >/dev/null; then
  sudo apt-get update -qq
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
else
  echo "install-deps: please install: ${need[*]}" >&2
  exit 1
fi
