"""A UDP listening port (TURN's STUN/TURN port, the bridge's media port): a socket bound as
the service starts (before privileges are dropped) and read by a
:class:`~vw.common.poller.DatagramPoller`."""

from __future__ import annotations

import socket

from twisted.application.service import Service
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from vw.common.networks import family_of
from vw.common.poller import Address, DatagramPoller, Receiver

log = Logger()

#: Receive buffer of the listening UDP port, in bytes: a deep one rides out short stalls of
#: the process without loss (up to the kernel's net.core.rmem_max).
RECEIVE_BUFFER = 4 * 1024 * 1024


class UdpListener(Service):
    """UDP port ``port`` on ``interface`` (all when empty); datagrams go to ``received``.

    With ``share_port``, connected sockets of this process may bind the same port later
    (``SO_REUSEPORT``); the port must still be free when the listener binds it.
    """

    def __init__(self, poller: DatagramPoller, port: int, interface: str,
                 received: Receiver, *, share_port: bool = False) -> None:
        self.poller = poller
        self.port = port
        self.interface = interface
        self.received = received
        self.share_port = share_port
        self.socket: socket.socket | None = None

    @property
    def family(self) -> socket.AddressFamily:
        return family_of(self.interface)

    def privilegedStartService(self) -> None:
        """Bind the port (it may be privileged)."""
        super().privilegedStartService()
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            if self.share_port:
                self._check_free()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.interface, self.port))
        except OSError as error:
            sock.close()
            raise CannotListenError(self.interface, self.port, error) from error
        self.socket = sock

    def _check_free(self) -> None:
        """Bind the port without sharing, and let go: a port shared with another process
        (another bridge started by mistake) would split its traffic silently."""
        with socket.socket(self.family, socket.SOCK_DGRAM) as probe:
            probe.bind((self.interface, self.port))
            if not self.port:
                self.port = probe.getsockname()[1]

    def startService(self) -> None:
        """Start reading (binding first if privilegedStartService did not)."""
        super().startService()
        if self.socket is None:
            self.privilegedStartService()
        assert self.socket is not None
        self.poller.add(self.socket, self.received)

    def stopService(self) -> None:
        """Stop reading and close the port."""
        super().stopService()
        if self.socket is not None:
            self.poller.remove(self.socket)
            self.socket.close()
            self.socket = None

    def address(self) -> Address:
        """The bound (host, port)."""
        assert self.socket is not None
        host, port = self.socket.getsockname()[:2]
        return host, port

    def send(self, data: bytes, address: Address) -> None:
        """Send a datagram: the core gives IP addresses only, so no checks are needed on this
        hot path; one the kernel refuses (full buffer, ICMP error pending) is dropped like any
        lost datagram."""
        try:
            self.poller.send(self.socket, data, address)  # type: ignore[arg-type]
        except OSError as error:
            log.debug("datagram to {address} dropped: {error}", address=address, error=error)
