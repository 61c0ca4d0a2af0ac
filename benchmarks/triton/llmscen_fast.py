"""`llmscen` with fast_runner.py's hot paths in place of the triton runner's (a measurement aid).

    .venv/bin/python benchmarks/triton/llmscen_fast.py run SCENARIO ... --workers 1

Only for `--workers 1` (the run stays in this process; spawned workers would import the
unpatched runner). compare.py runs it as client `llmscen-fast-w1`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fast_runner import FastTritonRunner

from llmscen.cli.main import main
from llmscen.runners import triton

if "--workers" in sys.argv and sys.argv[sys.argv.index("--workers") + 1] != "1":
    raise SystemExit("llmscen_fast.py: only --workers 1 (workers would not see the patch)")
triton.TritonPlugin.create_runner = lambda self, target: FastTritonRunner(target)  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
