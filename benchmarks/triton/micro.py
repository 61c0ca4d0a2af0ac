"""Client CPU per request of the layers under llmscen's triton runner (a breakdown for compare.py).

    .venv/bin/python benchmarks/triton/micro.py --url 127.0.0.1:8001 --slices 12 --slice 1.5

Runs closed loops at a fixed concurrency against a running triton-sim (start one with
`python -m llmscen.services.triton_sim --options '{"image_size": 64, "step_delay": 0,
"ttft": "5ms", "itl": "2ms", "output_tokens": 16}'`). All variants of a mode live in ONE
process on uvloop (as llmscen's engine), with their connections and streams open, and take
turns in short slices (A B C … A B C …), so a change in the machine's load hits them all
alike; the first `--settle` s of each slice are not measured. Per slice: requests/s and
process CPU (every thread) per request; the table gives medians over slices.

  flux (unary ModelInfer, batch 1, the two prompts of pa_flux_input.json)
    raw       grpc.aio with identity (de)serializers: request serialized once, response left
              as bytes: the floor of a Python grpc.aio client
    raw-pb    raw + the response parsed into a ModelInferResponse
    pb-np     raw-pb + ByteSize() + a numpy view of every output
    tc        tritonclient.grpc.aio `infer()` with InferInputs built once
    tc-np     tc + ByteSize() + as_numpy() of every output: the runner's `_send`, by hand
    runner    llmscen's TritonRunner.send(call, exchange) (no engine, no metrics): request
              bytes cached per payload, raw call, outputs read once (wire.py)
  stream (decoupled llm_stream, 16 tokens, over ModelStreamInfer, one request at a time
  per stream, streams kept open)
    raw       grpc.aio bidi stream, request bytes built once, each response parsed
    tc        tritonclient `stream_infer()` fed by an async generator (the runner's lane)
    tc-np     tc + the runner's per-response work: timestamp, ByteSize(), as_numpy() of
              text_output and its decoding
    runner    llmscen's TritonRunner.send() (its StreamPool; text decoded once per call)

Compare with compare.py's `infer/s per client core` (1e6 / that = CPU µs per request) for
perf_analyzer and for llmscen-w1 (the runner plus the engine and metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

INFER = "/inference.GRPCInferenceService/ModelInfer"
STREAM = "/inference.GRPCInferenceService/ModelStreamInfer"
PROMPTS = ("a red fox in the snow", "a castle on a hill at dusk")
VARIANTS = {"flux": ("raw", "raw-pb", "pb-np", "tc", "tc-np", "runner"),
            "stream": ("raw", "tc", "tc-np", "runner")}

User = Callable[[int], Awaitable[None]]   # one request of one user (k: the user's counter)


def flux_inputs(module: Any, prompt: str) -> list[Any]:
    import numpy as np

    p = module.InferInput("prompt", [1], "BYTES")
    p.set_data_from_numpy(np.array([prompt.encode()], dtype=np.object_))
    s = module.InferInput("num_inference_steps", [1], "INT32")
    s.set_data_from_numpy(np.array([4], dtype=np.int32))
    g = module.InferInput("guidance_scale", [1], "FP32")
    g.set_data_from_numpy(np.array([3.5], dtype=np.float32))
    return [p, s, g]


def stream_inputs(module: Any) -> list[Any]:
    import numpy as np

    t = module.InferInput("text_input", [1], "BYTES")
    t.set_data_from_numpy(np.array([b"hello world how are you"], dtype=np.object_))
    m = module.InferInput("max_tokens", [1], "INT32")
    m.set_data_from_numpy(np.array([16], dtype=np.int32))
    return [t, m]


def as_proto(model: str, inputs: list[Any], stream: bool) -> Any:
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    for i in inputs:
        request.inputs.append(i._get_tensor())
        request.raw_input_contents.append(i._get_content())
    if stream:
        request.parameters["triton_enable_empty_final_response"].bool_param = True
    return request


# -- flux ----------------------------------------------------------------------------------


def flux_users(variant: str, url: str, conc: int, closers: list[Any]) -> list[User]:
    import grpc
    import numpy as np
    import tritonclient.grpc.aio as tc
    from tritonclient.grpc import service_pb2
    from tritonclient.utils import triton_to_np_dtype

    inputs = [flux_inputs(tc, p) for p in PROMPTS]
    if variant in ("raw", "raw-pb", "pb-np"):
        channel = grpc.aio.insecure_channel(
            url, options=[("grpc.max_receive_message_length", 2**31 - 1)])
        closers.append(channel)
        call = channel.unary_unary(INFER)   # identity: bytes in, bytes out
        payloads = [as_proto("flux", i, False).SerializeToString() for i in inputs]
        parse, views = variant != "raw", variant == "pb-np"

        async def one(k: int) -> None:
            data = await call(payloads[k % 2], timeout=30)
            if parse:
                response = service_pb2.ModelInferResponse.FromString(data)
                if views:
                    response.ByteSize()
                    for out, raw in zip(response.outputs, response.raw_output_contents,
                                        strict=False):
                        np.frombuffer(raw, dtype=triton_to_np_dtype(out.datatype)).reshape(
                            list(out.shape))
        return [one] * conc
    client = tc.InferenceServerClient(url)
    closers.append(client)
    numpy_too = variant == "tc-np"

    async def one_tc(k: int) -> None:
        result = await client.infer("flux", inputs[k % 2], client_timeout=30)
        response = result.get_response()
        if numpy_too:
            response.ByteSize()
            {o.name: result.as_numpy(o.name) for o in response.outputs}
    return [one_tc] * conc


# -- stream --------------------------------------------------------------------------------


def stream_users(variant: str, url: str, conc: int, closers: list[Any]) -> list[User]:
    import grpc
    import tritonclient.grpc.aio as tc
    from tritonclient.grpc import service_pb2

    from llmscen.runners.triton.stream import decode_text

    if variant == "raw":
        channel = grpc.aio.insecure_channel(url)
        closers.append(channel)
        method = channel.stream_stream(STREAM)
        payload = as_proto("llm_stream", stream_inputs(tc), True).SerializeToString()
        parse = service_pb2.ModelStreamInferResponse.FromString

        def raw_user() -> User:
            call = method()

            async def one(k: int) -> None:
                await call.write(payload)
                while True:
                    r = parse(await call.read())
                    flag = r.infer_response.parameters.get("triton_final_response")
                    if flag is not None and flag.bool_param:
                        return
            return one
        return [raw_user() for _ in range(conc)]

    client = tc.InferenceServerClient(url)
    closers.append(client)
    inputs = stream_inputs(tc)
    work = variant == "tc-np"
    request = {"model_name": "llm_stream", "inputs": inputs, "enable_empty_final_response": True}

    def tc_user() -> User:
        outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def requests() -> Any:
            while True:
                r = await outbox.get()
                if r is None:
                    return
                yield dict(r)

        responses = client.stream_infer(requests())

        async def one(k: int) -> None:
            outbox.put_nowait(request)
            parts: list[str] = []
            itl: list[int] = []
            last = 0
            while True:
                result, error = await responses.__anext__()
                if error is not None:
                    raise RuntimeError(error)
                response = result.get_response()
                if work:
                    now = time.perf_counter_ns()
                    response.ByteSize()
                    if response.outputs:
                        if last:
                            itl.append((now - last) // 1000)
                        last = now
                        parts.append(decode_text(result.as_numpy("text_output")))
                flag = response.parameters.get("triton_final_response")
                if flag is not None and flag.bool_param:
                    return
        return one
    return [tc_user() for _ in range(conc)]


# -- llmscen's runner ----------------------------------------------------------------------


async def runner_users(mode: str, url: str, conc: int, closers: list[Any]) -> list[User]:
    from llmscen.engine.protocol import Call, Exchange
    from llmscen.runners.triton import TritonRunner, TritonTargetOptions

    model = "flux" if mode == "flux" else "llm_stream"
    target = SimpleNamespace(name="t", url=url, options=TritonTargetOptions(model=model))
    r = TritonRunner(target)  # type: ignore[arg-type]
    await r.start()
    closers.append(r)
    if mode == "flux":
        calls = [Call("flux", {"inputs": {
            "prompt": {"datatype": "BYTES", "shape": [1], "data": [p]},
            "num_inference_steps": {"datatype": "INT32", "shape": [1], "data": [4]},
            "guidance_scale": {"datatype": "FP32", "shape": [1], "data": [3.5]}}})
            for p in PROMPTS]
    else:
        calls = [Call("tokens", {"inputs": {
            "text_input": {"datatype": "BYTES", "shape": [1],
                           "data": ["hello world how are you"]},
            "max_tokens": {"datatype": "INT32", "shape": [1], "data": [16]}}}, stream=True)]

    async def one(k: int) -> None:
        ex = Exchange(intended_ns=time.perf_counter_ns())
        await r.send(calls[k % len(calls)], ex)
        if ex.error:
            raise RuntimeError(ex.error_message)
    return [one] * conc


# -- slices --------------------------------------------------------------------------------


async def run_slice(users: list[User], settle: float, length: float) -> dict[str, float]:
    """Every user loops until the slice ends; measure after `settle` s."""
    stop = asyncio.Event()
    done = [0]

    async def loop(u: int, one: User) -> None:
        for k in itertools.count(u):
            if stop.is_set():
                return
            await one(k)
            done[0] += 1

    tasks = [asyncio.create_task(loop(u, one)) for u, one in enumerate(users)]
    await asyncio.sleep(settle)
    n0, cpu0, t0 = done[0], time.process_time(), time.perf_counter()
    await asyncio.sleep(length)
    n1, cpu1, t1 = done[0], time.process_time(), time.perf_counter()
    stop.set()
    await asyncio.gather(*tasks)   # the in-flight requests finish; not counted
    n, wall = n1 - n0, t1 - t0
    return {"rps": n / wall, "us": (cpu1 - cpu0) / n * 1e6 if n else float("nan"),
            "cores": (cpu1 - cpu0) / wall}


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for mode in args.modes.split(","):
        conc = args.flux_concurrency if mode == "flux" else args.stream_concurrency
        closers: list[Any] = []
        users: dict[str, list[User]] = {}
        for variant in VARIANTS[mode]:
            if variant.startswith("runner"):
                users[variant] = await runner_users(mode, args.url, conc, closers)
            elif mode == "flux":
                users[variant] = flux_users(variant, args.url, conc, closers)
            else:
                users[variant] = stream_users(variant, args.url, conc, closers)
        slices: dict[str, list[dict[str, float]]] = {v: [] for v in users}
        for s in range(args.slices):
            for variant in users:
                r = await run_slice(users[variant], args.settle, args.slice)
                slices[variant].append(r)
                print(f"{mode:6s} {variant:7s} slice {s:2d}: {r['rps']:6.0f} req/s "
                      f"{r['us']:6.0f} µs/request  {r['cores']:.2f} cores", file=sys.stderr,
                      flush=True)
        for c in closers:
            res = c.stop() if hasattr(c, "stop") else c.close()
            if asyncio.iscoroutine(res):
                await res
        for variant, rs in slices.items():
            rows.append({"mode": mode, "variant": variant, "concurrency": conc,
                         "rps": statistics.median(r["rps"] for r in rs),
                         "cores": statistics.median(r["cores"] for r in rs),
                         "us_per_request": statistics.median(r["us"] for r in rs),
                         "us_all": [round(r["us"]) for r in rs]})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="gRPC host:port of triton-sim (127.0.0.1)")
    ap.add_argument("--modes", default="flux,stream")
    ap.add_argument("--slices", type=int, default=12, help="turns per variant")
    ap.add_argument("--slice", type=float, default=1.5, help="measured seconds per turn")
    ap.add_argument("--settle", type=float, default=0.3, help="unmeasured start of a turn")
    ap.add_argument("--flux-concurrency", type=int, default=8)
    ap.add_argument("--stream-concurrency", type=int, default=32)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    import os

    import uvloop

    load0 = os.getloadavg()
    rows = uvloop.run(bench(args))
    load1 = os.getloadavg()
    print("| mode | variant | req/s | client cores | CPU µs / request (median) | vs raw |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        raw = next(x for x in rows if x["mode"] == r["mode"] and x["variant"] == "raw")
        print(f"| {r['mode']} | {r['variant']} | {r['rps']:.0f} | {r['cores']:.2f} "
              f"| {r['us_per_request']:.0f} | {r['us_per_request'] / raw['us_per_request']:.2f} |")
    print(f"load average {load0[0]:.1f} → {load1[0]:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "loadavg": [load0, load1], "argv": sys.argv}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
