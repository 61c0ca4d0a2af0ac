#!/usr/bin/env bash
# What the test suite needs beyond `pip install -e '.[dev,triton-sim]'`:
# real third-party OpenAI-compatible servers (cached under ~/.cache/llmscen),
# Debian's Chromium for the report's browser test, and Ray for the Ray engine's
# tests. Idempotent; safe to re-run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# Debian packages, each for the tests named; one apt-get for all that are missing.
# Chromium (and its driver): the report's browser test. Prometheus: tests/test_live_export.py
# scrapes a running llmscen with it. nginx: tests/test_client_honesty.py needs a server far
# faster than one client core (benchmarks/static_server.py, the benchmarks' static target).
has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
browser=() lean=()    # Chromium with its recommended packages (fonts), the rest without
has chromium || browser+=(chromium)
has chromedriver || browser+=(chromium-driver)
has prometheus || lean+=(prometheus)
has nginx || lean+=(nginx)
if [ "${#browser[@]}" -gt 0 ] || [ "${#lean[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    [ "${#browser[@]}" -eq 0 ] || apt-get install -y -qq "${browser[@]}" >/dev/null
    [ "${#lean[@]}" -eq 0 ] || apt-get install -y -qq --no-install-recommends "${lean[@]}" \
      >/dev/null
  else
    echo "install-test-deps: missing Debian packages: ${browser[*]} ${lean[*]}; run as" \
         "root or apt-get install them (the tests that use them will fail)" >&2
  fi
fi

# The Ray engine's tests (tests/test_ray_engine.py) start a real two-node Ray cluster on
# this machine: the `ray` extra, into the project's venv (~285 MB; under a minute with a
# warm pip cache).
root=$(cd "$here/.." && pwd)
venv_python="$root/.venv/bin/python"
[ -x "$venv_python" ] || venv_python=python3     # llmscen installed outside .venv
"$venv_python" -m pip install -q -e "$root[ray]"

bash "$here/install-real-servers.sh"
