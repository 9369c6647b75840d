"""vw-turn as a Twisted service: the UDP, TCP and TLS listening ports (TCP and TLS take a PROXY
header from ``turn.trusted_proxies``), a UDP or TCP port per relay, a timer. The UDP listening
port and UDP relays share one :class:`~vw.common.poller.DatagramPoller`; ChannelData and peer
datagrams take the core's relay fast paths, and leased ChannelData the compiled relay
(:mod:`vw.turn.leases`) when it is built."""

from __future__ import annotations

import random
import secrets
import socket
from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from twisted.application import internet
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorTCP, IReactorTime, IReactorUDP
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.resource import Resource
from twisted.web.server import Site

from vw.common.networks import endpoint
from vw.common.ops import add_ops_resources
from vw.common.poller import DatagramPoller
from vw.common.proxied import ProxiedFactory
from vw.common.state import persistent_secret
from vw.common.tls import PreparedContextFactory, ensure_material, server_context
from vw.common.udplistener import UdpListener
from vw.config import Config, ConfigError, ip_address_of
from vw.stun import (
    CHANNEL_MAX,
    CHANNEL_MAX_RFC5766,
    FAMILY_IPV4,
    FAMILY_IPV6,
    TRANSPORT_TCP,
    is_channel_data,
)
from vw.turn.allocations import (
    Address,
    Allocation,
    Client,
    Output,
    RelayGrant,
    RelayRequest,
    StreamClient,
    TurnCore,
)
from vw.turn.auth import Authenticator, Nonces
from vw.turn.leases import ChannelPoller, ChannelRelay
from vw.turn.peers import PeerPolicy
from vw.turn.stream import (
    PeerClientFactory,
    PeerConnectionProtocol,
    PeerServerFactory,
    TurnStreamFactory,
    TurnStreamProtocol,
)
from vw.turn.udp import RelaySocket

log = Logger()

#: Seconds between expiry sweeps.
TICK = 1.0
#: Seconds between the log lines that sum up what was refused: a line for each refusal would
#: let a flood of bad requests flood the log too.
REFUSALS_LOGGED_EVERY = 60.0
#: Random ports tried in the relay range before an Allocate is answered 508.
PORT_ATTEMPTS = 32
#: Linux's socket options for the DF bit, which Python's socket module does not name.
IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2
#: Seconds a Connect waits for the peer's TCP handshake (RFC 6062 §5.2 suggests 30 or more).
CONNECT_TIMEOUT = 30


class TcpRelay:
    """A TCP allocation's listening port (RFC 6062)."""

    def __init__(self, port: IListeningPort) -> None:
        self.port = port

    def close(self) -> None:
        self.port.stopListening()


Relay = RelaySocket | TcpRelay


class RefusalCollector(Collector):
    """``vw_turn_refusals_total`` by reason, from the core's counters."""

    def __init__(self, core: TurnCore) -> None:
        self.core = core

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("vw_turn_refusals", "TURN refusals by reason",
                                     labels=["reason"])
        for reason, count in sorted(self.core.stats.refusals.items()):
            family.add_metric([reason], count)
        yield family


def relay_hosts(config: Config) -> dict[int, str]:
    """The address relays of each family are opened on: ``turn.relay_address`` (else
    ``general.bind``) and ``turn.relay_address_ipv6``. Clients are told that address, so it
    may be a wildcard only for IPv4 relays announced as ``turn.external_address``."""
    settings = config.turn
    hosts: dict[int, str] = {}
    for key, host in (
            ("turn.relay_address" if settings.relay_address else "general.bind",
             settings.relay_address or config.general.bind),
            ("turn.relay_address_ipv6", settings.relay_address_ipv6)):
        if not host:
            continue
        address = ip_address_of(config.source, key, host)
        if address.is_unspecified and not (address.version == 4 and settings.external_address):
            raise ConfigError(config.source, key, f"{host!r} is a wildcard: set "
                              "turn.relay_address to the address relays are opened on (and "
                              "turn.external_address to the one clients reach it at through a "
                              "one-to-one NAT)")
        hosts[FAMILY_IPV4 if address.version == 4 else FAMILY_IPV6] = host
    external = settings.external_address
    key = "turn.external_address"
    if external and (FAMILY_IPV4 not in hosts
                     or ip_address_of(config.source, key, external).is_unspecified):
        raise ConfigError(config.source, key, "must be the public address of the IPv4 relays")
    return hosts


