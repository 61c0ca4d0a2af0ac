"""triton-sim: a real tritonserver with simulated models, driven with tritonclient.

One server serves the whole module (startup ≈1–2 s, stop ≈3 s); the service
test starts a second one through the CLI, as a scenario run would.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import queue
import statistics
import time
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from llmscen.services.triton_sim import (
    TritonSim,
    TritonSimError,
    TritonSimOptions,
    find_tritonserver,
    start_triton_sim,
)
from llmscen.services.triton_sim.repository import flux_config, llm_stream_config
from llmscen.services.triton_sim.server import group_pids

TTFT, ITL, TOKENS = 0.05, 0.005, 8


def _have_triton() -> str | None:
    if importlib.util.find_spec("tritonclient") is None:
        return "tritonclient is not installed (pip install 'llmscen[triton]')"
    try:
        find_tritonserver()
    except TritonSimError as exc:
        return str(exc)
    return None


needs_triton = pytest.mark.skipif(_have_triton() is not None, reason=str(_have_triton()))


# -- options and repository: no server ------------------------------------------------------


def test_options_take_durations_and_forbid_unknown_keys() -> None:
    opts = TritonSimOptions(ttft="80ms", itl="12ms", step_delay="1.5s", max_queue_delay=0.002)
    assert (opts.ttft, opts.itl, opts.step_delay, opts.max_queue_delay) == (0.08, 0.012, 1.5, 0.002)
    assert TritonSimOptions().image_size == 1024
    with pytest.raises(ValidationError, match="extra"):
        TritonSimOptions.model_validate({"image_sise": 64})
    with pytest.raises(ValidationError, match="allowed_sizes"):
        TritonSimOptions(allowed_sizes=[4])
    assert TritonSimOptions(image_size=64, allowed_sizes=[128, 32]).sizes == (32, 64, 128)


def test_flux_config_takes_spec_shapes_without_batch_dimension() -> None:
    config = flux_config(TritonSimOptions(image_size=64))
    assert "max_batch_size: 0" in config
    assert 'name: "prompt" data_type: TYPE_STRING dims: [ -1 ]' in config
    assert 'name: "seed" data_type: TYPE_INT64 dims: [ -1 ] optional: true' in config
    assert "dims: [ -1, 3, 64, 64 ]" in config
    several = flux_config(TritonSimOptions(image_size=64, allowed_sizes=[32]))
    assert "dims: [ -1, 3, -1, -1 ]" in several
    assert "decoupled: true" in llm_stream_config(TritonSimOptions())


def test_missing_pytriton_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pytriton" else real(name, *a))
    with pytest.raises(TritonSimError, match=r"pip install 'llmscen\[triton\]'"):
        start_triton_sim({"image_size": 64})


@needs_triton
@pytest.mark.triton
def test_startup_timeout_quotes_the_log_and_cleans_up() -> None:
    before = _triton_pids()
    with pytest.raises(TritonSimError, match=r"not ready after 0\.2 s; last lines of its log"):
        start_triton_sim({"image_size": 64, "startup_timeout": 0.2})
    assert _triton_pids() <= before


def _triton_pids() -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit() and _comm(int(p)) in
            ("tritonserver", "triton_python_b") and _state(int(p)) not in ("Z", "gone")}


# -- a live server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[TritonSim]:
    reason = _have_triton()
    if reason:
        pytest.skip(reason)
    server = start_triton_sim({"image_size": 64, "allowed_sizes": [32], "ttft": TTFT,
                               "itl": ITL, "output_tokens": TOKENS, "max_batch_size": 4})
    pids = server.pids()
    assert len(pids) >= 5, pids   # tritonserver + a stub per model
    yield server
    server.stop()
    server.stop()   # idempotent
    alive = [p for p in pids if os.path.exists(f"/proc/{p}") and _state(p) != "Z"]
    assert not alive, f"left running after stop(): {alive}"
    assert not group_pids(server.pid)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _flux_inputs(mod: Any, prompts: list[str], steps: list[int] | None = None,
                 **extra: tuple[str, list[Any]]) -> list[Any]:
    tensors = {
        "prompt": ("BYTES", np.array([p.encode() for p in prompts], dtype=np.object_)),
        "num_inference_steps": ("INT32", np.array(steps or [4], dtype=np.int32)),
        "guidance_scale": ("FP32", np.array([0.0], dtype=np.float32)),
    }
    dtypes = {"BYTES": np.object_, "INT32": np.int32, "INT64": np.int64, "FP32": np.float32}
    for name, (dtype, values) in extra.items():
        tensors[name] = (dtype, np.array(values, dtype=dtypes[dtype]))
    inputs = []
    for name, (dtype, array) in tensors.items():
        tensor = mod.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


@pytest.fixture(scope="module")
def grpc(sim: TritonSim) -> Any:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(sim.grpc_url)
    yield SimpleNamespace(mod=grpcclient, client=client)
    client.close()


@pytest.fixture(scope="module")
def http(sim: TritonSim) -> Any:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(sim.http_url.removeprefix("http://"))
    yield SimpleNamespace(mod=httpclient, client=client)
    client.close()


def _images(api: Any, prompts: list[str], **kw: Any) -> np.ndarray:
    return api.client.infer("flux", _flux_inputs(api.mod, prompts, **kw)).as_numpy("images")


@pytest.mark.triton
def test_handle_urls_and_metrics(sim: TritonSim, grpc: Any) -> None:
    assert sim.grpc_url.startswith("127.0.0.1:") and sim.http_url.startswith("http://127.0.0.1:")
    assert sim.urls == {"grpc": sim.grpc_url, "http": sim.http_url, "metrics": sim.metrics_url}
    assert grpc.client.is_server_ready()
    for model in ("flux", "flux_text_encoder", "flux_transformer", "llm_stream"):
        assert grpc.client.is_model_ready(model), model
    with urllib.request.urlopen(sim.metrics_url, timeout=5) as resp:
        assert b"nv_inference_request_success" in resp.read()
    assert sim.startup_seconds < 30


@pytest.mark.triton
def test_flux_metadata_matches_the_spec_example(grpc: Any) -> None:
    meta = grpc.client.get_model_metadata("flux", as_json=True)
    inputs = {i["name"]: (i["datatype"], i["shape"]) for i in meta["inputs"]}
    assert inputs["prompt"] == ("BYTES", ["-1"])
    assert inputs["num_inference_steps"] == ("INT32", ["-1"])
    assert inputs["guidance_scale"] == ("FP32", ["-1"])
    assert inputs["seed"][0] == "INT64" and inputs["height"][0] == inputs["width"][0] == "INT32"
    assert meta["outputs"] == [{"name": "images", "datatype": "FP32",
                                "shape": ["-1", "3", "-1", "-1"]}]


@pytest.mark.triton
def test_flux_grpc_image_shape_range_and_determinism(grpc: Any) -> None:
    image = _images(grpc, ["A cat holding a sign that says hello world"])
    assert image.shape == (1, 3, 64, 64) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0 and image.std() > 0.05
    again = _images(grpc, ["A cat holding a sign that says hello world"], steps=[8])
    assert np.array_equal(image, again)
    other_seed = _images(grpc, ["A cat holding a sign that says hello world"],
                         seed=("INT64", [7]))
    other_prompt = _images(grpc, ["A dog"])
    assert not np.array_equal(image, other_seed) and not np.array_equal(image, other_prompt)


@pytest.mark.triton
def test_flux_http_gives_the_grpc_image(grpc: Any, http: Any) -> None:
    assert np.array_equal(_images(http, ["a red fox"], seed=("INT64", [3])),
                          _images(grpc, ["a red fox"], seed=("INT64", [3])))


@pytest.mark.triton
def test_flux_batch_of_three_equals_three_singles(grpc: Any) -> None:
    prompts, seeds = ["a red fox", "a castle", "a red fox"], [1, 2, 3]
    batch = _images(grpc, prompts, seed=("INT64", seeds))
    assert batch.shape == (3, 3, 64, 64)
    for i, (prompt, seed) in enumerate(zip(prompts, seeds, strict=True)):
        assert np.array_equal(batch[i], _images(grpc, [prompt], seed=("INT64", [seed]))[0]), i


@pytest.mark.triton
def test_flux_other_allowed_size(grpc: Any) -> None:
    image = _images(grpc, ["tiny"], height=("INT32", [32]), width=("INT32", [64]))
    assert image.shape == (1, 3, 32, 64)


@pytest.mark.triton
def test_flux_concurrent_requests_are_batched(sim: TritonSim) -> None:
    import tritonclient.grpc.aio as grpcaio

    async def burst() -> list[np.ndarray]:
        client = grpcaio.InferenceServerClient(sim.grpc_url)
        try:
            results = await asyncio.gather(*[
                client.infer("flux", _flux_inputs(grpcaio, [f"p{i}"], seed=("INT64", [i])))
                for i in range(8)])
            stats = await client.get_inference_statistics("flux_transformer", as_json=True)
        finally:
            await client.close()
        counts = stats["model_stats"][0]
        assert int(counts["execution_count"]) < int(counts["inference_count"])
        return [r.as_numpy("images") for r in results]

    images = asyncio.run(burst())
    assert all(img.shape == (1, 3, 64, 64) for img in images)


@pytest.mark.triton
def test_flux_empty_prompt_is_a_clear_error(grpc: Any, http: Any) -> None:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as grpc_err:
        _images(grpc, [""])
    assert grpc_err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "input 'prompt' is empty" in grpc_err.value.message()
    with pytest.raises(InferenceServerException) as http_err:
        _images(http, [""])
    assert http_err.value.status() == "400"
    assert "prompt" in http_err.value.message()


@pytest.mark.triton
@pytest.mark.parametrize(("case", "kwargs", "message"), [
    ("too long", {"prompts": ["x" * 2001]}, "2001 characters, more than max_prompt_chars=2000"),
    ("no steps", {"prompts": ["a"], "steps": [0]}, "'num_inference_steps' is 0"),
    ("too many steps", {"prompts": ["a"], "steps": [51]}, "must lie between 1 and 50"),
    ("size", {"prompts": ["a"], "height": ("INT32", [48])}, "'height' is 48, which is not"),
    ("batch", {"prompts": ["a"] * 5}, "5 prompts, more than max_batch_size=4"),
    ("seeds", {"prompts": ["a", "b"], "seed": ("INT64", [1, 2, 3])}, "3 values for 2 prompts"),
])
def test_flux_bad_inputs_name_the_input(grpc: Any, case: str, kwargs: dict[str, Any],
                                        message: str) -> None:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match=message):
        _images(grpc, **kwargs)


def _stream(grpc: Any, text: str, *, request_id: str = "r", **extra: tuple[str, Any]
            ) -> tuple[list[str], list[float], bool]:
    """One llm_stream request over a gRPC stream: tokens, arrival times (s), final flag seen."""
    mod = grpc.mod
    events: queue.Queue[tuple[float, Any, Any]] = queue.Queue()
    grpc.client.start_stream(callback=lambda result, error: events.put(
        (time.perf_counter(), result, error)))
    try:
        arrays = {"text_input": ("BYTES", np.array([text.encode()], dtype=np.object_))}
        for name, (dtype, value) in extra.items():
            arrays[name] = (dtype, np.array([value], dtype={"INT32": np.int32,
                                                            "BOOL": np.bool_}[dtype]))
        inputs = []
        for name, (dtype, array) in arrays.items():
            tensor = mod.InferInput(name, [1], dtype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        sent = time.perf_counter()
        grpc.client.async_stream_infer("llm_stream", inputs, request_id=request_id)
        tokens, times, final = [], [], False
        while not final:
            at, result, error = events.get(timeout=10)
            if error is not None:
                raise error
            response = result.get_response()
            final = response.parameters["triton_final_response"].bool_param
            if response.outputs:
                tokens.append(result.as_numpy("text_output")[0].decode())
                times.append(at - sent)
        return tokens, times, final
    finally:
        grpc.client.stop_stream()


@pytest.mark.triton
def test_llm_stream_emits_output_tokens_with_configured_timing(grpc: Any) -> None:
    ttfts, spans = [], []
    for i in range(7):
        tokens, times, final = _stream(grpc, "hello big world", request_id=f"t{i}")
        assert final and len(tokens) == TOKENS
        assert "".join(tokens) == "hello big world hello big world hello big"
        ttfts.append(times[0])
        spans.append(times[-1] - times[0])
    # A busy machine can only add delay: the best case shows the server's precision.
    best, typical = min(ttfts) * 1000, statistics.median(ttfts) * 1000
    assert TTFT * 1000 - 0.5 <= best <= TTFT * 1000 + 3, f"best TTFT {best:.2f} ms"
    assert typical <= TTFT * 1000 + 10, f"median TTFT {typical:.2f} ms"
    # Tokens are due at absolute times, so late wake-ups don't add up over a reply.
    span = statistics.median(spans) * 1000
    assert abs(span - (TOKENS - 1) * ITL * 1000) <= 3, f"first→last token {span:.2f} ms"


@pytest.mark.triton
def test_llm_stream_max_tokens_caps_and_ignore_eos_extends(grpc: Any) -> None:
    assert len(_stream(grpc, "a b", max_tokens=("INT32", 3))[0]) == 3
    assert len(_stream(grpc, "a b", max_tokens=("INT32", 12))[0]) == TOKENS
    assert len(_stream(grpc, "a b", max_tokens=("INT32", 12), ignore_eos=("BOOL", True))[0]) == 12
    whole, times, final = _stream(grpc, "a b", max_tokens=("INT32", 4), stream=("BOOL", False))
    assert whole == ["a b a b"] and final
    assert times[0] >= TTFT + 3 * ITL - 0.001


@pytest.mark.triton
def test_llm_stream_rejects_bad_max_tokens(grpc: Any) -> None:
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="'max_tokens' is 0"):
        _stream(grpc, "a", max_tokens=("INT32", 0))


@pytest.mark.triton
def test_llm_stream_http_generate_stream(sim: TritonSim) -> None:
    body = json.dumps({"text_input": "one two", "max_tokens": 3}).encode()
    request = urllib.request.Request(f"{sim.http_url}/v2/models/llm_stream/generate_stream",
                                     data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        events = [json.loads(line[5:]) for line in resp.read().decode().splitlines()
                  if line.startswith("data:")]
    assert [e["text_output"] for e in events] == ["one", " two", " one"]


# -- the service (the CLI in a child process), as a scenario run starts it ----------------------


@needs_triton
@pytest.mark.triton
def test_service_launch_serves_and_leaves_nothing_behind(tmp_path: Any) -> None:
    import tritonclient.grpc as grpcclient

    from llmscen.compile.plan import ServicePlan
    from llmscen.services.triton_sim.service import service

    plan = ServicePlan(name="sim", kind="triton-sim",
                       options=TritonSimOptions(image_size=32, ttft="5ms"))

    before = set(_descendants(os.getpid()))   # e.g. the module's own server

    async def run() -> tuple[dict[str, str], list[int]]:
        async with service.launch(plan, str(tmp_path)) as endpoint:
            assert endpoint.url == endpoint.urls["grpc"]
            assert endpoint.url_for("http").startswith("http://127.0.0.1:")
            client = grpcclient.InferenceServerClient(endpoint.url)
            image = client.infer("flux", _flux_inputs(grpcclient, ["x"])).as_numpy("images")
            assert image.shape == (1, 3, 32, 32)
            client.close()
            children = [p for p in _descendants(os.getpid()) if p not in before]
            assert "tritonserver" in [_comm(p) for p in children]
        return endpoint.urls, children

    urls, children = asyncio.run(run())
    assert set(urls) == {"grpc", "http", "metrics"}
    deadline = time.monotonic() + 5
    while any(_state(p) not in ("gone", "Z") for p in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_state(p) in ("gone", "Z") for p in children), \
        [(p, _comm(p), _state(p)) for p in children]
    assert "LISTENING grpc=" in (tmp_path / "service-sim.log").read_text()


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    parents[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        kids = [p for p, pp in parents.items() if pp == pid]
        found += kids
        todo += kids
    return found
