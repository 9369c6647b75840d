"""A TCP listening port that several processes of one server share (``SO_REUSEPORT``): the
kernel spreads new connections over them, so each process can have a core of its own."""

from __future__ import annotations

import socket

from twisted.application.service import Service
from twisted.internet import tcp
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorTCP
from twisted.internet.protocol import ServerFactory


class _SharingPort(tcp.Port):
    def createInternetSocket(self) -> socket.socket:
        sock = super().createInternetSocket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return sock


def check_free(interface: str, port: int) -> int:
    """Bind ``port`` without sharing it, and let go: the port, or the one the kernel chose
    for port 0. Raises CannotListenError when another process listens there, shared or not
    (a second server started by mistake would otherwise take half the connections)."""
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((interface, port))
        except OSError as error:
            raise CannotListenError(interface, port, error) from error
        return int(probe.getsockname()[1])


class SharedTCPServer(Service):
    """Serves ``factory`` on TCP ``port`` of ``interface`` (all when empty), a port other
    processes may listen on too. The first process passes ``first=True``: the port must then
    be free, and port 0 becomes a port the kernel chooses (see :attr:`port`)."""

    def __init__(self, reactor: IReactorTCP, port: int, factory: ServerFactory,
                 interface: str = "", *, first: bool = False) -> None:
        self.reactor = reactor
        self.port = port
        self.factory = factory
        self.interface = interface
        self.first = first
        self._listening: tcp.Port | None = None

    def privilegedStartService(self) -> None:
        """Bind the port (it may be privileged)."""
        super().privilegedStartService()
        if self.first:
            self.port = check_free(self.interface, self.port)
        listening = _SharingPort(self.port, self.factory, interface=self.interface,
                                 reactor=self.reactor)
        listening.startListening()
        self._listening = listening

    def startService(self) -> None:
        super().startService()
        if self._listening is None:
            self.privilegedStartService()

    def stopService(self) -> object:
        super().stopService()
        listening, self._listening = self._listening, None
        return None if listening is None else listening.stopListening()
