"""Blocking calls (the store, password hashing) run on a thread pool, answered as Deferreds."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

P = ParamSpec("P")
T = TypeVar("T")


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
