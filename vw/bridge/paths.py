"""The media port's paths: a connected UDP socket per endpoint address, sharing the port.

Sending on a connected socket spares the kernel a route lookup per datagram, and every
datagram the bridge sends to an endpoint goes to its one selected address. Each endpoint's
socket binds the media port too (``SO_REUSEPORT``) and is connected to the endpoint, so the
kernel also delivers that endpoint's datagrams to it (a connected socket is the better
match); the listening socket gets everything else: ICE checks from new addresses, strangers.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from twisted.logger import Logger

from vw.common.poller import Address, DatagramPoller, Receiver
from vw.common.udplistener import UdpListener

log = Logger()


class MediaPaths:
    """Connected sockets to the endpoints' selected addresses, read by ``poller``."""

    def __init__(self, poller: DatagramPoller, listener: UdpListener, received: Receiver) -> None:
        self.poller = poller
        self.listener = listener
        self.received = received
        self._sockets: dict[Address, socket.socket] = {}
        self._senders: dict[Address, Callable[[bytes], object]] = {}

    def __len__(self) -> int:
        return len(self._sockets)

    def changed(self, old: Address | None, new: Address | None) -> None:
        """An endpoint's selected address went from ``old`` to ``new`` (None: none)."""
        if old is not None:
            self._close(old)
        if new is not None and new not in self._sockets and self.listener.socket is not None:
            self._open(new)

    def _open(self, address: Address) -> None:
        sock = socket.socket(self.listener.family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(self.listener.address())
            sock.connect(address)
        except OSError as error:  # the listening socket serves this address instead
            sock.close()
            log.warn("no connected path to {address}: {error}", address=address, error=error)
            return
        self._sockets[address] = sock
        self._senders[address] = sock.send
        self.poller.add(sock, self.received)

    def _close(self, address: Address) -> None:
        sock = self._sockets.pop(address, None)
        if sock is not None:
            del self._senders[address]
            self.poller.remove(sock)
            sock.close()

    def close(self) -> None:
        """Close every path (the listener is stopping)."""
        for address in list(self._sockets):
            self._close(address)

    def send(self, data: bytes, address: Address) -> None:
        """Send on the address's path, or on the listening socket if it has none; a datagram
        the kernel refuses (full buffer, ICMP error pending) is dropped like any lost one."""
        send = self._senders.get(address)
        if send is None:
            self.listener.send(data, address)
            return
        try:
            send(data)
        except OSError as error:
            log.debug("datagram to {address} dropped: {error}", address=address, error=error)
