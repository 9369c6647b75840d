"""The portal's worker processes: more ``vw-portal`` processes serving the HTTP port the main
one shares with them, started, restarted when they end and stopped with it."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from vw.config import Config

log = Logger()

#: Seconds before a worker that ended is started again; doubled while it keeps ending
#: within STEADY seconds of its start, up to MAX_RESTART_DELAY.
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 60.0
STEADY = 60.0
#: Seconds a stopping worker has after SIGTERM before it gets SIGKILL.
KILL_AFTER = 5.0
#: prctl(2): the signal a process gets when its parent ends.
PR_SET_PDEATHSIG = 1


class Reactor(IReactorProcess, IReactorTime):
    """What the workers need of a reactor."""


def worker_command(config: Config, port: int) -> list[str]:
    """The command line of a worker: ``vw-portal`` with the main process's configuration
    file and log format, serving the shared ``port``."""
    command = [sys.executable, "-m", "twisted", f"--log-format={config.general.log_format}",
               "vw-portal", "--shared-port", str(port)]
    if config.source != "<defaults>":
        command += ["--config", os.path.abspath(config.source)]
    return command


def output_descriptors() -> dict[int, int | str]:
    """A worker's standard descriptors: it writes to this process's standard output and error
    (a log file, the journal) itself, unless they go nowhere (twistd as a daemon, logging to
    a file): then its output comes through pipes, to this process's log."""
    if os.path.samestat(os.fstat(1), os.stat(os.devnull)):
        return {0: "w", 1: "r", 2: "r"}
    return {0: "w", 1: 1, 2: 2}


def die_with_parent() -> None:
    """Have the kernel send this process SIGTERM when the process that started it ends
    (Linux): a worker never outlives its main portal process and keeps its port."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        log.warn("this worker will not end with the main portal process (errno {errno})",
                 errno=ctypes.get_errno())


class WorkerProcess(ProcessProtocol):
    """One worker: its output is logged a chunk of whole lines at a time (a line each would
    cost more than the worker's requests: its access log is thousands of lines a second)."""

    def __init__(self, workers: Workers, name: str) -> None:
        self.workers = workers
        self.name = name
        self.pending = {1: b"", 2: b""}
        self.ended: Deferred[None] = Deferred()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines, _, self.pending[childFD] = (self.pending.get(childFD, b"") + data).rpartition(
            b"\n")
        if lines:
            log.info("{worker}: {output}", worker=self.name,
                     output=lines.decode("utf-8", "replace"))

    def processEnded(self, reason: Failure) -> None:
        for childFD, rest in self.pending.items():
            if rest:
                self.childDataReceived(childFD, b"\n")
        self.workers.ended(self, reason)
        self.ended.callback(None)


class Workers(Service):
    """``count`` worker processes running ``command()`` (read as the service starts, when the
    port is bound): started with the service, started again when one ends, and stopped with
    it (SIGTERM, then SIGKILL after KILL_AFTER seconds)."""

    def __init__(self, reactor: Reactor, count: int, command: Callable[[], list[str]]) -> None:
        self.reactor = reactor
        self.count = count
        self.command = command
        self.args: list[str] = []
        self.processes: dict[str, WorkerProcess] = {}
        self.started: dict[str, float] = {}
        self.delays: dict[str, float] = {}
        self.restarts: dict[str, IDelayedCall] = {}

    def startService(self) -> None:
        super().startService()
        self.args = self.command()
        for number in range(1, self.count + 1):
            self.spawn(f"portal-worker-{number}")

    def spawn(self, name: str) -> None:
        self.restarts.pop(name, None)
        process = WorkerProcess(self, name)
        self.started[name] = self.reactor.seconds()
        try:
            self.reactor.spawnProcess(process, self.args[0], self.args, env=dict(os.environ),
                                      childFDs=output_descriptors())
        except OSError as error:  # out of processes or descriptors: try again later
            self.again(name, f"not started: {error}")
            return
        self.processes[name] = process

    def ended(self, process: WorkerProcess, reason: Failure) -> None:
        del self.processes[process.name]
        if self.running:
            self.again(process.name, f"ended: {reason.getErrorMessage()}")

    def again(self, name: str, why: str) -> None:
        """Start worker ``name`` again after its back-off delay."""
        steady = self.reactor.seconds() - self.started[name] >= STEADY
        delay = RESTART_DELAY if steady else min(self.delays.get(name, RESTART_DELAY / 2) * 2,
                                                 MAX_RESTART_DELAY)
        self.delays[name] = delay
        log.warn("{worker} {why}; starting it again in {delay:g} s", worker=name, why=why,
                 delay=delay)
        self.restarts[name] = self.reactor.callLater(delay, self.spawn, name)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        for restart in self.restarts.values():
            restart.cancel()
        self.restarts.clear()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        processes = list(self.processes.values())
        self._signal(processes, "TERM")
        kill = self.reactor.callLater(KILL_AFTER, self._signal, processes, "KILL")
        for process in processes:
            await process.ended
        if kill.active():
            kill.cancel()

    @staticmethod
    def _signal(processes: list[WorkerProcess], which: str) -> None:
        for process in processes:
            try:
                if process.transport is not None:
                    process.transport.signalProcess(which)
            except ProcessExitedAlready:
                pass
