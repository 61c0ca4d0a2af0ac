"""`expect:` models and the compiled checker: every check passes, fails, and says why."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from llmscen.assertions import tensors
from llmscen.assertions.expect import Checker, CheckFailure, build_checker, show
from llmscen.assertions.tensors import as_image, mae, psnr, ssim
from llmscen.engine.protocol import Exchange
from llmscen.spec.expect import Expect

CODE = 'Here you go:\n```python\nname = "Jay"\nprint("Jay")\n```\nEnjoy.'


def checker(**expect: Any) -> Checker:
    return build_checker(Expect.model_validate(expect))


def exchange(**fields: Any) -> Exchange:
    fields.setdefault("status", 200)
    return Exchange(intended_ns=0, **fields)


def failures(expect: dict[str, Any], **fields: Any) -> list[tuple[str, str]]:
    return [(f.check, f.message) for f in checker(**expect).check(exchange(**fields))]


def messages(expect: dict[str, Any], **fields: Any) -> list[str]:
    return [message for _, message in failures(expect, **fields)]


# --- the SPEC example -------------------------------------------------------------------

SPEC_EXPECT = {"status": 200, "contains": 'print("Jay")', "python_syntax": True,
               "chunks": {"min": 50, "max": 100}, "finish_reason": ["stop", "length"]}


def test_spec_example_passes() -> None:
    assert failures(SPEC_EXPECT, text=CODE, chunks=64, finish_reason="length") == []


def test_spec_example_fails_with_every_reason() -> None:
    text = "Hello! " + "x" * 113
    assert failures(SPEC_EXPECT, status=201, text=text, chunks=3, finish_reason="eos") == [
        ("status", "expected status 200; got status 201"),
        ("contains", "expected output to contain 'print(\"Jay\")'; got 'Hello! " + "x" * 73
         + "…' (120 chars)"),
        ("python_syntax", "expected Python code that compiles; the output, line 1: invalid "
                          "syntax: 'Hello! " + "x" * 53 + "…' (120 chars)"),
        ("finish_reason", "expected finish_reason one of 'stop', 'length'; got 'eos'"),
        ("chunks", "expected between 50 and 100 chunks; got 3"),
    ]


# --- checker basics ---------------------------------------------------------------------

def test_nothing_to_check() -> None:
    empty = build_checker(None)
    assert empty.empty and not empty.expects_error
    assert empty.check(exchange(text="anything")) == []
    assert build_checker(Expect()).empty


def test_transport_errors_skip_positive_checks() -> None:
    ex = exchange(status=None, text="")
    ex.fail("timeout", "no response in 60s")
    assert checker(**SPEC_EXPECT).check(ex) == []


def test_failures_are_plain_values() -> None:
    assert CheckFailure("contains", "m") == CheckFailure("contains", "m")


def test_show() -> None:
    assert show("") == "an empty output"
    assert show("hi") == "'hi'"
    assert show("a" * 100, 10) == "'aaaaaaaaaa…' (100 chars)"


# --- status, text -----------------------------------------------------------------------

def test_status() -> None:
    assert messages({"status": [200, 201]}, status=201) == []
    assert messages({"status": [200, 201]}, status=204) == [
        "expected status one of 200, 201; got status 204"]
    assert messages({"status": 200}, status=None) == [
        "expected status 200; got no status (the protocol reports none)"]


def test_contains_each_needle() -> None:
    assert messages({"contains": ["a", "b"]}, text="ab") == []
    assert messages({"contains": ["a", "zz", "yy"]}, text="abc") == [
        "expected output to contain 'zz'; got 'abc'", "expected output to contain 'yy'; got 'abc'"]
    assert messages({"contains": "x"}, text="") == [
        "expected output to contain 'x'; got an empty output"]


def test_not_contains() -> None:
    assert messages({"not_contains": ["sorry", "As an AI"]}, text="fine") == []
    assert messages({"not_contains": "As an AI"}, text="Well. As an AI, I cannot") == [
        "expected output not to contain 'As an AI'; found it at character 6: "
        "'Well. As an AI, I cannot'"]


def test_regex_searches() -> None:
    assert messages({"regex": [r"\d{3}", "(?i)hello"]}, text="HELLO 123") == []
    assert messages({"regex": r"^\d+$"}, text="12a") == [
        "expected output to match '^\\\\d+$'; got '12a'"]


def test_equals_text_is_exact() -> None:
    assert messages({"equals": "Paris"}, text="Paris") == []
    assert messages({"equals": "Paris"}, text="Paris.") == [
        "expected output to equal 'Paris'; got 'Paris.', differing at character 5"]
    assert messages({"equals": "Paris"}, text="paris") == [
        "expected output to equal 'Paris'; got 'paris', differing at character 0"]


def test_equals_json() -> None:
    assert messages({"equals": {"a": 1, "b": [True]}}, text='{"b": [true], "a": 1.0}') == []
    assert messages({"equals": {"a": 1}}, text='{"a": true}') == [
        "expected JSON equal to '{\"a\": 1}'; got '{\"a\": true}'"]
    assert messages({"equals": [1]}, text="", body=[1]) == []
    assert messages({"equals": [1]}, text="one") == [
        "expected JSON equal to '[1]'; the output is not JSON (Expecting value: line 1 column "
        "1 (char 0)): 'one'"]


SCHEMA = {"type": "object", "required": ["name", "age"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}


def test_json_schema_on_output_text() -> None:
    assert messages({"json_schema": SCHEMA}, text='{"name": "Jay", "age": 3}') == []
    assert messages({"json_schema": SCHEMA}, text='{"name": "Jay", "age": "3"}') == [
        "expected JSON matching json_schema; at $.age: '3' is not of type 'integer'"]
    assert messages({"json_schema": SCHEMA}, text='{"name": "Jay"}') == [
        "expected JSON matching json_schema; at $: 'age' is a required property"]


def test_json_schema_in_a_fenced_block() -> None:
    text = 'Sure:\n```json\n{"name": "Jay", "age": 3}\n```'
    assert messages({"json_schema": SCHEMA}, text=text) == []


def test_json_schema_prefers_the_output_over_the_chat_envelope() -> None:
    envelope = {"choices": [{"message": {"content": '{"name": "Jay", "age": 3}'}}]}
    assert messages({"json_schema": SCHEMA}, text='{"name": "Jay", "age": 3}', body=envelope) == []


def test_json_schema_on_body_when_no_output() -> None:
    assert messages({"json_schema": SCHEMA}, text="", body={"name": "Jay", "age": 3}) == []
    assert messages({"json_schema": SCHEMA}, text="", body={"name": 1, "age": 3}) == [
        "expected JSON matching json_schema; at $.name: 1 is not of type 'string'"]
    assert messages({"json_schema": SCHEMA}, text="") == [
        "expected JSON matching json_schema; the response has no output or body"]


def test_json_schema_not_json() -> None:
    [message] = messages({"json_schema": SCHEMA}, text="I think the name is Jay")
    assert message.startswith("expected JSON matching json_schema; the output is not JSON")
    assert message.endswith(": 'I think the name is Jay'")


# --- python_syntax ----------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    CODE,
    "print('bare code')\n",
    "```\nx = 1\n```",                                     # untagged fence
    "```py\nx = 1\n```\nand\n```python3\ny = 2\n```",
    "```python\ndef f():\n    return 1\n",                 # cut off by max_tokens: unclosed
    "```python\npattern = '\\d+'\n```",                    # SyntaxWarning must not escape
    "```bash\nls\n```\n```python\nx = 1\n```",             # other languages are ignored
])
def test_python_syntax_passes(text: str) -> None:
    assert messages({"python_syntax": True}, text=text) == []


@pytest.mark.parametrize(("text", "message"), [
    ("```python\nx = 1\n```\n```python\ndef f(:\n    pass\n```",
     "expected Python code that compiles; code block 2 of 2, line 1: invalid syntax: 'def f(:'"),
    ("return 5", "expected Python code that compiles; the output, line 1: 'return' outside "
                 "function: 'return 5'"),
    ("", "expected Python code; got an empty output"),
    ("```bash\nls -l\n```", "expected Python code; got only bash code blocks"),
    ("x = '\x00'", "expected Python code that compiles; the output, "),
])
def test_python_syntax_fails(text: str, message: str) -> None:
    [got] = messages({"python_syntax": True}, text=text)
    assert got.startswith(message)


def test_python_syntax_never_executes(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"```python\nopen({str(marker)!r}, 'w').write('x')\nraise SystemExit(3)\n```"
    assert messages({"python_syntax": True}, text=code) == []
    assert not marker.exists()


def test_python_syntax_false_checks_nothing() -> None:
    assert checker(python_syntax=False).empty


# --- metadata ---------------------------------------------------------------------------

def test_finish_reason() -> None:
    assert messages({"finish_reason": "stop"}, finish_reason="stop") == []
    assert messages({"finish_reason": "stop"}, finish_reason=None) == [
        "expected finish_reason 'stop'; got none reported"]


def test_output_tokens() -> None:
    assert messages({"output_tokens": {"min": 10}}, output_tokens=10) == []
    assert messages({"output_tokens": {"max": 5}}, output_tokens=6, tokens_estimated=True) == [
        "expected at most 5 output tokens; got 6 (estimated)"]
    assert messages({"output_tokens": {"min": 1, "max": 5}}, output_tokens=None) == [
        "expected between 1 and 5 output tokens; the response reported none"]


def test_chunks() -> None:
    assert messages({"chunks": {"min": 50, "max": 100}}, chunks=100) == []
    assert messages({"chunks": {"min": 50, "max": 100}}, chunks=101) == [
        "expected between 50 and 100 chunks; got 101"]
    assert messages({"chunks": {"min": 1}}, chunks=0) == [
        "expected at least 1 chunks; got 0 (is the request streamed?)"]


# --- negative tests ---------------------------------------------------------------------

def refused(status: int | None, message: str, error: str = "http", **fields: Any) -> Exchange:
    ex = exchange(status=status, **fields)
    ex.fail(error, message)
    return ex


def test_error_expectation_passes_on_the_expected_error() -> None:
    c = checker(error={"status": 400, "contains": "max_tokens"})
    assert c.expects_error
    assert c.check(refused(400, "max_tokens is too large")) == []
    body = {"error": {"message": "This model's maximum context length is 4096",
                      "param": "max_tokens"}}
    assert c.check(refused(400, "bad request", body=body)) == []


def test_error_expectation_fails_when_the_request_succeeds() -> None:
    assert messages({"error": {"status": [400, 422]}}, status=200, text="Sure!") == [
        "expected the server to refuse the request with status one of 400, 422; "
        "got success (status 200): 'Sure!'"]


def test_error_expectation_fails_on_the_wrong_error() -> None:
    c = checker(error={"status": 400, "contains": "context length"})
    assert [f.message for f in c.check(refused(500, "Internal Server Error"))] == [
        "expected error status 400; got status 500: 'Internal Server Error'",
        "expected the error to mention 'context length'; got 'Internal Server Error'"]
    assert [f.message for f in c.check(refused(None, "connection refused", "connect"))] == [
        "expected the server to refuse the request with status 400; got a connect failure: "
        "'connection refused'"]


def test_error_expectation_any_refusal() -> None:
    c = checker(error={})
    assert c.check(refused(404, "not found")) == []
    assert c.check(refused(None, "error event in stream", "protocol")) == []
    assert c.check(refused(None, "stopped", "cancelled")) == []   # the engine drops these


# --- model validation -------------------------------------------------------------------

@pytest.mark.parametrize(("expect", "message"), [
    ({"status": 404}, "status 404 is an error; to expect it write `error: {status: 404}`"),
    ({"status": []}, "list at least one status code"),
    ({"status": 99}, "99 is not an HTTP status code"),
    ({"error": {"status": 400}, "contains": "x"}, "so contains could never be checked"),
    ({"regex": "("}, "invalid regex '('"),
    ({"json_schema": {"type": "nope"}}, "invalid JSON Schema at type"),
    ({"contains": ""}, "an empty string says nothing"),
    ({"chunks": {}}, "give `min`, `max` or both"),
    ({"chunks": {"min": 5, "max": 1}}, "min (5) is greater than max (1)"),
    ({"output_tokens": {"min": -1}}, "greater than or equal to 0"),
    ({"chunk": {"min": 1}}, "Extra inputs are not permitted"),
    ({"outputs": {"x": {"datatype": "FP33"}}}, "unknown datatype 'FP33'; one of: BOOL"),
    ({"outputs": {"x": {"shape": [1, -2]}}}, "dimension -2 is negative"),
    ({"outputs": {"x": {"min": 2, "max": 1}}}, "min (2.0) is greater than max (1.0)"),
    ({"outputs": {"x": {"datatype": "BYTES", "min": 0}}}, "need a numeric datatype"),
    ({"outputs": {"x": {"similar_to": {"file": "a.npy"}}}}, "ssim takes `min_similarity`"),
    ({"outputs": {"x": {"similar_to": {"file": "a.npy", "metric": "mae",
                                       "min_similarity": 0.9}}}}, "mae takes `max_error`"),
    ({"outputs": {"x": {"similar_to": {"file": "a.npy", "min_similarity": 2}}}},
     "an SSIM lies between -1 and 1"),
    ({"outputs": {"x": {"similar_to": {"file": "a.jpg", "min_similarity": 0.9}}}},
     "must be a .npy or .png file"),
    ({"batch_consistent": {"tolerance": -1}}, "greater than or equal to 0"),
])
def test_invalid_expectations(expect: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        Expect.model_validate(expect)


def test_models_are_frozen_and_normalised() -> None:
    e = Expect.model_validate({"outputs": {"images": {"datatype": "fp32", "shape": [1, "*"]}},
                               "batch_consistent": {}})
    assert e.outputs is not None and e.outputs["images"].datatype == "FP32"
    assert e.batch_consistent is not None and e.batch_consistent.tolerance == 0.0
    with pytest.raises(ValidationError):
        e.python_syntax = True  # type: ignore[misc]
    assert "json_schema" in Expect.model_json_schema()["properties"]


# --- tensors ----------------------------------------------------------------------------

IMAGES = {"shape": [1, 3, 16, -1], "datatype": "FP32", "min": 0.0, "max": 1.0,
          "not_constant": True, "finite": True}


def image(seed: int = 0, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 3, size, size), dtype=np.float32)


def test_tensor_checks_pass() -> None:
    assert messages({"outputs": {"images": IMAGES}}, tensors={"images": image()}) == []
    assert messages({"outputs": {"images": {"shape": ["*", 3, "*", "*"]}}},
                    tensors={"images": image()}) == []


def test_tensor_checks_fail() -> None:
    bad = np.full((1, 4, 16, 16), 2.0, dtype=np.float64)
    bad[0, 0, 0, 0] = math.nan
    assert failures({"outputs": {"images": IMAGES}}, tensors={"images": bad}) == [
        ("outputs.images.shape", "expected shape [1, 3, 16, *]; got [1, 4, 16, 16]"),
        ("outputs.images.datatype", "expected datatype FP32; got FP64"),
        ("outputs.images.finite", "expected finite values; 1 of 1024 are NaN or infinite"),
        ("outputs.images.min", "expected every value >= 0.0; got a minimum of nan"),
        ("outputs.images.max", "expected every value <= 1.0; got a maximum of nan"),
    ]
    flat = np.zeros((1, 3, 16, 16), dtype=np.float32)
    assert messages({"outputs": {"images": IMAGES}}, tensors={"images": flat}) == [
        "expected varying values; every value is 0.0"]


def test_missing_and_non_numeric_tensors() -> None:
    assert messages({"outputs": {"images": IMAGES}}, tensors={"latents": image()}) == [
        "expected an output tensor 'images'; got latents"]
    assert messages({"outputs": {"images": IMAGES}}) == [
        "expected an output tensor 'images'; got none"]
    words = np.array([b"a", b"b"], dtype=object)
    assert messages({"outputs": {"text": {"datatype": "BYTES", "not_constant": True}}},
                    tensors={"text": words}) == []
    assert messages({"outputs": {"text": {"min": 0}}}, tensors={"text": words}) == [
        "expected numbers to check; got BYTES"]


def test_similarity_measures() -> None:
    a = as_image(image(1))
    assert ssim(a, a, 1.0) == pytest.approx(1.0)
    assert psnr(a, a, 1.0) == math.inf
    assert mae(a, a) == 0.0
    b = as_image(image(2))
    assert ssim(a, b, 1.0) < 0.2
    assert psnr(a, a + 0.01, 1.0) == pytest.approx(40.0)
    assert mae(a, a + 0.25) == pytest.approx(0.25)


def naive_ssim(a: np.ndarray, b: np.ndarray, data_range: float, w: int = 7) -> float:
    """Window by window, straight from the definition (sample covariance)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    scores = []
    for c in range(a.shape[2]):
        for i in range(a.shape[0] - w + 1):
            for j in range(a.shape[1] - w + 1):
                x, y = a[i:i + w, j:j + w, c].ravel(), b[i:i + w, j:j + w, c].ravel()
                mx, my = x.mean(), y.mean()
                vx, vy = x.var(ddof=1), y.var(ddof=1)
                cov = ((x - mx) * (y - my)).sum() / (x.size - 1)
                scores.append(((2 * mx * my + c1) * (2 * cov + c2))
                              / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(scores))


