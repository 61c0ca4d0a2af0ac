#!/usr/bin/env bash
# Install NVIDIA perf_analyzer (from the tritonclient 2.51.0 wheel) for benchmarks/triton/compare.py.
#
#   bash benchmarks/triton/install-perf-analyzer.sh
#
# Idempotent; everything lives under ${LLMSCEN_CACHE:-$HOME/.cache/llmscen}/bench/perf_analyzer/:
#   bin/perf_analyzer.bin   the binary from the wheel (2.51.0: the last whose binary runs on glibc 2.36)
#   lib/libb64.so.0d        symlink into nvidia_pytriton.libs of the project venv
#   lib/libcudart.so.12     symlink into the same folder (perf_analyzer links it even on CPU)
#   bin/perf_analyzer       wrapper that puts lib/ on LD_LIBRARY_PATH
# Prints the wrapper's path on the last line of stdout (after `--version` output).
# Env: VENV (default: <repo>/.venv), PA_VERSION (default 2.51.0).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VENV=${VENV:-$REPO/.venv}
PA_VERSION=${PA_VERSION:-2.51.0}
CACHE=${LLMSCEN_CACHE:-$HOME/.cache/llmscen}
D=$CACHE/bench/perf_analyzer
mkdir -p "$D/bin" "$D/lib"

if [ ! -x "$D/bin/perf_analyzer.bin" ] || [ "$(cat "$D/VERSION" 2>/dev/null)" != "$PA_VERSION" ]; then
    tmp=$(mktemp -d "$D/.dl.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    echo "downloading tritonclient==$PA_VERSION (wheel only, no dependencies)..." >&2
    "$VENV/bin/python" -m pip download -q --no-deps -d "$tmp" "tritonclient==$PA_VERSION"
    whl=$(ls "$tmp"/tritonclient-"$PA_VERSION"-*manylinux*x86_64.whl | head -n1)
    # only the one member we need
    "$VENV/bin/python" - "$whl" "$tmp/perf_analyzer.bin" "$PA_VERSION" <<'EOF'
import shutil, sys, zipfile
whl, dest, version = sys.argv[1:4]
member = f"tritonclient-{version}.data/data/bin/perf_analyzer"
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
EOF
    chmod +x "$tmp/perf_analyzer.bin"
    mv -f "$tmp/perf_analyzer.bin" "$D/bin/perf_analyzer.bin"
    echo "$PA_VERSION" > "$D/VERSION"
fi

# the two shared libraries the binary needs, from the pytriton wheel of the project venv
LIBS=$(ls -d "$VENV"/lib/python3.*/site-packages/nvidia_pytriton.libs 2>/dev/null | head -n1 || true)
if [ -z "$LIBS" ]; then
    echo "no nvidia_pytriton.libs in $VENV; install the triton-sim extra first: pip install 'llmscen[triton-sim]'" >&2
    exit 1
fi
b64=$(ls "$LIBS"/libb64-*.so.0d | head -n1)
cudart=$(ls "$LIBS"/libcudart-*.so.12* | head -n1)
ln -sfn "$b64" "$D/lib/libb64.so.0d"
ln -sfn "$cudart" "$D/lib/libcudart.so.12"

cat > "$D/bin/perf_analyzer.tmp" <<'EOF'
#!/bin/sh
D=$(dirname "$(readlink -f "$0")")/..
LD_LIBRARY_PATH="$D/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$D/bin/perf_analyzer.bin" "$@"
EOF
chmod +x "$D/bin/perf_analyzer.tmp"
mv -f "$D/bin/perf_analyzer.tmp" "$D/bin/perf_analyzer"

"$D/bin/perf_analyzer" --version
echo "$D/bin/perf_analyzer"
