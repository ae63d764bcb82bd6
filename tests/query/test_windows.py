"""Window assignment (MQL.md §3.8.2, §3.8.4, §3.8.5)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mantis_py.query.state.windows import (
    first_live_window,
    first_replay_window,
    window_bounds,
    window_indices,
    window_indices_ms,
)


@pytest.mark.parametrize(
    ("length", "every", "t", "expected"),
    [
        (10, 10, 100, [(100, 110)]),
        (10, 10, 109.999, [(100, 110)]),
        (10, 10, 110, [(110, 120)]),
        (10, 10, -0.5, [(-10, 0)]),
        (10, 5, 12, [(5, 15), (10, 20)]),
        (10, 5, 15, [(10, 20), (15, 25)]),
        (5, 10, 17, []),
        (5, 10, 21, [(20, 25)]),
        (10, 10, 0, [(0, 10)]),
        (10, 10, -10, [(-10, 0)]),
        (60, 1, 0.5, [(k, k + 60) for k in range(-59, 1)]),
    ],
)
def test_table(length: int, every: int, t: float, expected: list[tuple[int, int]]) -> None:
    assert [window_bounds(k, length, every) for k in window_indices(t, length, every)] == expected
    t_ms = int(Fraction(t) * 1000)
    assert [window_bounds(k, length, every) for k in window_indices_ms(t_ms, length, every)] == expected


@pytest.mark.parametrize("t", [None, "1", True, float("nan"), float("inf"), [1]])
def test_bad_times_belong_nowhere(t: object) -> None:
    assert list(window_indices(t, 10, 5)) == []


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6, allow_nan=False)),
    st.integers(1, 600),
    st.integers(1, 600),
)
def test_exact_against_fractions(t: float, length: int, every: int) -> None:
    ft = Fraction(t)
    got = list(window_indices(t, length, every))
    for k in got:
        assert k * every <= ft < k * every + length
    # the neighbours are not members
    lo = got[0] if got else int(ft // every)
    for k in (lo - 1, (got[-1] + 1) if got else lo + 1):
        assert not (k * every <= ft < k * every + length) or k in got
    first = first_replay_window(t, length, every)
    assert first * every + length > ft >= (first - 1) * every + length
    live = first_live_window(t, length, every)
    assert live * every >= ft > (live - 1) * every


def test_first_windows() -> None:
    assert first_replay_window(12, 10, 5) == 1  # [5, 15) ends after 12
    assert first_replay_window(15, 10, 5) == 2  # [10, 20)
    assert first_replay_window(17, 5, 10) == 2  # gap: next window [20, 25)
    assert first_live_window(100, 10, 10) == 10
    assert first_live_window(100.001, 10, 10) == 11
    assert first_live_window(-3, 10, 10) == 0
