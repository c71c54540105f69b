#!/usr/bin/env bash
# The test command of the README: installs what the suite needs, builds the core, runs pytest.
#   scripts/test.sh [pytest args...]
# Needs: Python >= 3.10 with pip, a C compiler and zlib's headers (installed here if missing);
# root (or sudo) for Debian's chromium, which the browser tests drive headless.  pytest -q ends
# with its summary line ("N passed in ...").
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: chromium (browser tests), nginx + Nchan (a peer of the benchmark suite)
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -e /usr/include/zlib.h ] || missing+=(zlib1g-dev)     # the core's permessage-deflate
[ -e /usr/share/nginx/modules-available/mod-nchan.conf ] || [ -n "$(ls /usr/lib/nginx/modules/ngx_nchan_module.so 2>/dev/null)" ] \
  || missing+=(nginx libnginx-mod-nchan)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  # the benchmark starts its own nginx: keep the package from starting a system one on :80
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  [ -z "$own_policy" ] || $sudo rm -f /usr/sbin/policy-rc.d
fi

python3 -m pip install -q -e '.[test]'
exec python3 -m pytest -q "$@"
