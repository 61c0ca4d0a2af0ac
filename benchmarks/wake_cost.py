"""What a block and its wake-up cost this machine's CPU (issue 15, goals 1 and 4).

    .venv/bin/python benchmarks/wake_cost.py [--cycles 5000] [--cpu 1]

An event loop that sleeps until its next timer or read pays, per wake-up, what the
kernel (and on a VM, the hypervisor) charges for blocking and waking the thread. A
closed loop with many connections rarely blocks; an open loop blocks about twice a
request (its arrival timer, then the answer), and a reader of a paced stream once an
event. This prints that price beside what plain system calls cost, in this thread's CPU
time (`time.thread_time`), as medians of 3 interleaved tries:

  syscall          getpid, and epoll_wait that does not block
  arm, far         timerfd_settime for a time past every other timer
  arm, near        timerfd_settime 100 µs ahead (reprograms the CPU's timer)
  block + wake     arm a timerfd 200 µs ahead (or due now), poll until it fires, read it
  sleep(0)         time.sleep(0): a block with nothing to wait for

Linux only (timerfd).
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from llmscen.timer import _TimerFd, now


def per_call(work: Callable[[], object], cycles: int) -> tuple[float, float]:
    """Microseconds of this thread's CPU, and of the wall clock, per call of `work`."""
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(cycles):
        work()
    return ((time.thread_time() - cpu) / cycles * 1e6,
            (time.perf_counter() - wall) / cycles * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=5000)
    parser.add_argument("--cpu", type=int, default=1, help="pin to this core (-1: do not)")
    args = parser.parse_args()
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    timer = _TimerFd()
    poller = select.poll()
    poller.register(timer.fd, select.POLLIN)
    idle = select.epoll()
    far = now() + 1e6

    def block(ahead: float) -> Callable[[], None]:
        def once() -> None:
            timer.arm(now() + ahead)
            poller.poll()
            timer.drain()
        return once

    cases: dict[str, Callable[[], object]] = {
        "syscall: getpid": os.getpid,
        "syscall: epoll_wait, not blocking": lambda: idle.poll(0),
        "arm, far": lambda: timer.arm(far),
        "arm, near (100 µs ahead)": lambda: timer.arm(now() + 100e-6),
        "block + wake, timer due now": block(0.0),
        "block + wake, timer 200 µs ahead": block(200e-6),
        "time.sleep(0)": lambda: time.sleep(0),
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(3):
        for name, work in cases.items():
            runs[name].append(per_call(work, args.cycles))
    timer.close()
    print(f"load average {os.getloadavg()[0]:.2f}; {args.cycles} calls a try, 3 tries, "
          f"pinned to core {args.cpu}\n")
    print("| what | CPU µs per call (tries) | wall µs per call |")
    print("|---|---|---|")
    for name, rows in runs.items():
        cpus = [r[0] for r in rows]
        tries = ", ".join(f"{c:.2f}" for c in cpus)
        print(f"| {name} | **{statistics.median(cpus):.2f}** ({tries}) | "
              f"{statistics.median(r[1] for r in rows):.2f} |")


if __name__ == "__main__":
    main()
