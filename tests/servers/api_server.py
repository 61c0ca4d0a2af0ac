"""A small login-protected API for testing the `http` plugin and flows.

Routes of the API:
- `POST /api/auth/login` with JSON `{email, password}` → `{"access_token": ...}`, 401 otherwise
- `GET /api/ai-models/available` with `Authorization: Bearer <token>` → a model list, 401 otherwise
- `GET /health`, `GET /status` (uptime and the counters below, as JSON)

Routes for runner tests: `/echo` (any method; says what it received), `/code/{status}`,
`/slow?delay=S`, `/redirect?to=PATH|self&status=N`, `/cookies/set?name=value`,
`/cookies/need`, `/text`, `/bad-json`.

In tests: `with serve() as (url, state): ...` runs it on port 0 in a thread (so an
in-process CLI run with its own event loop can reach it). By hand:
`python -m servers.api_server --port 8080` from `tests/` (or `python -m
tests.servers.api_server` from the repository root).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# The accounts the API knows; scenarios/data/users.csv lists them.
USERS: dict[str, str] = {
    "alice@example.com": "alice-pass-1",
    "bob@example.com": "bob-pass-2",
    "carol@example.com": "carol-pass-3",
}
MODELS = [{"id": "gpt-sim-small", "provider": "sim"}, {"id": "gpt-sim-large", "provider": "sim"}]
PRODUCTS = [{"sku": f"sku-{i}", "name": name, "price": price} for i, (name, price) in enumerate(
    [("GPU hours", 2.5), ("Token pack", 0.1), ("Fine-tune job", 40.0), ("Embedding pack", 0.05)])]


@dataclass
class ApiState:
    """What the API saw; tests read it after a run (counters are ints, safe to read across threads)."""

    users: dict[str, str] = field(default_factory=lambda: dict(USERS))
    tokens: dict[str, str] = field(default_factory=dict)   # token → email
    logins: int = 0
    login_failures: int = 0
    authorized: int = 0          # model listings with a valid token
    unauthorized: int = 0        # model listings refused with 401
    health: int = 0
    carts: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)  # email → items
    added: int = 0
    deleted: int = 0
    next_item: int = 1
    started: float = field(default_factory=time.monotonic)

    def counters(self) -> dict[str, int]:
        return {"logins": self.logins, "login_failures": self.login_failures,
                "authorized": self.authorized, "unauthorized": self.unauthorized,
                "health": self.health}


STATE = web.AppKey("state", ApiState)


def _unauthorized(message: str) -> web.Response:
    return web.json_response({"error": message}, status=401,
                             headers={"WWW-Authenticate": "Bearer"})


async def login(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        body = await request.json()
        email, password = str(body["email"]), str(body["password"])
    except (ValueError, KeyError, TypeError):
        state.login_failures += 1
        return web.json_response({"error": "send JSON {email, password}"}, status=400)
    if state.users.get(email) != password:
        state.login_failures += 1
        return _unauthorized(f"invalid email or password for {email}")
    state.logins += 1
    token = secrets.token_urlsafe(24)
    state.tokens[token] = email
    return web.json_response({"access_token": token, "token_type": "bearer", "user": email})


async def available_models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or token not in state.tokens:
        state.unauthorized += 1
        return _unauthorized("a valid bearer token is required")
    state.authorized += 1
    return web.json_response({"user": state.tokens[token], "models": MODELS})


def _user(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return request.app[STATE].tokens.get(token) if scheme.lower() == "bearer" else None


async def products(request: web.Request) -> web.Response:
    wanted = request.query.get("q", "").lower()
    found = [p for p in PRODUCTS if wanted in p["name"].lower()]
    return web.json_response({"products": found, "count": len(found)})


async def add_to_cart(request: web.Request) -> web.Response:
    state, user = request.app[STATE], _user(request)
    if user is None:
        return _unauthorized("a valid bearer token is required")
    try:
        body = await request.json()
        sku, qty = str(body["sku"]), int(body["qty"])
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": "send JSON {sku, qty}"}, status=400)
    cart = state.carts.setdefault(user, {})
    item = state.next_item
    state.next_item += 1
    state.added += 1
    cart[item] = {"id": item, "sku": sku, "qty": qty}
    return web.json_response({"id": item, "count": len(cart)}, status=201)


async def view_cart(request: web.Request) -> web.Response:
    user = _user(request)
    if user is None:
        return _unauthorized("a valid bearer token is required")
    cart = request.app[STATE].carts.get(user, {})
    return web.json_response({"items": list(cart.values()), "count": len(cart)})


async def remove_from_cart(request: web.Request) -> web.Response:
    state, user = request.app[STATE], _user(request)
    if user is None:
        return _unauthorized("a valid bearer token is required")
    item = int(request.match_info["item"])
    if state.carts.get(user, {}).pop(item, None) is None:
        return web.json_response({"error": f"no item {item} in the cart"}, status=404)
    state.deleted += 1
    return web.Response(status=204)


async def health(request: web.Request) -> web.Response:
    request.app[STATE].health += 1
    return web.json_response({"status": "ok"})


async def status(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"status": "ok", "uptime": time.monotonic() - state.started,
                              "counters": state.counters()})


# -- routes for runner tests ------------------------------------------------------------


async def echo(request: web.Request) -> web.Response:
    raw = await request.read()
    form = dict(await request.post()) if request.content_type.endswith("urlencoded") else None
    try:
        body: Any = await request.json() if request.content_type == "application/json" else None
    except ValueError:
        body = None
    return web.json_response({
        "method": request.method, "path": request.path,
        "query": {k: request.query.getall(k) for k in request.query},
        "headers": dict(request.headers), "content_type": request.content_type,
        "json": body, "form": {k: str(v) for k, v in form.items()} if form else None,
        "text": raw.decode("utf-8", "replace"),
    }, headers={"X-Request-Id": "req-42"})


async def code(request: web.Request) -> web.Response:
    value = int(request.match_info["status"])
    # echoes the caller's credentials, as a careless server might
    said = f"status {value} for {request.headers.get('Authorization', '')} " \
           f"{request.headers.get('Cookie', '')}"
    return web.Response(status=value, text=said)


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("delay", "1")))
    return web.Response(text="late")


async def redirect(request: web.Request) -> web.Response:
    status_code = int(request.query.get("status", "302"))
    to = request.query.get("to", "/echo")
    return web.Response(status=status_code,
                        headers={"Location": request.path_qs if to == "self" else to})


async def set_cookies(request: web.Request) -> web.Response:
    resp = web.json_response({"set": dict(request.query)})
    for name, value in request.query.items():
        resp.set_cookie(name, value, path="/")
    return resp


async def need_cookie(request: web.Request) -> web.Response:
    if "session" not in request.cookies:
        return web.Response(status=401, text="no session cookie")
    return web.json_response({"session": request.cookies["session"]})


async def text(request: web.Request) -> web.Response:
    return web.Response(text="order 1234 shipped\n", headers={"X-Trace": "abc"})


async def bad_json(request: web.Request) -> web.Response:
    return web.Response(text="{not json", content_type="application/json")


def make_app(state: ApiState | None = None) -> web.Application:
    app = web.Application()
    app[STATE] = state or ApiState()
    app.router.add_post("/api/auth/login", login)
    app.router.add_get("/api/ai-models/available", available_models)
    app.router.add_get("/health", health)
    app.router.add_get("/api/products", products)
    app.router.add_get("/api/cart", view_cart)
    app.router.add_post("/api/cart/items", add_to_cart)
    app.router.add_delete("/api/cart/items/{item:\\d+}", remove_from_cart)
    app.router.add_get("/status", status)
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/code/{status:\\d+}", code)
    app.router.add_get("/slow", slow)
    app.router.add_route("*", "/redirect", redirect)
    app.router.add_get("/cookies/set", set_cookies)
    app.router.add_get("/cookies/need", need_cookie)
    app.router.add_get("/text", text)
    app.router.add_get("/bad-json", bad_json)
    return app


@contextlib.asynccontextmanager
async def running(state: ApiState | None = None, host: str = "127.0.0.1",
                  port: int = 0) -> Any:
    """Serve in the current event loop; yields (url, state)."""
    app = make_app(state)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        yield f"http://{host}:{runner.addresses[0][1]}", app[STATE]
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def serve(state: ApiState | None = None) -> Iterator[tuple[str, ApiState]]:
    """Serve on port 0 in a background thread with its own event loop."""
    ready = threading.Event()
    stop: dict[str, Any] = {}
    result: dict[str, Any] = {}

    async def main() -> None:
        async with running(state) as (url, api_state):
            result["url"], result["state"] = url, api_state
            stop["event"] = asyncio.Event()
            stop["loop"] = asyncio.get_running_loop()
            ready.set()
            await stop["event"].wait()

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced to the waiting test
            result["error"] = exc
            ready.set()

    thread = threading.Thread(target=target, name="api-server", daemon=True)
    thread.start()
    if not ready.wait(10) or "error" in result:
        raise RuntimeError(f"test API server did not start: {result.get('error')!r}")
    try:
        yield result["url"], result["state"]
    finally:
        stop["loop"].call_soon_threadsafe(stop["event"].set)
        thread.join(10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
