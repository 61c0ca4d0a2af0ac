"""`triton-sim`: a real Triton Inference Server with simulated GenAI models (SPEC §8)."""

from __future__ import annotations

from .options import TritonSimOptions
from .server import TritonSim, TritonSimError, find_tritonserver, start_triton_sim

__all__ = ["TritonSim", "TritonSimError", "TritonSimOptions", "find_tritonserver",
           "start_triton_sim"]
