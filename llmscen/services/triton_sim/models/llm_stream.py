"""`llm_stream`: a decoupled token streamer with faithful timing.

Inputs: text_input BYTES [1]; optional max_tokens INT32 [1], stream BOOL [1]
(default true), ignore_eos BOOL [1], min_length INT32 [1] and
sampling_parameters BYTES [1] (JSON with max_tokens / ignore_eos / min_tokens),
so genai-perf's tensorrtllm and vllm payloads load too.
Output: text_output BYTES [1], one token per response; the last token's
response carries the FINAL flag. With stream=false: one response holding the
whole text, sent when the last token would have been.

A reply has `output_tokens` tokens, capped by max_tokens (exactly max_tokens
with ignore_eos, at least min_length). Token k is due at
arrival + ttft + k × itl, an absolute deadline, so lateness never accumulates.
Each of a few sender threads keeps a heap of due times and sleeps until the
earliest; the next response is built ahead of its deadline, the send starts
early by the typical time a send takes, and cancellation is checked after a
send, so the work left on the critical path is the send itself.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import threading
import time
from typing import Any

import numpy as np

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # outside Triton's Python backend stub
    pb_utils = None

MAX_LEAD = 0.002   # never send more than this ahead of a deadline


class InvalidInput(ValueError):
    """A client mistake; answered with INVALID_ARG."""


class _Reply:
    __slots__ = ("arrival", "next", "pending", "request", "sender", "stream", "tokens")

    def __init__(self, request: Any, tokens: list[str], stream: bool, arrival: float) -> None:
        self.request = request
        self.sender = request.get_response_sender()
        self.tokens = tokens
        self.stream = stream
        self.arrival = arrival
        self.next = 0 if stream else len(tokens) - 1   # index of the next token due
        self.pending: Any = None                        # its response, built in advance

    def build(self) -> None:
        token = self.tokens[self.next] if self.stream else "".join(self.tokens)
        out = pb_utils.Tensor("text_output", np.array([token.encode()], dtype=np.object_))
        self.pending = pb_utils.InferenceResponse([out])


class _Lane:
    """One sender thread and the heap of replies it owns."""

    def __init__(self, model: TritonPythonModel, index: int) -> None:
        self.model = model
        self.due: list[tuple[float, int, _Reply]] = []
        self.order = itertools.count()
        self.wake = threading.Condition()
        self.stopping = False
        self.lead = 0.0   # moving average of how long a send takes
        self.thread = threading.Thread(target=self.run, name=f"llm_stream-{index}", daemon=True)
        self.thread.start()

    def schedule(self, reply: _Reply) -> None:
        entry = (self.model.due_time(reply), next(self.order), reply)
        with self.wake:
            heapq.heappush(self.due, entry)
            if self.due[0] is entry:
                self.wake.notify()

    def stop(self) -> None:
        with self.wake:
            self.stopping = True
            self.wake.notify()

    def run(self) -> None:
        while True:
            with self.wake:
                while True:
                    if self.stopping:
                        return
                    if not self.due:
                        self.wake.wait()
                        continue
                    delay = self.due[0][0] - self.lead - time.monotonic()
                    if delay <= 0:
                        break
                    self.wake.wait(delay)
                reply = heapq.heappop(self.due)[2]
            if self.emit(reply):
                self.schedule(reply)

    def emit(self, reply: _Reply) -> bool:
        """Send the token that is due; True when more follow."""
        reply.next += 1
        last = reply.next >= len(reply.tokens)
        started = time.monotonic()
        try:
            reply.sender.send(reply.pending,
                              flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if last else 0)
        except Exception:
            return False  # the client went away
        took = time.monotonic() - started
        self.lead = min(MAX_LEAD, 0.9 * self.lead + 0.1 * took)
        if last:
            return False
        if reply.request.is_cancelled():
            _send_error(reply.sender, "llm_stream: request cancelled",
                        pb_utils.TritonError.CANCELLED)
            return False
        reply.build()
        return True


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = {k: v["string_value"]
                  for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        self.ttft = float(params["ttft"])
        self.itl = float(params["itl"])
        self.output_tokens = int(params["output_tokens"])
        self.max_chars = int(params["max_prompt_chars"])
        self.lanes = [_Lane(self, i) for i in range(int(params["sender_threads"]))]
        self.turn = itertools.cycle(self.lanes)

    def execute(self, requests: list[Any]) -> None:
        arrival = time.monotonic()
        for request in requests:
            try:
                tokens, stream = self._parse(request)
            except InvalidInput as exc:
                _send_error(request.get_response_sender(), f"llm_stream: {exc}")
                continue
            reply = _Reply(request, tokens, stream, arrival)
            reply.build()
            next(self.turn).schedule(reply)
        return None

    def finalize(self) -> None:
        for lane in self.lanes:
            lane.stop()
        for lane in self.lanes:
            lane.thread.join(timeout=2)

    def due_time(self, reply: _Reply) -> float:
        return reply.arrival + self.ttft + reply.next * self.itl

    def _parse(self, request: Any) -> tuple[list[str], bool]:
        text = _scalar(request, "text_input")
        prompt = bytes(text).decode("utf-8", "replace") if text is not None else ""
        if len(prompt) > self.max_chars:
            raise InvalidInput(f"input 'text_input' has {len(prompt)} characters, more than "
                               f"max_prompt_chars={self.max_chars}")
        sampling: dict[str, Any] = {}
        raw = _scalar(request, "sampling_parameters")
        if raw:
            try:
                sampling = json.loads(bytes(raw))
            except ValueError as exc:
                raise InvalidInput(f"input 'sampling_parameters' is not JSON: {exc}") from None
        max_tokens = _scalar(request, "max_tokens")
        max_tokens = int(max_tokens) if max_tokens is not None else sampling.get("max_tokens")
        ignore_eos = _scalar(request, "ignore_eos")
        ignore_eos = bool(ignore_eos) if ignore_eos is not None else sampling.get("ignore_eos")
        min_length = _scalar(request, "min_length")
        min_length = int(min_length) if min_length is not None else sampling.get("min_tokens")
        stream = _scalar(request, "stream")

        n = self.output_tokens
        if max_tokens is not None:
            if int(max_tokens) < 1:
                raise InvalidInput(f"input 'max_tokens' is {max_tokens}; it must be at least 1")
            n = int(max_tokens) if ignore_eos else min(n, int(max_tokens))
        if min_length:
            n = max(n, int(min_length) if max_tokens is None else min(int(min_length),
                                                                      int(max_tokens)))
        words = prompt.split() or ["token"]
        tokens = [words[0]] + [" " + words[k % len(words)] for k in range(1, n)]
        return tokens, True if stream is None else bool(stream)


def _scalar(request: Any, name: str) -> Any:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    values = tensor.as_numpy().reshape(-1)
    return values[0] if len(values) else None


def _send_error(sender: Any, message: str, code: Any = None) -> None:
    error = pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG if code is None else code)
    with contextlib.suppress(Exception):  # the client went away
        sender.send(pb_utils.InferenceResponse(error=error),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
