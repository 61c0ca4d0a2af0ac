#!/usr/bin/env bash
# What the test suite needs beyond `pip install -e '.[dev,triton-sim]'`:
# real third-party OpenAI-compatible servers (cached under ~/.cache/llmscen),
# Debian's Chromium for the report's browser test, and Ray for the Ray engine's
# tests. Idempotent; safe to re-run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "install-test-deps: chromium and chromium-driver are missing; run as root or" \
         "apt-get install them (the browser test will fail without them)" >&2
  fi
fi

# Debian's Prometheus: tests/test_live_export.py scrapes a running llmscen with it
if ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "install-test-deps: prometheus is missing; run as root or apt-get install" \
         "--no-install-recommends prometheus (the live-export test will fail without it)" >&2
  fi
fi

# Debian's nginx: tests/test_client_honesty.py needs a server far faster than one client
# core (benchmarks/static_server.py, the benchmarks' static target)
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nginx >/dev/null
  else
    echo "install-test-deps: nginx is missing; run as root or apt-get install" \
         "--no-install-recommends nginx (the client-honesty test will fail without it)" >&2
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
