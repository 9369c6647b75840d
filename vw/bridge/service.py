"""The vw-bridge service: the UDP media port, the HTTP port and the bridge's timers."""

from __future__ import annotations

import ipaddress
import json
import socket

from prometheus_client import CollectorRegistry, Gauge
from twisted.application import internet
from twisted.application.service import MultiService
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from vw.bridge import signaling
from vw.bridge.bridge import VERSION, Bridge
from vw.bridge.paths import MediaPaths
from vw.bridge.websocket import ColibriWebSocketResource
from vw.common.ops import JSONResource, add_ops_resources
from vw.common.poller import Address, DatagramPoller
from vw.common.state import persistent_secret
from vw.common.udplistener import UdpListener
from vw.config import Config, ConfigError, ip_address_of
from vw.rtp.certificate import DtlsCertificate

#: Seconds between runs of the bridge's timers (ICE checks, consent, DTLS retransmission).
TICK = 0.1


def bridge_component_secret(config: Config) -> str:
    """The bridge's component secret: configured, or generated once under the state dir."""
    return config.bridge.component_secret or persistent_secret(config.state_dir,
                                                               "bridge-component-secret")


class DrainResource(Resource):
    """POST ``{"drain": true}`` to refuse new conferences (existing ones go on), false to end.

    Only from the machine itself: the HTTP port also serves colibri-ws to the world.
    """

    isLeaf = True

    def __init__(self, bridge: Bridge) -> None:
        super().__init__()
        self.bridge = bridge

    def render_POST(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        if not ipaddress.ip_address(request.getClientAddress().host).is_loopback:
            request.setResponseCode(403)
            return b'{"error": "drain is only accepted from loopback"}'
        try:
            body = json.loads(request.content.read(1024) or b"{}")
            drain = body["drain"]
            if not isinstance(drain, bool):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            request.setResponseCode(400)
            return b'{"error": "expected {\\"drain\\": true|false}"}'
        self.bridge.draining = drain
        return json.dumps({"drain": drain}).encode()


def host_candidates(config: Config) -> list[str]:
    """The addresses offered as host candidates: ``bridge.local_addresses``, else
    ``general.bind``. Clients are told them, so each must be an IP address and not a wildcard
    (nor may the bridge channel's URL be derived from one)."""
    settings = config.bridge
    key = "bridge.local_addresses" if settings.local_addresses else "general.bind"
    addresses = settings.local_addresses or [config.general.bind]
    for host in addresses:
        if ip_address_of(config.source, key, host).is_unspecified:
            raise ConfigError(config.source, key, f"{host!r} is a wildcard: list the addresses "
                              "clients reach the bridge at in bridge.local_addresses")
    if not settings.websocket_base_url and config.general.bind in ("", "0.0.0.0", "::"):
        raise ConfigError(config.source, "bridge.websocket_base_url",
                          "must be set when general.bind is a wildcard")
    return addresses


class BridgeService(MultiService):
    """vw-bridge: one Bridge, its UDP port, its HTTP port and its timer."""

    def __init__(self, config: Config, reactor: IReactorTime) -> None:
        super().__init__()
        self.setName("bridge")
        settings = config.bridge
        bind = config.general.bind
        self.registry = CollectorRegistry()
        bridge_id = settings.bridge_id or socket.gethostname().split(".")[0]
        candidates = [(address, settings.udp_port) for address in host_candidates(config)]
        advertised = ((settings.advertised_address, settings.udp_port)
                      if settings.advertised_address else None)
        base_url = settings.websocket_base_url or f"ws://{bind}:{settings.http_port}"
        self.clock = reactor
        poller = DatagramPoller(reactor, "bridge-media")  # type: ignore[arg-type]
        self.listener = UdpListener(poller, settings.udp_port, bind, self._received,
                                    share_port=True)
        self.listener.setServiceParent(self)
        self.paths = MediaPaths(poller, self.listener, self._received)
        self.bridge = Bridge(bridge_id, DtlsCertificate.generate(), self.paths.send, candidates,
                             base_url, reactor.seconds, advertised, settings.endpoint_timeout,
                             self.paths.changed)
        internet.TCPServer(settings.http_port, Site(self.http_root()),
                           interface=bind).setServiceParent(self)
        timer = internet.TimerService(TICK, self.bridge.tick)
        timer.clock = reactor
        timer.setServiceParent(self)
        secret = bridge_component_secret(config)
        signaling.build(self.bridge, config.bridge_domain, secret, settings.xmpp_host,
                        settings.xmpp_port, config.brewery, settings.region,
                        reactor.callLater, frozenset({f"focus@{config.auth_domain}"})
                        ).setServiceParent(self)
        self._gauges()

    def http_root(self) -> Resource:
        root = Resource()
        root.putChild(b"colibri-ws", ColibriWebSocketResource(
            self.bridge.id, self.bridge.find_endpoint, self.bridge.channel_message, VERSION))
        colibri = Resource()
        colibri.putChild(b"stats", JSONResource(self.bridge.stats))
        colibri.putChild(b"drain", DrainResource(self.bridge))
        root.putChild(b"colibri", colibri)
        add_ops_resources(root, [self._health], self.registry)
        return root

    def stopService(self) -> object:
        """SIGTERM: refuse new conferences while the listeners close."""
        self.bridge.draining = True
        self.paths.close()
        return super().stopService()

    def _received(self, data: bytes, address: Address) -> None:
        self.bridge.transport.datagram_received(data, address, self.clock.seconds())

    def _health(self) -> str | None:
        return "draining" if self.bridge.draining else None

    def _gauges(self) -> None:
        for key in ("conferences", "endpoints", "packets_received", "packets_sent",
                    "dropped_srtp", "dropped_stun", "dropped_unknown"):
            gauge = Gauge(f"vw_bridge_{key}", f"Bridge {key.replace('_', ' ')}",
                          registry=self.registry)
            gauge.set_function(lambda key=key: self.bridge.stats()[key])
