"""TCP connections read through one reactor descriptor.

Twisted's reactor wraps every ready descriptor in a logging and context call, which for a
proxy moving small requests is a good part of the cost of each one. A :class:`StreamPoller`
holds the read side of TCP transports (Twisted's own ``tcp.Server`` and ``tcp.Client``, so
writes, producers, half-close and TLS on top work as always) in an epoll object of its own,
which the reactor reads as a single descriptor: each wake-up calls ``doRead`` of every ready
connection, with no wrapper per connection. Their writes are sent right away when the
socket takes them. :class:`PolledServer` (see
:class:`vw.common.listener.TCPListener`) and :func:`connect` make such transports.
"""

from __future__ import annotations

import select
import socket

from twisted.internet import tcp
from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.internet.main import CONNECTION_LOST
from twisted.internet.protocol import ClientFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

log = Logger()

#: Ready connections handled per wake-up before the reactor serves its other descriptors.
READ_BATCH = 256


@implementer(IReadDescriptor)
class StreamPoller:
    """An epoll object over TCP transports' read sides, read by ``reactor``."""

    def __init__(self, reactor: IReactorFDSet, name: str = "streams") -> None:
        self.reactor = reactor
        self.name = name
        self._epoll = select.epoll()
        self._readers: dict[int, tcp.Connection] = {}
        self._fds: dict[tcp.Connection, int] = {}
        self._added = False

    def add(self, transport: tcp.Connection) -> None:
        """Read ``transport`` (its ``startReading``)."""
        if transport in self._fds:
            return
        fd = transport.fileno()
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = transport
        self._fds[transport] = fd
        if not self._added:
            self._added = True
            self.reactor.addReader(self)

    def remove(self, transport: tcp.Connection) -> None:
        """Stop reading ``transport`` (its ``stopReading``; before its socket closes)."""
        fd = self._fds.pop(transport, None)
        if fd is None:
            return
        del self._readers[fd]
        self._epoll.unregister(fd)

    def fileno(self) -> int:
        return self._epoll.fileno()

    def logPrefix(self) -> str:
        return self.name

    def doRead(self) -> None:
        """Read every ready connection; what goes wrong with one ends that one alone, as
        the reactor's own wrapper around each descriptor would."""
        readers = self._readers
        disconnect = self.reactor._disconnectSelectable  # type: ignore[attr-defined]
        for fd, _ in self._epoll.poll(0, READ_BATCH):
            transport = readers.get(fd)
            if transport is None:  # stopped by an earlier connection's handling
                continue
            try:
                why = transport.doRead()
            except BaseException:
                why = Failure()
                log.failure("reading {transport}", why, transport=transport)
            if why:
                self.remove(transport)  # as the reactor does: a half-closed one reads no more
                try:
                    disconnect(transport, why, True)
                except BaseException:
                    log.failure("ending {transport}", transport=transport)

    def connectionLost(self, reason: Failure) -> None:
        """The reactor is shutting down: so are the connections, as the reactor's own are."""
        self._added = False
        for transport in list(self._readers.values()):
            try:
                transport.connectionLost(Failure(CONNECTION_LOST))
            except BaseException:
                log.failure("ending {transport}", transport=transport)
        self._epoll.close()


class _Polled:
    """A transport whose reads go through ``poller`` instead of the reactor's own epoll, and
    whose writes go out at once when nothing is queued."""

    poller: StreamPoller
    #: Whether reads go through the poller yet (a client's connect goes through the reactor,
    #: which reports a failed one precisely).
    polled_reads = True
    connected: bool
    disconnecting: bool
    _writeDisconnected: bool
    _aborting: bool
    #: Whether ``startTLS`` was called: writes go through the TLS layer then.
    TLS: bool
    _tempDataBuffer: list[bytes]
    dataBuffer: bytes
    offset: int
    producer: object
    streamingProducer: bool
    socket: socket.socket

    def write(self, data: bytes) -> None:
        """Send what the socket takes now, instead of at the reactor's next turn (which
        costs two epoll_ctl calls and a loop iteration per message); queue the rest. Not
        for a pull producer, which is asked for more when the queue drains, nor after
        ``startTLS``, when what is written must go through the TLS layer."""
        if (type(data) is bytes and data and not self.TLS and self.connected
                and not self.disconnecting
                and not self._writeDisconnected and not self._aborting
                and not self._tempDataBuffer and self.offset == len(self.dataBuffer)
                and (self.producer is None or self.streamingProducer)):
            try:
                sent = self.socket.send(data)
            except OSError:  # EAGAIN; any other error comes up through the queued write
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        super().write(data)  # type: ignore[misc]

    def startReading(self) -> None:
        if self.polled_reads:
            self.poller.add(self)  # type: ignore[arg-type]
        else:
            super().startReading()  # type: ignore[misc]

    def stopReading(self) -> None:
        if self.polled_reads:
            self.poller.remove(self)  # type: ignore[arg-type]
        else:
            super().stopReading()  # type: ignore[misc]


class PolledServer(_Polled, tcp.Server):
    def __init__(self, sock, protocol, client, server, sessionno, reactor) -> None:  # type: ignore[no-untyped-def]
        self.poller = server.poller
        super().__init__(sock, protocol, client, server, sessionno, reactor)


class PolledClient(_Polled, tcp.Client):
    polled_reads = False

    def __init__(self, host, port, bindAddress, connector, reactor) -> None:  # type: ignore[no-untyped-def]
        self.poller = connector.poller
        super().__init__(host, port, bindAddress, connector, reactor)

    def _connectDone(self) -> None:
        self.polled_reads = True
        super()._connectDone()


class _PolledConnector(tcp.Connector):
    def __init__(self, poller: StreamPoller, *args: object, **kwargs: object) -> None:
        self.poller = poller
        super().__init__(*args, **kwargs)

    def _makeTransport(self) -> PolledClient:
        return PolledClient(self.host, self.port, self.bindAddress, self, self.reactor)


def connect(poller: StreamPoller, host: str, port: int, factory: ClientFactory,
            timeout: float = 30) -> tcp.Connector:
    """``reactor.connectTCP``, the connection read through ``poller``."""
    connector = _PolledConnector(poller, host, port, factory, timeout, None, poller.reactor)
    connector.connect()
    return connector
