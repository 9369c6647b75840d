"""Listeners behind a trusted proxy: a connection from one starts with a PROXY header (v1 or v2)
naming the real client, which the wrapped protocol then sees as its peer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, providedBy

from vw.common import proxyproto
from vw.common.networks import Networks

log = Logger()

#: Seconds a trusted proxy has to send its PROXY header.
HEADER_TIMEOUT = 10.0

PeerAddress = IPv4Address | IPv6Address


def peer_address(host: str, port: int) -> PeerAddress:
    """The Twisted TCP address of ``host`` (an IPv4 or IPv6 address) and ``port``."""
    if ":" in host:
        return IPv6Address("TCP", host, port)
    return IPv4Address("TCP", host, port)


class ProxyHeaderReader(ProtocolWrapper):
    """A trusted proxy's connection: its PROXY header is read, then the wrapped protocol is
    built and connected with the client as its peer. A trusted peer must send one: believing
    it only when present would let a client behind it (through a path that sends none, such
    as a pass-through) name any address with a header of its own."""

    factory: ProxiedFactory

    def __init__(self, factory: ProxiedFactory, peer: PeerAddress) -> None:
        super().__init__(factory, None)  # type: ignore[arg-type]  # built after the header
        self.peer = peer
        #: What arrived before the header is complete; None once it is read.
        self.preamble: bytes | None = b""
        self.timer: IDelayedCall | None = None

    def makeConnection(self, transport: ITransport) -> None:
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        self.timer = self.factory.clock.callLater(self.factory.timeout, self.refuse,
                                                  "timeout", "no complete PROXY header")

    def getPeer(self) -> PeerAddress:
        return self.peer

    def dataReceived(self, data: bytes) -> None:
        if self.preamble is None:
            if self.wrappedProtocol is not None:  # None: refused, closing
                self.wrappedProtocol.dataReceived(data)
            return
        try:
            header, rest = proxyproto.read_header(self.preamble + data)
        except proxyproto.ProxyProtocolError as e:
            self.refuse("malformed", str(e))
            return
        if rest is None:
            self.preamble += data
            return
        if header is None:
            self.refuse("malformed", "no PROXY header from a trusted proxy")
            return
        if header.source is not None:
            self.peer = peer_address(*header.source)
        self.start(rest)

    def start(self, data: bytes) -> None:
        """Connect the wrapped protocol and hand it ``data``, what followed the header."""
        self.preamble = None
        self.cancel_timer()
        protocol = self.factory.wrappedFactory.buildProtocol(self.peer)
        if protocol is None:
            self.transport.loseConnection()
            return
        self.wrappedProtocol = protocol
        protocol.makeConnection(self)
        if data:
            protocol.dataReceived(data)

    def refuse(self, reason: str, problem: str) -> None:
        """Count, log and close: ``reason`` is "malformed" or "timeout"."""
        self.cancel_timer()
        self.preamble = None
        self.factory.refusals[f"proxy_{reason}"] += 1
        proxy = self.transport.getPeer()
        log.warn("closing a connection from proxy {host}:{port}: {problem}",
                 host=proxy.host, port=proxy.port, problem=problem)
        self.transport.abortConnection()

    def cancel_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.cancel_timer()
        self.factory.unregisterProtocol(self)
        if self.wrappedProtocol is not None:
            self.wrappedProtocol.connectionLost(reason)
            self.wrappedProtocol = None


class ProxiedFactory(WrappingFactory):
    """Wraps a server factory: connections from ``trusted`` networks (CIDR strings) start with
    a PROXY header, which must be complete within ``timeout`` seconds; other peers' bytes go
    straight to the wrapped factory's protocols. Refused connections are counted in
    ``refusals`` as ``proxy_malformed`` or ``proxy_timeout``."""

    protocol = ProxyHeaderReader
    noisy = False

    def __init__(self, wrappedFactory: IProtocolFactory, trusted: Iterable[str],
                 clock: IReactorTime, timeout: float = HEADER_TIMEOUT,
                 refusals: Counter[str] | None = None) -> None:
        super().__init__(wrappedFactory)
        self.trusted = Networks(trusted)
        self.clock = clock
        self.timeout = timeout
        self.refusals: Counter[str] = Counter() if refusals is None else refusals

    def is_trusted(self, addr: IAddress) -> bool:
        return isinstance(addr, IPv4Address | IPv6Address) and addr.host in self.trusted

    def buildProtocol(self, addr: IAddress) -> IProtocol | None:  # type: ignore[override]
        if not self.is_trusted(addr):
            return self.wrappedFactory.buildProtocol(addr)
        return self.protocol(self, addr)  # type: ignore[arg-type]
