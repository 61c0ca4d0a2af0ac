"""`--log-requests FILE`: one JSON line per call, for digging into single requests.

Durations are integer microseconds; model output is left out (it may be long,
and it is the user's data), only its length is kept. Errors keep their class
and message, scrubbed of the plan's secrets (a check's message may quote model output
that echoes one).
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from llmscen.engine.events import BaseHandler, Completed, NotSent, RunEnded, RunStarted
from llmscen.spec.secrets import Scrubber


class RequestLog(BaseHandler):
    """Appends one line per event with a single write, unbuffered: several workers share the
    file, and a line written is on disk even if the process is killed right after."""

    def __init__(self, path: str | Path, worker: int = 0) -> None:
        self.fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.worker = worker
        self.scrub = Scrubber()

    def on_run_started(self, event: RunStarted) -> None:
        self.scrub = event.plan.scrubber()

    def _write(self, record: dict[str, object]) -> None:
        if self.fd is not None:
            record["worker"] = self.worker
            os.write(self.fd, orjson.dumps(record) + b"\n")

    def on_not_sent(self, event: NotSent) -> None:
        self._write({"t": round(event.now, 6), "phase": event.phase, "request": event.request,
                     "target": event.target, "not_sent": event.count, "why": event.why})

    def on_completed(self, event: Completed) -> None:
        ex = event.exchange
        sent = ex.sent_ns or ex.intended_ns
        record = {
            "t": round(event.now, 6), "start": round(event.started, 6),
            "phase": event.phase, "request": event.request,
            "target": event.target, "status": ex.status, "error": ex.error,
            "message": self.scrub(ex.error_message) or None,
            "schedule_lag_us": (sent - ex.intended_ns) // 1000,
            "latency_us": (ex.end_ns - ex.intended_ns) // 1000 if ex.end_ns else None,
            "latency_sent_us": (ex.end_ns - sent) // 1000 if ex.end_ns else None,
            "ttft_us": (ex.first_content_ns - ex.intended_ns) // 1000
            if ex.first_content_ns else None,
            "chunks": ex.chunks, "output_tokens": ex.output_tokens,
            "input_tokens": ex.input_tokens, "finish_reason": ex.finish_reason,
            "output_chars": len(ex.text), "failed_checks": [c for c, _ in event.failures],
        }
        self._write(record)

    def on_run_ended(self, event: RunEnded) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
