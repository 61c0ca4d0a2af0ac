"""`--engine ray`: the same workers as async Ray actors, one handle each for the same driver.

An actor (`ActorWorker`) runs the very `Worker` a local process runs and keeps
its reports until the driver takes them; the driver's `ActorHandle` is a
`driver.handles.Handle` like the others: it forwards commands in order, moves
reports into the driver's queue, and says when the actor is gone. The only
thing it adds is time: each node has its own monotonic clock, so the handle
measures the actor's offset to the driver's clock once at start and moves every
instant it sends (a phase's shared start, the run's origin, a fault's time)
onto the actor's clock — so phases start together and per-second series line
up on the driver's timeline. Ray is imported only here, and only when used.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from llmscen.compile.plan import Plan
from llmscen.driver import messages as m
from llmscen.errors import InputError, RunError
from llmscen.metrics.results import ClusterInfo, NodeInfo
from llmscen.spec.secrets import public_url

INSTALL = "pip install 'llmscen[ray]'"
START_MARGIN_S = 0.5        # from the barrier to the shared start: a command's trip to an actor
MAX_DEFAULT_WORKERS = 32
CLOCK_SAMPLES = 5           # round trips per actor; the shortest one gives the offset
TAKE_WAIT_S = 0.5           # an actor answers `take` at the latest after this, reports or not
UNAVAILABLE_S = 10.0        # an actor Ray cannot reach for this long is lost
START_TIMEOUT_S = 120.0     # for every actor to be placed and started
LOOPBACK = ("localhost", "localhost.localdomain", "ip6-localhost")
log = logging.getLogger(__name__)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(f"--engine ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


class ActorWorker:
    """The body of a worker actor (made a Ray actor class by `RayCluster`): a `Worker`
    whose reports wait here until the driver takes them."""

    def __init__(self) -> None:
        self.reports: list[m.Report] = []
        self.first = 0          # the sequence number of reports[0]
        self.waiting: asyncio.Event | None = None
        self.inbox: asyncio.Queue[m.Command] | None = None
        self.task: asyncio.Task[None] | None = None

    async def where(self) -> dict[str, Any]:
        """This actor's clock now, and where it runs."""
        ray = _ray()
        return {"clock_ns": time.perf_counter_ns(), "pid": os.getpid(),
                "node": ray.get_runtime_context().get_node_id(),
                "address": ray.util.get_node_ip_address()}

    async def start(self, plan: Plan, index: int, count: int, origin_ns: int,
                    log_path: str | None) -> None:
        from llmscen.driver.worker import Worker
        from llmscen.engine.registry import Registry

        self.waiting = asyncio.Event()
        self.inbox = asyncio.Queue()
        worker = Worker(plan, index, count, Registry.discover(), self._put,
                        origin_ns=origin_ns, log_path=log_path)
        self.task = asyncio.create_task(worker.serve(self.inbox))
        self.task.add_done_callback(lambda _: self.waiting.set() if self.waiting else None)

    def _put(self, report: m.Report) -> None:
        self.reports.append(report)
        assert self.waiting is not None
        self.waiting.set()

    async def command(self, command: m.Command) -> None:
        assert self.inbox is not None
        self.inbox.put_nowait(command)

    async def take(self, upto: int) -> tuple[int, list[m.Report], bool]:
        """The reports from number `upto` on (the driver has all before it; a reply lost on
        the way is sent again), waiting a little for one; and whether the worker is done."""
        assert self.waiting is not None and self.task is not None
        if upto > self.first:
            del self.reports[:upto - self.first]
            self.first = upto
        if not self.reports and not self.task.done():
            self.waiting.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.waiting.wait(), TAKE_WAIT_S)
        return self.first, list(self.reports), self.task.done()


@dataclasses.dataclass
class Place:
    """Where an actor runs, and its clock against the driver's."""

    node: str
    address: str
    pid: int
    offset_ns: int          # the actor's perf_counter_ns minus the driver's
    rtt_ns: int             # the round trip it was measured with: the offset is ± half of it


def on_actor_clock(command: m.Command, offset_ns: int) -> m.Command:
    """`command` with every instant of the driver's clock moved onto the actor's."""
    if isinstance(command, m.StartPhase):
        return dataclasses.replace(command, start_ns=command.start_ns + offset_ns,
                                   origin_ns=command.origin_ns + offset_ns)
    if isinstance(command, m.FaultStarted):
        return dataclasses.replace(command, at_ns=command.at_ns + offset_ns)
    return command


