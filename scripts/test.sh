#!/usr/bin/env bash
# The test command of the README: installs what the suite needs, builds the core, runs pytest.
#   scripts/test.sh [pytest args...]
# Needs: Python >= 3.10 with pip, a C compiler; root (or sudo) for Debian's chromium, which the
# browser tests drive headless.  Redis and NATS are expected on 127.0.0.1:6379 / :4222.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

python3 -m pip install -q -e '.[test]'
exec python3 -m pytest -q "$@"