class TurnService(MultiService):
    """vw-turn: one TurnCore, its listening ports, its relay ports and its HTTP port."""

    def __init__(self, config: Config, reactor: IReactorUDP) -> None:
        super().__init__()
        self.setName("turn")
        self.reactor = reactor
        self.now = reactor.seconds
        settings = self.settings = config.turn
        bind = config.general.bind
        self.relay_hosts = relay_hosts(config)
        announced: dict[str, str] = {}
        if settings.external_address:
            announced[self.relay_hosts[FAMILY_IPV4]] = settings.external_address
        secret = config.xmpp.turn.secret or persistent_secret(config.state_dir, "turn-secret")
        authenticator = Authenticator(settings.realm or config.general.domain,
                                      [secret, *settings.previous_secrets],
                                      settings.users, Nonces(secrets.token_bytes(32)))
        self.core = TurnCore(
            authenticator, PeerPolicy(settings.allowed_peers, settings.denied_peers),
            self._open_relay, settings.max_allocations_per_user, settings.max_allocations,
            relay_families=frozenset(self.relay_hosts),
            tcp_relays=settings.tcp_relays,
            last_channel=CHANNEL_MAX_RFC5766 if settings.rfc5766_channels else CHANNEL_MAX,
            amplification_limit=settings.amplification_limit,
            unauthenticated_rate=settings.unauthenticated_rate,
            max_bandwidth=settings.max_bandwidth,
            max_permissions=settings.max_permissions,
            software=settings.software,
            relay_announced=announced,
            routes_changed=self._routes_changed,
            allocation_event=self._log_allocation if settings.log_allocations else None)
        #: Relay ports (UDP or TCP) by relay address, and ports reserved by EVEN-PORT.
        self.relays: dict[Address, Relay] = {}
        self.reserved: dict[Address, Relay] = {}
        #: Clients on TCP or TLS, by their StreamClient key: answers go back on the connection.
        self.streams: dict[Client, TurnStreamProtocol] = {}
        #: RFC 6062 peer connections by connection id.
        self.peer_connections: dict[int, PeerConnectionProtocol] = {}
        #: The poller of the compiled ChannelData relay, if it is built and wanted.
        self.channels: ChannelPoller | None = None
        if settings.compiled_relay and ChannelRelay is not None:
            self.channels = ChannelPoller(reactor, "turn-udp", self.now)  # type: ignore[arg-type]
        self.poller = self.channels or DatagramPoller(reactor, "turn-udp")  # type: ignore
        self.listener = UdpListener(self.poller, settings.udp_port, bind, self._client_received)
        self.listener.setServiceParent(self)
        streams = TurnStreamFactory(self)
        tls = PreparedContextFactory(server_context(ensure_material(config)))
        # A PROXY header comes before the TLS handshake: TLS is inside the proxied factory.
        secure = TLSMemoryBIOFactory(tls, False, streams)
        listeners: list[tuple[int, Factory]] = [(settings.tcp_port, streams)]
        listeners += [(port, secure) for port in [settings.tls_port, *settings.extra_tls_ports]]
        for port, factory in listeners:
            proxied = ProxiedFactory(factory, settings.trusted_proxies, reactor,  # type: ignore
                                     refusals=self.core.stats.refusals)
            internet.TCPServer(port, proxied, interface=bind,
                               reactor=reactor).setServiceParent(self)
        self.registry = CollectorRegistry()
        root = Resource()
        add_ops_resources(root, [], self.registry)
        internet.TCPServer(settings.http_port, Site(root), interface="127.0.0.1",
                           reactor=reactor).setServiceParent(self)
        for interval, call in ((TICK, self.expire), (REFUSALS_LOGGED_EVERY, self.log_refusals)):
            timer = internet.TimerService(interval, call)
            timer.clock = reactor
            timer.setServiceParent(self)
        self._refusals_logged: Counter[str] = Counter()
        self._gauges()

    # --- relay ports -----------------------------------------------------------------------

    def _open_relay(self, request: RelayRequest) -> RelayGrant | None:
        if request.reserved is not None:
            port = self.reserved.pop(request.reserved)
            self.relays[request.reserved] = port
            self._set_dont_fragment(port, request)
            return RelayGrant(request.reserved)
        host = self.relay_hosts[request.family]
        low, high = self.settings.relay_ports
        for _ in range(PORT_ATTEMPTS):
            number = random.randint(low, high - 1 if request.reserve_next else high)
            if request.even:
                number &= ~1
            if number < low:
                continue
            port = self._listen(request, host, number)
            if port is None:
                continue
            relay = (host, number)
            if not request.reserve_next:
                self.relays[relay] = port
                self._set_dont_fragment(port, request)
                return RelayGrant(relay)
            following = self._listen(request, host, number + 1)
            if following is None:
                port.close()
                continue
            self.relays[relay] = port
            self._set_dont_fragment(port, request)
            self.reserved[(host, number + 1)] = following
            return RelayGrant(relay, (host, number + 1))
        log.warn("no free relay port in {low}-{high} for {client}", low=low, high=high,
                 client=request.client)
        return None

    def _listen(self, request: RelayRequest, host: str, number: int) -> Relay | None:
        address = (host, number)
        try:
            if request.transport == TRANSPORT_TCP:
                factory = PeerServerFactory(self, address)
                return TcpRelay(self.reactor.listenTCP(number, factory, interface=host))
            to_client, now = self.core.peer_to_client, self.now
            send, channels = self.send_to_client, self.channels

            def received(data: bytes, peer: Address) -> None:
                at = now()
                hop = to_client(address, data, peer, at)
                if hop is not None and send(*hop) and channels is not None:
                    self._lease_peer(relay, address, peer, at)

            relay = RelaySocket.bind(self.poller, address, received)
            return relay
        except (CannotListenError, OSError):
            return None

    @staticmethod
    def _set_dont_fragment(port: Relay, request: RelayRequest) -> None:
        """DONT-FRAGMENT: the DF bit on what the relay sends (Linux path MTU discovery)."""
        if not request.dont_fragment or not isinstance(port, RelaySocket):
            return
        sock = port.socket
        try:
            if request.family == FAMILY_IPV6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DONTFRAG, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        except OSError as error:
            log.warn("cannot set the DF bit on relay {port}: {error}", port=port, error=error)

    # --- input and outputs -----------------------------------------------------------------

    def _client_received(self, data: bytes, client: Address) -> None:
        """A datagram on the UDP listening port: data for a peer takes the relay fast path."""
        now = self.now()
        result = self.core.relay_client_datagram(data, client, now)
        if type(result) is tuple:
            relay = self.relays.get(result[0])
            if relay is not None:
                relay.send(result[1], result[2])  # type: ignore[union-attr]
                if self.channels is not None:
                    self._lease_client(data, client, result[2], relay, now)  # type: ignore
        elif result:
            self.perform(result)  # type: ignore[arg-type]
            if self.channels is not None and self.channels.challenge_lapsed(now):
                self._lease_challenge(now)

    # --- leases of the compiled relay (vw.turn.leases) ---------------------------------------

    def _lease_client(self, data: bytes, client: Address, peer: Address, relay: RelaySocket,
                      now: float) -> None:
        """After the core relayed ``data`` (ChannelData or a Send indication) from ``client``
        to ``peer`` at ``now``: lease what it decided."""
        assert self.channels is not None
        if is_channel_data(data):
            channel = int.from_bytes(data[:2], "big")
            route = self.core.channel_route(client, channel, now)
            if route is not None:
                self.channels.lease_client(client, channel, relay.socket.fileno(), *route)
        else:
            until = self.core.send_route(client, peer, now)
            if until is not None:
                self.channels.lease_send(client, peer, relay.socket.fileno(), until)

    def _lease_challenge(self, now: float) -> None:
        """Lease the core's current 401 for Allocate requests without integrity (the first
        request of each allocation) to the listening socket."""
        assert self.channels is not None and self.listener.socket is not None
        core = self.core
        self.channels.lease_challenge(
            self.listener.socket.fileno(), *core.challenge(now), core.amplification_limit,
            core.challenge_admitted)

    def _lease_peer(self, relay: RelaySocket, address: Address, peer: Address,
                    now: float) -> None:
        """After the core relayed data from ``peer`` to the relay port ``relay`` (at
        ``address``, as the core knows it) at ``now``: lease what it decided."""
        route = self.core.peer_route(address, peer, now)
        if route is not None and self.channels is not None and self.listener.socket is not None:
            client, channel, until = route
            self.channels.lease_peer(relay.socket.fileno(), peer,
                                     self.listener.socket.fileno(), client, channel, until)

    def _log_allocation(self, allocation: Allocation, event: str) -> None:
        """``turn.log_allocations``: a line as an allocation is made, and one as it ends."""
        client, (host, port) = allocation.client, allocation.relay
        via = f"tcp/tls port {client.server[1]}" if isinstance(client, StreamClient) else "udp"
        announced = self.core.relay_announced.get(host, host)
        fields = {"relay": endpoint(announced, port), "user": allocation.username,
                  "client": endpoint(client[0], client[1])}
        if event == "allocated":
            log.info("allocation {relay} ({kind}) for {user} from {client} over {via}",
                     kind="tcp" if allocation.transport == TRANSPORT_TCP else "udp", via=via,
                     **fields)
        else:
            log.info("allocation {relay} of {user} from {client} ended after {seconds:.0f} s: "
                     "{reason}", seconds=self.now() - allocation.started, reason=event,
                     **fields)

    def _routes_changed(self, relay: Address) -> None:
        """The core shortened or ended the allocation of ``relay``: revoke its leases."""
        port = self.relays.get(relay)
        if self.channels is not None and isinstance(port, RelaySocket):
            self.channels.revoke(port.socket.fileno())

    def perform(self, outputs: list[Output]) -> None:
        """Do what the core asks."""
        for out in outputs:
            kind = out.kind
            if kind == "client":
                self.send_to_client(out.data, out.address)
            elif kind == "peer":
                port = self.relays.get(out.relay)  # type: ignore[arg-type]
                if port is not None:
                    port.send(out.data, out.address)  # type: ignore[union-attr]
            elif kind == "connect":
                self._connect(out)
            elif kind == "splice":
                self._splice(out)
            else:
                self._close(out)

    def send_to_client(self, data: bytes, client: Client) -> bool:
        """Send to a client on its TCP or TLS connection, or from the UDP listening port;
        True when it went over UDP. What is for a closed connection is dropped."""
        stream = self.streams.get(client)
        if stream is not None:
            stream.write_frame(data)
            return False
        if isinstance(client, StreamClient):
            return False
        self.listener.send(data, client)
        return True

    def _connect(self, out: Output) -> None:
        relay, connection = out.relay, out.connection
        assert relay is not None and connection is not None
        factory = PeerClientFactory(self, relay, connection)
        reactor: IReactorTCP = self.reactor  # type: ignore[assignment]
        reactor.connectTCP(out.address[0], out.address[1], factory, timeout=CONNECT_TIMEOUT,
                           bindAddress=(relay[0], 0))

    def _splice(self, out: Output) -> None:
        stream = self.streams.get(out.address)
        peer = self.peer_connections.get(out.connection)  # type: ignore[arg-type]
        if stream is None or peer is None:
            if stream is not None:
                stream.transport.loseConnection()
            return
        peer.bound(stream)

    def _close(self, out: Output) -> None:
        if out.connection is not None:
            peer = self.peer_connections.pop(out.connection, None)
            if peer is not None:
                peer.transport.loseConnection()
            return
        relay = out.relay
        port = self.relays.pop(relay, None) or self.reserved.pop(relay, None)  # type: ignore
        if port is not None:
            port.close()

    def log_refusals(self) -> None:
        """Log what was refused, and dropped as malformed, since the last such line (if
        anything was): one line a minute, by reason."""
        counts = Counter(self.core.stats.refusals)
        counts["malformed"] = self.relayed("malformed")
        new, self._refusals_logged = counts - self._refusals_logged, counts
        if new:
            summary = ", ".join(f"{reason} x{count}" for reason, count in sorted(new.items()))
            log.info("refused in the last {seconds:.0f} s: {summary}",
                     seconds=REFUSALS_LOGGED_EVERY, summary=summary)

    def expire(self) -> None:
        now = self.now()
        self.perform(self.core.expire(now))
        if self.channels is not None:
            self.channels.prune(now)

    # --- life cycle ------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        if self.channels is not None and self.listener.socket is not None:
            self.channels.serve_clients(self.listener.socket)

    def stopService(self) -> Deferred[None]:
        """Stop taking clients, let allocations end for up to ``turn.drain_seconds``, then
        close every relay."""
        self.core.draining = True
        clock: IReactorTime = self.reactor  # type: ignore[assignment]
        done: Deferred[None] = Deferred()
        deadline = self.now() + self.settings.drain_seconds

        def check() -> None:
            if self.core.allocations and self.now() < deadline:
                clock.callLater(TICK, check)
                return
            for port in [*self.relays.values(), *self.reserved.values()]:
                port.close()
            self.relays.clear()
            self.reserved.clear()
            super(TurnService, self).stopService().chainDeferred(done)

        check()
        return done

    def _gauges(self) -> None:
        allocations = Gauge("vw_turn_allocations", "TURN allocations", registry=self.registry)
        allocations.set_function(lambda: len(self.core.allocations))
        connections = Gauge("vw_turn_peer_connections", "RFC 6062 peer TCP connections",
                            registry=self.registry)
        connections.set_function(lambda: len(self.core.connections))
        if self.channels is not None:
            leases = Gauge("vw_turn_leases", "Media routes the compiled relay holds",
                           registry=self.registry)
            leases.set_function(lambda: self.channels.leases)  # type: ignore[union-attr]
            compiled = Gauge("vw_turn_compiled_relayed",
                             "Datagrams the compiled relay relayed (in to_peers and to_clients)",
                             registry=self.registry)
            relay = self.channels.relay
            compiled.set_function(lambda: relay.to_peers + relay.to_clients)
            for key, about in (
                    ("challenges", "401s the compiled relay sent (in the refusals too)"),
                    ("send_errors", "Datagrams the compiled relay's sendmmsg refused (dropped)")):
                counter = Gauge(f"vw_turn_compiled_{key}", about, registry=self.registry)
                counter.set_function(lambda key=key: getattr(relay, key))
        for key in ("malformed", "dropped", "to_peers", "to_clients", "bytes_to_peers",
                    "bytes_to_clients"):
            gauge = Gauge(f"vw_turn_{key}", f"TURN {key.replace('_', ' ')}",
                          registry=self.registry)
            gauge.set_function(lambda key=key: self.relayed(key))
        self.registry.register(RefusalCollector(self.core))

    def relayed(self, key: str) -> int:
        """A counter of the core's :class:`~vw.turn.allocations.Stats`, with what the compiled
        relay counted for it."""
        count = getattr(self.core.stats, key)
        if self.channels is not None and hasattr(self.channels.relay, key):
            count += getattr(self.channels.relay, key)
        return count
