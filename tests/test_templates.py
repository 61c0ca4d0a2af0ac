"""Request templates: typed single expressions, size limits, sandbox checks, random helpers."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmscen.compile import template_limits as limits
from llmscen.compile import templates
from llmscen.compile.templates import RNG, Renderer, TemplateFailed

ENV = templates.environment()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) |
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=12)


def render(payload: Any, **ctx: Any) -> Any:
    return Renderer(payload, ENV).render({RNG: random.Random(7), **ctx})


def problems(source: str, allowed: tuple[str, ...] = ("x",)) -> list[str]:
    return templates.check(ENV, source, allowed, None)


# --- typed values --------------------------------------------------------------------------

def test_a_single_expression_keeps_its_type() -> None:
    row = {"max_tokens": "60", "temperature": "0.7", "tags": ["a", "b"]}
    body = render({"max_tokens": "{{ row.max_tokens | int }}",
                   "temperature": "{{ row.temperature | float }}",
                   "stream": "{{ row.max_tokens | int > 10 }}",
                   "tags": "{{ row.tags | map('upper') }}",
                   "pair": "{{ (1, 2) }}", "nothing": "{{ none }}",
                   "as_text": "{{ row.max_tokens }}"}, row=row)
    assert body == {"max_tokens": 60, "temperature": 0.7, "stream": True, "tags": ["A", "B"],
                    "pair": [1, 2], "nothing": None, "as_text": "60"}


def test_text_around_the_expression_makes_a_string() -> None:
    body = render({"a": "n={{ n }}", "b": " {{ n }}", "c": "{{ n }}{{ n }}",
                   "d": "{% if n %}{{ n }}{% endif %}", "e": "{{ n }}\n"}, n=7)
    assert body == {"a": "n=7", "b": " 7", "c": "77", "d": "7", "e": "7\n"}


@given(json_values)
def test_any_json_value_goes_through_unchanged(value: Any) -> None:
    assert render({"v": "{{ v }}"}, v=value) == {"v": value}
    assert render(["{{ v }}"], v=value) == [value]


@given(st.text(max_size=30))
def test_strings_with_text_around_render_as_text(text: str) -> None:
    assert render("<{{ t }}>", t=text) == f"<{text}>"


def test_a_static_payload_is_the_same_object_every_time() -> None:
    payload = {"body": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}}
    renderer = Renderer(payload, ENV)
    assert renderer.static
    assert renderer.render({}) is payload and renderer.render({"x": 1}) is payload


def test_a_failure_names_the_field() -> None:
    with pytest.raises(TemplateFailed) as caught:
        render({"body": {"messages": [{"content": "{{ missing }}"}]}})
    assert caught.value.field == "body.messages.0.content"
    assert "'missing' is undefined" in str(caught.value)
    with pytest.raises(TemplateFailed, match="n: UndefinedError"):   # typed ones too
        render({"n": "{{ nope }}"})


# --- size limits ---------------------------------------------------------------------------

@pytest.mark.parametrize("source", [
    "{{ 'x' * n }}", "{{ n * [0] }}", "{{ 2 ** n }}", "{{ 'x' | center(n) }}",
    "{{ 'a\nb' | indent(n) }}", "{{ ('x' * 1000) | replace('x', 'y' * 2000) }}",
    "{{ [1] | batch(n, 0) | list }}", "{{ ('%' ~ n ~ 'd') | format(1) }}", "{{ range(n) }}",
    "{{ random_string(n) }}", "{{ lipsum(n) }}", "{{ '{:>' ~ n ~ '}' }}",
    "{% for i in range(100000) %}{{ s }}{% endfor %}",
])
def test_big_results_are_refused_before_they_are_built(source: str) -> None:
    n = 10**9
    try:
        value = render(source, n=n, s="x" * 100)
    except TemplateFailed as exc:
        assert isinstance(exc.cause, limits.TemplateLimitError), exc
        assert "more than a template may build" in str(exc)
    else:
        # a format string that is only built, never applied, is harmless
        assert len(value) < limits.MAX_SIZE


def test_sizes_within_the_limit_are_fine() -> None:
    assert render("{{ 'ab' * 1000 }}") == "ab" * 1000
    assert render("{{ 2 ** 64 }}") == 2**64
    assert render("{{ range(3) | list }}") == [0, 1, 2]
    assert len(render("{{ 'x' | center(100) }}")) == 100


# --- compile-time checks -------------------------------------------------------------------

@pytest.mark.parametrize(("source", "message"), [
    ("{{ 'x' * 10**10 }}", "'x' * 10,000,000,000 would hold 10,000,000,000 characters"),
    ("{{ range(10**6) }}", "range(1000000) would hold 1,000,000 items"),
    ("{{ 10 ** 100000 }}", "10 ** 100,000 would have about 100,000 digits"),
    ("{{ 'a' | center(10**7) }}", "center width would hold 10,000,000"),
    ("{{ '%99999999d' % 1 }}", "format '%99999999d'"),
    ("{{ '{:>99999999}'.format(x) }}", "format {:>99999999}"),
    ("{{ ''.__class__ }}", "template uses '__class__'"),
    ("{{ x['__globals__'] }}", "template uses '__globals__'"),
    ("{{ x.mro() }}", "template uses 'mro'"),
    ("{{ x.update({'a': 1}) }}", "template calls .update()"),
    ("{% include 'other.j2' %}", "templates cannot load other templates"),
    ("{{ 1 / 0 }}", "always fails: ZeroDivisionError"),
    ("{{ random_string(10**7) }}", "random_string(10000000)"),
])
def test_validate_refuses_what_would_fail_at_run_time(source: str, message: str) -> None:
    found = problems(source)
    assert any(message in p for p in found), found


@pytest.mark.parametrize("source", [
    "{{ x * 3 }}", "{{ 'ab' * 3 }}", "{{ range(10) | list }}", "{{ x | int }}",
    "{{ random_int(1, 6) }}", "{{ uuid() }}", "{{ x.items() | list }}", "{{ x.get('a') }}",
    "{% set n = namespace(a=1) %}{{ n.a }}", "{{ lipsum(2) }}", "{{ '%5d' % 3 }}",
])
def test_ordinary_templates_pass(source: str) -> None:
    assert problems(source) == []


@given(st.text(max_size=40))
def test_check_never_raises(source: str) -> None:
    assert isinstance(problems(source), list)


def test_conditions_are_one_expression() -> None:
    check = templates.check_condition
    assert check(ENV, "created_id is defined", ["created_id"], None) == []
    assert check(ENV, "{{ created_id is defined }}", ["created_id"], None) == []
    assert "takes one expression" in check(ENV, "{{ a }} and {{ b }}", ["a", "b"], None)[0]
    assert "not an expression" in check(ENV, "a ==", ["a"], None)[0]
    assert "unknown variable 'cid'" in check(ENV, "cid is defined", ["created_id"], None)[0]
    holds = templates.compile_condition(ENV, "created_id is defined and created_id > 2")
    assert holds({"created_id": 3}) and not holds({"created_id": 1}) and not holds({})


# --- random helpers ------------------------------------------------------------------------

HELPERS = {"i": "{{ random_int(1, 6) }}", "f": "{{ random_float(0.5, 1.5) }}",
           "s": "{{ random_string(12) }}", "c": "{{ random_choice(['a', 'b', 'c']) }}",
           "u": "{{ uuid() }}", "hex": "{{ random_string(4, 'ab') }}"}


def test_random_helpers_repeat_with_the_seed_and_respect_their_bounds() -> None:
    renderer = Renderer(HELPERS, ENV)
    first = [renderer.render({RNG: rng}) for rng in [random.Random(5)] * 20]
    again = [renderer.render({RNG: rng}) for rng in [random.Random(5)] * 20]
    other = [renderer.render({RNG: rng}) for rng in [random.Random(6)] * 20]
    assert first == again and first != other
    for values in first:
        assert isinstance(values["i"], int) and 1 <= values["i"] <= 6
        assert isinstance(values["f"], float) and 0.5 <= values["f"] <= 1.5
        assert len(values["s"]) == 12 and values["s"].isalnum()
        assert values["c"] in "abc" and set(values["hex"]) <= {"a", "b"}
        assert len(values["u"]) == 36 and values["u"][14] == "4"
    assert len({v["u"] for v in first}) == 20


def test_random_helpers_leave_the_global_generator_alone() -> None:
    random.seed(123)
    expected = [random.random() for _ in range(3)]
    random.seed(123)
    render(HELPERS)
    assert [random.random() for _ in range(3)] == expected
