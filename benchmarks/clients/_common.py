"""Shared bits of the baseline clients: arguments, the request body, the summary line.

Each client runs `--concurrency` loops for `--duration` seconds against
`--url`/v1/chat/completions, then prints one JSON line to stdout:
{"client": ..., "mode": ..., "responses": N, "errors": N, "events": N, "seconds": S}.
"""

from __future__ import annotations

import argparse
import json
import sys


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", required=True, help="server root, e.g. http://127.0.0.1:8000")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--mode", choices=("json", "sse"), default="json",
                        help="json: stream=false; sse: stream=true, parse the event stream")
    return parser.parse_args()


def request_body(mode: str) -> bytes:
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": "Count to sixty-four."}],
        "max_tokens": 64,
        "ignore_eos": True,     # llama-server: every response is 64 tokens
        "stream": mode == "sse",
    }
    if mode == "sse":
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


def print_summary(client: str, mode: str, responses: int, errors: int, events: int,
                  seconds: float) -> None:
    print(json.dumps({"client": client, "mode": mode, "responses": responses, "errors": errors,
                      "events": events, "seconds": round(seconds, 3)}), flush=True)
    sys.stdout.flush()
