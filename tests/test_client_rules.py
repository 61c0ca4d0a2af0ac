"""The rules of driver/client.py on planted per-second figures: a worker whose loop was too
busy to report is judged by the wake-up it did report, and a short phase by its own length."""

from __future__ import annotations

from llmscen.driver.client import ClientFigures, judge_phase
from llmscen.metrics.histogram import Histogram
from llmscen.metrics.results import Counters, Meta, PhaseInfo, RunResults, Scope

PHASE = PhaseInfo(name="load", kind="open", started=0.0, ended=8.0, planned_duration=2.0,
                  offered_rate=8000.0)


def figures(loop_lag: list[float], lag: list[float] | None = None) -> ClientFigures:
    n = len(loop_lag)
    return ClientFigures(seconds=n, cpu={0: [0.5] * n}, loop_lag={0: loop_lag},
                         lag={0: lag if lag is not None else [0.0] * n})


def results() -> RunResults:
    return RunResults(meta=Meta(scenario="s"), phases=[PHASE])


def sent(lags_us: list[int]) -> RunResults:
    """The phase's 16,000 requests, every one ok, sent with these schedule lags."""
    lag = Histogram("duration")
    for us in lags_us:
        lag.record(us)
    scope = Scope(phase="load", request="chat", target="api",
                  counters=Counters(requests=16_000, ok=16_000),
                  histograms={"schedule_lag": lag.encode()})
    return RunResults(meta=Meta(scenario="s"), phases=[PHASE], scopes=[scope])


def test_a_loop_that_woke_seconds_late_is_a_saturated_client() -> None:
    # the worker's first report came 2.6 s late: it could not report seconds 0-2 at all
    reason = judge_phase(results(), PHASE, figures([2.6, 0.0, 0.0, 0.0, 0.0]), 0)
    assert reason is not None and reason.kind == "client_saturated"
    assert "event loop woke over 100ms late in 3 seconds" in reason.message, reason.message
    assert "asked 8000/s, sent 0 in 8s (0/s)" in reason.message, reason.message


def test_one_short_stall_is_not() -> None:
    assert judge_phase(results(), PHASE, figures([0.2, 0.0, 0.0, 0.0]), 0) is None


def test_a_two_second_phase_late_in_both_its_seconds_is_saturated() -> None:
    phase = PHASE.model_copy(update={"ended": 2.0})
    reason = judge_phase(results(), phase, figures([0.0, 0.0], lag=[0.3, 0.4]), 0)
    assert reason is not None and "late in 2 of 2 seconds" in reason.message, reason
    # one late second of two is a spike
    assert judge_phase(results(), phase, figures([0.0, 0.0], lag=[0.3, 0.0]), 0) is None


def test_the_note_names_the_whole_delay_and_the_real_sending_time() -> None:
    # the workers reported at most 0.4 s of their own lag, but requests went out up to 3 s
    # late (an in-flight slot wait, or after the last report), and 16,000 of 2 s worth of
    # arrivals took 8 s to send
    reason = judge_phase(sent([3_000_000, 1_000]), PHASE, figures([0.0] * 8, lag=[0.4] * 8), 0)
    assert reason is not None and reason.kind == "client_saturated"
    assert "up to 400ms after their intended time and sent them up to 3" in reason.message, \
        reason.message
    assert "sent 16,000 in 8s (2000/s)" in reason.message, reason.message
    assert reason.detail["schedule_lag_max"] >= 3.0


def test_a_client_on_schedule_but_out_of_cpu_is_saturated_and_says_why() -> None:
    # every arrival went out within a millisecond, but the core was pegged: answers waited
    planted = sent([200] * 99 + [900])
    pegged = ClientFigures(seconds=4, cpu={0: [0.97, 0.99, 1.0, 0.98]},
                           loop_lag={0: [0.0] * 4}, lag={0: [0.001] * 4})
    reason = judge_phase(planted, PHASE, pegged, 0)
    assert reason is not None and reason.kind == "client_saturated"
    assert "a worker's CPU was at its limit" in reason.message, reason.message
    assert "it kept its schedule (lag p99 " in reason.message, reason.message
    assert "late reading answers too" in reason.message
    # with CPU to spare the same schedule is a valid measurement
    spare = ClientFigures(seconds=4, cpu={0: [0.6] * 4}, loop_lag={0: [0.0] * 4},
                          lag={0: [0.001] * 4})
    assert judge_phase(planted, PHASE, spare, 0) is None