def test_windowed_ssim_matches_the_definition() -> None:
    a = as_image(image(3, 12))
    b = np.clip(a + np.random.default_rng(4).normal(0, 0.1, a.shape), 0, 1)
    assert ssim(a, b, 1.0) == pytest.approx(naive_ssim(a, b, 1.0), rel=1e-9)


def test_large_images_are_averaged_down_first() -> None:
    # Wang et al.'s ssim.m: scale f = round(min(H, W) / 256), here 2
    rng = np.random.default_rng(7)
    a = rng.random((512, 512, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)

    def halve(x: np.ndarray) -> np.ndarray:
        return x.reshape(256, 2, 256, 2, 3).mean(axis=(1, 3))

    assert ssim(a, b, 1.0) == pytest.approx(ssim(halve(a), halve(b), 1.0, downsample=False))
    assert ssim(a, b, 1.0) != pytest.approx(ssim(a, b, 1.0, downsample=False))


def test_as_image_layouts() -> None:
    chw = image()                                   # [1, 3, H, W] float in [0, 1]
    hwc = (np.moveaxis(chw[0], 0, -1) * 255).round().astype(np.uint8)
    assert as_image(chw).shape == (16, 16, 3)
    assert as_image(hwc).shape == (16, 16, 3)
    assert np.abs(as_image(chw) - as_image(hwc)).max() <= 0.5 / 255 + 1e-6


def similar(tmp_path: Path, reference: np.ndarray, **spec: Any) -> Checker:
    np.save(tmp_path / "ref.npy", reference)
    expect = Expect.model_validate({"outputs": {"images": {"similar_to": {"file": "ref.npy",
                                                                          **spec}}}})
    return build_checker(expect, base_dir=tmp_path)


def test_similar_to_passes_and_fails(tmp_path: Path) -> None:
    out = image(5)
    hwc_uint8 = (np.moveaxis(out[0], 0, -1) * 255).round().astype(np.uint8)
    c = similar(tmp_path, hwc_uint8, min_similarity=0.95)
    assert c.check(exchange(tensors={"images": out})) == []
    [failure] = c.check(exchange(tensors={"images": image(6)}))
    assert failure.check == "outputs.images.similar_to"
    assert failure.message.startswith("expected SSIM >= 0.95 against ref.npy; got 0.")
    c = similar(tmp_path, out, metric="psnr", min_similarity=30)
    assert c.check(exchange(tensors={"images": out + 0.001})) == []
    assert c.check(exchange(tensors={"images": out + 0.1}))[0].message == (
        "expected PSNR >= 30.0 dB against ref.npy; got 20 dB")
    c = similar(tmp_path, out, metric="mae", max_error=0.01)
    assert c.check(exchange(tensors={"images": out + 0.005})) == []
    assert c.check(exchange(tensors={"images": out + 0.1}))[0].message == (
        "expected mean absolute error <= 0.01 against ref.npy; got 0.1")


def test_similar_to_shape_mismatch(tmp_path: Path) -> None:
    c = similar(tmp_path, np.zeros((8, 8, 3)), min_similarity=0.9)
    assert c.check(exchange(tensors={"images": image()}))[0].message == (
        "reference ref.npy has shape [8, 8, 3]; the output has [16, 16, 3] "
        "(channels last, batch dropped)")


def test_reference_is_loaded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = similar(tmp_path, image(), min_similarity=0.9)
    loads: list[Path] = []
    real = tensors.load_reference

    def counting(path: Path) -> np.ndarray:
        loads.append(path)
        return real(path)

    monkeypatch.setattr(tensors, "load_reference", counting)
    for _ in range(3):
        assert c.check(exchange(tensors={"images": image()})) == []
    assert len(loads) == 1


def test_missing_reference(tmp_path: Path) -> None:
    expect = Expect.model_validate({"outputs": {"images": {"similar_to": {
        "file": "nope.npy", "min_similarity": 0.9}}}})
    c = build_checker(expect, base_dir=tmp_path)
    [failure] = c.check(exchange(tensors={"images": image()}))
    assert failure.message.startswith("cannot read reference nope.npy: ")


def test_png_reference_needs_pillow(tmp_path: Path) -> None:
    try:
        import PIL  # noqa: F401
    except ImportError:
        (tmp_path / "ref.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        expect = Expect.model_validate({"outputs": {"images": {"similar_to": {
            "file": "ref.png", "min_similarity": 0.9}}}})
        [failure] = build_checker(expect, tmp_path).check(exchange(tensors={"images": image()}))
        assert "needs Pillow (pip install pillow)" in failure.message
    else:
        pytest.skip("Pillow is installed")


# --- robustness -------------------------------------------------------------------------

ALL_TEXT_CHECKS = {"contains": "x", "not_contains": "y", "regex": r"\w+", "equals": {"a": 1},
                   "json_schema": SCHEMA, "python_syntax": True, "finish_reason": "stop"}


@given(st.text(), st.none() | st.integers(100, 599), st.none() | st.text(max_size=5))
def test_any_output_gives_failures_not_exceptions(text: str, status: int | None,
                                                  reason: str | None) -> None:
    for f in checker(**ALL_TEXT_CHECKS).check(exchange(text=text, status=status,
                                                       finish_reason=reason)):
        assert isinstance(f, CheckFailure) and f.message
