"""nox sessions: lint, types, tests, bench. `nox -l` lists them.

Sessions reuse the project's `.venv` when run with `nox --no-venv` (as CI does
through the README's command); on their own they build fresh environments.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["lint", "types", "tests", "plugin"]
nox.options.default_venv_backend = "venv"


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "llmscen", "tests", "benchmarks", "plugins")


@nox.session
def types(session: nox.Session) -> None:
    session.install("-e", ".[dev,triton-sim]")
    session.run("mypy")
    session.run("mypy", "plugins/llmscen-ollama/llmscen_ollama",
                "plugins/broken-examples/broken_plugins.py")
    # two runs: benchmarks/ and benchmarks/triton/ each have a compare.py
    session.run("mypy", *sorted(str(p) for p in Path("benchmarks").glob("*.py")))
    session.run("mypy", *sorted(str(p) for p in Path("benchmarks/triton").glob("*.py")))


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev,triton-sim]")
    session.run("bash", "scripts/install-test-deps.sh", external=True)
    session.run("pytest", *session.posargs)


@nox.session(python=["3.10", "3.11", "3.12", "3.13"])
def versions(session: nox.Session) -> None:
    """The test suite on every supported Python: `nox -s versions` (not run by default)."""
    session.install("-e", ".[dev,triton-sim]")
    session.run("bash", "scripts/install-test-deps.sh", external=True)
    session.run("pytest", *session.posargs)


@nox.session
def plugin(session: nox.Session) -> None:
    """The example third-party plugin, installed as a team would install theirs."""
    session.install("-e", ".[dev]", "-e", "plugins/llmscen-ollama")
    session.run("pytest", "plugins/llmscen-ollama/tests", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Load generators side by side: nginx, pacing servers, Triton against perf_analyzer, then
    the open loop, --workers, trace replay, memory, record, wake-cost and read-delay benchmarks
    (benchmarks/README.md).
    `nox -s bench -- ARGS` runs benchmarks/compare.py ARGS alone."""
    session.install("-e", ".[triton]")
    session.run("bash", "benchmarks/install-peers.sh", external=True)
    session.run("python", "benchmarks/compare.py", *session.posargs)
    if not session.posargs:
        session.run("bash", "benchmarks/triton/install-perf-analyzer.sh", external=True,
                    env={"VENV": session.virtualenv.location})
        session.run("python", "benchmarks/triton/compare.py", "--reps", "3", "--duration", "10",
                    "--clients", "perf_analyzer,llmscen-w1")
        for script in ("open_loop.py", "workers.py", "replay.py", "memory.py", "record.py",
                       "wake_cost.py", "read_delay.py"):
            session.run("python", f"benchmarks/{script}")
