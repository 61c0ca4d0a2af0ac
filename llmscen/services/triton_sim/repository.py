"""The simulator's Triton model repository and Python backend, written into a work dir.

    <workdir>/backends/python/      libtriton_python.so + the stub for this Python
    <workdir>/models/<name>/config.pbtxt, <name>/1/model.py

Models (see `models/` for what each does):

    flux               public BLS pipeline, no batch dimension: prompt [N] → images [N,3,H,W]
    flux_text_encoder  prompt [1] → prompt_embeds [64] per row, dynamic batching
    flux_transformer   embeds + seed + steps → latents [3,16,16] per row, dynamic batching;
                       spends step_delay × steps once per batch
    llm_stream         decoupled: text_input → one text_output per token
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .models import model_source
from .options import TritonSimOptions

EMBED_DIM = 64   # models/flux_text_encoder.py
LATENT = 16      # models/flux_transformer.py


def install_python_backend(pytriton_dist: Path, workdir: Path) -> Path:
    """Copy the Python backend with the stub built for the running interpreter; return the dir."""
    backends = workdir / "backends"
    target = backends / "python"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = pytriton_dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise FileNotFoundError(f"no Triton Python backend stub for Python {version} in "
                                f"{pytriton_dist}; pytriton supports Python 3.8–3.13")
    shutil.copytree(pytriton_dist / "backends" / "python", target,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(stub, target / "triton_python_backend_stub")
    return backends


def write_model_repository(options: TritonSimOptions, root: Path) -> Path:
    """Write every model's config and code under `root`; return `root`."""
    configs = {
        "flux": flux_config(options),
        "flux_text_encoder": text_encoder_config(options),
        "flux_transformer": transformer_config(options),
        "llm_stream": llm_stream_config(options),
    }
    for name, config in configs.items():
        version = root / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        (root / name / "config.pbtxt").write_text(config, encoding="utf-8")
        (version / "model.py").write_text(model_source(name), encoding="utf-8")
    return root


def _input(name: str, dtype: str, dims: str, *, optional: bool = False) -> str:
    flag = " optional: true" if optional else ""
    return f'  {{ name: "{name}" data_type: {dtype} dims: [ {dims} ]{flag} }}'


def _params(**values: object) -> str:
    return "\n".join(f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}'
                     for k, v in values.items())


def _io(kind: str, entries: list[str]) -> str:
    return f"{kind} [\n" + ",\n".join(entries) + "\n]"


def _batching(options: TritonSimOptions) -> str:
    delay_us = round(options.max_queue_delay * 1e6)
    return (f"max_batch_size: {options.max_batch_size}\n"
            f"dynamic_batching {{ max_queue_delay_microseconds: {delay_us} }}")


def flux_config(options: TritonSimOptions) -> str:
    sizes = options.sizes
    side = str(sizes[0]) if len(sizes) == 1 else "-1"
    return "\n".join([
        'name: "flux"', 'backend: "python"', "max_batch_size: 0",
        _io("input", [
            _input("prompt", "TYPE_STRING", "-1"),
            _input("num_inference_steps", "TYPE_INT32", "-1"),
            _input("guidance_scale", "TYPE_FP32", "-1"),
            _input("seed", "TYPE_INT64", "-1", optional=True),
            _input("height", "TYPE_INT32", "-1", optional=True),
            _input("width", "TYPE_INT32", "-1", optional=True),
        ]),
        _io("output", [_input("images", "TYPE_FP32", f"-1, 3, {side}, {side}")]),
        'instance_group [ { count: 1 kind: KIND_CPU } ]',
        _params(image_size=options.image_size, sizes=",".join(map(str, sizes)),
                max_batch_size=options.max_batch_size, max_prompt_chars=options.max_prompt_chars,
                max_steps=options.max_steps, workers=max(16, 4 * options.max_batch_size),
                memory_per_image=int(options.memory_per_image),
                memory_growth=options.memory_growth),
        "",
    ])


def text_encoder_config(options: TritonSimOptions) -> str:
    return "\n".join([
        'name: "flux_text_encoder"', 'backend: "python"', _batching(options),
        _io("input", [_input("prompt", "TYPE_STRING", "1")]),
        _io("output", [_input("prompt_embeds", "TYPE_FP32", str(EMBED_DIM))]),
        'instance_group [ { count: 1 kind: KIND_CPU } ]',
        "",
    ])


def transformer_config(options: TritonSimOptions) -> str:
    return "\n".join([
        'name: "flux_transformer"', 'backend: "python"', _batching(options),
        _io("input", [
            _input("prompt_embeds", "TYPE_FP32", str(EMBED_DIM)),
            _input("seed", "TYPE_INT64", "1"),
            _input("num_inference_steps", "TYPE_INT32", "1"),
            _input("guidance_scale", "TYPE_FP32", "1"),
        ]),
        _io("output", [_input("latents", "TYPE_FP32", f"3, {LATENT}, {LATENT}")]),
        'instance_group [ { count: 1 kind: KIND_CPU } ]',
        _params(step_delay=repr(options.step_delay)),
        "",
    ])


def llm_stream_config(options: TritonSimOptions) -> str:
    return "\n".join([
        'name: "llm_stream"', 'backend: "python"', "max_batch_size: 0",
        "model_transaction_policy { decoupled: true }",
        _io("input", [
            _input("text_input", "TYPE_STRING", "1"),
            _input("max_tokens", "TYPE_INT32", "1", optional=True),
            _input("stream", "TYPE_BOOL", "1", optional=True),
            _input("ignore_eos", "TYPE_BOOL", "1", optional=True),
            _input("min_length", "TYPE_INT32", "1", optional=True),
            _input("exclude_input_in_output", "TYPE_BOOL", "1", optional=True),
            _input("sampling_parameters", "TYPE_STRING", "1", optional=True),
        ]),
        _io("output", [_input("text_output", "TYPE_STRING", "1")]),
        'instance_group [ { count: 1 kind: KIND_CPU } ]',
        _params(ttft=repr(options.ttft), itl=repr(options.itl),
                output_tokens=options.output_tokens, max_prompt_chars=options.max_prompt_chars,
                sender_threads=2),
        "",
    ])
