"""A TCP listening port as a service, bound in ``privilegedStartService``. It may be shared
with other processes of one server (``SO_REUSEPORT``: the kernel spreads new connections
over them, so each process can have a core of its own), and its connections may be read
through a :class:`~vw.common.streampoller.StreamPoller`."""

from __future__ import annotations

import socket

from twisted.application.service import Service
from twisted.internet import tcp
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorTCP
from twisted.internet.protocol import ServerFactory

from vw.common.networks import family_of
from vw.common.streampoller import PolledServer, StreamPoller

#: Connections the kernel queues before they are accepted.
BACKLOG = 511


class _Port(tcp.Port):
    def __init__(self, port: int, factory: ServerFactory, interface: str,
                 reactor: IReactorTCP, shared: bool, poller: StreamPoller | None) -> None:
        super().__init__(port, factory, BACKLOG, interface, reactor)
        self.shared = shared
        self.poller = poller
        if poller is not None:
            self.transport = PolledServer

    def createInternetSocket(self) -> socket.socket:
        sock = super().createInternetSocket()
        if self.shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return sock


def check_free(interface: str, port: int) -> int:
    """Bind ``port`` without sharing it, and let go: the port, or the one the kernel chose
    for port 0. Raises CannotListenError when another process listens there, shared or not
    (a second server started by mistake would otherwise take half the connections)."""
    with socket.socket(family_of(interface), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((interface, port))
        except OSError as error:
            raise CannotListenError(interface, port, error) from error
        return int(probe.getsockname()[1])


class TCPListener(Service):
    """Serves ``factory`` on TCP ``port`` of ``interface`` (all when empty).

    With ``shared``, other processes may listen on the port too; the first one passes
    ``first=True``: the port must then be free, and port 0 becomes a port the kernel chooses
    (see :attr:`port`). With a ``poller``, the connections are read through it."""

    def __init__(self, reactor: IReactorTCP, port: int, factory: ServerFactory,
                 interface: str = "", *, shared: bool = False, first: bool = False,
                 poller: StreamPoller | None = None) -> None:
        self.reactor = reactor
        self.port = port
        self.factory = factory
        self.interface = interface
        self.shared = shared
        self.first = first
        self.poller = poller
        self._listening: tcp.Port | None = None

    def privilegedStartService(self) -> None:
        """Bind the port (it may be privileged)."""
        super().privilegedStartService()
        if self.shared and self.first:
            self.port = check_free(self.interface, self.port)
        listening = _Port(self.port, self.factory, self.interface, self.reactor, self.shared,
                          self.poller)
        listening.startListening()
        self.port = listening.getHost().port
        self._listening = listening

    def startService(self) -> None:
        super().startService()
        if self._listening is None:
            self.privilegedStartService()

    def stopService(self) -> object:
        super().stopService()
        listening, self._listening = self._listening, None
        return None if listening is None else listening.stopListening()
