"""The media port's paths: a connected UDP socket per endpoint address, sharing the port.

Sending on a connected socket spares the kernel a route lookup per datagram, and every
datagram the bridge sends to an endpoint goes to its one selected address. Each endpoint's
socket binds the media port too (``SO_REUSEPORT``) and is connected to the endpoint, so the
kernel also delivers that endpoint's datagrams to it (a connected socket is the better
match); the listening socket gets everything else: ICE checks from new addresses, strangers.

What the bridge sends while it handles a wake-up's datagrams is held until the wake-up ends;
then each path sends its datagrams in as few system calls as it can: runs of equal size
(the last may be shorter) go as one buffer that the kernel cuts into datagrams (UDP
segmentation offload, ``UDP_SEGMENT``). A video frame's packets are mostly of one size, so
the several packets a receiver gets from one wake-up usually go in one call.
"""

from __future__ import annotations

import errno
import socket
import struct

from twisted.logger import Logger

from vw.common.poller import Address, DatagramPoller, Receiver
from vw.common.udplistener import UdpListener

log = Logger()

#: The socket option and control message of UDP segmentation offload (linux/udp.h).
UDP_SEGMENT = 103
#: Datagrams in one segmented send at most (the kernel's UDP_MAX_SEGMENTS), and its bytes.
MAX_SEGMENTS = 64
MAX_SEGMENTED_BYTES = 65000
#: What a kernel without UDP segmentation offload answers to it: off for every path.
NO_SEGMENTATION = {errno.ENOPROTOOPT, errno.EOPNOTSUPP}
#: What one route refuses it with (segments over its MTU, a device without checksum
#: offload, IPsec): off for that path.
NO_SEGMENTATION_HERE = {errno.EINVAL, errno.EIO}


def segmentation_supported() -> bool:
    """Whether this kernel knows UDP segmentation offload (Linux 4.18+; an older one would
    send a segmented run as one large datagram)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.getsockopt(socket.SOL_UDP, UDP_SEGMENT)
        except OSError:
            return False
    return True


class MediaPaths:
    """Connected sockets to the endpoints' selected addresses, read by ``poller``."""

    def __init__(self, poller: DatagramPoller, listener: UdpListener, received: Receiver) -> None:
        self.poller = poller
        self.listener = listener
        self.received = received
        self._sockets: dict[Address, socket.socket] = {}
        #: Datagrams held for each path until the poller's wake-up ends.
        self._held: dict[Address, list[bytes]] = {}
        #: Whether runs of datagrams go as one segmented send (off once the kernel refuses),
        #: and the paths whose route refused it.
        self.segmenting = segmentation_supported()
        self._unsegmented: set[Address] = set()
        poller.after_reading(self.flush)

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
        self.poller.add(sock, self.received)

    def _close(self, address: Address) -> None:
        sock = self._sockets.pop(address, None)
        self._unsegmented.discard(address)
        if sock is not None:
            self.poller.remove(sock)
            sock.close()

    def close(self) -> None:
        """Close every path (the listener is stopping)."""
        for address in list(self._sockets):
            self._close(address)

    def send(self, data: bytes, address: Address) -> None:
        """Send on the address's path (held till the end of the poller's wake-up while it
        reads), or on the listening socket if it has none; a datagram the kernel refuses
        (full buffer, ICMP error pending) is dropped like any lost one."""
        sock = self._sockets.get(address)
        if sock is None:
            self.listener.send(data, address)
        elif self.poller.reading:
            held = self._held.get(address)
            if held is None:
                self._held[address] = [data]
            else:
                held.append(data)
        else:
            self._send(sock, address, [data])

    def flush(self) -> None:
        """Send what was held, each path's datagrams in order; a path closed meanwhile (its
        endpoint gone or moved) drops its own."""
        if not self._held:
            return
        held, self._held = self._held, {}
        sockets = self._sockets
        for address, datagrams in held.items():
            sock = sockets.get(address)
            if sock is not None:
                self._send(sock, address, datagrams)

    def _send(self, sock: socket.socket, address: Address, datagrams: list[bytes]) -> None:
        """Send ``datagrams`` in order, runs of equal size as one segmented send where it
        works; a refused send drops its datagrams, as a full buffer drops any."""
        count = len(datagrams)
        first = 0
        while first < count:
            size = len(datagrams[first])
            end = first + 1
            if self.segmenting and address not in self._unsegmented:
                most = min(count, first + min(MAX_SEGMENTS,
                                              MAX_SEGMENTED_BYTES // max(size, 1)))
                while end < most and len(datagrams[end]) == size:
                    end += 1
                if end < most and len(datagrams[end]) < size:
                    end += 1  # a run may end with one shorter datagram
            try:
                if end - first == 1:
                    sock.send(datagrams[first])
                else:
                    sock.sendmsg([b"".join(datagrams[first:end])], [
                        (socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))])
            except OSError as error:
                if end - first > 1 and error.errno in NO_SEGMENTATION:
                    log.warn("no UDP segmentation offload here ({error}): one datagram a "
                             "call from now on", error=error)
                    self.segmenting = False
                    continue  # the same run again, a datagram at a time
                if end - first > 1 and error.errno in NO_SEGMENTATION_HERE:
                    log.info("no UDP segmentation offload to {address} ({error})",
                             address=address, error=error)
                    self._unsegmented.add(address)
                    continue
                log.debug("datagram to {address} dropped: {error}", address=address,
                          error=error)
            first = end
