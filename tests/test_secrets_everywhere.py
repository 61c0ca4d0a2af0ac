"""A secret planted in every place a scenario can hold one appears in no output of any command.

A small server echoes every header, the URL and the body back, in error bodies and in
streamed model text, so each secret reaches llmscen's outputs by every way it can: runner
messages, check samples, notes, the command line, target URLs. Each secret is distinct
(a runner that only knows the target's `api_key` would leak the others) and shaped like
nothing (no `sk-`, no JWT), so only the exact-value scrubbing can hide it.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from llmscen.testing.background import serve_in_thread

pytestmark = pytest.mark.slow     # five CLI subprocesses and two short runs, ~20 s

PLANTED = {
    "target api_key (from ${PLANTED_KEY})": "envkey",
    "target header X-Tenant (from ${PLANTED_TENANT_TOKEN})": "tenant",
    "target header X-Api-Key": "targethdr",
    "request header X-Request-Token": "requesthdr",
    "step header Cookie": "stepcookie",
    "--set targets.chat.headers.Cookie": "setcookie",
    "--target URL user": "urluser",
    "--target URL password": "urlpw",
    "--target URL query api_key": "urlquery",
    "service command --api-key, printed by the service": "svckey",
}
SECRETS = {where: f"plant{tag}{secrets.token_hex(5)}" for where, tag in PLANTED.items()}
QUIET_HEADERS = {"host", "accept", "accept-encoding", "user-agent", "content-length",
                 "content-type", "connection"}


def echoed(request: web.Request, body: bytes) -> str:
    headers = "; ".join(f"{k}: {v}" for k, v in request.headers.items()
                        if k.lower() not in QUIET_HEADERS)
    return f"{headers} | {request.method} {request.path_qs} | {body.decode(errors='replace')}"


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})


async def chat(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    if not orjson.loads(raw).get("stream"):
        return web.json_response({"error": {"message": "you sent " + echoed(request, raw)}},
                                 status=500)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    text = echoed(request, b"")
    for piece in (text[i:i + 40] for i in range(0, len(text), 40)):
        chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m",
                 "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    return resp


async def anything(request: web.Request) -> web.Response:
    return web.Response(status=500, text="you sent " + echoed(request, await request.read()))


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_route("*", "/{tail:.*}", anything)
    return app


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    with serve_in_thread(make_app, name="echo-server") as url:
        yield url


SCENARIO = """\
version: 1
name: planted
services:
  noisy:
    command: ["{{python}}", -c, "import sys, http.server as h; print('args', sys.argv, flush=True);
              h.test(HandlerClass=h.SimpleHTTPRequestHandler, port=int(sys.argv[1]),
              bind='127.0.0.1')", "{{port}}", --api-key, {svckey}]
targets:
  chat:
    plugin: openai
    url: {url}
    model: m
    api_key: ${{PLANTED_KEY}}
    headers: {{X-Api-Key: {targethdr}, X-Tenant: "${{PLANTED_TENANT_TOKEN}}",
              Cookie: placeholder}}
  api: {{plugin: http, url: "http://127.0.0.1:9"}}
  noise: {{plugin: http, service: noisy}}
before: [ping]
phases:
  - {{name: p, duration: 1500ms, arrival_rate: 8}}
requests:
  - {{name: ping, target: noise, get: /}}
  - name: streamed
    target: chat
    stream: true
    headers: {{X-Request-Token: {requesthdr}}}
    body: {{messages: [{{role: user, content: hi}}]}}
    expect: {{contains: never-in-the-output}}
  - name: failing
    target: chat
    headers: {{X-Request-Token: {requesthdr}}}
    body: {{messages: [{{role: user, content: hi}}]}}
  - name: flow
    target: api
    steps:
      - name: echo
        get: /echo
        headers: {{Cookie: "sid={stepcookie}"}}
slos:
  - error_rate < 1%
"""


def planted_text(tmp_path: Path) -> list[tuple[str, str]]:
    """(where, text) of every file under tmp_path."""
    return [(str(p.relative_to(tmp_path)), p.read_text(errors="replace"))
            for p in sorted(tmp_path.rglob("*")) if p.is_file() and p.suffix != ".yaml"]


def leaks(outputs: list[tuple[str, str]]) -> list[str]:
    found = []
    basic = base64.b64encode(f"{SECRETS['--target URL user']}:"
                             f"{SECRETS['--target URL password']}".encode()).decode()
    needles = {**SECRETS, "--target URL userinfo as Basic auth": basic}
    for where, text in outputs:
        for planted, secret in needles.items():
            if secret in text:
                at = text.index(secret)
                found.append(f"{planted} in {where}: ...{text[max(at - 80, 0):at + 40]!r}")
    return found


def llmscen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLANTED_KEY": SECRETS["target api_key (from ${PLANTED_KEY})"],
           "PLANTED_TENANT_TOKEN": SECRETS["target header X-Tenant (from "
                                           "${PLANTED_TENANT_TOKEN})"]}
    return subprocess.run([sys.executable, "-m", "llmscen.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_no_planted_secret_in_any_output(tmp_path: Path, echo_url: str) -> None:
    tags = {tag: SECRETS[where] for where, tag in PLANTED.items()}
    scenario = tmp_path / "planted.yaml"
    scenario.write_text(SCENARIO.format(url=echo_url, **tags))
    host = echo_url.removeprefix("http://")
    overrides = ["--set", f"targets.chat.headers.Cookie=sess={tags['setcookie']}",
                 "--target", f"api=http://{tags['urluser']}:{tags['urlpw']}@{host}/base"
                             f"?api_key={tags['urlquery']}&page=2"]
    outputs: list[tuple[str, str]] = []
    runs: dict[str, Any] = {}
    commands = {
        "run --workers 1": ["run", str(scenario), *overrides, "--out", "one", "--workers", "1",
                            "--log-requests", "one/requests.jsonl", "--summary", "one/summary.md"],
        "run --workers 2": ["run", str(scenario), *overrides, "--out", "two", "--workers", "2"],
        "report": ["report", "one/results.json", "--html", "again/report.html",
                   "--junit", "again/junit.xml", "--summary", "again/summary.md"],
        "plan": ["plan", str(scenario), *overrides],
        "plan --json": ["plan", str(scenario), *overrides, "--json"],
        "validate": ["validate", str(scenario)],
    }
    for folder in ("one", "again"):
        (tmp_path / folder).mkdir()
    for name, args in commands.items():
        result = runs[name] = llmscen(*args, cwd=tmp_path)
        outputs += [(f"stdout of {name}", result.stdout), (f"stderr of {name}", result.stderr)]
        assert "Traceback" not in result.stderr, result.stderr
    outputs += planted_text(tmp_path)
    assert leaks(outputs) == [], "\n".join(leaks(outputs))

    # the run did reach the echoing server with every secret, so there was something to hide
    assert runs["run --workers 1"].returncode == 1, runs["run --workers 1"].stderr
    results = orjson.loads((tmp_path / "one" / "results.json").read_bytes())
    errors = {e["request"]: e for e in results["errors"]}
    assert "you sent" in errors["failing"]["samples"][0]["message"]
    assert "you sent" in errors["flow"]["samples"][0]["message"]
    assert [c["failed"] > 0 for c in results["checks"]] == [True]
    plan = orjson.loads(runs["plan --json"].stdout)
    assert plan["targets"][1]["url"] == f"{echo_url}/base?api_key=***&page=2"
    assert (tmp_path / "one" / "requests.jsonl").stat().st_size > 0
    # the service printed its own --api-key: its log keeps the line, masked
    log = (tmp_path / "one" / "service-noisy.log").read_text()
    assert "'--api-key', '***'" in log, log


def test_no_planted_secret_when_the_target_cannot_be_reached(tmp_path: Path) -> None:
    """A run that never starts says why (preflight, the URL it tried): still no secret."""
    tags = {tag: SECRETS[where] for where, tag in PLANTED.items()}
    scenario = tmp_path / "planted.yaml"
    scenario.write_text(SCENARIO.format(url="http://127.0.0.1:9", **tags))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    refused = f"http://{tags['urluser']}:{tags['urlpw']}@127.0.0.1:{port}/v1?api_key=" \
              f"{tags['urlquery']}"
    result = llmscen("run", str(scenario), "--target", f"chat={refused}", "--out", "out",
                     "--workers", "1", "--log-requests", "out/requests.jsonl", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "127.0.0.1" in result.stdout + result.stderr
    outputs = [("stdout", result.stdout), ("stderr", result.stderr), *planted_text(tmp_path)]
    assert leaks(outputs) == [], "\n".join(leaks(outputs))
