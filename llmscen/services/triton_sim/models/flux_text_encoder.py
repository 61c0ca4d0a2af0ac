"""`flux_text_encoder`: prompt BYTES [1] → prompt_embeds FP32 [EMBED_DIM], per batch row.

The embedding is a pure function of the prompt's bytes (a hash seeds the
generator), so a prompt encodes the same whether it is batched or not.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # outside Triton's Python backend stub
    pb_utils = None

EMBED_DIM = 64


def encode(prompt: bytes) -> np.ndarray:
    digest = hashlib.blake2b(prompt, digest_size=8, person=b"flux-enc").digest()
    rng = np.random.default_rng(int.from_bytes(digest, "little"))
    return rng.standard_normal(EMBED_DIM, dtype=np.float32)


class TritonPythonModel:
    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            prompts = pb_utils.get_input_tensor_by_name(request, "prompt").as_numpy().reshape(-1)
            embeds = np.stack([encode(bytes(p)) for p in prompts]) if len(prompts) else \
                np.zeros((0, EMBED_DIM), np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("prompt_embeds", embeds)]))
        return responses
