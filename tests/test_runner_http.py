"""The `http` runner against the test API server (tests/servers/api_server.py) on port 0."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from servers.api_server import running

from llmscen.compile.compiler import compile_document
from llmscen.compile.plan import TargetPlan
from llmscen.engine.capture import compile_capture, is_missing
from llmscen.engine.protocol import Call, Exchange
from llmscen.engine.registry import Registry, check_plugin
from llmscen.runners import http
from llmscen.runners.http import HttpRequestOptions, HttpRunner, HttpTargetOptions
from llmscen.spec.diagnostics import ScenarioError
from llmscen.spec.loader import load_file

SECRET = "tok-SECRET-0123456789"
COOKIE_SECRET = "cookie-SECRET-987654"


def target(url: str | None, **options: Any) -> TargetPlan:
    return TargetPlan(name="api", plugin="http", url=url, options=HttpTargetOptions(**options))


@contextlib.asynccontextmanager
async def started(url: str | None, **options: Any) -> AsyncIterator[HttpRunner]:
    runner = http.plugin.create_runner(target(url, **options))
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


async def send(runner: HttpRunner, timeout: float | None = None, **payload: Any) -> Exchange:
    ex = Exchange(intended_ns=time.perf_counter_ns())
    await runner.send(Call(request="r", payload=payload, timeout=timeout), ex)
    return ex


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- plugin contract and options ---------------------------------------------------------


def test_plugin_satisfies_the_contract():
    assert check_plugin(http.plugin) == []
    assert http.plugin.name == "http" and http.plugin.api_version == 1
    assert {"latency", "latency_sent", "error_rate"} <= http.plugin.metrics
    registry = Registry.discover()
    if "http" not in registry.plugins:
        pytest.skip("the `http` entry point is not installed yet (pip install -e .)")
    assert registry.plugins["http"].obj is http.plugin


def test_runner_is_built_from_a_pickled_plan():
    plan = pickle.loads(pickle.dumps(target("http://h:1/api/", timeout="2s")))
    runner = http.plugin.create_runner(plan)
    assert runner.base == "http://h:1/api" and runner.options.timeout == 2.0
    pickle.dumps(runner)   # nothing opened before start()
    assert str(runner.url_for("/login")) == "http://h:1/api/login"
    assert str(runner.url_for("login")) == "http://h:1/api/login"
    assert str(runner.url_for("https://other/x?a=1", {"b": [1, 2], "c": True, "d": None})) \
        == "https://other/x?a=1&b=1&b=2&c=true"


def test_target_options_are_strict_with_defaults():
    options = HttpTargetOptions()
    assert (options.timeout, options.verify_tls, options.max_connections,
            options.follow_redirects, options.cookies) == (30.0, True, 0, True, True)
    with pytest.raises(ValidationError, match="Extra inputs"):
        HttpTargetOptions.model_validate({"model": "m"})


@pytest.mark.parametrize(("raw", "message"), [
    ({"headers": {"a": "b"}}, "a step takes exactly one method key: get, post, put, patch, "
                              "delete, head, options"),
    ({"get": "/a", "post": "/b"}, "this one has get, post"),
    ({"post": "/a", "json": {}, "body": "x"}, "at most one body: `json`, `form` or `body`; "
                                              "this one has json, body"),
    ({"post": "/a", "json": None, "form": {"a": 1}}, "this one has json, form"),
    ({"post": "/a", "body": {"a": 1}}, "`body` is raw text; use `json:`"),
    ({"get": "/a", "url": "/b"}, "Extra inputs"),
])
def test_request_options_say_what_is_wrong(raw, message):
    with pytest.raises(ValidationError) as info:
        HttpRequestOptions.model_validate(raw)
    assert message in str(info.value)


def test_request_options_accept_each_method_and_body():
    for method in http.METHODS:
        HttpRequestOptions.model_validate({method: "/x"})
    options = HttpRequestOptions.model_validate({"post": "/x", "json": [1, "a"],
                                                 "query": {"q": ["a", 1]}})
    assert options.json_body == [1, "a"]


def test_compile_reports_step_problems_at_their_line(tmp_path: Path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("""\
targets: {api: {plugin: http, url: "http://127.0.0.1:1"}}
phases: [{duration: 1s, arrival_rate: 1}]
requests:
  - name: flow
    target: api
    steps:
      - post: /login
        get: /other
      - gett: /x
