import contextlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmscen.spec.units import (
    format_duration,
    format_percent,
    format_rate,
    parse_duration,
    parse_percent,
    parse_rate,
    parse_size,
)


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("1.5s", 1.5), ("2m", 120.0), ("1h", 3600.0), (3, 3.0), ("3", 3.0),
    ("500us", 0.0005), (" 10s ", 10.0), ("2min", 120.0), (0, 0.0),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["10 seconds", "s", "-1s", "1.5.5s", True, None, [], "inf", "nan"])
def test_bad_durations_say_how_to_write_one(bad: object) -> None:
    with pytest.raises(ValueError) as exc:
        parse_duration(bad)
    assert "duration" in str(exc.value)


def test_rates_and_percentages() -> None:
    assert parse_rate("50/min") == pytest.approx(50 / 60)
    assert parse_rate("50") == parse_rate("50/s") == 50.0
    assert parse_percent("1%") == pytest.approx(0.01)
    assert parse_percent(0.01) == 0.01
    assert parse_size("2MiB") == 2 * 1024 * 1024
    with pytest.raises(ValueError, match="between 0% and 100%"):
        parse_percent("150%")


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False))
def test_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False))
def test_rate_round_trips(rate: float) -> None:
    assert parse_rate(format_rate(rate)) == rate


@given(st.floats(min_value=0, max_value=1, allow_nan=False))
def test_percent_round_trips(fraction: float) -> None:
    assert math.isclose(parse_percent(format_percent(fraction)), fraction, rel_tol=1e-5,
                        abs_tol=1e-12)


@given(st.text(max_size=20))
def test_parsers_raise_only_value_error(text: str) -> None:
    for parser in (parse_duration, parse_rate, parse_percent, parse_size):
        with contextlib.suppress(ValueError):
            parser(text)
