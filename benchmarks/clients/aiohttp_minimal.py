"""Minimal aiohttp + uvloop closed loop: the baseline the other clients are compared to.

json: POST, read the body, json.loads it.
sse:  POST with stream=true, `async for line in resp.content`, json.loads each `data:` event
      and take a timestamp per event -- what a TTFT/ITL tool does naively.
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
                    else:
                        stamps = []
                        async for line in resp.content:
                            if not line.startswith(b"data: "):
                                continue
                            payload = line[6:].rstrip()
                            if payload == b"[DONE]":
                                break
                            json.loads(payload)
                            stamps.append(time.perf_counter())
                        counts["events"] += len(stamps)
                    counts["responses"] += 1
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                counts["errors"] += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(loop(session) for _ in range(concurrency)))
    print_summary("aiohttp_minimal", mode, counts["responses"], counts["errors"],
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
