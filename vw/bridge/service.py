"""The vw-bridge service: the UDP media port, the HTTP port and the bridge's timers."""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge
from twisted.application import internet
from twisted.application.service import MultiService
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from vw.bridge import signaling
from vw.bridge.bridge import VERSION, Bridge
from vw.bridge.websocket import ColibriWebSocketResource
from vw.common.ops import JSONResource, add_ops_resources
from vw.common.state import persistent_secret
from vw.config import Config
from vw.rtp.certificate import DtlsCertificate

log = Logger()

#: Bytes of kernel receive buffer asked for the media socket.
RECEIVE_BUFFER = 4 * 1024 * 1024
#: Seconds between runs of the bridge's timers (ICE checks, consent, DTLS retransmission).
TICK = 0.1


def bridge_component_secret(config: Config) -> str:
    """The bridge's component secret: configured, or generated once under the state dir."""
    return config.bridge.component_secret or persistent_secret(config.state_dir,
                                                               "bridge-component-secret")


class MediaProtocol(DatagramProtocol):
    """The shared UDP port: every datagram goes to the bridge's transport."""

    bridge: Bridge

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._sendto: Callable[[bytes, tuple[str, int]], object] = lambda data, addr: None

    def startProtocol(self) -> None:
        # A deep receive buffer rides out short stalls of the process without loss.
        self.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self._sendto = self.transport.socket.sendto

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        self.bridge.transport.datagram_received(data, addr, self.clock.seconds())

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send on the socket directly: the hot path skips Twisted's per-datagram address
        checks (every address here came from a datagram or a candidate)."""
        try:
            self._sendto(data, addr)
        except OSError as e:  # a full buffer, an unreachable or wrong-family address
            log.debug("cannot send to {addr}: {error}", addr=addr, error=e)


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


class BridgeService(MultiService):
    """vw-bridge: one Bridge, its UDP port, its HTTP port and its timer."""

    def __init__(self, config: Config, clock: IReactorTime) -> None:
        super().__init__()
        self.setName("bridge")
        settings = config.bridge
        bind = config.general.bind
        self.registry = CollectorRegistry()
        bridge_id = settings.bridge_id or socket.gethostname().split(".")[0]
        addresses = settings.local_addresses or [bind]
        candidates = [(address, settings.udp_port) for address in addresses]
        advertised = ((settings.advertised_address, settings.udp_port)
                      if settings.advertised_address else None)
        base_url = settings.websocket_base_url or f"ws://{bind}:{settings.http_port}"
        self.media = MediaProtocol(clock)
        self.bridge = Bridge(bridge_id, DtlsCertificate.generate(), self.media.send, candidates,
                             base_url, clock.seconds, advertised, settings.endpoint_timeout)
        self.media.bridge = self.bridge
        internet.UDPServer(settings.udp_port, self.media, interface=bind).setServiceParent(self)
        internet.TCPServer(settings.http_port, Site(self.http_root()),
                           interface=bind).setServiceParent(self)
        timer = internet.TimerService(TICK, self.bridge.tick)
        timer.clock = clock
        timer.setServiceParent(self)
        secret = bridge_component_secret(config)
        signaling.build(self.bridge, config.bridge_domain, secret, settings.xmpp_host,
                        settings.xmpp_port, config.brewery, settings.region,
                        clock.callLater, frozenset({f"focus@{config.auth_domain}"})
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
        return super().stopService()

    def _health(self) -> str | None:
        return "draining" if self.bridge.draining else None

    def _gauges(self) -> None:
        for key in ("conferences", "endpoints", "packets_received", "packets_sent",
                    "dropped_srtp", "dropped_stun", "dropped_unknown"):
            gauge = Gauge(f"vw_bridge_{key}", f"Bridge {key.replace('_', ' ')}",
                          registry=self.registry)
            gauge.set_function(lambda key=key: self.bridge.stats()[key])
