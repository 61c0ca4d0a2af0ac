"""`flux_transformer`: the simulated denoiser, where dynamic batching happens.

Per batch row: prompt_embeds FP32 [EMBED_DIM], seed INT64 [1],
num_inference_steps INT32 [1], guidance_scale FP32 [1] → latents FP32
[3, LATENT, LATENT]. One execute() call is one batch (Triton's dynamic batcher
merges concurrent requests): it sleeps `step_delay` × the most steps asked for
in the batch, as a batched denoising loop would, then derives each row's
latents from that row's (embedding, seed) alone, so batching never changes a
result.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import numpy as np

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # outside Triton's Python backend stub
    pb_utils = None

LATENT = 16


def latents(embeds: np.ndarray, seed: int) -> np.ndarray:
    h = hashlib.blake2b(np.ascontiguousarray(embeds, dtype=np.float32).tobytes(), digest_size=8,
                        person=b"flux-dit")
    h.update(int(seed).to_bytes(8, "little", signed=True))
    rng = np.random.default_rng(int.from_bytes(h.digest(), "little"))
    return rng.random((3, LATENT, LATENT), dtype=np.float32)


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        params = json.loads(args["model_config"]).get("parameters", {})
        self.step_delay = float(params["step_delay"]["string_value"])

    def execute(self, requests: list[Any]) -> list[Any]:
        rows = []
        most_steps = 0
        for request in requests:
            embeds = pb_utils.get_input_tensor_by_name(request, "prompt_embeds").as_numpy()
            seeds = pb_utils.get_input_tensor_by_name(request, "seed").as_numpy().reshape(-1)
            steps = pb_utils.get_input_tensor_by_name(request, "num_inference_steps").as_numpy()
            most_steps = max(most_steps, int(steps.max(initial=0)))
            rows.append((embeds, seeds))
        if self.step_delay > 0 and most_steps > 0:
            time.sleep(self.step_delay * most_steps)
        responses = []
        for embeds, seeds in rows:
            out = np.empty((len(seeds), 3, LATENT, LATENT), np.float32)
            for i, seed in enumerate(seeds):
                out[i] = latents(embeds[i], int(seed))
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("latents", out)]))
        return responses
