"""Hostile input files are refused quickly, in bounded memory, at a location, with exit 2.

Each file goes through a real `llmscen` process that reports its own CPU time
and peak RSS, so the bounds cover everything the process allocated, not only
Python's heap. CPU time is not inflated by other work on a real machine, but on
a shared virtual one (stolen cycles, a busy sibling core) it is, several times
over: the CPU bound scales with what a plain scenario costs next to it. An
address-space limit and a timeout keep a regression from taking the machine
down with it.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from test_report_samples import build_results, three_slos

ROOT = Path(__file__).resolve().parent.parent
CPU_SECONDS = 2.0               # on a quiet machine, where a plain scenario costs QUIET_S
QUIET_S = 0.3
PEAK_RSS_MB = 200
LOCATION = re.compile(r"^(?:llmscen: )?\S+:\d+:\d+: ", re.MULTILINE)

# Runs the CLI and writes its CPU time and peak RSS (KiB) last on stderr. The peak is this
# program's VmHWM: ru_maxrss would carry over the forking pytest's own size across exec.
WRAPPER = textwrap.dedent("""
    import re, sys, time
    from llmscen.cli.main import main
    start = time.process_time()
    try:
        main(sys.argv[1:])
    finally:
        with open("/proc/self/status") as status:
            rss = re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1)
        sys.stderr.write(f"\\nBOUNDS {time.process_time() - start:.3f} {rss}\\n")
""")

SCENARIO = """\
version: 1
targets:
  chat: {{plugin: openai, url: "http://127.0.0.1:9", model: m}}
phases:
  - {{duration: 1s, arrival_rate: 1}}
requests:
  - name: ask
    target: chat
    body: {body}
