"""vw-turn as a Twisted service: the UDP, TCP and TLS listening ports, one UDP port per relay,
a timer."""

from __future__ import annotations

import secrets
from dataclasses import asdict

from prometheus_client import CollectorRegistry, Gauge
from twisted.application import internet
from twisted.application.service import MultiService
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

from vw.common.ops import add_ops_resources
from vw.common.state import persistent_secret
from vw.common.tls import PreparedContextFactory, ensure_material, server_context
from vw.config import Config
from vw.stun import CHANNEL_MAX, CHANNEL_MAX_RFC5766
from vw.turn.allocations import Address, Output, TurnCore
from vw.turn.auth import Authenticator, Nonces
from vw.turn.peers import PeerPolicy
from vw.turn.stream import TurnStreamFactory, TurnStreamProtocol

log = Logger()

#: Seconds between expiry sweeps.
TICK = 1.0


class ListeningProtocol(DatagramProtocol):
    """The STUN/TURN port: every datagram goes to the core."""

    def __init__(self, service: TurnService) -> None:
        self.service = service

    def datagramReceived(self, data: bytes, addr: Address) -> None:
        self.service.send(self.service.core.client_datagram(data, addr, self.service.now()))


class RelayProtocol(DatagramProtocol):
    """One allocation's relay port: what peers send comes back to the client."""

    def __init__(self, service: TurnService) -> None:
        self.service = service
        self.address: Address = ("", 0)

    def datagramReceived(self, data: bytes, addr: Address) -> None:
        self.service.send(self.service.core.peer_datagram(self.address, data, addr,
                                                          self.service.now()))


class TurnService(MultiService):
    """vw-turn: one TurnCore, its listening port, its relay ports and its HTTP port."""

    def __init__(self, config: Config, reactor: IReactorUDP) -> None:
        super().__init__()
        self.setName("turn")
        self.reactor = reactor
        self.now = reactor.seconds
        settings = config.turn
        self.bind = config.general.bind
        secret = config.xmpp.turn.secret or persistent_secret(config.state_dir, "turn-secret")
        authenticator = Authenticator(settings.realm or config.general.domain, [secret],
                                      settings.users, Nonces(secrets.token_bytes(32)))
        self.core = TurnCore(authenticator,
                             PeerPolicy(settings.allowed_peers, settings.denied_peers),
                             self._open_relay, settings.max_allocations_per_user,
                             settings.max_allocations,
                             last_channel=CHANNEL_MAX_RFC5766 if settings.rfc5766_channels
                             else CHANNEL_MAX)
        self.relays: dict[Address, IListeningPort] = {}
        #: Clients on TCP or TLS, by address: their answers go back on their connection.
        self.streams: dict[Address, TurnStreamProtocol] = {}
        self.listener = ListeningProtocol(self)
        internet.UDPServer(settings.udp_port, self.listener,
                           interface=self.bind).setServiceParent(self)
        streams = TurnStreamFactory(self)
        internet.TCPServer(settings.tcp_port, streams, interface=self.bind).setServiceParent(self)
        tls = PreparedContextFactory(server_context(ensure_material(config)))
        internet.SSLServer(settings.tls_port, streams, tls,
                           interface=self.bind).setServiceParent(self)
        self.registry = CollectorRegistry()
        root = Resource()
        add_ops_resources(root, [], self.registry)
        internet.TCPServer(settings.http_port, Site(root),
                           interface="127.0.0.1").setServiceParent(self)
        timer = internet.TimerService(TICK, self.expire)
        timer.clock = reactor
        timer.setServiceParent(self)
        self._gauges()

    def _open_relay(self, client: Address) -> Address | None:
        protocol = RelayProtocol(self)
        try:
            port = self.reactor.listenUDP(0, protocol, interface=self.bind)
        except CannotListenError as error:
            log.warn("no relay port for {client}: {error}", client=client, error=error)
            return None
        host = port.getHost()
        protocol.address = (host.host, host.port)
        self.relays[protocol.address] = port
        return protocol.address

    def send(self, outputs: list[Output]) -> None:
        for out in outputs:
            stream = self.streams.get(out.address) if out.kind == "client" else None
            if stream is not None:
                stream.write_frame(out.data)
                continue
            port = self.listener.transport if out.relay is None else self.relays.get(out.relay)
            if port is not None:
                port.write(out.data, out.address)

    def expire(self) -> None:
        for address in self.core.expire(self.now()):
            port = self.relays.pop(address, None)
            if port is not None:
                port.stopListening()

    def stopService(self) -> object:
        for port in self.relays.values():
            port.stopListening()
        self.relays.clear()
        return super().stopService()

    def _gauges(self) -> None:
        allocations = Gauge("vw_turn_allocations", "TURN allocations", registry=self.registry)
        allocations.set_function(lambda: len(self.core.allocations))
        for key in asdict(self.core.stats):
            gauge = Gauge(f"vw_turn_{key}", f"TURN {key.replace('_', ' ')}",
                          registry=self.registry)
            gauge.set_function(lambda key=key: getattr(self.core.stats, key))
