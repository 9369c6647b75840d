"""Writing to a TCP transport at once: when nothing is queued, ``send`` now instead of
queueing for the reactor's next turn (which costs two epoll_ctl calls and a loop iteration
per message). The rest, if any, is queued as usual."""

from __future__ import annotations

from twisted.internet import tcp


def write(transport: object, data: bytes) -> None:
    """``transport.write(data)``, sending what the socket takes right away if possible."""
    if (isinstance(transport, tcp.Connection) and transport.connected  # type: ignore
            and not transport.disconnecting  # type: ignore[attr-defined]
            and not transport._tempDataBuffer  # type: ignore[attr-defined]
            and transport.offset == len(transport.dataBuffer)):  # type: ignore
        try:
            sent = transport.socket.send(data)  # type: ignore[attr-defined]
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = 0  # queued below: the transport reports the error as it does
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)  # type: ignore[attr-defined]
