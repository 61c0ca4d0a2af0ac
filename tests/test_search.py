"""The capacity search itself (driver/search.py), against servers whose limit is known."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmscen.driver.search import Search, Step, saturated


def search(capacity: float, low: float = 1, high: float = 200, precision: float = 0.05,
           max_steps: int = 10, integer: bool = False) -> Search:
    s = Search(low, high, precision, max_steps, integer=integer)
    while (value := s.next()) is not None:
        ok = value <= capacity
        s.steps.append(Step(value=value, passed=ok, saturated=not ok, served=min(value, capacity),
                            offered=value))
    return s


@settings(max_examples=300, deadline=None)
@given(capacity=st.floats(1.0, 199.0))
def test_the_answer_is_within_the_precision_below_the_capacity(capacity: float) -> None:
    s = search(capacity)
    assert s.best is not None
    assert 0.95 * capacity <= s.best <= capacity
    assert s.ceiling is None or s.ceiling > capacity
    assert len(s.steps) <= 10 and s.converged


def test_at_least_max_and_below_min_are_measured() -> None:
    above = search(500)
    assert above.best == 200 and above.steps[-1].value == 200 and above.ceiling is None
    below = search(0.5)
    assert below.best is None and 1.0 in {st.value for st in below.steps}


@settings(max_examples=100, deadline=None)
@given(capacity=st.integers(1, 99))
def test_users_come_whole(capacity: int) -> None:
    s = search(capacity, low=1, high=100, integer=True)
    assert s.best == capacity
    assert all(float(st.value).is_integer() for st in s.steps)


def test_a_client_bound_step_ends_the_search() -> None:
    s = Search(1, 200, 0.05, 10)
    s.steps.append(Step(value=14.14, passed=True, saturated=False, served=14, offered=14.14,
                        client_bound=True))
    assert s.next() is None


def test_saturation_is_the_served_rate_falling_short() -> None:
    assert saturated(100, 96, 0.05) is False
    assert saturated(100, 90, 0.05) is True
    assert saturated(None, 90, 0.05) is False


def test_the_knee_is_the_highest_step_the_search_itself_judged_followed() -> None:
    """A step served at 94.5 % of offered passed with a 6 % tolerance: it is the knee too
    (a fixed 5 % put the knee below the capacity)."""
    s = Search(1, 32, 0.3, 6)
    s.steps += [Step(value=7.5, passed=True, saturated=False, served=7.5, offered=7.5),
                Step(value=10.85, passed=True, saturated=False, served=10.25, offered=10.85),
                Step(value=13, passed=False, saturated=True, served=10.1, offered=13)]
    assert s.best == s.knee() == 10.85
