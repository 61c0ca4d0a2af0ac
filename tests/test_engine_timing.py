"""Timing honesty, end to end through the CLI against the bundled simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmscen.cli.main import cli
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults

HERE = Path(__file__).parent / "scenarios" / "engine"
pytestmark = pytest.mark.slow


def run(scenario: str, tmp_path: Path, *args: str) -> tuple[int, RunResults, str]:
    result = CliRunner().invoke(cli, ["run", str(HERE / scenario), "--out", str(tmp_path),
                                      "--quiet", *args])
    results = RunResults.load(tmp_path / "results.json")
    return result.exit_code, results, result.output


def test_ttft_and_itl_match_the_simulator(tmp_path: Path) -> None:
    code, results, output = run("timing.yaml", tmp_path)
    agg = aggregate(results)
    ttft = agg.value("ttft_sent", "p50")
    itl = agg.value("itl", "p50")
    assert agg.counters.requests >= 95 and agg.counters.ok == agg.counters.requests, output
    assert ttft is not None and abs(ttft - 0.050) <= 0.002, f"ttft_sent p50 {ttft}"
    assert itl is not None and abs(itl - 0.010) <= 0.001, f"itl p50 {itl}"
    # ttft counts from the intended start, so it can only be later than ttft_sent
    ttft_intended = agg.value("ttft", "p50")
    assert ttft_intended is not None and ttft_intended >= ttft
    # tpot: (latency_sent - ttft_sent) / (tokens - 1) is the mean gap
    tpot = agg.value("tpot", "p50")
    assert tpot is not None and abs(tpot - 0.010) <= 0.001
    assert code == 0, output


def test_stall_shows_in_latency_but_not_in_latency_sent(tmp_path: Path) -> None:
    code, results, output = run("stall.yaml", tmp_path)
    agg = aggregate(results)
    assert agg.counters.errors == {}, output
    latency = agg.value("latency", "p90")
    sent = agg.value("latency_sent", "p90")
    lag = agg.value("schedule_lag", "p90")
    assert latency is not None and latency > 0.8, f"latency p90 {latency}"
    assert sent is not None and sent < 0.2, f"latency_sent p90 {sent}"
    # the requests held back by the client are the ones whose send lagged
    assert lag is not None and lag > 0.5
    maximum = agg.value("latency", "max")
    assert maximum is not None and 1.5 < maximum < 3.5
    assert code == 0, output


def test_no_request_is_sent_before_its_intended_start(tmp_path: Path) -> None:
    # uvloop's timers fire up to ~1 ms early: a request sent then would count its latency
    # from a later time than it began, so the loop waits out the rest (schedule lag ≥ 0)
    log = tmp_path / "requests.jsonl"
    code, _, output = run("early.yaml", tmp_path, "--log-requests", str(log))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    lags = [line["schedule_lag_us"] for line in lines if "schedule_lag_us" in line]
    assert len(lags) > 600, output
    early = [lag for lag in lags if lag < 0]
    assert not early, f"{len(early)} of {len(lags)} sent early, by up to {-min(early)} µs"
    assert code == 0, output
