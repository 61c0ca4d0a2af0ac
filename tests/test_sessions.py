"""Multi-turn sessions (`turns:`) through the CLI against servers the tests start:
openai-sim checking the history it is sent, and a recording server that shows what
each turn carried (messages, session header, data rows)."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from llmscen.cli.main import cli
from llmscen.engine.protocol import Session
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults
from llmscen.runners.sessions import remember_turn, with_history
from llmscen.testing.fixtures import start_openai_sim

ROOT = Path(__file__).resolve().parent.parent
SESSION_SCENARIO = ROOT / "scenarios" / "chat-session.yaml"


def run(args: list[str], out: Path) -> tuple[int, str, RunResults]:
    result = CliRunner().invoke(cli, ["run", *args, "--out", str(out), "-q", "--workers", "1"],
                                catch_exceptions=False)
    return result.exit_code, result.output, RunResults.load(out / "results.json")


def sim_metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("openai_sim:history_answers_total"):
            labels, value = line.rsplit(" ", 1)
            answers = labels.split('answers="', 1)[1].split('"', 1)[0]
            out[answers] = float(value)
    return out


@pytest.mark.slow
def test_turn_k_carries_the_k_minus_1_earlier_answers_at_the_simulator(tmp_path: Path) -> None:
    with start_openai_sim({"ttft": "20ms", "itl": "2ms", "output_tokens": 12,
                           "check_history": True}, tmp_path / "sim") as sim:
        code, output, results = run([str(SESSION_SCENARIO), "--target", f"chat={sim.url}"],
                                    tmp_path / "run")
        carried = sim_metrics(sim.url)
    assert code == 0, output
    sessions = 8   # the phase's `requests: 8`
    # the simulator refuses a forged or missing answer (400); each turn came once per session
    assert carried == {"0": sessions, "1": sessions, "2": sessions}, carried
    whole = aggregate(results).counters
    assert whole.requests == whole.ok == 3 * sessions
    for k in (1, 2, 3):
        turn = aggregate(results, request=f"chat.turn{k}")
        assert turn.counters.requests == turn.counters.ok == sessions
        ttft = turn.value("ttft", "p50")
        assert ttft is not None and ttft >= 0.020   # the simulator's TTFT, per turn
    assert aggregate(results, request="chat").counters.requests == 3 * sessions
    assert [s.name for s in results.requests[0].steps] == ["chat.turn1", "chat.turn2",
                                                           "chat.turn3"]
    # 4 users, 8 sessions: each user holds 2 sessions of 3 turns and waits the 300 ms think
    # between turns (2 a session): the phase lasts at least 4 thinks of 300 ms (1.2 s), where
    # the 24 calls alone take about 0.3 s
    phase = results.phases[0]
    assert phase.ended - phase.started >= 4 * 0.300


def test_the_simulator_refuses_an_answer_it_never_gave(tmp_path: Path) -> None:
    with start_openai_sim({"check_history": True, "output_tokens": 4}, tmp_path) as sim:
        def ask(messages: list[dict[str, str]]) -> tuple[int, dict[str, Any], str]:
            body = json.dumps({"model": "sim-model", "messages": messages}).encode()
            request = urllib.request.Request(sim.url + "/v1/chat/completions", data=body,
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=5) as resp:
                    return resp.status, json.loads(resp.read()), \
                        resp.headers.get("X-Sim-History-Answers", "")
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read()), ""

        status, first, header = ask([{"role": "user", "content": "hi"}])
        assert (status, header) == (200, "0")
        answer = first["choices"][0]["message"]["content"]
        status, _, header = ask([{"role": "user", "content": "hi"},
                                 {"role": "assistant", "content": answer},
                                 {"role": "user", "content": "more"}])
        assert (status, header) == (200, "1")
        status, body, _ = ask([{"role": "user", "content": "hi"},
                               {"role": "assistant", "content": answer + " forged"},
                               {"role": "user", "content": "more"}])
        assert status == 400
        assert "messages[1]" in body["error"]["message"]


# -- what each turn carries, seen by a server that records it ------------------------------

class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str | None, list[dict[str, Any]]]] = []

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen.append((request.headers.get("X-Session-ID"), body["messages"]))
        answer = f"answer {len(self.seen)}"
        return web.json_response({
            "id": "x", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answer}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})


@pytest.fixture
def recorder() -> Iterator[tuple[str, Recorder]]:
    """A chat server on port 0 in a thread of its own, recording every request."""
    rec = Recorder()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", rec.chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
        state["loop"], state["stop"] = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        await state["stop"].wait()
        await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield state["url"], rec
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(10)


SESSIONS = """
version: 1
targets:
  chat: {plugin: openai, url: "URL", model: m}
