"""TURN over TCP and TLS (RFC 8656 §3.7): STUN messages and padded ChannelData on a stream;
RFC 6062 data connections spliced to peer TCP connections."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.python.failure import Failure

from vw.turn.allocations import Address, StreamClient

if TYPE_CHECKING:
    from vw.turn.service import TurnService

#: The largest frame: a STUN message (20 + 65532 bytes) or a padded ChannelData frame.
MAX_FRAME = 20 + 65532


def frame_size(buffer: bytes) -> int | None:
    """The size of the frame starting ``buffer`` (ChannelData with its padding), None if its
    header is incomplete; ValueError for a stream that is neither STUN (first two bits 00) nor
    ChannelData (01): it cannot be resynchronized."""
    if len(buffer) < 4:
        return None
    first, length = buffer[0], buffer[2] << 8 | buffer[3]
    if first < 0x40:
        size = 20 + length
    elif first < 0x80:
        size = 4 + length + (-length % 4)
    else:
        raise ValueError(f"neither STUN nor ChannelData: first byte {first:#x}")
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    return size


class _Pipe(Protocol):
    """One end of a splice: what arrives goes out on the other end's transport."""

    other: _Pipe | None = None

    def splice(self, other: _Pipe) -> None:
        """Pipe this connection and ``other`` into each other, with flow control."""
        self.other, other.other = other, self
        self.transport.registerProducer(other.transport, True)
        other.transport.registerProducer(self.transport, True)

    def unsplice(self) -> None:
        other, self.other = self.other, None
        if other is not None:
            other.other = None
            other.transport.loseConnection()


class TurnStreamProtocol(_Pipe):
    """One client's TCP or TLS connection to the TURN server: a control connection, or an
    RFC 6062 data connection once its ConnectionBind succeeded."""

    def __init__(self, service: TurnService) -> None:
        self.service = service
        self.buffer = b""
        self.client = StreamClient("", 0, ("", 0))

    def connectionMade(self) -> None:
        peer, server = self.transport.getPeer(), self.transport.getHost()
        self.client = StreamClient(peer.host, peer.port, (server.host, server.port))
        self.service.streams[self.client] = self
        self.service.core.client_connected(self.client)

    def dataReceived(self, data: bytes) -> None:
        if self.other is not None:
            self.other.transport.write(data)
            return
        buffer = self.buffer + data
        while self.other is None:
            try:
                size = frame_size(buffer)
            except ValueError:
                self.transport.loseConnection()
                return
            if size is None or len(buffer) < size:
                break
            frame, buffer = buffer[:size], buffer[size:]
            if 0x40 <= frame[0] < 0x80:
                frame = frame[:4 + (frame[2] << 8 | frame[3])]
            core = self.service.core
            self.service.perform(core.client_datagram(frame, self.client, self.service.now()))
        if self.other is not None and buffer:
            self.other.transport.write(buffer)  # what followed ConnectionBind is the peer's
            buffer = b""
        self.buffer = buffer

    def write_frame(self, data: bytes) -> None:
        """A frame to the client; ChannelData is padded to 4 bytes on streams."""
        if 0x40 <= data[0] < 0x80:
            data += b"\x00" * (-len(data) % 4)
        self.transport.write(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.unsplice()
        if self.service.streams.get(self.client) is self:
            del self.service.streams[self.client]
            self.service.perform(self.service.core.client_gone(self.client))


class TurnStreamFactory(Factory):
    def __init__(self, service: TurnService) -> None:
        self.service = service

    def buildProtocol(self, addr: object) -> TurnStreamProtocol:
        return TurnStreamProtocol(self.service)


class PeerConnectionProtocol(_Pipe):
    """A TCP connection between a relay and a peer (RFC 6062). Reading waits until the
    client binds it; then it is spliced to the client's data connection."""

    def __init__(self, service: TurnService, relay: Address,
                 connection_id: int | None = None) -> None:
        self.service = service
        self.relay = relay
        self.connection_id = connection_id

    def connectionMade(self) -> None:
        self.transport.pauseProducing()
        core, now = self.service.core, self.service.now()
        if self.connection_id is None:  # a peer connected to the relay
            peer = self.transport.getPeer()
            self.connection_id, outputs = core.peer_connection_arrived(
                self.relay, (peer.host, peer.port), now)
            if self.connection_id is None:
                self.transport.loseConnection()
                return
        else:  # the connection a Connect asked for
            outputs = core.peer_connected(self.connection_id, now)
        self.service.peer_connections[self.connection_id] = self
        self.service.perform(outputs)

    def bound(self, data_connection: TurnStreamProtocol) -> None:
        """The client bound this connection to ``data_connection``."""
        self.splice(data_connection)
        self.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.other is not None:
            self.other.transport.write(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self.connection_id is None:
            return
        if self.service.peer_connections.get(self.connection_id) is self:
            del self.service.peer_connections[self.connection_id]
        self.service.core.peer_connection_closed(self.connection_id)
        self.unsplice()


class PeerServerFactory(Factory):
    """A TCP relay's listening port: peers connecting to the client's relayed address."""

    noisy = False

    def __init__(self, service: TurnService, relay: Address) -> None:
        self.service = service
        self.relay = relay

    def buildProtocol(self, addr: object) -> PeerConnectionProtocol:
        return PeerConnectionProtocol(self.service, self.relay)


class PeerClientFactory(ClientFactory):
    """The outgoing TCP connection of a Connect request."""

    noisy = False

    def __init__(self, service: TurnService, relay: Address, connection_id: int) -> None:
        self.service = service
        self.relay = relay
        self.connection_id = connection_id

    def buildProtocol(self, addr: object) -> PeerConnectionProtocol:
        return PeerConnectionProtocol(self.service, self.relay, self.connection_id)

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.service.perform(self.service.core.peer_connect_failed(self.connection_id))