"""


def laughs(levels: int, width: int, indent: str = "") -> str:
    """A 'billion laughs': each anchor is `width` aliases of the one before."""
    return "".join(f"{indent}{item}\n" for item in _laughs(levels, width))


def laughs_flow(levels: int, width: int) -> str:
    return "{" + ", ".join(_laughs(levels, width)) + "}"


def _laughs(levels: int, width: int) -> list[str]:
    items = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        items.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return items


def limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))   # a safety net, not the test


def run_llmscen(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float, float]:
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, preexec_fn=limits,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    bounds = re.findall(r"^BOUNDS (\S+) (\d+)$", proc.stderr, re.MULTILINE)
    assert bounds, proc.stderr[-2000:]
    cpu, rss_kib = bounds[-1]
    return proc, float(cpu), int(rss_kib) / 1024


def cpu_budget(tmp: Path) -> float:
    """CPU_SECONDS, scaled by how much slower than on a quiet machine a plain scenario
    validates now."""
    plain = write(tmp / "plain.yaml", SCENARIO.format(body="{}"))
    proc, cpu, _ = run_llmscen("validate", plain.name, cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return CPU_SECONDS * max(1.0, cpu / QUIET_S)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def deep_flow(tmp: Path) -> Path:
    return write(tmp / "s.yaml", SCENARIO.format(body="[" * 5000 + "]" * 5000))


def deep_mappings(tmp: Path) -> Path:
    return write(tmp / "s.yaml", SCENARIO.format(body="{k: " * 2000 + "v" + "}" * 2000))


def deep_block_mappings(tmp: Path) -> Path:
    nested = "".join(f"{' ' * (i + 6)}k{i}:\n" for i in range(100)) + " " * 106 + "v\n"
    return write(tmp / "s.yaml", SCENARIO.format(body="") + nested)


def deep_by_aliases(tmp: Path) -> Path:
    # each anchor 10 levels deep, chained: fine one by one, far past the limit together
    chain = ", ".join(f"&d{i} {'[' * 10}{f'*d{i - 1}' if i else '1'}{']' * 10}"
                      for i in range(12))
    return write(tmp / "s.yaml", SCENARIO.format(body=f"{{defs: [{chain}], x: *d11}}"))


def bomb_under_unknown_keys(tmp: Path) -> Path:
    return write(tmp / "s.yaml", SCENARIO.format(body="{}") + laughs(9, 9))


def bomb_in_a_body(tmp: Path) -> Path:
    anchors = laughs(9, 9, indent="      ")
    return write(tmp / "s.yaml", SCENARIO.format(body="") + "      defs:\n"
                 + textwrap.indent(anchors, "  ") + "      prompt: *l8\n")


def wide_bomb(tmp: Path) -> Path:
    body = "{defs: " + laughs_flow(6, 12) + ", x: [*l5, *l5]}"
    return write(tmp / "s.yaml", SCENARIO.format(body=body))


def many_aliases(tmp: Path) -> Path:
    text = "x: &x [1, 2, 3]\n" + "requests2: [" + ", ".join(["*x"] * 15000) + "]\n"
    return write(tmp / "s.yaml", SCENARIO.format(body="{}") + text)


def huge_integer(tmp: Path) -> Path:
    return write(tmp / "s.yaml", SCENARIO.format(body="{}") + "seed: " + "9" * 5000 + "\n")


def huge_scenario(tmp: Path) -> Path:
    path = write(tmp / "s.yaml", SCENARIO.format(body="{}"))
    with path.open("r+b") as f:
        f.truncate(8 << 30)   # sparse: 8 GiB claimed, nothing on disk
    return path


def fifo_scenario(tmp: Path) -> Path:
    os.mkfifo(tmp / "s.yaml")   # nobody ever writes: opening it would block for ever
    return tmp / "s.yaml"


def with_data(tmp: Path, make: Callable[[Path], None]) -> Path:
    make(tmp / "rows.jsonl")
    text = SCENARIO.format(body="{prompt: '{{ row.p }}'}") + "    data: rows\n" \
        "data:\n  rows: {file: rows.jsonl, format: jsonl}\n"
    return write(tmp / "s.yaml", text)


def fifo_data(tmp: Path) -> Path:
    return with_data(tmp, os.mkfifo)


def device_data(tmp: Path) -> Path:
    return with_data(tmp, lambda p: p.symlink_to("/dev/zero"))


def directory_data(tmp: Path) -> Path:
    return with_data(tmp, lambda p: p.mkdir())


def huge_data(tmp: Path) -> Path:
    def sparse(p: Path) -> None:
        p.write_text('{"p": "x"}\n')
        with p.open("r+b") as f:
            f.truncate(8 << 30)
    return with_data(tmp, sparse)


# file maker, what the message must say
CORPUS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "5000 nested [": (deep_flow, "nested deeper than 64 levels"),
    "2000 nested mappings": (deep_mappings, "nested deeper than 64 levels"),
    "100 nested block mappings": (deep_block_mappings, "nested deeper than 64 levels"),
    "nesting through aliases": (deep_by_aliases, "nests the document deeper than 64 levels"),
    "9x9 laughs under unknown keys": (bomb_under_unknown_keys, "alias *l3 expands the document"),
    "9x9 laughs in a request body": (bomb_in_a_body, "alias *l3 expands the document"),
    "6x12 laughs used twice": (wide_bomb, "alias *l2 expands the document"),
    "15000 small aliases": (many_aliases, "expands the document past the limit"),
    "5000-digit integer": (huge_integer, "integer of 5000 digits is out of range"),
    "8 GiB scenario": (huge_scenario, "it is 8 GiB, past the limit of 64 KiB"),
    "FIFO scenario": (fifo_scenario, "it is a named pipe (FIFO), not a regular file"),
    "FIFO data file": (fifo_data, "it is a named pipe (FIFO), not a regular file: llmscen "
                                  "reads a data file when it checks the scenario and again"),
    "device data file": (device_data, "it is a character device, not a regular file"),
    "directory data file": (directory_data, "it is a directory, not a regular file"),
    "8 GiB data file": (huge_data, "it is 8 GiB, past the limit of 64 MiB"),
}


@pytest.mark.parametrize("name", list(CORPUS))
def test_hostile_file_is_refused_quickly_in_bounded_memory(name: str, tmp_path: Path) -> None:
    make, message = CORPUS[name]
    budget = cpu_budget(tmp_path)
    path = make(tmp_path)
    proc, cpu, rss_mb = run_llmscen("validate", path.name, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr
    assert LOCATION.search(proc.stderr), proc.stderr
    assert f"{path.name}:" in proc.stderr
    assert cpu < budget, f"{name}: {cpu:.2f} s of CPU, past {budget:.2f} s"
    assert rss_mb < PEAK_RSS_MB, f"{name}: {rss_mb:.0f} MB peak"


def test_an_alias_bomb_does_not_hide_the_other_mistakes(tmp_path: Path) -> None:
    path = bomb_under_unknown_keys(tmp_path)
    proc, _, _ = run_llmscen("validate", path.name, cwd=tmp_path)
    lines = [line.removeprefix("llmscen: ") for line in proc.stderr.splitlines()]
    # cut at the first alias past the budget: line 14 is `l4: &l4 [*l3, *l3, ...]`, and
    # the first *l3 (10 + 90 + 819 + 7380 values so far, 7381 more) is at column 10
    assert "s.yaml:14:10: alias *l3 expands the document past the limit of 10000 values or " \
           "1000000 characters that aliases may add (a YAML alias bomb?)" in lines
    for key in ("l0", "l1", "l8"):
        assert any(line.startswith("s.yaml:") and f"unknown key {key!r}" in line
                   for line in lines), key


def test_bomb_in_a_set_value_and_an_slo_file(tmp_path: Path) -> None:
    """`--set` values and `report --slos` files go through the same loader."""
    scenario = write(tmp_path / "s.yaml", SCENARIO.format(body="{}"))
    bomb = laughs_flow(9, 9)
    budget = cpu_budget(tmp_path)
    proc, cpu, rss_mb = run_llmscen("plan", scenario.name, "--set", f"requests.0.body={bomb}",
                                    cwd=tmp_path)
    assert proc.returncode == 2 and "alias *l3 expands the document" in proc.stderr
    assert "--set requests.0.body=" in proc.stderr
    assert cpu < budget and rss_mb < PEAK_RSS_MB

    slos = write(tmp_path / "slos.yaml", laughs(9, 9) + "slos:\n  - latency.p95 < 1s\n"
                 "  - {assert: latency.p95 < 1s, phase: *l8}\n")
    results = tmp_path / "results.json"
    build_results(slos=three_slos()[:1]).save(results)
    proc, cpu, rss_mb = run_llmscen("report", results.name, "--slos", slos.name, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "slos.yaml:5:10: alias *l3 expands the document" in proc.stderr
    assert cpu < budget and rss_mb < PEAK_RSS_MB
