"""Checks on output tensors (`expect.outputs`), and image similarity without scipy.

Imported only when a request has tensor expectations, so numpy stays optional.
Reference files are read once, on first use, and kept normalised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmscen.assertions.check import Check, CheckFailure
from llmscen.engine.protocol import Exchange
from llmscen.spec.expect import Similarity, TensorExpect

_KSERVE_TYPES = {"bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32",
                 "uint64": "UINT64", "int8": "INT8", "int16": "INT16", "int32": "INT32",
                 "int64": "INT64", "float16": "FP16", "float32": "FP32", "float64": "FP64",
                 "bfloat16": "BF16"}


def kserve_datatype(array: np.ndarray) -> str:
    """The KServe v2 name of an array's dtype (`FP32`, `BYTES`, ...)."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    return _KSERVE_TYPES.get(array.dtype.name, array.dtype.name)


def shape_matches(shape: tuple[int, ...], wanted: Sequence[int | str]) -> bool:
    return len(shape) == len(wanted) and all(w in (-1, "*") or w == s
                                             for s, w in zip(shape, wanted, strict=True))


def tensor_check(name: str, spec: TensorExpect, base_dir: Path) -> Check:
    """One check running every expectation on output `name`."""
    label = f"outputs.{name}"
    reference = _Reference(spec.similar_to, base_dir) if spec.similar_to else None
    needs_numbers = spec.min is not None or spec.max is not None or spec.finite or reference

    def check(ex: Exchange, out: list[CheckFailure]) -> None:
        tensors = ex.tensors or {}
        if name not in tensors:
            got = ", ".join(sorted(tensors)) or "none"
            out.append(CheckFailure(label, f"expected an output tensor {name!r}; got {got}"))
            return
        array = np.asarray(tensors[name])
        if spec.shape is not None and not shape_matches(array.shape, spec.shape):
            out.append(CheckFailure(f"{label}.shape", f"expected shape "
                                    f"{_shape_text(spec.shape)}; got {list(array.shape)}"))
        if spec.datatype is not None and kserve_datatype(array) != spec.datatype:
            out.append(CheckFailure(f"{label}.datatype", f"expected datatype {spec.datatype}; "
                                                         f"got {kserve_datatype(array)}"))
        if spec.not_constant and _constant(array):
            value = array.flat[0] if array.size else "no values"
            out.append(CheckFailure(f"{label}.not_constant",
                                    f"expected varying values; every value is {value}"))
        if not needs_numbers:
            return
        if array.dtype.kind not in "biuf" or array.size == 0:
            got = "an empty tensor" if array.size == 0 else kserve_datatype(array)
            out.append(CheckFailure(label, f"expected numbers to check; got {got}"))
            return
        _value_checks(label, spec, array, out)
        if reference is not None:
            reference.compare(label, array, out)

    return check


def _shape_text(shape: Sequence[int | str]) -> str:
    return "[" + ", ".join("*" if d in (-1, "*") else str(d) for d in shape) + "]"


def _constant(array: np.ndarray) -> bool:
    return array.size < 2 or not bool((array != array.flat[0]).any())


def _value_checks(label: str, spec: TensorExpect, array: np.ndarray,
                  out: list[CheckFailure]) -> None:
    if spec.finite and array.dtype.kind == "f":
        bad = array.size - int(np.count_nonzero(np.isfinite(array)))
        if bad:
            out.append(CheckFailure(f"{label}.finite", f"expected finite values; {bad} of "
                                                       f"{array.size} are NaN or infinite"))
    # `not (x >= low)` so that a NaN fails the bound instead of slipping through
    if spec.min is not None:
        low = float(array.min())
        if not low >= spec.min:
            out.append(CheckFailure(f"{label}.min", f"expected every value >= {spec.min}; "
                                                    f"got a minimum of {low:g}"))
    if spec.max is not None:
        high = float(array.max())
        if not high <= spec.max:
            out.append(CheckFailure(f"{label}.max", f"expected every value <= {spec.max}; "
                                                    f"got a maximum of {high:g}"))


# --- similarity -------------------------------------------------------------------------

def as_image(array: Any) -> np.ndarray:
    """float64, batch dimensions of 1 dropped, channels last, integers scaled to [0, 1]."""
    a = np.asarray(array)
    a = a.astype(np.float64) / np.iinfo(a.dtype).max if a.dtype.kind in "ui" else a.astype(np.float64)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)          # CHW, as models emit, to HWC, as images are stored
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    return a


def _box_mean(x: np.ndarray, size: int) -> np.ndarray:
    """Mean over every size×size window ('valid' positions) via a summed-area table."""
    s = np.zeros((x.shape[0] + 1, x.shape[1] + 1))
    s[1:, 1:] = x.cumsum(axis=0).cumsum(axis=1)
    total = s[size:, size:] - s[:-size, size:] - s[size:, :-size] + s[:-size, :-size]
    return total / (size * size)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float, window: int = 7,
         downsample: bool = True) -> float:
    """Mean SSIM (Wang et al. 2004) over 7×7 uniform windows, per channel.

    Like the authors' reference `ssim.m`, images are first averaged down by
    f = round(min(H, W) / 256) — the scale SSIM was tuned for, and it keeps a
    1024² image at tens of milliseconds instead of a second. With f = 1 this
    matches skimage's `structural_similarity` (uniform window, sample
    covariance). Images smaller than the window get one global SSIM.
    """
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if a.ndim != 3 or a.shape[0] < window or a.shape[1] < window:
        return _global_ssim(a.ravel(), b.ravel(), c1, c2)
    factor = max(1, round(min(a.shape[0], a.shape[1]) / 256)) if downsample else 1
    if factor > 1:
        a, b = _block_mean(a, factor), _block_mean(b, factor)
    n = window * window
    scores = []
    for channel in range(a.shape[2]):
        x, y = a[..., channel], b[..., channel]
        mx, my = _box_mean(x, window), _box_mean(y, window)
        vx = (_box_mean(x * x, window) - mx * mx) * n / (n - 1)
        vy = (_box_mean(y * y, window) - my * my) * n / (n - 1)
        cov = (_box_mean(x * y, window) - mx * my) * n / (n - 1)
        s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        scores.append(float(s.mean()))
    return sum(scores) / len(scores)


