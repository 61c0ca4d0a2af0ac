"""The rules of driver/client.py on planted per-second figures: a worker whose loop was too
busy to report is judged by the wake-up it did report, and a short phase by its own length."""

from __future__ import annotations

from llmscen.driver.client import ClientFigures, judge_phase
from llmscen.metrics.results import Meta, PhaseInfo, RunResults

PHASE = PhaseInfo(name="load", kind="open", started=0.0, ended=8.0, planned_duration=2.0,
                  offered_rate=8000.0)


def figures(loop_lag: list[float], lag: list[float] | None = None) -> ClientFigures:
    n = len(loop_lag)
    return ClientFigures(seconds=n, cpu={0: [0.5] * n}, loop_lag={0: loop_lag},
                         lag={0: lag if lag is not None else [0.0] * n})


def results() -> RunResults:
    return RunResults(meta=Meta(scenario="s"), phases=[PHASE])


def test_a_loop_that_woke_seconds_late_is_a_saturated_client() -> None:
    # the worker's first report came 2.6 s late: it could not report seconds 0-2 at all
    reason = judge_phase(results(), PHASE, figures([2.6, 0.0, 0.0, 0.0, 0.0]), 0)
    assert reason is not None and reason.kind == "client_saturated"
    assert "event loop woke over 100ms late in 3 seconds" in reason.message, reason.message
    assert "asked 8000/s, sent 0/s" in reason.message, reason.message


def test_one_short_stall_is_not() -> None:
    assert judge_phase(results(), PHASE, figures([0.2, 0.0, 0.0, 0.0]), 0) is None


def test_a_two_second_phase_late_in_both_its_seconds_is_saturated() -> None:
    phase = PHASE.model_copy(update={"ended": 2.0})
    reason = judge_phase(results(), phase, figures([0.0, 0.0], lag=[0.3, 0.4]), 0)
    assert reason is not None and "late in 2 of 2 seconds" in reason.message, reason
    # one late second of two is a spike
    assert judge_phase(results(), phase, figures([0.0, 0.0], lag=[0.3, 0.0]), 0) is None