""")
    registry = Registry.discover()
    if "http" not in registry.plugins:
        registry.add_plugin(http.plugin)
    with pytest.raises(ScenarioError) as info:
        compile_document(load_file(scenario), registry)
    text = str(info.value)
    assert "s.yaml:7:" in text and "exactly one method key" in text
    assert "this one has get, post" in text
    assert "s.yaml:9:" in text and "unknown key 'gett'" in text and "did you mean 'get'" in text


# -- sending -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", http.METHODS)
def test_every_method_is_sent(method):
    async def body() -> Exchange:
        async with running() as (url, _), started(url) as runner:
            payload: dict[str, Any] = {method: "/echo"}
            return await send(runner, **payload)
    ex = run(body())
    assert ex.error is None and ex.status == 200
    assert ex.intended_ns <= ex.sent_ns <= ex.first_byte_ns <= ex.end_ns
    if method == "head":
        assert ex.text == "" and ex.body is None
    else:
        assert ex.body["method"] == method.upper() and ex.bytes_received == len(ex.text)


def test_json_form_raw_bodies_query_and_headers():
    async def body() -> list[Exchange]:
        async with running() as (url, _), started(url, headers={"X-Team": "qa",
                                                                "X-Over": "target"}) as runner:
            return [
                await send(runner, post="/echo", json={"email": "a@b.c", "n": [1, 2]}),
                await send(runner, put="/echo", form={"a": 1, "b": ["x", "y"], "ok": True}),
                await send(runner, patch="/echo", body="<x/>",
                           headers={"Content-Type": "application/xml", "X-Over": "step"}),
                await send(runner, get="/echo?a=1", query={"b": "two", "c": [3, 4]}),
            ]
    as_json, as_form, raw, query = run(body())
    assert as_json.body["json"] == {"email": "a@b.c", "n": [1, 2]}
    assert as_json.body["content_type"] == "application/json"
    assert as_form.body["text"] == "a=1&b=x&b=y&ok=true"
    assert as_form.body["content_type"] == "application/x-www-form-urlencoded"
    assert raw.body["text"] == "<x/>" and raw.body["content_type"] == "application/xml"
    sent = raw.body["headers"]
    assert sent["X-Team"] == "qa" and sent["X-Over"] == "step"
    assert sent["User-Agent"].startswith("llmscen/")
    assert query.body["query"] == {"a": ["1"], "b": ["two"], "c": ["3", "4"]}
    assert query.headers is not None and query.headers["x-request-id"] == "req-42"
    assert all(k == k.lower() for k in query.headers)


def test_target_url_with_a_path_prefix_and_full_urls():
    async def body() -> tuple[Exchange, Exchange]:
        async with running() as (url, _):
            async with started(url + "/code") as runner:
                prefixed = await send(runner, get="/204")
                full = await send(runner, get=f"{url}/echo")
            return prefixed, full
    prefixed, full = run(body())
    assert prefixed.status == 204 and prefixed.error is None and prefixed.text == ""
    assert full.body["path"] == "/echo"


def test_captures_by_jsonpath_header_and_regex():
    async def body() -> tuple[Exchange, Exchange]:
        async with running() as (url, _), started(url) as runner:
            return (await send(runner, post="/echo", json={"user": {"ids": [7, 8]}}),
                    await send(runner, get="/text"))
    echoed, text = run(body())
    assert compile_capture("$.json.user.ids[1]")(echoed) == 8
    assert compile_capture("$['method']")(echoed) == "POST"
    assert compile_capture("header:X-Request-Id")(echoed) == "req-42"
    assert compile_capture("header:x-trace")(text) == "abc"
    assert compile_capture(r"regex:order (\d+)")(text) == "1234"
    assert text.body is None    # plain text is not JSON
    assert is_missing(compile_capture("$.nothing")(echoed))
    assert is_missing(compile_capture("$.x")(text))


# -- failures ----------------------------------------------------------------------------


def test_failures_are_classified():
    async def body() -> dict[str, Exchange]:
        async with running() as (url, _), started(url, timeout="2s") as runner:
            out = {
                "404": await send(runner, get="/nowhere"),
                "500": await send(runner, delete="/code/500"),
                "timeout": await send(runner, get="/slow?delay=1", timeout=0.2),
                "bad_json": await send(runner, get="/bad-json"),
                "bad_body": await send(runner, post="/echo", json={"x": {1, 2}}),
            }
        async with started(f"http://127.0.0.1:{free_port()}") as runner:
            out["refused"] = await send(runner, get="/health")
        return out
    got = run(body())
    assert (got["404"].error, got["404"].status) == ("http", 404)
    assert got["404"].error_message.startswith("HTTP 404 Not Found")
    assert (got["500"].error, got["500"].status) == ("http", 500)
    assert "status 500 for" in got["500"].error_message    # a short excerpt of the body
    assert got["timeout"].error == "timeout"
    assert got["timeout"].error_message == "no response within 0.2s"
    assert got["bad_json"].error == "protocol" and "says it is JSON" in got["bad_json"].error_message
    assert got["bad_body"].error == "client" and "cannot be built" in got["bad_body"].error_message
    assert got["refused"].error == "connect" and got["refused"].status is None
    for ex in got.values():
        assert ex.end_ns >= ex.sent_ns > 0


def test_no_secret_in_messages():
    async def body() -> list[Exchange]:
        async with running() as (url, _), started(
                url, headers={"Authorization": f"Bearer {SECRET}"}) as runner:
            await send(runner, get=f"/cookies/set?session={COOKIE_SECRET}")
            return [
                await send(runner, get="/code/500"),
                await send(runner, get="/code/401", headers={"X-Api-Key": "key-SECRET-55"}),
                await send(runner, post="/code/403", json={"password": "pw-SECRET-77"}),
            ]
    for ex in run(body()):
        assert ex.error == "http"
        for secret in (SECRET, COOKIE_SECRET, "key-SECRET-55", "pw-SECRET-77"):
            assert secret not in ex.error_message
    assert "***" in ex.error_message


def test_redirects_are_followed_with_the_right_method():
    async def body() -> list[Exchange]:
        async with running() as (url, _), started(url) as runner:
            out = [await send(runner, post="/redirect?to=/echo&status=303", json={"a": 1}),
                   await send(runner, post="/redirect?to=/echo&status=307", json={"a": 1}),
                   await send(runner, get="/redirect?to=self")]
        async with running() as (url, _), started(url, follow_redirects=False) as runner:
            out.append(await send(runner, get="/redirect?to=/echo"))
        return out
    see_other, temporary, loop, kept = run(body())
    assert see_other.body["method"] == "GET" and see_other.body["text"] == ""
    assert temporary.body["method"] == "POST" and temporary.body["json"] == {"a": 1}
    assert loop.error == "http" and "redirects" in loop.error_message
    assert kept.error is None and kept.status == 302 and kept.headers["location"] == "/echo"


def test_credentials_do_not_follow_a_redirect_to_another_origin():
    async def body() -> Exchange:
        async with running() as (other, _), running() as (url, _), started(url) as runner:
            return await send(runner, get=f"/redirect?to={other}/echo",
                              headers={"Authorization": f"Bearer {SECRET}", "X-Keep": "1"})
    ex = run(body())
    assert ex.status == 200 and "Authorization" not in ex.body["headers"]
    assert ex.body["headers"]["X-Keep"] == "1"


def test_cookies_are_kept_per_task():
    async def body() -> tuple[Exchange, Exchange, Exchange]:
        async with running() as (url, _), started(url) as runner:
            async def login_then_use() -> Exchange:
                await send(runner, get="/cookies/set?session=s1")
                return await send(runner, get="/cookies/need")
            same = await asyncio.create_task(login_then_use())
            other = await asyncio.create_task(send(runner, get="/cookies/need"))
        async with running() as (url, _), started(url, cookies=False) as runner:
            await send(runner, get="/cookies/set?session=s1")
            off = await send(runner, get="/cookies/need")
        return same, other, off
    same, other, off = run(body())
    assert same.status == 200 and same.body == {"session": "s1"}
    assert other.status == 401 and off.status == 401


def test_cancel_marks_cancelled_and_reraises():
    async def body() -> Exchange:
        async with running() as (url, _), started(url) as runner:
            ex = Exchange(intended_ns=time.perf_counter_ns())
            task = asyncio.create_task(runner.send(Call("r", {"get": "/slow?delay=5"}), ex))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return ex
    ex = run(body())
    assert ex.error == "cancelled" and ex.end_ns > 0


@contextlib.asynccontextmanager
async def closing_keepalive_server() -> AsyncIterator[tuple[str, list[int]]]:
    """Answers the first request on a connection with keep-alive, then closes the connection
    when the next one arrives, unanswered. Yields the URL and requests seen per connection."""
    seen: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(0)
        index = len(seen) - 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                seen[index] += 1
                if seen[index] > 1:
                    break
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen
    finally:
        server.close()
        await server.wait_closed()


def test_a_post_on_a_closed_keepalive_connection_is_sent_again_once():
    async def body() -> None:
        async with closing_keepalive_server() as (url, seen), started(url) as runner:
            for _ in range(3):
                ex = await send(runner, post="/login", json={"a": 1})
                assert ex.error is None and ex.text == "ok", ex.error_message
            # the second met the closed connection and went out again on a new one
            assert runner.reconnects == 1 and seen == [2, 1, 1]
    run(body())


def test_preflight_checks_the_port_only():
    async def body() -> tuple[list[str], list[str], int]:
        async with running() as (url, state), started(url) as runner:
            ok = await runner.preflight([])
            health = state.health
        async with started(f"http://127.0.0.1:{free_port()}") as runner:
            down = await runner.preflight([])
        return ok, down, health
    ok, down, health = run(body())
    assert ok == [] and health == 0
    assert len(down) == 1 and "target 'api': cannot connect to 127.0.0.1:" in down[0]


def test_start_without_url_is_an_error():
    async def body() -> None:
        runner = http.plugin.create_runner(target(None))
        with pytest.raises(ConnectionError, match="has no URL"):
            await runner.start()
    run(body())
