"""Health checks: GET /about/health on every shard when its Health says it is due; 200 is
good, anything else (refused, timed out, another status) is bad."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from vw.balancer import proxyproto
from vw.balancer.router import Router
from vw.balancer.shards import Shard

log = Logger()
#: Bytes of the status line that are enough to judge it.
STATUS_LINE = 12


class Check(Protocol):
    def __init__(self, factory: CheckFactory) -> None:
        self.factory = factory
        self.received = b""

    def connectionMade(self) -> None:
        shard = self.factory.shard
        preamble = b""
        version = self.factory.proxy_protocol
        if version == 1:
            preamble = b"PROXY UNKNOWN\r\n"
        elif version == 2:
            preamble = proxyproto.build_v2(None, None)
        self.transport.write(preamble + b"GET /about/health HTTP/1.1\r\nHost: %s\r\n"
                             b"User-Agent: vw-balancer\r\nConnection: close\r\n\r\n"
                             % shard.host.encode())

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= STATUS_LINE:
            status = self.received[:STATUS_LINE]
            self.factory.done(status in (b"HTTP/1.1 200", b"HTTP/1.0 200"))
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.done(False)


class CheckFactory(ClientFactory):
    noisy = False

    def __init__(self, checker: HealthChecker, shard: Shard) -> None:
        self.checker = checker
        self.shard = shard
        self.proxy_protocol = checker.router.settings.backend_proxy_protocol
        self.finished = False
        self.connector: object = None

    def buildProtocol(self, addr: object) -> Check:
        return Check(self)

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.done(False)

    def done(self, ok: bool) -> None:
        if self.finished:
            return
        self.finished = True
        shard = self.shard
        if shard.health.finish(ok):
            log.info("shard {name} is {state}", name=shard.name, state="up" if ok else "down")


class HealthChecker:
    def __init__(self, router: Router, reactor: IReactorTCP) -> None:
        self.router = router
        self.reactor = reactor
        self.clock: IReactorTime = reactor  # type: ignore[assignment]

    def tick(self) -> None:
        """Start the checks that are due."""
        now = self.clock.seconds()
        timeout = self.router.settings.health_timeout
        for shard in self.router.shards.shards.values():
            if shard.health.due(now):
                shard.health.begin(now)
                factory = CheckFactory(self, shard)
                connector = self.reactor.connectTCP(shard.host, shard.port, factory,
                                                    timeout=timeout)
                self.clock.callLater(timeout, self.expire, factory, connector)

    @staticmethod
    def expire(factory: CheckFactory, connector: object) -> None:
        if not factory.finished:
            factory.done(False)
            connector.disconnect()  # type: ignore[attr-defined]