class ActorHandle:
    """The driver's side of one worker actor (a `driver.handles.Handle`)."""

    def __init__(self, actor: Any, index: int, place: Place,
                 reports: asyncio.Queue[m.Report]) -> None:
        self.actor = actor
        self.index = index
        self.place = place
        self.reports = reports
        self.commands: asyncio.Queue[m.Command] = asyncio.Queue()
        self.death: str | None = None
        self.sender = asyncio.create_task(self._send())
        self.taker = asyncio.create_task(self._take())

    def send(self, command: m.Command) -> None:
        self.commands.put_nowait(on_actor_clock(command, self.place.offset_ns))

    async def _send(self) -> None:
        """One call at a time: an async actor runs concurrent calls in any order."""
        while True:
            command = await self.commands.get()
            try:
                await self.actor.command.remote(command)
            except Exception:      # the actor is gone; `_take` says how
                return

    async def _take(self) -> None:
        unavailable = _ray().exceptions.ActorUnavailableError
        taken = 0           # reports delivered so far
        since: float | None = None
        while True:
            try:
                first, batch, done = await self.actor.take.remote(taken)
            except unavailable as exc:     # unreachable for now: its node may be gone
                since = since or time.monotonic()
                if time.monotonic() - since > UNAVAILABLE_S:
                    self.death = f"unreachable for {UNAVAILABLE_S:g}s: {_death(exc)}"
                    return
                await asyncio.sleep(0.5)
                continue
            except Exception as exc:    # RayActorError and kin: the actor died
                self.death = _death(exc)
                return
            since = None
            for report in batch[taken - first:]:
                self.reports.put_nowait(report)
            taken = first + len(batch)
            if done:
                return

    def alive(self) -> bool:
        return not self.taker.done()

    def exit_description(self) -> str:
        where = f"(Ray actor pid {self.place.pid} on {self.place.address})"
        if self.death is None:
            return f"{where} ended" if self.taker.done() else f"{where} still running"
        return f"{where} died [{self.death}]"

    async def close(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self.taker), 10)
        self.taker.cancel()
        self.sender.cancel()
        with contextlib.suppress(Exception):
            _ray().kill(self.actor, no_restart=True)


def _death(exc: BaseException) -> str:
    """Ray's account of an actor's death (or of a call that raised in it), in one line: why,
    without its list of possible causes or the remote traceback."""
    cause = getattr(exc, "cause", None)      # RayTaskError: the exception raised in the actor
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {' '.join(str(cause).split())[:240]}"
    text = " ".join(str(exc).split())
    for because in ("The actor is dead because ", "The actor died because "):
        if because in text:
            text = text.split(because, 1)[1]
    for tail in (" Some common causes", " The task may or may not"):
        text = text.split(tail, 1)[0]
    return (text[:240] or type(exc).__name__).rstrip(".")


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_problem(plan: Plan, hosts: list[str], driver: str) -> str | None:
    """Why a target cannot be reached from every node: a loopback address (a service's
    too: services run on the driver's host) while some node is another host."""
    if all(h == driver for h in hosts):
        return None
    for target in plan.targets:
        url = target.url or ""
        if target.service:
            url, host, why = f"service:{target.service}", "127.0.0.1", \
                "its service listens on the driver's host only"
        else:
            host, why = urlsplit(url).hostname or "", "each actor would call its own host"
        if is_loopback(host):
            return (f"target {target.name!r} ({public_url(url)}) is a loopback address, but "
                    f"the Ray cluster spans hosts {', '.join(hosts)}: {why}; point the target "
                    "at an address every node reaches (--target NAME=URL)")
    return None


# Ray's client proxy forks a server for each client while its gRPC threads run, and that
# server sometimes dies at once (ray-project/ray#63202, ~7 % of connects): nothing has
# started yet, so the connect is tried again.
CLIENT_START_FAILED = "Initialization failure from server"
CLIENT_TRIES = 3


def ray_said(exc: BaseException) -> str:
    """Ray's error on one line; a traceback its server sent back is cut to what comes
    before it and its last line, the error itself (its head alone names no cause)."""
    text = str(exc)
    if "Traceback (most recent call last)" in text:
        before, _, trace = text.partition("Traceback (most recent call last)")
        lines = [line.strip() for line in trace.splitlines() if line.strip()]
        text = f"{before.strip()} {lines[-1] if lines else ''}"
    return " ".join(text.split())[:300]


