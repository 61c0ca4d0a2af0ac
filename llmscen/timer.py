"""Sleeps with sub-millisecond precision: the engine's arrival schedule and openai-sim's
paced streams.

Event loops wake for timers through epoll/libuv, whose timeouts are whole
milliseconds: every wake is up to 1 ms late (0.5 ms on average) — a schedule lag on
every arrival of an open loop and a quarter of the TTFT accuracy the simulator
promises. On Linux a `Waker` arms one timerfd per event loop at the earliest pending
deadline (absolute CLOCK_MONOTONIC, nanosecond resolution, through libc) and resolves
every sleep that is due when it fires. Elsewhere it falls back to the loop's own timers.

The clock is `time.monotonic()` (CLOCK_MONOTONIC), not `loop.time()`: uvloop
caches its loop time in whole milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import heapq
import itertools
import os
import sys
import time

now = time.monotonic

# Deadlines this close to the one that fired are released together with it.
_COALESCE = 20e-6

_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1
_TFD_NONBLOCK = 0o4000
_TFD_CLOEXEC = 0o2000000


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _TimerFd:
    """A non-blocking CLOCK_MONOTONIC timerfd, through libc."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._libc = libc
        self.fd: int = fd

    def arm(self, deadline: float) -> None:
        """Fire once at `deadline` (seconds on CLOCK_MONOTONIC); re-arming replaces it."""
        deadline = max(deadline, 1e-9)  # a zero time would disarm the timer
        seconds = int(deadline)
        spec = _Itimerspec(_Timespec(0, 0),
                           _Timespec(seconds, int((deadline - seconds) * 1e9)))
        if self._libc.timerfd_settime(self.fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None):
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            os.read(self.fd, 8)

    def close(self) -> None:
        os.close(self.fd)


def _open_timerfd() -> _TimerFd | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return _TimerFd()
    except (OSError, AttributeError, TypeError):
        return None


class Waker:
    """Precise `sleep_until` for the tasks of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, precise: bool = True) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._armed: float | None = None
        self._timer = _open_timerfd() if precise else None
        if self._timer is not None:
            try:
                loop.add_reader(self._timer.fd, self._fire)
            except (NotImplementedError, RuntimeError):
                self._timer.close()
                self._timer = None

    @property
    def precise(self) -> bool:
        return self._timer is not None

    async def sleep_until(self, deadline: float) -> None:
        """Return once `now()` has reached `deadline` (at once if it has)."""
        delay = deadline - now()
        if delay <= 0:
            return
        if self._timer is None:
            await asyncio.sleep(delay)
            return
        future = self._loop.create_future()
        heapq.heappush(self._heap, (deadline, next(self._order), future))
        if self._armed is None or deadline < self._armed:
            self._armed = deadline
            self._timer.arm(deadline)
        await future  # a cancelled sleep stays in the heap until its time; harmless

    def _fire(self) -> None:
        timer = self._timer
        assert timer is not None
        timer.drain()
        heap = self._heap
        due = now() + _COALESCE
        while heap and heap[0][0] <= due:
            future = heapq.heappop(heap)[2]
            if not future.done():
                future.set_result(None)
        self._armed = heap[0][0] if heap else None
        if self._armed is not None:
            timer.arm(self._armed)

    def close(self) -> None:
        """Stop watching the timer; pending sleeps are cancelled."""
        if self._timer is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._timer.fd)
            self._timer.close()
            self._timer = None
        for _, _, future in self._heap:
            future.cancel()
        self._heap.clear()
