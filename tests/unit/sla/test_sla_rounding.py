"""`instants.round_even` is the builtin `round` for every finite float.

Compiled, it is hand-written float and int arithmetic (the builtin costs a method lookup per
call), so it must agree with `round` on ties, negatives and values past 2**52.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from router.sla import instants

halves = st.integers(-(2**54), 2**54).map(lambda n: n / 2)


@given(st.floats(allow_nan=False, allow_infinity=False) | halves)
@example(0.5)
@example(1.5)
@example(2.5)
@example(-0.5)
@example(-1.5)
@example(-2.5)
@example(0.49999999999999994)
@example(-0.49999999999999994)
@example(4503599627370497.0)  # 2**52 + 1: no fractional bits left
@example(1e300)
@example(-0.0)
def test_round_even_is_round(x: float) -> None:
    assert instants.round_even(x) == round(x)
    assert type(instants.round_even(x)) is int


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_round_even_refuses_what_round_refuses(bad: float) -> None:
    with pytest.raises((ValueError, OverflowError)):
        round(bad)
    with pytest.raises((ValueError, OverflowError)):
        instants.round_even(bad)