def _block_mean(x: np.ndarray, f: int) -> np.ndarray:
    """Average f×f blocks of an H×W×C image (the ragged edge is dropped)."""
    h, w, c = x.shape[0] // f * f, x.shape[1] // f * f, x.shape[2]
    rows = x[:h, :w].reshape(h // f, f, w, c).sum(axis=1)   # one axis at a time: 2.5× faster
    return rows.reshape(h // f, w // f, f, c).sum(axis=2) / (f * f)


def _global_ssim(x: np.ndarray, y: np.ndarray, c1: float, c2: float) -> float:
    mx, my = float(x.mean()), float(y.mean())
    dof = max(x.size - 1, 1)
    vx = float(((x - mx) ** 2).sum()) / dof
    vy = float(((y - my) ** 2).sum()) / dof
    cov = float(((x - mx) * (y - my)).sum()) / dof
    return ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB; infinite for identical arrays."""
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(data_range * data_range / mse)


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a - b)))


def load_reference(path: Path) -> np.ndarray:
    """A reference array: .npy always, .png when Pillow is installed."""
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    try:
        from PIL import Image
    except ImportError:
        raise ValueError(f"reading {path.name} needs Pillow (pip install pillow); or save the "
                         f"reference with numpy.save as .npy") from None
    with Image.open(path) as image:
        return np.asarray(image)


class _Reference:
    """A `similar_to` expectation with its reference, loaded on first use."""

    def __init__(self, spec: Similarity, base_dir: Path) -> None:
        self.spec = spec
        self.path = Path(spec.file) if Path(spec.file).is_absolute() else base_dir / spec.file
        self._image: np.ndarray | None = None
        self._problem: str | None = None
        self._range = 1.0

    def _load(self) -> None:
        try:
            image = as_image(load_reference(self.path))
        except (OSError, ValueError) as err:
            self._problem = f"cannot read reference {self.spec.file}: {err}"
            return
        # The reference's range, not the output's: a wild output must not widen it.
        self._range = max(float(image.max()), 1.0) - min(float(image.min()), 0.0)
        self._image = image

    def compare(self, label: str, array: np.ndarray, out: list[CheckFailure]) -> None:
        check = f"{label}.similar_to"
        if self._image is None and self._problem is None:
            self._load()
        if self._image is None:
            out.append(CheckFailure(check, self._problem or "no reference"))
            return
        ref, image = self._image, as_image(array)
        if ref.ndim == 3 and image.ndim == 3 and ref.shape[-1] == 4 and image.shape[-1] == 3:
            ref = ref[..., :3]             # an RGBA reference for an RGB output
        if ref.shape != image.shape:
            out.append(CheckFailure(check, f"reference {self.spec.file} has shape "
                                           f"{list(ref.shape)}; the output has "
                                           f"{list(image.shape)} (channels last, batch dropped)"))
            return
        spec = self.spec
        if spec.metric == "mae":
            error = mae(image, ref)
            if not error <= (spec.max_error or 0.0):
                out.append(CheckFailure(check, f"expected mean absolute error <= "
                                               f"{spec.max_error} against {spec.file}; "
                                               f"got {error:.4g}"))
            return
        low = spec.min_similarity if spec.min_similarity is not None else 0.0
        if spec.metric == "ssim":
            score, unit = ssim(image, ref, self._range), ""
        else:
            score, unit = psnr(image, ref, self._range), " dB"
        if not score >= low:
            out.append(CheckFailure(check, f"expected {spec.metric.upper()} >= {low}{unit} "
                                           f"against {spec.file}; got {score:.4g}{unit}"))


def batch_inconsistencies(batched: dict[str, Any], singles: list[dict[str, Any] | None],
                          tolerance: float) -> list[str]:
    """Where item i of a batched answer differs from the same item sent alone."""
    import numpy as np

    problems = []
    for index, single in enumerate(singles):
        if single is None:
            problems.append(f"item {index} sent alone got no tensors back")
            continue
        for name, array in batched.items():
            alone = single.get(name)
            if alone is None:
                problems.append(f"item {index} sent alone has no output {name!r}")
                continue
            item = np.asarray(array)[index:index + 1]
            alone = np.asarray(alone)
            if item.shape != alone.shape:
                problems.append(f"{name}[{index}] has shape {list(item.shape)} in the batch but "
                                f"{list(alone.shape)} alone")
                continue
            if item.dtype.kind in "OSU":
                if not np.array_equal(item, alone):
                    problems.append(f"{name}[{index}] differs between the batch and alone")
                continue
            diff = float(np.max(np.abs(item.astype(np.float64) - alone.astype(np.float64)),
                                initial=0.0))
            if not diff <= tolerance:
                problems.append(f"{name}[{index}] differs by up to {diff:.3g} between the batch "
                                f"and alone (tolerance {tolerance:g})")
    return problems
