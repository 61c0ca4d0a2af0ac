"""`triton-sim`: a real Triton Inference Server with simulated GenAI models (SPEC §8).

    from llmscen.services.triton_sim import start_triton_sim
    with start_triton_sim({"image_size": 64, "ttft": "80ms"}) as sim:
        sim.grpc_url, sim.http_url, sim.metrics_url

or `python -m llmscen.services.triton_sim --options '{...}'`, or in a scenario
`services: {sim: {builtin: triton-sim, options: {...}}}` (see `service.py`).
Models: `flux` (text → images, BLS over `flux_text_encoder` and the dynamically
batched `flux_transformer`) and `llm_stream` (decoupled, one token per response).
"""

from __future__ import annotations

from .options import TritonSimOptions
from .server import TritonSim, TritonSimError, find_tritonserver, start_triton_sim

__all__ = ["TritonSim", "TritonSimError", "TritonSimOptions", "find_tritonserver",
           "start_triton_sim"]
