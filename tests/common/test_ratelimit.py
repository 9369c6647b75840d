"""Token buckets."""

from __future__ import annotations

import pytest

from vw.common.ratelimit import TokenBucket


def test_consume_goes_into_debt_and_says_how_long_to_wait() -> None:
    bucket = TokenBucket(rate=100, capacity=400, now=0)
    assert bucket.consume(400, now=0) == 0
    assert bucket.consume(100, now=0) == 1.0
    assert bucket.consume(0, now=2) == 0


def test_take_refuses_without_taking() -> None:
    bucket = TokenBucket(rate=10, capacity=20, now=0)
    assert bucket.take(15, now=0)
    assert not bucket.take(10, now=0)
    assert bucket.take(5, now=0)
    assert not bucket.take(1, now=0)
    assert bucket.take(10, now=1)
    assert not bucket.full(now=1)
    assert bucket.full(now=3)


def test_refill_is_capped_and_time_going_back_is_ignored() -> None:
    bucket = TokenBucket(rate=10, capacity=20, now=100)
    assert bucket.take(20, now=100)
    assert not bucket.take(1, now=50)
    assert bucket.take(20, now=1000)
    assert not bucket.take(1, now=1000)


@pytest.mark.parametrize(("rate", "capacity"), [(0, 1), (1, 0), (-1, 5)])
def test_nonpositive_settings_are_refused(rate: float, capacity: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, capacity, now=0)
