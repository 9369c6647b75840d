"""The portal's worker processes: started with the service, started again (with back-off)
when they end, signalled and awaited when it stops."""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from vw.portal import workers as module
from vw.portal.workers import KILL_AFTER, STEADY, WorkerProcess, Workers


class Transport:
    def __init__(self) -> None:
        self.signals: list[str] = []

    def signalProcess(self, signal: str) -> None:
        self.signals.append(signal)


class ProcessReactor(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[WorkerProcess, list[str], dict[int, Any]]] = []

    def spawnProcess(self, process: WorkerProcess, executable: str, args: list[str],
                     env: dict[str, str], childFDs: dict[int, Any]) -> None:
        assert executable == args[0] and "PATH" in env
        process.makeConnection(Transport())  # type: ignore[arg-type]
        self.spawned.append((process, args, childFDs))


def end(process: WorkerProcess, *, cleanly: bool = False) -> None:
    process.processEnded(Failure(ProcessDone(0) if cleanly else ProcessTerminated(1)))


def test_workers_start_with_the_command_and_come_back_with_growing_delays() -> None:
    reactor = ProcessReactor()
    workers = Workers(reactor, 2, lambda: ["/usr/bin/python3", "-m", "twisted", "vw-portal"])
    workers.startService()
    assert [(p.name, args[-1]) for p, args, _ in reactor.spawned] == [
        ("portal-worker-1", "vw-portal"), ("portal-worker-2", "vw-portal")]
    first = reactor.spawned[0][0]
    delays = []
    for _ in range(3):  # each ends at once: 1 s, then 2 s, then 4 s
        end(first)
        delay = workers.restarts["portal-worker-1"].getTime() - reactor.seconds()
        delays.append(delay)
        reactor.advance(delay)
        first = reactor.spawned[-1][0]
        assert first.name == "portal-worker-1"
    assert delays == [1.0, 2.0, 4.0]
    reactor.advance(STEADY)  # it ran long enough: back to the shortest delay
    end(first)
    assert workers.restarts["portal-worker-1"].getTime() - reactor.seconds() == 1.0


def test_stopping_terminates_then_kills_and_waits_for_every_worker() -> None:
    reactor = ProcessReactor()
    workers = Workers(reactor, 2, lambda: ["python3"])
    workers.startService()
    one, two = (process for process, _, _ in reactor.spawned)
    end(one)  # ends before the stop: its restart is called off
    stopped = workers.stopService()
    assert [call.getTime() for call in reactor.getDelayedCalls()] == [KILL_AFTER]
    assert two.transport.signals == ["TERM"]  # type: ignore[union-attr]
    assert not stopped.called
    reactor.advance(KILL_AFTER)
    assert two.transport.signals == ["TERM", "KILL"]  # type: ignore[union-attr]
    end(two, cleanly=True)
    assert stopped.called and len(reactor.spawned) == 2 and not reactor.getDelayedCalls()


def test_output_is_logged_in_whole_lines() -> None:
    reactor = ProcessReactor()
    workers = Workers(reactor, 1, lambda: ["python3"])
    events: list[dict[str, Any]] = []
    observer = module.log.observer
    module.log.observer = events.append  # type: ignore[assignment]
    try:
        workers.startService()
        process = reactor.spawned[0][0]
        process.childDataReceived(1, b"first line\nsecond ")
        process.childDataReceived(2, b"an error\n")
        process.childDataReceived(1, b"half\nthird")
        end(process, cleanly=True)
    finally:
        module.log.observer = observer
    outputs = [event["output"] for event in events if "output" in event]
    assert outputs == ["first line", "an error", "second half", "third"]


def test_a_worker_that_cannot_be_started_is_tried_again_and_does_not_hold_up_the_stop(
        ) -> None:
    reactor = ProcessReactor()
    failures = [OSError(11, "Resource temporarily unavailable")]
    spawn = reactor.spawnProcess

    def flaky(*args: Any, **kwargs: Any) -> None:
        if failures:
            raise failures.pop()
        spawn(*args, **kwargs)

    reactor.spawnProcess = flaky  # type: ignore[method-assign]
    workers = Workers(reactor, 1, lambda: ["python3"])
    workers.startService()
    assert reactor.spawned == [] and workers.processes == {}
    reactor.advance(1.0)
    assert [process.name for process, _, _ in reactor.spawned] == ["portal-worker-1"]
    end(reactor.spawned[0][0])
    stopped = workers.stopService()  # its restart is pending, nothing runs: done at once
    assert stopped.called and not reactor.getDelayedCalls()
