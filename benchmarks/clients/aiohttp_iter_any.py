"""aiohttp + uvloop, reading SSE with `iter_any()` and `bytes.split` (no per-event JSON).

sse:  one timestamp per network read, events split on blank lines, only the usage event
      is parsed. json: same as aiohttp_minimal (read + json.loads).
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
from _common import parse_args, print_summary, request_body

HEADERS = {"Content-Type": "application/json"}


async def run(url: str, concurrency: int, duration: float, mode: str) -> None:
    body = request_body(mode)
    endpoint = url.rstrip("/") + "/v1/chat/completions"
    counts = {"responses": 0, "errors": 0, "events": 0}
    start = time.monotonic()
    deadline = start + duration

    async def loop(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            try:
                async with session.post(endpoint, data=body, headers=HEADERS) as resp:
                    if resp.status != 200:
                        await resp.read()
                        counts["errors"] += 1
                        continue
                    if mode == "json":
                        json.loads(await resp.read())
                        counts["responses"] += 1
                        continue
                    buf = b""
                    events = 0
                    done = False
                    async for data in resp.content.iter_any():
                        time.perf_counter()  # one timestamp per read
                        buf += data
                        *complete, buf = buf.split(b"\n\n")
                        for event in complete:
                            if event == b"data: [DONE]":
                                done = True
                            elif event.startswith(b"data: "):
                                events += 1
                                if b'"usage":{' in event:
                                    json.loads(event[6:])
                    counts["events"] += events
                    if done:
                        counts["responses"] += 1
                    else:
                        counts["errors"] += 1
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                counts["errors"] += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(loop(session) for _ in range(concurrency)))
    print_summary("aiohttp_iter_any", mode, counts["responses"], counts["errors"],
                  counts["events"], time.monotonic() - start)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    coro = run(args.url, args.concurrency, args.duration, args.mode)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    main()
