"""Plain TCP pass-through listeners (``[[balancer.forwards]]``): a connection's bytes go
unparsed to one of its forward's targets, the one rendezvous hashing picks for the client's
address (so a client comes back to the same one), the next one when a connection to it
fails. The limits of the HTTP listeners apply (connections, rate per address); a trusted
peer may send a PROXY header first, and a forward may send one to its target."""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol, IReactorTime
from twisted.internet.protocol import ClientFactory, Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vw.balancer.proxy import Balancer, no_delay
from vw.balancer.rendezvous import score
from vw.common import proxyproto
from vw.config import ForwardConfig

log = Logger()

#: Seconds one side has to take what the other left in its buffer once the other is gone.
DRAIN = 30.0


def target_order(forward: ForwardConfig, client_host: str) -> list[str]:
    """The forward's targets, most preferred first for a client at ``client_host``."""
    client = client_host.encode()
    return sorted(forward.targets, key=lambda target: score(target, client, 1.0),
                  reverse=True)


class HalfClosing(Protocol):
    """One side of a spliced connection: what it receives goes to ``peer``; the end of its
    input ends the peer's output, and it closes once both its directions are done."""

    peer: HalfClosing | None = None
    #: When a byte last came in (the reactor's clock).
    last = 0.0
    read_done = False
    write_done = False

    def splice_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def readConnectionLost(self) -> None:
        self.read_done = True
        if self.peer is None or self.peer.transport is None:
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self.peer.transport.loseWriteConnection()  # type: ignore[attr-defined]
        self._maybe_done()

    def writeConnectionLost(self) -> None:
        self.write_done = True
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.read_done and self.write_done:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def end_peer(self, clock: IReactorTime) -> None:
        """This side is gone: the peer writes what it holds and closes, within DRAIN seconds
        (it no longer waits on this side's transport as its producer)."""
        peer = self.peer.transport if self.peer is not None else None
        if peer is None:
            return
        peer.unregisterProducer()  # type: ignore[attr-defined]
        peer.loseConnection()
        clock.callLater(DRAIN, peer.abortConnection)  # type: ignore[attr-defined]


