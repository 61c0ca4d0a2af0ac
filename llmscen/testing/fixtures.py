"""pytest fixtures for testing against LLM services with llmscen (exposed by the plugin).

- `openai_sim`: start the bundled OpenAI/vLLM simulator with options; get its base URL.
- `triton_sim`: a running triton-sim (session-wide), or a skip without the triton-sim extra.
- `llmscen_run`: run a scenario file; get its `RunResults` and exit code to assert on.

Imported by the pytest plugin in every session, so llmscen is imported inside
the fixtures, not here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from llmscen.services.triton_sim import TritonSim
    from llmscen.testing.run import Overrides, ScenarioRun, Targets

STARTUP_TIMEOUT = 30.0


class SimProcess:
    """An openai-sim child process; `url` is its base URL (`http://127.0.0.1:PORT`, no /v1)."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path, url: str) -> None:
        self.proc = proc
        self.log = log
        self.url = url

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds; idempotent."""
        if self.proc.poll() is not None:
            return
        _signal_group(self.proc, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(self.proc, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, sig)
        else:  # pragma: no cover - Windows has no process groups to signal
            proc.send_signal(sig)


def start_openai_sim(options: dict[str, Any] | None = None, log_dir: str | Path | None = None,
                     timeout: float = STARTUP_TIMEOUT) -> SimProcess:
    """Start `python -m llmscen.services.openai_sim` and wait until it listens.

    A separate process, like the `openai-sim` service, so the simulator does
    not share the test's interpreter (and GIL) with the load generator.
    `options` are `OpenAISimOptions` fields (`ttft`, `itl`, `output_tokens`, ...).
    Raises `RuntimeError` with the log's last lines if it does not come up.
    """
    from llmscen.services.openai_sim import OpenAISimOptions

    checked = OpenAISimOptions.model_validate(options or {})   # a bad option fails here, clearly
    folder = Path(log_dir) if log_dir is not None else Path.cwd()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "openai-sim.log"
    argv = [sys.executable, "-m", "llmscen.services.openai_sim", "--host", "127.0.0.1",
            "--port", "0", "--options", checked.model_dump_json()]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    sim = SimProcess(proc, log, "")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("LISTENING "):
                sim.url = line.split(" ", 1)[1].strip()
                return sim
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    sim.stop()
    why = (f"exited with code {proc.returncode}" if proc.returncode is not None else
           f"did not listen within {timeout:g}s")
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise RuntimeError(f"openai-sim {why}; last lines of {log}:\n{tail}")


@pytest.fixture
def openai_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., str]]:
    """Start simulators: `url = openai_sim(ttft="20ms", output_tokens=16)`; stopped after the test.

    The URL has no `/v1`; pass it as a target URL (`llmscen_run(..., targets={"chat": url})`).
    """
    started: list[SimProcess] = []

    def start(**options: Any) -> str:
        sim = start_openai_sim(options, tmp_path_factory.mktemp("openai-sim"))
        started.append(sim)
        return sim.url

    yield start
    for sim in reversed(started):
        sim.stop()


@pytest.fixture(scope="session")
def triton_sim_options() -> dict[str, Any]:
    """Options of the `triton_sim` fixture; override this fixture in a conftest.py to change them."""
    return {"image_size": 64}


@pytest.fixture(scope="session")
def triton_sim(triton_sim_options: dict[str, Any],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonSim]:
    """A running triton-sim for the session (`.grpc_url`, `.http_url`, `.urls`).

    Skips when the triton-sim extra is not installed (`pip install 'llmscen[triton-sim]'`).
    """
    try:
        from llmscen.services.triton_sim import TritonSimError, find_tritonserver, start_triton_sim

        find_tritonserver()
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"triton_sim needs the triton-sim extra (pip install 'llmscen[triton-sim]'): {exc}")
    log = tmp_path_factory.mktemp("triton-sim") / "tritonserver.log"
    try:
        sim = start_triton_sim(triton_sim_options, log_file=log)
    except TritonSimError as exc:
        pytest.fail(f"triton-sim did not start: {exc}", pytrace=False)
    with sim:
        yield sim


@pytest.fixture
def llmscen_run(tmp_path: Path) -> Callable[..., ScenarioRun]:
    """Run a scenario: `run = llmscen_run("smoke.yaml", sets={...}, targets={...})`.

    Returns a `ScenarioRun`: `.results` (RunResults), `.exit_code` (as `llmscen
    run`), `.problem`, `.slo(text)`, `.check(request, expectation)`, `.out_dir`.
    An invalid scenario raises `ScenarioError` (its message is `FILE:LINE:COL: ...`).
    """
    from llmscen.engine.registry import Registry
    from llmscen.testing.run import run_scenario

    registry = Registry.discover()
    count = 0

    def run(path: str | Path, *, sets: Overrides = (), targets: Targets = (),
            workers: int = 1, out: str | Path | None = None) -> ScenarioRun:
        nonlocal count
        count += 1
        folder = out if out is not None else tmp_path / f"llmscen-{Path(path).stem}-{count}"
        return run_scenario(path, sets=sets, targets=targets, out=folder, workers=workers,
                            registry=registry)

    return run


__all__ = ["SimProcess", "llmscen_run", "openai_sim", "start_openai_sim", "triton_sim",
           "triton_sim_options"]
