"""What `MetricStore.record` costs per response, alone: no network, no event loop.

Two kinds of 64-token stream: `paced` (every token in its own read, so the ITL gaps
are distinct values around 1 ms, as from a real server) and `burst` (one read, every
gap 0, as from the static nginx target). `--against DIR` runs the same in a checkout
of another commit (`git worktree add DIR REV`), interleaved rep by rep:

    python benchmarks/record.py --reps 5
    python benchmarks/record.py --reps 5 --against /tmp/wt-old
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def exchanges(kind: str, tokens: int, n: int = 1000) -> list[Any]:
    from llmscen.engine.protocol import Exchange

    rng = random.Random(1)
    out = []
    for i in range(n):
        start = 10 ** 12 + i * 1_000_000
        gaps = [rng.randint(900, 1300) if kind == "paced" else 0 for _ in range(tokens - 1)]
        first = start + 5_000_000
        end = first + sum(gaps) * 1000
        out.append(Exchange(intended_ns=start, sent_ns=start + 20_000,
                            first_byte_ns=first - 100, first_content_ns=first,
                            first_answer_ns=first, end_ns=end, itl_us=gaps, status=200,
                            chunks=tokens, output_tokens=tokens, input_tokens=12,
                            bytes_received=tokens * 110,
                            chunk_chars=[rng.randint(3, 6) for _ in range(tokens)]))
    return out


def measure(kind: str, tokens: int, records: int) -> float:
    """µs per record over `records` calls (a run of 1,000 completions a second)."""
    from llmscen.metrics.store import MetricStore

    made = exchanges(kind, tokens)
    warm = MetricStore()     # imports and first allocations, paid once a run, not timed
    for i in range(records // 4):
        warm.record("p", "r", "t", made[i % len(made)], goodput_met=True, now=i / 1000)
    store = MetricStore()
    began = time.perf_counter()
    for i in range(records):
        store.record("p", "r", "t", made[i % len(made)], goodput_met=True, now=i / 1000)
    return (time.perf_counter() - began) / records * 1e6


def child(root: Path, kind: str, tokens: int, records: int) -> float:
    code = ("import sys, json; sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[2]);"
            "import record; print(json.dumps(record.measure(sys.argv[3], int(sys.argv[4]),"
            " int(sys.argv[5]))))")
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code, str(root), str(ROOT / "benchmarks"), kind,
                          str(tokens), str(records)], env=env, capture_output=True, text=True,
                         check=True, timeout=600)
    return float(json.loads(out.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--against", type=Path, help="a checkout of another commit")
    args = parser.parse_args()
    roots = {"this": ROOT, **({"against": args.against.resolve()} if args.against else {})}
    print(f"MetricStore.record, {args.tokens}-token streams, {args.records} records a rep, "
          f"load average {os.getloadavg()[0]:.2f}")
    print("| stream | checkout | µs a record, median (min–max) |")
    print("|---|---|---|")
    for kind in ("paced", "burst"):
        got: dict[str, list[float]] = {name: [] for name in roots}
        for _ in range(args.reps):
            for name, root in roots.items():   # interleaved: the machine's drift hits both
                got[name].append(child(root, kind, args.tokens, args.records))
        for name, values in got.items():
            print(f"| {kind} | {name} | {statistics.median(values):.1f} "
                  f"({min(values):.1f}–{max(values):.1f}) |")


if __name__ == "__main__":
    main()