data:
  questions: {file: questions.csv}
phases:
  - {name: talk, each: [chat], times: 2}
requests:
  - name: chat
    target: chat
    data: questions
    turns: {count: 3, rows: turn, header: X-Session-ID}
    body:
      messages:
        - {role: system, content: "Be brief."}
        - {role: user, content: "{{ row.question }} (turn {{ turn }})"}
    expect: {status: 200}
"""


def test_each_turn_appends_the_answer_and_the_next_message_on_one_session(
        recorder: tuple[str, Recorder], tmp_path: Path) -> None:
    url, rec = recorder
    (tmp_path / "questions.csv").write_text("question\nq1\nq2\nq3\nq4\nq5\nq6\n")
    scenario = tmp_path / "sessions.yaml"
    scenario.write_text(SESSIONS.replace("URL", url))
    code, output, results = run([str(scenario)], tmp_path / "out")
    assert code == 0, output
    assert len(rec.seen) == 6
    ids = [sid for sid, _ in rec.seen]
    # one id per session, on every one of its turns; two sessions, two ids
    assert ids[0] == ids[1] == ids[2] and ids[3] == ids[4] == ids[5] and ids[0] != ids[3]
    assert all(sid and len(sid) == 32 for sid in ids)
    _, third = rec.seen[2]
    assert third == [
        {"role": "system", "content": "Be brief."},       # said once, in turn 1
        {"role": "user", "content": "q1 (turn 1)"},
        {"role": "assistant", "content": "answer 1"},
        {"role": "user", "content": "q2 (turn 2)"},       # `rows: turn`: a new row per turn
        {"role": "assistant", "content": "answer 2"},
        {"role": "user", "content": "q3 (turn 3)"}]
    _, fourth = rec.seen[3]
    assert fourth == [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "q4 (turn 1)"}]   # a new session
    counters = aggregate(results).counters
    assert counters.requests == counters.ok == 6 and counters.not_sent == 0


def test_later_turns_repeat_no_system_prompt_and_the_header_carries_the_id() -> None:
    session = Session(id="s", header="X-S")
    payload = {"body": {"messages": [{"role": "system", "content": "sys"},
                                     {"role": "user", "content": "a"}]}}
    first = with_history(session, payload)
    assert first["body"] == payload["body"] and first["headers"] == {"X-S": "s"}
    remember_turn(session, payload, "A")
    session.turn = 2
    second = with_history(session, {"body": {"messages": [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "b"}]}})
    assert [m["content"] for m in second["body"]["messages"]] == ["sys", "a", "A", "b"]


BROKEN = """
version: 1
services:
  sim: {builtin: openai-sim, options: {ttft: 5ms, itl: 1ms, output_tokens: 4,
                                       check_history: true, error_rate: 30%, seed: 3}}
targets:
  chat: {plugin: openai, service: sim, model: sim-model}
phases:
  - {name: talk, users: 4, requests: 40, duration: 30s}
requests:
  - name: chat
    target: chat
    turns: 3
    body: {messages: [{role: user, content: "turn {{ turn }} of {{ session_id }}"}]}
slos:
  - error_rate < 60%
"""


@pytest.mark.slow
def test_a_failed_turn_ends_its_session_and_every_count_balances(tmp_path: Path) -> None:
    scenario = tmp_path / "broken.yaml"
    scenario.write_text(BROKEN)
    code, output, results = run([str(scenario)], tmp_path / "out")
    assert code == 0, output
    turns = [aggregate(results, request=f"chat.turn{k}").counters for k in (1, 2, 3)]
    assert turns[0].requests + turns[0].not_sent == 40          # every session scheduled once
    for before, after in itertools.pairwise(turns):
        assert after.requests == before.ok                      # only a good turn goes on
    for c in turns:
        assert c.requests == c.ok + c.error_total + c.check_failures
    assert {e.status for e in results.errors} == {500}   # injected; the history never a 400
    assert 0 < turns[2].requests < turns[0].requests
