"""Probes of the shards: GET /about/health on every shard when its Health says it is due, and
GET /about/rooms/NAME on a draining shard about a room not seen here; 200 is yes, anything
else (refused, timed out, another status) is no."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from urllib.parse import quote

from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from vw.balancer.router import Router
from vw.balancer.shards import Shard
from vw.common import proxyproto

log = Logger()
#: Bytes of the status line that are enough to judge it.
STATUS_LINE = 12


class Probe(Protocol):
    """GET one path; the answer is whether the status is 200."""

    def __init__(self, factory: ProbeFactory) -> None:
        self.factory = factory
        self.received = b""

    def connectionMade(self) -> None:
        factory = self.factory
        preamble = b""
        if factory.proxy_protocol == 1:
            preamble = b"PROXY UNKNOWN\r\n"
        elif factory.proxy_protocol == 2:
            preamble = proxyproto.build_v2(None, None)
        self.transport.write(preamble + b"GET %s HTTP/1.1\r\nHost: %s\r\n"
                             b"User-Agent: vw-balancer\r\nConnection: close\r\n\r\n"
                             % (factory.path, factory.shard.host.encode()))

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= STATUS_LINE:
            status = self.received[:STATUS_LINE]
            self.factory.done(status in (b"HTTP/1.1 200", b"HTTP/1.0 200"))
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.done(False)


class ProbeFactory(ClientFactory):
    noisy = False

    def __init__(self, shard: Shard, path: bytes, proxy_protocol: int,
                 answered: Callable[[bool], None]) -> None:
        self.shard = shard
        self.path = path
        self.proxy_protocol = proxy_protocol
        self.answered = answered
        self.finished = False

    def buildProtocol(self, addr: object) -> Probe:
        return Probe(self)

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.done(False)

    def done(self, ok: bool) -> None:
        if not self.finished:
            self.finished = True
            self.answered(ok)


class Prober:
    """GETs to the shards: their health, and whether a draining one hosts a room."""

    def __init__(self, router: Router, reactor: IReactorTCP) -> None:
        self.router = router
        self.reactor = reactor
        self.clock: IReactorTime = reactor  # type: ignore[assignment]

    def tick(self) -> None:
        """Start the health checks that are due."""
        now = self.clock.seconds()
        for shard in self.router.shards.shards.values():
            if shard.health.due(now):
                shard.health.begin(now)
                self.probe(shard, b"/about/health", partial(self._checked, shard))

    @staticmethod
    def _checked(shard: Shard, ok: bool) -> None:
        if shard.health.finish(ok):
            log.info("shard {name} is {state}", name=shard.name, state="up" if ok else "down")

    def ask(self, shard: Shard, room: str, answered: Callable[[bool], None]) -> None:
        """Ask ``shard`` whether it hosts ``room`` (no answer counts as no)."""
        self.probe(shard, b"/about/rooms/" + quote(room, safe="").encode(), answered)

    def probe(self, shard: Shard, path: bytes, answered: Callable[[bool], None]) -> None:
        settings = self.router.settings
        timeout = settings.health_timeout
        factory = ProbeFactory(shard, path, settings.backend_proxy_protocol, answered)
        connector = self.reactor.connectTCP(shard.host, shard.port, factory, timeout=timeout)
        self.clock.callLater(timeout, self._expire, factory, connector)

    @staticmethod
    def _expire(factory: ProbeFactory, connector: object) -> None:
        if not factory.finished:
            factory.done(False)
            connector.disconnect()  # type: ignore[attr-defined]
