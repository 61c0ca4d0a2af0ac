"""Sampling the resources a run uses, once a second, in the driver.

What the load generator itself uses comes from its workers' own `Progress`
reports (each measures its process: CPU over its last second, RSS), so it is
right wherever the worker runs; the driver adds what only it can see: the
host, the process tree of every service it started (psutil), and the GPUs
(NVML through nvidia-ml-py, when both are there — otherwise the results say
why not). Every sample is tagged with the phase running when it was taken.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil

from llmscen.metrics.results import ResourceSeries

log = logging.getLogger(__name__)
ORDER = ("client", "driver", "worker", "host", "service", "gpu")
TREE_REFRESH_S = 5.0   # how often a service's process tree is listed again
FRESH_S = 1.5        # a worker's report older than this says nothing about this second


@dataclass(frozen=True)
class WorkerSample:
    cpu: float           # cores used over its last second
    rss: int             # bytes


@dataclass
class Gpus:
    """NVML's devices, or why there are none to sample."""

    nvml: Any = None
    handles: list[Any] = field(default_factory=list)
    unavailable: str | None = None

    @classmethod
    def open(cls) -> Gpus:
        try:
            import pynvml  # nvidia-ml-py
        except ImportError:
            return cls(unavailable="not available: nvidia-ml-py is not installed "
                                   "(pip install 'llmscen[gpu]')")
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            return cls(unavailable=f"not available: NVML could not start ({exc}); no NVIDIA "
                                   "driver on this machine?")
        try:
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except pynvml.NVMLError as exc:
            pynvml.nvmlShutdown()
            return cls(unavailable=f"not available: NVML could not list the GPUs ({exc})")
        if not handles:
            pynvml.nvmlShutdown()
            return cls(unavailable="not available: NVML found no GPU")
        return cls(nvml=pynvml, handles=handles)

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for index, handle in enumerate(self.handles):
            try:
                rates = self.nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = self.nvml.nvmlDeviceGetMemoryInfo(handle)
            except self.nvml.NVMLError as exc:
                log.debug("gpu %d: %s", index, exc)
                continue
            out[f"gpu.{index}.utilization"] = rates.gpu / 100
            out[f"gpu.{index}.memory_used"] = float(memory.used)
        return out

    def close(self) -> None:
        if self.nvml is not None:
            with contextlib.suppress(Exception):
                self.nvml.nvmlShutdown()
            self.nvml = None


