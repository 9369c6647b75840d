"""Batches: items handed in while a batch is at work make the next batch, one call each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from vw.portal.threads import BATCH, Batches, run_inline


class HeldRunner:
    """Runs calls only when told: a pool thread that is busy until then."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []

    def __call__(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        self.calls.append((fn, args, done))
        return done

    def finish(self) -> None:
        fn, args, done = self.calls.pop(0)
        try:
            result = fn(*args)
        except Exception:  # noqa: BLE001 - handed on as the call's failure
            done.errback(Failure())
        else:
            done.callback(result)


def halves(items: Sequence[int]) -> list[float | Exception]:
    return [item / 2 if item >= 0 else ValueError(item) for item in items]


def outcome(deferred: Deferred[Any]) -> Any:
    found: list[Any] = []
    deferred.addBoth(found.append)
    assert found, "not answered yet"
    return found[0]


def test_items_handed_in_while_a_batch_works_make_the_next_batch() -> None:
    run = HeldRunner()
    batches: Batches[int, float] = Batches(run, halves)
    first = batches(2)
    waiting = [batches(4), batches(-1), batches(6)]
    assert [args for _, args, _ in run.calls] == [([2],)]
    run.finish()
    assert outcome(first) == 1
    assert [args for _, args, _ in run.calls] == [([4, -1, 6],)]
    run.finish()
    assert outcome(waiting[0]) == 2 and outcome(waiting[2]) == 3
    refused = outcome(waiting[1])
    assert isinstance(refused, Failure) and refused.check(ValueError)
    assert run.calls == []
    later = batches(8)
    run.finish()
    assert outcome(later) == 4


def test_a_failed_batch_fails_each_of_its_items() -> None:
    run = HeldRunner()

    def broken(items: Sequence[int]) -> list[int | Exception]:
        raise RuntimeError("database gone")

    batches: Batches[int, int] = Batches(run, broken)
    answers = [batches(1), batches(2)]
    run.finish()
    run.finish()
    assert all(outcome(answer).check(RuntimeError) for answer in answers)


def test_a_batch_takes_at_most_batch_items() -> None:
    run = HeldRunner()
    batches: Batches[int, float] = Batches(run, halves)
    batches(0)
    answers = [batches(2) for _ in range(BATCH + 1)]
    run.finish()
    assert [len(args[0]) for _, args, _ in run.calls] == [BATCH]
    run.finish()
    assert [len(args[0]) for _, args, _ in run.calls] == [1]
    run.finish()
    assert {outcome(answer) for answer in answers} == {1}


@pytest.mark.parametrize("item, expected", [(4, 2), (-3, None)])
def test_inline_each_item_is_a_batch_of_its_own(item: int, expected: float | None) -> None:
    answer = outcome(Batches(run_inline, halves)(item))
    if expected is None:
        assert isinstance(answer, Failure) and answer.check(ValueError)
    else:
        assert answer == expected
