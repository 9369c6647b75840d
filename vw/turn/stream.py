"""TURN over TCP and TLS (RFC 8656 §3.7): STUN messages and padded ChannelData on a stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

if TYPE_CHECKING:
    from vw.turn.service import TurnService

#: The largest frame accepted: a STUN message or a padded ChannelData frame.
MAX_FRAME = 65536 + 4


def split_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Whole frames at the start of ``buffer`` and what is left; ValueError for a stream that
    is neither STUN (first two bits 00) nor ChannelData (01): it cannot be resynchronized."""
    frames = []
    pos = 0
    while len(buffer) - pos >= 4:
        first = buffer[pos]
        length = buffer[pos + 2] << 8 | buffer[pos + 3]
        if first < 0x40:
            size = 20 + length
        elif first < 0x80:
            size = 4 + length + (-length % 4)
        else:
            raise ValueError(f"neither STUN nor ChannelData: first byte {first:#x}")
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes")
        if len(buffer) - pos < size:
            break
        frames.append(buffer[pos:pos + size])
        pos += size
    return frames, buffer[pos:]


class TurnStreamProtocol(Protocol):
    """One client's TCP or TLS connection to the TURN server."""

    def __init__(self, service: TurnService) -> None:
        self.service = service
        self.buffer = b""
        self.client: tuple[str, int] = ("", 0)

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.client = (peer.host, peer.port)
        self.service.streams[self.client] = self

    def dataReceived(self, data: bytes) -> None:
        try:
            frames, self.buffer = split_frames(self.buffer + data)
        except ValueError:
            self.transport.loseConnection()
            return
        for frame in frames:
            self.service.send(self.service.core.client_datagram(
                frame[:4 + (frame[2] << 8 | frame[3])] if 0x40 <= frame[0] < 0x80 else frame,
                self.client, self.service.now()))

    def write_frame(self, data: bytes) -> None:
        """A frame to the client; ChannelData is padded to 4 bytes on streams."""
        if 0x40 <= data[0] < 0x80:
            data += b"\x00" * (-len(data) % 4)
        self.transport.write(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self.service.streams.get(self.client) is self:
            del self.service.streams[self.client]
            self.service.core.client_gone(self.client)


class TurnStreamFactory(Factory):
    def __init__(self, service: TurnService) -> None:
        self.service = service

    def buildProtocol(self, addr: object) -> TurnStreamProtocol:
        return TurnStreamProtocol(self.service)