class Sampler:
    """Once a second: the host, the services' process trees, the GPUs and the workers'
    own figures, as per-second series by (metric, phase)."""

    def __init__(self, services: Mapping[str, Callable[[], int | None]], *,
                 gpus: Gpus | None = None, separate_workers: bool = False) -> None:
        self.services = dict(services)        # name → its process id now
        # the driver's own process; its CPU counts for the client when the workers run
        # elsewhere (an in-process worker's own figure already covers the whole process)
        self.driver = psutil.Process()
        self.driver.cpu_percent(None)
        self.separate_workers = separate_workers
        self.gpus = gpus if gpus is not None else Gpus.open()
        self.unavailable: dict[str, str] = {}
        if self.gpus.unavailable:
            self.unavailable["gpu"] = self.gpus.unavailable
        self._processes: dict[int, psutil.Process] = {}   # kept: cpu_percent measures
        #                                                    since the previous call
        self._series: dict[tuple[str, str | None], list[tuple[int, float]]] = {}
        self._trees: dict[str, tuple[int, list[psutil.Process], float]] = {}   # service →
        #                                                 (its pid, its tree, when listed)
        psutil.cpu_percent(None)              # the first call only starts the count
        self._no_peak: set[int] = set()       # processes whose peak RSS cannot be read
        self._peaks: dict[int, int] = {}      # ... and the others' at the previous sample

    def sample(self, t: int, phase: str | None, workers: Mapping[int, WorkerSample]
               ) -> dict[str, float]:
        """Take one sample at second `t` of the run, while `phase` runs (None: none); the
        values taken."""
        values: dict[str, float] = {}
        try:
            with self.driver.oneshot():
                driver = (self.driver.cpu_percent(None) / 100,
                          float(self.driver.memory_info().rss))
        except psutil.Error:
            driver = (0.0, 0.0)
        values["driver.cpu"], values["driver.memory"] = driver
        if workers:
            for index, w in sorted(workers.items()):
                values[f"worker.{index}.cpu"] = w.cpu
                values[f"worker.{index}.memory"] = float(w.rss)
            own = driver if self.separate_workers else (0.0, 0.0)
            values["client.cpu"] = sum(w.cpu for w in workers.values()) + own[0]
            values["client.memory"] = float(sum(w.rss for w in workers.values())) + own[1]
        values["host.cpu"] = psutil.cpu_percent(None) / 100
        memory = psutil.virtual_memory()
        values["host.memory"] = float(memory.total - memory.available)
        for name, pid in self.services.items():
            values.update(self._tree(name, pid()))
        values.update(self.gpus.sample())
        for name, value in values.items():
            self._series.setdefault((name, phase), []).append((t, value))
        return values

    def _tree(self, name: str, pid: int | None) -> dict[str, float]:
        """CPU (cores), RSS and threads of the process `pid` and all its descendants."""
        if pid is None:
            return {}
        # finding the descendants reads every process of the machine (~10 ms, much of it
        # holding the GIL the load generator's loop needs): only every TREE_REFRESH_S
        now = time.monotonic()
        known = self._trees.get(name)
        if known is None or known[0] != pid or now - known[2] > TREE_REFRESH_S:
            try:
                root = self._process(pid)
                tree = [root, *(self._process(c.pid) for c in root.children(recursive=True))]
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                return {}
            self._trees[name] = known = (pid, tree, now)
        tree = known[1]
        cpu = rss = threads = 0.0
        for process in tree:
            try:
                with process.oneshot():
                    cpu += process.cpu_percent(None) / 100
                    now_rss = process.memory_info().rss
                    threads += process.num_threads()
                peak = self._peak_rss(process.pid)
                rss += now_rss if peak is None else max(peak, now_rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return {f"service.{name}.cpu": cpu, f"service.{name}.rss": rss,
                f"service.{name}.threads": threads}

    def _peak_rss(self, pid: int) -> int | None:
        """A new peak RSS the process reached since the previous sample (Linux's VmHWM
        rose), so a peak between two samples is not missed; None when it did not rise or
        the kernel cannot tell (then the RSS of the moment counts). VmHWM is only read:
        resetting it (clear_refs) takes the process's mmap lock for writing, which waits
        for, and stalls, a server mapping a large region."""
        if pid in self._no_peak:
            return None
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                status = f.read()
            start = status.index(b"VmHWM:") + 6
            peak = int(status[start:status.index(b"kB", start)]) * 1024
        except (OSError, ValueError):
            self._no_peak.add(pid)
            return None
        before = self._peaks.get(pid)
        self._peaks[pid] = peak
        return peak if before is not None and peak > before else None

    def _process(self, pid: int) -> psutil.Process:
        process = self._processes.get(pid)
        if process is None or not process.is_running():
            # not started here: the sample's own first call starts the count and reads 0;
            # one a moment before would read the CPU ticks of that moment as whole cores
            process = self._processes[pid] = psutil.Process(pid)
        return process

    def series(self) -> list[ResourceSeries]:
        """By source (client, workers, host, services, GPUs), then as first sampled."""
        keys = sorted(self._series, key=lambda k: ORDER.index(k[0].split(".", 1)[0]))
        return [ResourceSeries(name=name, phase=phase, points=self._series[(name, phase)])
                for name, phase in keys]

    def close(self) -> None:
        self.gpus.close()