class RayCluster:
    """A connection to a running Ray cluster, and the worker actors started on it."""

    start_margin = START_MARGIN_S

    def __init__(self, address: str) -> None:
        ray = _ray()
        self.ray = ray
        self.address = address
        for attempt in range(CLIENT_TRIES):
            try:
                ray.init(address=address, namespace="llmscen", logging_level=logging.WARNING,
                         ignore_reinit_error=True)
                break
            except Exception as exc:      # no cluster there, wrong version, unreachable …
                said = ray_said(exc)
                if attempt + 1 < CLIENT_TRIES and said.startswith(CLIENT_START_FAILED):
                    with contextlib.suppress(Exception):
                        ray.shutdown()
                    continue
                raise InputError(f"--address {public_url(address)}: cannot connect to a Ray "
                                 f"cluster: {said}") from None
        if address == "auto":       # say which cluster it found
            with contextlib.suppress(Exception):
                self.address = str(ray.get_runtime_context().gcs_address or address)
        self.driver_address = ray.util.get_node_ip_address()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.hosts = sorted({str(n.get("NodeManagerAddress", "")) for n in nodes})
        self.cpus = int(ray.cluster_resources().get("CPU", 0))
        self.handles: list[ActorHandle] = []

    def default_workers(self) -> int:
        return max(1, min(self.cpus, MAX_DEFAULT_WORKERS))

    def check(self, plan: Plan, workers: int) -> None:
        """Refuse what cannot work before anything starts (exit 2)."""
        if workers > self.cpus:
            raise InputError(f"--workers {workers}: the Ray cluster at "
                             f"{public_url(self.address)} offers {self.cpus} CPUs, and each "
                             "worker actor takes one")
        problem = loopback_problem(plan, self.hosts, self.driver_address)
        if problem is not None:
            raise InputError(problem)

    async def spawn(self, plan: Plan, count: int, reports: asyncio.Queue[m.Report], *,
                    origin_ns: int, log_path: str | None) -> list[ActorHandle]:
        actor_class = self.ray.remote(ActorWorker)
        run = uuid.uuid4().hex[:8]      # names the actors in Ray's dashboard and logs
        actors = [actor_class.options(num_cpus=1, scheduling_strategy="SPREAD",
                                      max_restarts=0, max_task_retries=0,
                                      name=f"llmscen-{run}-worker-{i}").remote()
                  for i in range(count)]
        try:
            places = await asyncio.wait_for(asyncio.gather(*(place(a) for a in actors)),
                                            START_TIMEOUT_S)
            await asyncio.gather(*(a.start.remote(plan, i, count, origin_ns + p.offset_ns,
                                                  log_path)
                                   for i, (a, p) in enumerate(zip(actors, places,
                                                                  strict=True))))
        except asyncio.TimeoutError:
            self._kill(actors)
            raise RunError(f"{count} worker actors were not all started on the Ray cluster "
                           f"within {START_TIMEOUT_S:g}s (busy CPUs?)") from None
        except Exception as exc:   # e.g. a node without llmscen, or another version of it
            self._kill(actors)
            raise RunError("the worker actors could not start on the Ray cluster (is the same "
                           f"llmscen installed on every node?): {_death(exc)}") from None
        self.handles = [ActorHandle(a, i, p, reports)
                        for i, (a, p) in enumerate(zip(actors, places, strict=True))]
        for h in self.handles:
            log.info("worker %d: Ray actor pid %d on %s (clock offset %+.3f ms)", h.index,
                     h.place.pid, h.place.address, h.place.offset_ns / 1e6)
        return self.handles

    def _kill(self, actors: list[Any]) -> None:
        for actor in actors:
            with contextlib.suppress(Exception):
                self.ray.kill(actor, no_restart=True)

    def info(self) -> ClusterInfo:
        nodes: dict[str, NodeInfo] = {}
        best: dict[str, int] = {}
        for h in self.handles:
            p = h.place
            node = nodes.setdefault(p.node, NodeInfo(node=p.node[:16], address=p.address,
                                                     clock_offset=0.0, rtt=0.0))
            node.workers.append(h.index)
            node.pids.append(p.pid)
            if p.node not in best or p.rtt_ns < best[p.node]:
                best[p.node] = p.rtt_ns
                node.clock_offset, node.rtt = p.offset_ns / 1e9, p.rtt_ns / 1e9
        return ClusterInfo(address=public_url(self.address), ray_version=self.ray.__version__,
                           driver=self.driver_address, nodes=list(nodes.values()))

    def close(self) -> None:
        self.ray.shutdown()


async def place(actor: Any) -> Place:
    """Where the actor runs and its clock's offset to ours, from the shortest round trip."""
    samples = []
    where: dict[str, Any] = {}
    for _ in range(CLOCK_SAMPLES):
        sent = time.perf_counter_ns()
        where = await actor.where.remote()
        back = time.perf_counter_ns()
        samples.append((back - sent, where["clock_ns"] - (sent + back) // 2))
    rtt, offset = min(samples)
    return Place(node=str(where["node"]), address=str(where["address"]), pid=int(where["pid"]),
                 offset_ns=offset, rtt_ns=rtt)


@contextlib.contextmanager
def connected(address: str) -> Iterator[RayCluster]:
    cluster = RayCluster(address)
    try:
        yield cluster
    finally:
        cluster.close()
