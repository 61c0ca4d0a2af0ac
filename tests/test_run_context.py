"""What a run saves about itself for its reports: the scenario file (masked), the client,
resolved targets and their servers, the load asked for over time, users, errors by status."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.compile.plan import PhasePlan
from llmscen.driver.context import mask_source
from llmscen.metrics import merge
from llmscen.metrics.results import ErrorSummary, Meta, PhaseInfo, RunResults
from llmscen.runners.secrets import MASK

SCENARIO = """\
version: 1
name: context
# a comment that stays
services:
  sim: {builtin: openai-sim, options: {ttft: 5ms, itl: 1ms, output_tokens: 4, error_rate: 20%,
                                      error_status: 503, seed: 3}}
targets:
  chat: {plugin: openai, service: sim, model: sim-model, api_key: "sk-literal-123456",
         headers: {X-Team: search, Authorization: "Bearer abc.def"}}
phases:
  - {name: open, duration: 2s, arrival_rate: 10, ramp_to: 20}
  - {name: users, duration: 2s, users: 4, spawn_rate: 4}
requests:
  - name: chat
    target: chat
    body: {messages: [{role: user, content: hi}], max_tokens: 4}
slos:
  - {assert: error_rate < 50%}
"""


@pytest.mark.parametrize(("text", "hidden", "kept"), [
    ('t: {plugin: vllm, api_key: "sk-abc123", model: m}   # note\n', ["sk-abc123"],
     ["model: m}   # note", "plugin: vllm"]),
    ("t:\n  api_key: sk-plain-0001  # the key\n  timeout: 3s\n", ["sk-plain-0001"],
     ["# the key", "timeout: 3s"]),
    ("h: {Authorization: 'Bearer x.y.z', X-Other: ok}\n", ["x.y.z"], ["X-Other: ok"]),
    ("k: {password: \"{{ row.password }}\", token: \"${TOKEN}\"}\n", [],
     ["{{ row.password }}", "${TOKEN}"]),
    ("k: {token: \"${TOKEN:-sk-default-9}\"}\n", ["sk-default-9"], []),
    ("h: {Authorization: \"Bearer {{ captured.token }}\"}\n", [], ["Bearer {{ captured.token }}"]),
    ("capture: {token: $.token}\nbody: {max_tokens: 150}\n", [], ["$.token", "max_tokens: 150"]),
    ("auth:\n  - user-1\n  - pass-two\n", ["pass-two", "user-1"], []),
])
def test_the_scenario_file_is_kept_as_written_with_secrets_masked(
        text: str, hidden: list[str], kept: list[str]) -> None:
    out = mask_source(text)
    for secret in hidden:
        assert secret not in out
    for part in kept:
        assert part in out
    assert (MASK in out) == bool(hidden)
    YAML(typ="safe").load(out)    # still YAML


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["api_key", "name", "Authorization", "model", "secret"]),
                       st.text(alphabet="abcdefXYZ0123-_.", min_size=5, max_size=20),
                       min_size=1))
def test_no_secret_value_survives_masking(values: dict[str, str]) -> None:
    text = "".join(f"{k}: \"{v}\"\n" for k, v in values.items())
    out = mask_source(text)
    loaded = YAML(typ="safe").load(out)
    for key, value in values.items():
        secret = key in ("api_key", "Authorization", "secret")
        assert loaded[key] == (MASK if secret else value)


def closed(**kw: object) -> PhasePlan:
    return PhasePlan(name="c", kind="closed", seed=1, **kw)  # type: ignore[arg-type]


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 30), st.integers(0, 40), st.one_of(st.none(), st.floats(0.5, 20)),
       st.floats(1, 30), st.floats(0, 35))
def test_users_asked_for_is_the_count_of_users_started(users: int, ramp_to: int,
                                                       spawn: float | None, duration: float,
                                                       t: float) -> None:
    phase = closed(users=users, users_ramp_to=ramp_to, spawn_rate=spawn, duration=duration)
    total = max(users, ramp_to)
    starts = [phase.user_start(uid) for uid in range(total)]
    assert starts == sorted(starts)
    assert phase.load_at(t) == sum(1 for s in starts if s <= t)


def test_an_open_ramp_asks_for_a_straight_line() -> None:
    phase = PhasePlan(name="r", kind="open", seed=1, rate=10, ramp_to=50, duration=20)
    assert [phase.load_at(t) for t in (0, 5, 20, 30)] == [10, 20, 50, 50]
    assert phase.planned_curve() == [(0.0, 10.0), (20.0, 50.0)]
    assert PhasePlan(name="p", kind="pause", seed=1, duration=3).planned_curve() == []


def test_workers_asked_for_shares_that_add_up() -> None:
    def part(rate: float, planned: list[tuple[float, float]]) -> RunResults:
        return RunResults(meta=Meta(scenario="s"), phases=[PhaseInfo(
            name="p", kind="open", started=0.0, ended=2.0, offered_rate=rate,
            planned=planned)], errors=[ErrorSummary(request="r", error="http", status=503,
                                                    count=2, phases=["p"], first=rate,
                                                    last=rate + 1)])
    merged = merge([part(5.0, [(0.0, 5.0), (2.0, 10.0)]), part(3.0, [(0.01, 3.0), (2.0, 6.0)])])
    (phase,) = merged.phases
    assert phase.offered_rate == 8.0 and phase.planned == [(0.0, 8.0), (2.0, 16.0)]
    (error,) = merged.errors
    assert (error.count, error.first, error.last, error.status) == (4, 3.0, 6.0, 503)


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_run_saves_its_context(tmp_path: Path, workers: str) -> None:
    """With several workers too: each asks for its share, and the shares add up."""
    path = tmp_path / "context.yaml"
    path.write_text(SCENARIO)
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "out"), "-q",
                                      "--workers", workers])
    # what is saved about the run does not depend on its verdict: a busy machine may make
    # the client the bottleneck (invalid measurement), the context is the same
    assert result.exit_code in (exitcodes.OK, exitcodes.INVALID_MEASUREMENT), result.output
    raw = (tmp_path / "out" / "results.json").read_bytes()
    assert b"sk-literal-123456" not in raw and b"abc.def" not in raw
    results = RunResults.from_json(raw)
    meta = results.meta
    assert meta.scenario_source is not None and "# a comment that stays" in meta.scenario_source
    assert "X-Team: search" in meta.scenario_source
    assert meta.client is not None and meta.client.python and meta.client.cores
    (target,) = meta.targets
    assert target.url is not None and target.url.startswith("http://127.0.0.1:")
    assert target.service == "sim"
    assert target.server["name"] == "llmscen openai-sim" and target.server["version"]
    (plugin,) = meta.plugins
    assert "ttft" in plugin.metrics and "images_per_second" not in plugin.metrics
    opened, users = results.phases
    assert opened.planned[0][1] == 10.0 and opened.planned[-1][1] == 20.0
    assert opened.offered_rate == 15.0 and users.users == 4
    assert opened.planned[-1][0] - opened.planned[0][0] == pytest.approx(2.0)
    assert max(v for _, v in users.planned) == 4.0
    (running,) = results.series.users
    assert running.phase == "users" and max(n for _, n in running.points) == 4
    (error,) = results.errors
    assert error.status == 503 and error.error == "http"
    assert set(error.phases) <= {"open", "users"} and error.first is not None
    assert error.last is not None and 0 <= error.first <= error.last <= users.ended + 1
    assert orjson.loads(raw)["schema_version"] == 5


def test_the_documented_example_is_a_valid_results_file() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "results.md").read_text()
    example = text.split("```json\n", 1)[1].split("\n```", 1)[0]
    results = RunResults.model_validate(orjson.loads(example))
    assert results.schema_version == 5 and results.meta.targets[0].server
    assert results.resources.stats[0].name == "client.cpu"
    assert results.phases[0].planned == [(2.006, 10.0), (5.006, 50.0)]
