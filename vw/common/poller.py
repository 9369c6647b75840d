"""Many UDP sockets behind one reactor descriptor.

Twisted's reactor wraps every ready descriptor in a logging and context call; a media relay's
hot path is mostly that per-descriptor cost when it has many sockets. A
:class:`DatagramPoller` holds UDP sockets (a TURN server's listening and relay sockets, the
bridge's media port and its connected paths) in an epoll object of its own, which the
reactor reads as a single descriptor: on each wake-up it reads one datagram from every ready
socket, polls again, and so on until nothing is ready or a batch is done, all on the reactor
thread. What the handlers hold for the end of a wake-up (the bridge's sends, to give each
path its datagrams at once) is done then, by the callbacks given to
:meth:`DatagramPoller.after_reading`.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable

from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

log = Logger()

Address = tuple[str, int]
#: Called with each datagram read and its source (host, port).
Receiver = Callable[[bytes, Address], None]

#: The largest datagram read (a larger one is cut): media is MTU-sized.
MAX_DATAGRAM = 8192
#: Datagrams read per wake-up before the reactor serves other descriptors.
READ_BATCH = 64


@implementer(IReadDescriptor)
class DatagramPoller:
    """An epoll object over UDP sockets, read by ``reactor`` while it holds any."""

    def __init__(self, reactor: IReactorFDSet, name: str) -> None:
        self.reactor = reactor
        self.name = name
        self._epoll = select.epoll()
        self._sockets: dict[int, tuple[Callable[[int], tuple[bytes, tuple]], Receiver]] = {}
        self._after_reading: list[Callable[[], None]] = []
        #: True while datagrams are handed to their receivers (during :meth:`doRead`).
        self.reading = False

    def after_reading(self, done: Callable[[], None]) -> None:
        """Call ``done`` at the end of every wake-up, once its datagrams are handled."""
        self._after_reading.append(done)

    def add(self, sock: socket.socket, received: Receiver) -> None:
        """Read the non-blocking ``sock``: each datagram goes to ``received``."""
        fd = sock.fileno()
        self._epoll.register(fd, select.EPOLLIN)
        self._sockets[fd] = (sock.recvfrom, received)
        if len(self._sockets) == 1:
            self.reactor.addReader(self)

    def remove(self, sock: socket.socket) -> None:
        """Stop reading ``sock`` (before closing it)."""
        fd = sock.fileno()
        if self._sockets.pop(fd, None) is None:
            return
        self._epoll.unregister(fd)
        if not self._sockets:
            self.reactor.removeReader(self)

    def send(self, sock: socket.socket, data: bytes, address: Address) -> None:
        """Send a datagram from ``sock``, one of the poller's: OSError if the kernel refuses it
        now (a subclass may send later, and then drop it as UDP may)."""
        sock.sendto(data, address)

    def fileno(self) -> int:
        return self._epoll.fileno()

    def logPrefix(self) -> str:
        return self.name

    def doRead(self) -> None:
        """Read one datagram from each ready socket, and again, up to :data:`READ_BATCH`;
        then run the :meth:`after_reading` callbacks."""
        self.reading = True
        try:
            self._read()
        finally:
            self.reading = False
            for done in self._after_reading:
                try:
                    done()
                except Exception:
                    log.failure("finishing a wake-up of {name}", name=self.name)

    def _read(self) -> None:
        poll, sockets = self._epoll.poll, self._sockets
        budget = READ_BATCH
        while budget > 0:
            events = poll(0, budget)
            if not events:
                return
            budget -= len(events)
            for fd, _ in events:
                entry = sockets.get(fd)
                if entry is None:  # removed by an earlier datagram's handling
                    continue
                try:
                    data, address = entry[0](MAX_DATAGRAM)
                except OSError:  # EAGAIN, or an ICMP error reported for an earlier send
                    continue
                try:
                    entry[1](data, address[:2])
                except Exception:
                    log.failure("handling a datagram from {address}", address=address)

    def connectionLost(self, reason: Failure) -> None:
        """The reactor is done with the poller (it is shutting down)."""
        self._sockets.clear()
        self._epoll.close()