@implementer(IHalfCloseableProtocol)
class Inbound(HalfClosing):
    """A client's connection to a forward's port."""

    def __init__(self, balancer: Balancer, name: str) -> None:
        self.balancer = balancer
        self.name = name
        self.client: tuple[str, int] = ("", 0)
        #: Bytes from a trusted peer before its PROXY header is complete; None when done.
        self.preamble: bytes | None = None
        #: What the client sent before the target's connection was made.
        self.pending: list[bytes] = []
        #: The address the client connected to (a trusted proxy's header may name it).
        self.destination: tuple[str, int] | None = None
        self.tried: list[str] = []
        self.timer: IDelayedCall | None = None
        self.closed = False

    @property
    def forward(self) -> ForwardConfig | None:
        """The forward's settings now (a reload may change its targets, or remove it)."""
        for forward in self.balancer.settings.forwards:
            if forward.name == self.name:
                return forward
        return None

    def connectionMade(self) -> None:
        balancer = self.balancer
        stats = balancer.stats
        stats.connections += 1
        stats.active += 1
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.client = (peer.host, peer.port)
        no_delay(self.transport)
        self.last = balancer.clock.seconds()
        if stats.active > balancer.settings.max_connections:
            self.refuse("max_connections")
        elif balancer.router.is_trusted(peer.host):
            self.preamble = b""
            self.arm(balancer.settings.header_timeout)
        elif not balancer.admit(peer.host):
            self.refuse("rate")
        else:
            self.connect()

    def refuse(self, reason: str) -> None:
        self.balancer.stats.refused[reason] += 1
        self.transport.abortConnection()  # type: ignore[union-attr]

    def connect(self) -> None:
        """Connect to the most preferred target not tried yet (reading waits meanwhile)."""
        forward = self.forward
        targets = [] if forward is None else [
            target for target in target_order(forward, self.client[0])
            if target not in self.tried]
        if not targets:
            self.refuse("forward_unavailable")
            return
        target = targets[0]
        self.tried.append(target)
        self.transport.pauseProducing()  # type: ignore[union-attr]
        host, _, port = target.rpartition(":")
        self.balancer.connect(host.strip("[]"), int(port), OutboundFactory(self, target),
                              self.balancer.settings.connect_timeout)

    def target_connected(self, outbound: Outbound) -> None:
        """The target accepted: splice, send what came meanwhile, read again."""
        self.peer, outbound.peer = outbound, self
        forward = self.forward
        assert outbound.transport is not None and self.transport is not None
        if forward is not None and forward.proxy_protocol:
            host = self.transport.getHost()  # type: ignore[attr-defined]
            build = proxyproto.build_v1 if forward.proxy_protocol == 1 else proxyproto.build_v2
            outbound.transport.write(build(self.client, self.destination or (host.host,
                                                                             host.port)))
        if self.pending:
            outbound.transport.write(b"".join(self.pending))
            self.pending = []
        self.transport.registerProducer(outbound.transport, True)
        outbound.transport.registerProducer(self.transport, True)
        self.balancer.stats.forwarded[self.name] += 1
        self.transport.resumeProducing()  # type: ignore[attr-defined]
        self.arm(self.balancer.settings.tunnel_timeout)
        if self.read_done:
            outbound.transport.loseWriteConnection()  # type: ignore[attr-defined]

    def failed(self, target: str) -> None:
        """The connection to ``target`` failed: the next target, if there is one."""
        self.balancer.stats.backend_failures[f"{self.name}:{target}"] += 1
        if not self.closed:
            self.connect()

    def dataReceived(self, data: bytes) -> None:
        self.last = self.balancer.clock.seconds()
        if self.preamble is not None:
            data = self.proxy_header(data)
            if not data:
                return
        if self.peer is None:
            self.pending.append(data)
        else:
            self.splice_received(data)

    def proxy_header(self, data: bytes) -> bytes:
        """Take a trusted peer's PROXY header, if it sends one, and connect; the bytes after
        it."""
        try:
            header, rest = proxyproto.read_header(self.preamble + data)  # type: ignore[operator]
        except proxyproto.ProxyProtocolError as error:
            log.info("bad PROXY header from {peer}: {error}", peer=self.client, error=error)
            self.preamble = None
            self.refuse("proxy_header")
            return b""
        if rest is None:
            self.preamble += data  # type: ignore[operator]
            return b""
        self.preamble = None
        if self.timer is not None and self.timer.active():
            self.timer.cancel()  # connecting has its own timeout; the idle one starts after
        if header is not None and header.source is not None:
            self.client, self.destination = header.source, header.destination
            if not self.balancer.admit(header.source[0]):
                self.refuse("rate")
                return b""
        self.connect()
        return rest

    def readConnectionLost(self) -> None:
        if self.peer is None:
            self.read_done = True  # passed on once the target is connected
            return
        super().readConnectionLost()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        self.balancer.stats.active -= 1
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.end_peer(self.balancer.clock)

    def arm(self, timeout: float) -> None:
        """Close after ``timeout`` seconds without a byte either way."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = self.balancer.clock.callLater(timeout, self.expire, timeout)

    def expire(self, timeout: float) -> None:
        if self.peer is not None and self.peer.last > self.last:
            self.last = self.peer.last
        idle = self.balancer.clock.seconds() - self.last
        if idle < timeout and self.preamble is None:
            self.timer = self.balancer.clock.callLater(timeout - idle, self.expire, timeout)
            return
        self.balancer.stats.refused["timeout"] += 1
        self.transport.abortConnection()  # type: ignore[union-attr]


@implementer(IHalfCloseableProtocol)
class Outbound(HalfClosing):
    """The connection to the target."""

    def __init__(self, inbound: Inbound) -> None:
        self.inbound = inbound

    def connectionMade(self) -> None:
        no_delay(self.transport)
        if self.inbound.closed:
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self.last = self.inbound.balancer.clock.seconds()
        self.inbound.target_connected(self)

    def dataReceived(self, data: bytes) -> None:
        self.last = self.inbound.balancer.clock.seconds()
        self.splice_received(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.end_peer(self.inbound.balancer.clock)


class OutboundFactory(ClientFactory):
    def __init__(self, inbound: Inbound, target: str) -> None:
        self.inbound = inbound
        self.target = target

    def buildProtocol(self, addr: object) -> Outbound:
        return Outbound(self.inbound)

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.inbound.failed(self.target)


class ForwardFactory(Factory):
    """The listener of the forward named ``name``."""

    def __init__(self, balancer: Balancer, name: str) -> None:
        self.balancer = balancer
        self.name = name

    def buildProtocol(self, addr: object) -> Inbound:
        return Inbound(self.balancer, self.name)
