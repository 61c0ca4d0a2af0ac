"""`flux`: the public text-to-image pipeline, a BLS model.

Inputs (no batch dimension in the config, so a client sends exactly what
SPEC §3 shows): prompt BYTES [N] with 1 ≤ N ≤ max_batch_size;
num_inference_steps INT32 and guidance_scale FP32, and optionally seed INT64,
height INT32 and width INT32, each with 1 value (shared) or N (one per prompt).
Output: images FP32 [N, 3, height, width] in [0, 1).

Each request runs on a worker thread and answers through its response sender,
so many requests are in flight at once: the worker calls `flux_text_encoder`
and then `flux_transformer` (where Triton's dynamic batcher merges concurrent
requests and the step delay is spent), and upsamples the latents into images.
An image depends only on (prompt, seed, height, width). Bad inputs answer with
an INVALID_ARG error whose message names the input.
"""

from __future__ import annotations

import contextlib
import json
import mmap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # outside Triton's Python backend stub
    pb_utils = None


class InvalidInput(ValueError):
    """A client mistake; answered with INVALID_ARG."""


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = {k: v["string_value"]
                  for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        self.image_size = int(params["image_size"])
        self.sizes = tuple(int(s) for s in params["sizes"].split(","))
        self.max_batch = int(params["max_batch_size"])
        self.max_chars = int(params["max_prompt_chars"])
        self.max_steps = int(params["max_steps"])
        self.memory_per_image = int(params.get("memory_per_image", 0))
        self.memory_growth = params.get("memory_growth", "linear")
        self.pool = ThreadPoolExecutor(max_workers=int(params["workers"]),
                                       thread_name_prefix="flux")

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            self.pool.submit(self._answer, request)
        return None

    def finalize(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    # -- one request -------------------------------------------------------------------------

    def _answer(self, request: Any) -> None:
        sender = request.get_response_sender()
        try:
            images = self._generate(request)
            response = pb_utils.InferenceResponse([pb_utils.Tensor("images", images)])
        except InvalidInput as exc:
            response = pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"flux: {exc}", pb_utils.TritonError.INVALID_ARG))
        except Exception as exc:
            response = pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"flux: {type(exc).__name__}: {exc}"))
        with contextlib.suppress(Exception):  # the client went away; nothing left to tell it
            sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def _generate(self, request: Any) -> np.ndarray:
        prompts = pb_utils.get_input_tensor_by_name(request, "prompt").as_numpy().reshape(-1)
        n = len(prompts)
        if n == 0:
            raise InvalidInput("input 'prompt' holds no prompts")
        if n > self.max_batch:
            raise InvalidInput(f"input 'prompt' holds {n} prompts, more than "
                               f"max_batch_size={self.max_batch}")
        for i, raw in enumerate(prompts):
            self._check_prompt(raw, i, n)
        steps = self._per_prompt(request, "num_inference_steps", n, np.int32, None)
        bad = steps[(steps < 1) | (steps > self.max_steps)]
        if len(bad):
            raise InvalidInput(f"input 'num_inference_steps' is {int(bad[0])}; "
                               f"it must lie between 1 and {self.max_steps}")
        guidance = self._per_prompt(request, "guidance_scale", n, np.float32, None)
        if not np.isfinite(guidance).all():
            raise InvalidInput("input 'guidance_scale' must be a finite number")
        seeds = self._per_prompt(request, "seed", n, np.int64, 0)
        height = self._size(request, "height")
        width = self._size(request, "width")

        with self._hold(n):
            embeds = self._call("flux_text_encoder", "prompt_embeds",
                                [pb_utils.Tensor("prompt", prompts.reshape(n, 1))])
            lat = self._call("flux_transformer", "latents", [
                pb_utils.Tensor("prompt_embeds", embeds),
                pb_utils.Tensor("seed", seeds.reshape(n, 1)),
                pb_utils.Tensor("num_inference_steps", steps.reshape(n, 1)),
                pb_utils.Tensor("guidance_scale", guidance.reshape(n, 1)),
            ])
            return decode(lat, height, width)

    @contextlib.contextmanager
    def _hold(self, n: int) -> Iterator[None]:
        """The working memory of a batch of `n`, held while it is computed. Mapped and
        unmapped directly, and written so it is resident: malloc would keep freed chunks
        in its heap, and the process's RSS would not follow the batch."""
        size = self.memory_per_image * (n * n if self.memory_growth == "quadratic" else n)
        if not size:
            yield
            return
        # MAP_POPULATE: the kernel makes every page resident at once, faster than writing
        populate = getattr(mmap, "MAP_POPULATE", 0)
        region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
        try:
            if not populate:
                view = np.frombuffer(region, np.uint8)
                view.fill(1)
                del view   # the mapping cannot close while an array shares it
            yield
        finally:
            region.close()

    def _check_prompt(self, raw: Any, i: int, n: int) -> None:
        where = "input 'prompt'" if n == 1 else f"input 'prompt' item {i} of {n}"
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"{where} is not UTF-8 text") from None
        if not text.strip():
            raise InvalidInput(f"{where} is empty; a prompt needs some text")
        if len(text) > self.max_chars:
            raise InvalidInput(f"{where} has {len(text)} characters, more than "
                               f"max_prompt_chars={self.max_chars}")

    def _per_prompt(self, request: Any, name: str, n: int, dtype: Any,
                    default: int | None) -> np.ndarray:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            if default is None:
                raise InvalidInput(f"input '{name}' is missing")
            return np.full(n, default, dtype)
        values = tensor.as_numpy().reshape(-1).astype(dtype, copy=False)
        if len(values) == 1:
            return np.repeat(values, n)
        if len(values) != n:
            raise InvalidInput(f"input '{name}' holds {len(values)} values for {n} prompts; "
                               f"give 1 or {n}")
        return values

    def _size(self, request: Any, name: str) -> int:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            return self.image_size
        values = {int(v) for v in tensor.as_numpy().reshape(-1)}
        if len(values) != 1:
            raise InvalidInput(f"input '{name}' must hold one size for the whole request, "
                               f"got {sorted(values)}")
        size = values.pop()
        if size not in self.sizes:
            raise InvalidInput(f"input '{name}' is {size}, which is not an allowed size; "
                               f"allowed: {', '.join(map(str, self.sizes))}")
        return size

    @staticmethod
    def _call(model: str, output: str, inputs: list[Any]) -> np.ndarray:
        response = pb_utils.InferenceRequest(model_name=model, requested_output_names=[output],
                                             inputs=inputs).exec()
        if response.has_error():
            raise RuntimeError(f"{model}: {response.error().message()}")
        return pb_utils.get_output_tensor_by_name(response, output).as_numpy()


def decode(lat: np.ndarray, height: int, width: int) -> np.ndarray:
    """The "VAE": nearest-neighbour upsampling of [N, 3, L, L] latents to [N, 3, H, W]."""
    side = lat.shape[-1]
    # output row r shows latent row r*L//H: repeat latent row i once per such r
    rows: Any = height // side if height % side == 0 else \
        np.bincount((np.arange(height) * side) // height, minlength=side)
    cols: Any = width // side if width % side == 0 else \
        np.bincount((np.arange(width) * side) // width, minlength=side)
    return np.ascontiguousarray(lat.repeat(rows, axis=2).repeat(cols, axis=3), dtype=np.float32)
