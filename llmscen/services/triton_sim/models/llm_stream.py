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
arrival + ttft + k × itl, an absolute deadline: one scheduler thread keeps a
heap of due times and sleeps until the earliest, so lateness never
accumulates and thousands of streams cost one thread.
"""

from __future__ import annotations

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


class InvalidInput(ValueError):
    """A client mistake; answered with INVALID_ARG."""


class _Reply:
    __slots__ = ("arrival", "next", "request", "sender", "stream", "tokens")

    def __init__(self, request: Any, tokens: list[str], stream: bool, arrival: float) -> None:
        self.request = request
        self.sender = request.get_response_sender()
        self.tokens = tokens
        self.stream = stream
        self.arrival = arrival
        self.next = 0 if stream else len(tokens) - 1   # index of the next token due


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = {k: v["string_value"]
                  for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        self.ttft = float(params["ttft"])
        self.itl = float(params["itl"])
        self.output_tokens = int(params["output_tokens"])
        self.max_chars = int(params["max_prompt_chars"])
        self._due: list[tuple[float, int, _Reply]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopping = False
        import sys, os
        if os.environ.get("SWI"): sys.setswitchinterval(float(os.environ["SWI"]))
        self._nocancel = bool(os.environ.get("NOCANCEL"))
        self._thread = threading.Thread(target=self._run, name="llm_stream", daemon=True)
        self._thread.start()

    def execute(self, requests: list[Any]) -> None:
        arrival = time.monotonic()
        for request in requests:
            try:
                tokens, stream = self._parse(request)
            except InvalidInput as exc:
                _send_error(request.get_response_sender(), f"llm_stream: {exc}")
                continue
            reply = _Reply(request, tokens, stream, arrival)
            self._schedule(reply)
        return None

    def finalize(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=2)

    # -- inputs ------------------------------------------------------------------------------

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

    # -- the scheduler -----------------------------------------------------------------------

    def _due_time(self, reply: _Reply) -> float:
        return reply.arrival + self.ttft + reply.next * self.itl

    def _schedule(self, reply: _Reply) -> None:
        with self._wake:
            entry = (self._due_time(reply), next(self._order), reply)
            heapq.heappush(self._due, entry)
            if self._due[0] is entry:
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    if self._stopping:
                        return
                    if not self._due:
                        self._wake.wait()
                        continue
                    delay = self._due[0][0] - time.monotonic()
                    if delay <= 0:
                        break
                    self._wake.wait(delay)
                reply = heapq.heappop(self._due)[2]
            late = time.monotonic() - self._due_time(reply)
            t1 = time.monotonic()
            try:
                more = self._emit(reply)
            except Exception:
                more = False  # the client went away
            with open("/tmp/probe/late.txt", "a") as f:
                f.write(f"{late*1000:.3f} {(time.monotonic()-t1)*1000:.3f} {reply.next}\n")
            if more:
                self._schedule(reply)

    def _emit(self, reply: _Reply) -> bool:
        """Send the token that is due; True when more follow."""
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        if not self._nocancel and reply.request.is_cancelled():
            _send_error(reply.sender, "llm_stream: request cancelled", pb_utils.TritonError.CANCELLED)
            return False
        if reply.stream:
            token = reply.tokens[reply.next]
        else:
            token = "".join(reply.tokens)
        reply.next += 1
        last = reply.next >= len(reply.tokens)
        out = pb_utils.Tensor("text_output", np.array([token.encode()], dtype=np.object_))
        reply.sender.send(pb_utils.InferenceResponse([out]), flags=final if last else 0)
        return not last


def _scalar(request: Any, name: str) -> Any:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    values = tensor.as_numpy().reshape(-1)
    return values[0] if len(values) else None


def _send_error(sender: Any, message: str, code: Any = None) -> None:
    error = pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG if code is None else code)
    try:
        sender.send(pb_utils.InferenceResponse(error=error),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    except Exception:
        pass
