"""Rules of `conclude` that the CLI tests reach only on a loaded machine: what a saturated
client still lets the verdict judge."""

from __future__ import annotations

from test_report_samples import build_results, slo

from llmscen.assertions.verdict import conclude, headline
from llmscen.metrics.results import Reason

SATURATED = Reason(kind="client_saturated", message="the load generator was the bottleneck")


def cases(results, kind: str) -> dict[str, str]:   # type: ignore[no-untyped-def]
    assert results.outcome is not None
    return {c.name: c.status for c in results.outcome.cases if c.kind == kind}


def test_a_saturated_client_alone_is_an_invalid_measurement() -> None:
    results = build_results(slos=(slo("latency.p95 < 1s"),))
    outcome = conclude(results, [SATURATED])
    assert (outcome.status, outcome.exit_code) == ("invalid_measurement", 4)
    assert set(cases(results, "request").values()) == {"skipped"}
    assert set(cases(results, "slo").values()) == {"skipped"}


def test_calls_the_server_refused_fail_the_run_however_slow_the_client() -> None:
    # a closed loop against a server that answers 503 at once saturates any client
    results = build_results(errors_every=3, slos=(slo("latency.p95 < 1s"),))
    outcome = conclude(results, [SATURATED])
    assert (outcome.status, outcome.exit_code) == ("failed", 1)
    assert cases(results, "request")["chat"] == "failed"
    assert cases(results, "slo") == {"latency.p95 < 1s": "skipped"}     # timing: not judged
    assert cases(results, "run") == {"run": "error"}                    # the bottleneck stays
    line = headline(outcome)
    assert line.startswith("FAILED: 2 of 2 requests failed") and "bottleneck" in line, line
    message = next(c.message for c in outcome.cases if c.name == "chat")
    assert "refused with an HTTP error status" in message and "HTTP 503" in message


def test_an_error_budget_still_covers_refusals_when_the_client_was_saturated() -> None:
    results = build_results(errors_every=3, slos=(slo("error_rate < 50%"),))
    outcome = conclude(results, [SATURATED])
    assert outcome.status == "invalid_measurement", outcome.reasons


def test_a_service_that_died_is_still_could_not_run_with_refusals() -> None:
    results = build_results(errors_every=3)
    outcome = conclude(results, [Reason(kind="service_exited", message="sim exited")])
    assert outcome.status == "could_not_run"
    assert set(cases(results, "request").values()) == {"skipped"}


def test_a_budget_the_refusals_alone_exceed_fails_however_slow_the_client() -> None:
    # the stress plan's `error_rate == 0` against a server refusing every other call
    results = build_results(errors_every=3, slos=(slo("error_rate == 0"),
                                                  slo("success_rate > 90%"),
                                                  slo("latency.p95 < 1s")))
    outcome = conclude(results, [SATURATED])
    assert (outcome.status, outcome.exit_code) == ("failed", 1)
    assert cases(results, "slo") == {"error_rate == 0": "failed", "success_rate > 90%": "failed",
                                     "latency.p95 < 1s": "skipped"}
    first = next(s for s in results.slos if s.text == "error_rate == 0")
    assert first.message.startswith("error_rate was at least 33.")
    assert "refused with an HTTP error status alone" in first.message
