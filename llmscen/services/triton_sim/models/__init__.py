"""Python-backend model sources, copied as `model.py` into the generated model repository.

They run inside Triton's Python backend stub, not in llmscen: each file stands
alone (numpy and `triton_python_backend_utils` only) and reads its settings from
the `parameters` of its `config.pbtxt`. Importing them elsewhere is harmless.
"""

from __future__ import annotations

from importlib import resources

MODEL_SOURCES = ("flux", "flux_text_encoder", "flux_transformer", "llm_stream")


def model_source(name: str) -> str:
    """The text of the model file for model `name`."""
    if name not in MODEL_SOURCES:
        raise KeyError(name)
    return resources.files(__name__).joinpath(f"{name}.py").read_text(encoding="utf-8")
