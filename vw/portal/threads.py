"""Blocking calls (the store, password hashing) run on a thread pool, answered as Deferreds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

P = ParamSpec("P")
T = TypeVar("T")
A = TypeVar("A")
R = TypeVar("R")
#: The most items one batch of :class:`Batches` takes.
BATCH = 100


class Runner(Protocol):
    """Runs ``fn(*args, **kwargs)`` somewhere and gives its result as a Deferred."""

    def __call__(self, fn: Callable[P, T], /, *args: P.args,
                 **kwargs: P.kwargs) -> Deferred[T]: ...


class PoolRunner:
    """Runs calls on ``pool``; results come back on the reactor thread."""

    def __init__(self, reactor: IReactorFromThreads, pool: ThreadPool) -> None:
        self._reactor = reactor
        self._pool = pool

    def __call__(self, fn: Callable[P, T], /, *args: P.args,
                 **kwargs: P.kwargs) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self._pool, fn, *args, **kwargs)


def run_inline(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
    """Runs the call at once, on this thread (for tests: no threads, same interface)."""
    return maybeDeferred(fn, *args, **kwargs)


class Batches(Generic[A, R]):
    """Items handed in while a batch is at work wait for the next one; each batch is one call
    of ``work(items)`` on the runner (one thread hop for them all and, for the store, one
    transaction), which answers every item in order: its result, or the exception that
    refused it (that item's alone)."""

    def __init__(self, run: Runner, work: Callable[[Sequence[A]], list[R | Exception]]) -> None:
        self._run = run
        self._work = work
        self._waiting: list[tuple[A, Deferred[R]]] = []
        self._busy = False

    def __call__(self, item: A) -> Deferred[R]:
        answer: Deferred[R] = Deferred()
        self._waiting.append((item, answer))
        if not self._busy:
            self._start()
        return answer

    def _start(self) -> None:
        batch, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
        self._busy = True
        self._run(self._work, [item for item, _ in batch]).addBoth(self._answer, batch)

    def _answer(self, results: list[R | Exception] | Failure,
                batch: list[tuple[A, Deferred[R]]]) -> None:
        self._busy = False
        if self._waiting:
            self._start()
        for index, (_, answer) in enumerate(batch):
            result = results if isinstance(results, Failure) else results[index]
            if isinstance(result, Failure | Exception):
                answer.errback(result)
            else:
                answer.callback(result)
