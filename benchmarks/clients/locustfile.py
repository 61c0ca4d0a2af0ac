"""Locust FastHttpUser baseline: each user POSTs /v1/chat/completions in a closed loop.

    locust -f locustfile.py --headless --users 64 --spawn-rate 64 -t 13s \
        --host http://127.0.0.1:PORT --mode sse --only-summary

json: body read, status checked, not parsed.
sse:  stream=True, read in 4 KB chunks, events split on blank lines and counted; no
      per-event timing and no JSON parsing (Locust has no TTFT/ITL notion).
"""

from __future__ import annotations

import json

from locust import FastHttpUser, constant, events, task


@events.init_command_line_parser.add_listener
def _add_mode(parser) -> None:
    parser.add_argument("--mode", choices=["json", "sse"], default="json",
                        help="json: stream=false; sse: stream=true, split events")


def _body(mode: str) -> bytes:
    body = {"model": "bench", "messages": [{"role": "user", "content": "Count to sixty-four."}],
            "max_tokens": 64, "ignore_eos": True, "stream": mode == "sse"}
    if mode == "sse":
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


HEADERS = {"Content-Type": "application/json"}


class ChatUser(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.mode = self.environment.parsed_options.mode
        self.body = _body(self.mode)

    @task
    def chat(self) -> None:
        if self.mode == "json":
            self.client.post("/v1/chat/completions", data=self.body, headers=HEADERS)
            return
        with self.client.post("/v1/chat/completions", data=self.body, headers=HEADERS,
                              stream=True, catch_response=True) as resp:
            buf = b""
            done = False
            for chunk in resp.iter_content(chunk_size=4096, decode_content=False):
                buf += chunk
                *complete, buf = buf.split(b"\n\n")
                done = done or b"data: [DONE]" in complete
            if not done:
                resp.failure("stream ended without [DONE]")
