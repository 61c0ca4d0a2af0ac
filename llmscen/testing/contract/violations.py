"""How the contract suite (contract.py) sends a call and says what went wrong.

A failure names the rule (as docs/plugins.md lists them), what the contract
expected and what the plugin did, with the Exchange it filled: enough for a
plugin author to fix it without reading the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sysconfig
import time
import traceback
from dataclasses import dataclass
from typing import Any, NoReturn

import pytest

from llmscen.engine.protocol import ERROR_CLASSES, Call, Exchange

# The rules, by the names docs/plugins.md ("Contract rules") gives them.
PLUGIN_OBJECT = "plugin object"
REGISTERED = "registered under its name"
OPTIONS_STRICT = "options forbid unknown keys"
SECRETS_HIDDEN = "secrets hidden in options"
BUILT_FROM_PLAN = "built from the plan alone"
LIFECYCLE = "start/stop lifecycle"
TIMESTAMPS = "timestamps on one clock"
STREAM_TIMINGS = "streaming timings"
CANCELLATION = "cancellation marked and re-raised"
TIMEOUTS = "timeouts classified"
CONNECT = "connection refused is `connect`"
HTTP_ERRORS = "HTTP errors classified, not raised"
NEVER_RAISE = "never raise for server misbehaviour"
NO_SECRETS = "secrets never in messages"
PREFLIGHT = "preflight returns messages"
SERVER_METRICS = "server_metrics returns numbers"
CONCURRENCY = "concurrent sends"

_STDLIB = sysconfig.get_paths()["stdlib"] + os.sep
_SUITE = os.path.dirname(os.path.abspath(__file__)) + os.sep


@dataclass
class Sent:
    """One `runner.send` as the suite observed it."""

    call: Call
    exchange: Exchange
    raised: BaseException | None    # what send raised, if anything
    hung: bool                      # send did not return within the bound
    bound: float
    before_ns: int
    after_ns: int

    @property
    def seconds(self) -> float:
        return (self.after_ns - self.before_ns) / 1e9


async def send(runner: Any, call: Call, bound: float) -> Sent:
    """Send `call` with a fresh Exchange; never raises, never waits past `bound` seconds."""
    exchange = Exchange(intended_ns=time.perf_counter_ns())
    before = exchange.intended_ns
    task = asyncio.ensure_future(runner.send(call, exchange))
    done, _ = await asyncio.wait({task}, timeout=bound)
    hung = not done
    raised: BaseException | None = None
    if hung:
        task.cancel()
        with contextlib.suppress(BaseException):  # how it handles cancelling is tested elsewhere
            await asyncio.wait_for(task, 1.0)
    elif task.cancelled():
        raised = asyncio.CancelledError()
    else:
        raised = task.exception()
    return Sent(call, exchange, raised, hung, bound, before, time.perf_counter_ns())


class Reporter:
    """Builds failure messages for one plugin, masking the suite's test secrets.

    `secrets` maps each planted secret to how messages show it (`<SECRET>`, ...)."""

    def __init__(self, plugin: Any, secrets: str | dict[str, str]) -> None:
        self.name = getattr(plugin, "name", repr(plugin))
        self.secrets = {secrets: "<SECRET>"} if isinstance(secrets, str) else dict(secrets)
        self.secrets.pop("", None)

    def mask(self, text: str) -> str:
        for secret, shown in sorted(self.secrets.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(secret, shown)
        return text

    def broke(self, rule: str, expected: str, did: str,
              exchange: Exchange | None = None) -> NoReturn:
        lines = [f"plugin {self.name!r} breaks the contract rule \"{rule}\"",
                 f"  expected: {expected}",
                 f"  the plugin: {did}"]
        if exchange is not None:
            lines.append(f"  exchange: {describe_exchange(exchange)}")
        lines.append("  (rules: docs/plugins.md, \"Contract rules\")")
        # from None: the plugin's exception is in the message already, once
        raise pytest.fail.Exception(self.mask("\n".join(lines)), pytrace=False) from None

    def returned(self, sent: Sent, rule: str, expected: str) -> None:
        """Fail unless send returned normally within its bound."""
        if sent.hung:
            self.broke(rule, expected, f"send() had not returned after {sent.bound:g}s",
                       sent.exchange)
        if sent.raised is not None:
            self.broke(rule, expected, raised(sent.raised), sent.exchange)

    def classified(self, sent: Sent, rule: str, expected: str) -> None:
        """Fail unless send returned with an error class and a message."""
        self.returned(sent, rule, expected)
        ex = sent.exchange
        if ex.error is None:
            self.broke(rule, expected, "returned with exchange.error None, as if the call "
                                       "had succeeded", ex)
        if ex.error not in ERROR_CLASSES:
            self.broke(rule, expected, f"set exchange.error={ex.error!r}, which is not one of "
                                       f"{', '.join(ERROR_CLASSES)}", ex)
        if not ex.error_message.strip():
            self.broke(rule, expected, f"classified it {ex.error!r} with an empty "
                                       "error_message; say what happened", ex)

    def stamped(self, sent: Sent, rule: str, *, first_byte: bool) -> None:
        """Fail unless sent_ns ≤ first_byte_ns ≤ end_ns lie inside the send, on perf_counter_ns."""
        ex = sent.exchange
        names = ["sent_ns", *(["first_byte_ns"] if first_byte else []), "end_ns"]
        values = [getattr(ex, n) for n in names]
        for name, value in zip(names, values, strict=True):
            if not value:
                self.broke(rule, f"send() fills {name} with time.perf_counter_ns()",
                           f"left {name} at 0", ex)
            if not sent.before_ns <= value <= sent.after_ns:
                self.broke(rule, f"{name} taken with time.perf_counter_ns() during send() "
                                 f"(between {sent.before_ns} and {sent.after_ns})",
                           f"set {name}={value}, {offset(value, sent.before_ns)} from the "
                           "start of send(): another clock?", ex)
        for i in range(len(names) - 1):
            if values[i] > values[i + 1]:
                self.broke(rule, f"{names[i]} ≤ {names[i + 1]}",
                           f"set {names[i]} {(values[i] - values[i + 1]) / 1e6:.3f} ms after "
                           f"{names[i + 1]}", ex)

    def no_secret(self, rule: str, where: str, text: str, exchange: Exchange | None = None,
                  ) -> None:
        for secret, shown in self.secrets.items():
            if secret in text:
                self.broke(rule, f"no secret the suite planted (in the api key, the target's "
                                 f"and the call's headers, the URL) ever appears in {where}",
                           f"put {shown} there: {excerpt_around(text, secret)!r}", exchange)


def raised(exc: BaseException, frames: int = 3) -> str:
    """`raised Kind: message` and where: the outermost frames that are neither the standard
    library nor this suite, which is where the plugin's own code called out."""
    text = f"raised {type(exc).__name__}: {exc}" if str(exc) else f"raised {type(exc).__name__}"
    own = [f for f in traceback.extract_tb(exc.__traceback__)
           if not f.filename.startswith(_SUITE)
           and not (f.filename.startswith(_STDLIB) and "site-packages" not in f.filename)]
    if not own:
        return text
    shown = "".join(traceback.format_list(own[:frames])).rstrip()
    more = f"\n      ... {len(own) - frames} more frames" if len(own) > frames else ""
    return text + "\n" + "\n".join("      " + ln for ln in shown.splitlines()) + more


def offset(value: int, origin: int) -> str:
    return f"{(value - origin) / 1e6:+.3f} ms" if value else "0"


def describe_exchange(ex: Exchange) -> str:
    times = " ".join(f"{name}={offset(getattr(ex, name + '_ns'), ex.intended_ns)}"
                     for name in ("sent", "first_byte", "first_content", "end"))
    itl = ex.itl_us if len(ex.itl_us) <= 8 else [*ex.itl_us[:8], "…"]
    return (f"error={ex.error!r} status={ex.status!r} message={ex.error_message[:300]!r} "
            f"{times} (from intended_ns) chunks={ex.chunks} itl_us={itl} "
            f"output_tokens={ex.output_tokens!r}")


def excerpt_around(text: str, needle: str, width: int = 60) -> str:
    at = text.find(needle)
    return text[max(at - width, 0):at + len(needle) + width]
