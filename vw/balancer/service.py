"""vw-balancer as a Twisted service: the TLS and plain listeners, the admin port, the health
check timer, and SIGHUP to reload the configuration."""

from __future__ import annotations

import signal
from functools import partial
from typing import Any

from OpenSSL import SSL
from prometheus_client import CollectorRegistry
from twisted.application import internet
from twisted.application.service import MultiService, Service
from twisted.internet.interfaces import IReactorFromThreads, IReactorTCP
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.server import Site

from vw.balancer.admin import admin_root
from vw.balancer.checker import Prober
from vw.balancer.geo import Geo, open_database
from vw.balancer.passthrough import ForwardFactory
from vw.balancer.proxy import Balancer, ProxyFactory
from vw.balancer.router import Router
from vw.balancer.stats import Stats, StatsCollector
from vw.common.listener import TCPListener
from vw.common.streampoller import StreamPoller, connect
from vw.common.tls import PreparedContextFactory, TLSMaterial, ensure_material, server_context
from vw.config import Config, ConfigError, load

log = Logger()
#: Seconds between looks at which health checks are due (and between cleanups).
TICK = 0.25
ALPN = b"http/1.1"


def _select_alpn(connection: SSL.Connection, offered: list[bytes]) -> Any:
    return ALPN if ALPN in offered else SSL.NO_OVERLAPPING_PROTOCOLS


def tls_context(config: Config) -> SSL.Context:
    """The server context of [tls], with ALPN http/1.1 and SNI choosing among the
    balancer's ``sni_certificates``."""
    default = server_context(ensure_material(config))
    by_name = {}
    for name, (certificate, key) in config.balancer.sni_certificates.items():
        by_name[name.lower().encode()] = server_context(
            TLSMaterial(certificate, key, None))  # type: ignore[arg-type]
    for context in (default, *by_name.values()):
        context.set_alpn_select_callback(_select_alpn)

    def choose(connection: SSL.Connection) -> None:
        name = connection.get_servername()
        if name and name.lower() in by_name:
            connection.set_context(by_name[name.lower()])

    default.set_tlsext_servername_callback(choose)
    return default


class BalancerService(MultiService):
    """vw-balancer: one Balancer and its listeners."""

    def __init__(self, config: Config, reactor: IReactorTCP) -> None:
        super().__init__()
        self.setName("balancer")
        self.config = config
        settings = config.balancer
        geo = Geo(settings.regions, open_database(settings.geoip_database),
                  settings.geoip_regions)
        self.router = Router(config, geo)
        self.stats = Stats()
        self.prober = Prober(self.router, reactor)
        #: Client and backend connections are read through one reactor descriptor.
        poller = StreamPoller(reactor, "balancer")
        self.balancer = Balancer(self.router, reactor, self.stats, self.prober.ask,
                                 partial(connect, poller))
        bind = config.general.bind
        tls = PreparedContextFactory(tls_context(config))
        listeners = [
            (settings.tls_port, TLSMemoryBIOFactory(tls, False,
                                                    ProxyFactory(self.balancer, b"https"))),
            (settings.http_port, ProxyFactory(self.balancer, b"http")),
            *((forward.port, ForwardFactory(self.balancer, forward.name))
              for forward in settings.forwards)]
        for port, factory in listeners:
            TCPListener(reactor, port, factory, bind, poller=poller).setServiceParent(self)
        registry = CollectorRegistry()
        registry.register(StatsCollector(self.stats, self.router))
        internet.TCPServer(settings.admin_port, Site(admin_root(self.router, self.stats,
                                                                registry)),
                           interface="127.0.0.1").setServiceParent(self)
        timer = internet.TimerService(TICK, self.tick)
        timer.clock = reactor
        timer.setServiceParent(self)

    def tick(self) -> None:
        self.prober.tick()
        self.balancer.tick(self.balancer.clock.seconds())

    def reload(self) -> None:
        """Read the configuration file again: shards, weights, drain flags, limits, routes
        (listening ports stay). Open connections are kept."""
        if self.config.source == "<defaults>":
            return
        try:
            config = load(self.config.source)
        except ConfigError as e:
            log.error("reload refused, keeping the running configuration: {error}", error=e)
            return
        self.config = config
        self.router.configure(config)
        self.balancer.configure()
        log.info("reloaded {source}: {count} shards", source=config.source,
                 count=len(self.router.shards.shards))


class ReloadOnHangup(Service):
    """SIGHUP reloads ``target``'s configuration (in the reactor thread)."""

    def __init__(self, target: BalancerService, reactor: IReactorFromThreads) -> None:
        self.target = target
        self.reactor = reactor
        self.previous: Any = None

    def startService(self) -> None:
        super().startService()
        self.previous = signal.signal(
            signal.SIGHUP, lambda signum, frame: self.reactor.callFromThread(self.target.reload))

    def stopService(self) -> None:
        signal.signal(signal.SIGHUP, self.previous or signal.SIG_DFL)
        return super().stopService()
