"""The bridge on XMPP: an XEP-0114 component that answers Colibri2 and sits in the brewery."""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger
from twisted.words.protocols.jabber import component, xmlstream
from twisted.words.xish.domish import Element

from vw.bridge.allocation import Allocations
from vw.bridge.bridge import Bridge

log = Logger()

COLIBRI_NS = "http://jitsi.org/protocol/colibri"
#: Seconds between presence updates carrying the bridge's stats.
PRESENCE_INTERVAL = 10


def stats_presence(bridge: Bridge, sender: str, room_occupant: str, region: str) -> Element:
    """The brewery presence jicofo reads: stress, drain flag, region, version, counts."""
    stats = bridge.stats()
    presence = Element(("jabber:component:accept", "presence"))
    presence["from"] = sender
    presence["to"] = room_occupant
    presence.addElement(("http://jabber.org/protocol/muc", "x"))
    element = presence.addElement((COLIBRI_NS, "stats"))
    values = {
        "stress_level": f"{stats['stress_level']:.3f}",
        "graceful_shutdown": "true" if stats["graceful_shutdown"] else "false",
        "region": region,
        "relay_id": bridge.id,
        "version": stats["version"],
        "conferences": str(stats["conferences"]),
        "participants": str(stats["endpoints"]),
    }
    for name, value in values.items():
        if value:
            stat = element.addElement("stat")
            stat["name"] = name
            stat["value"] = value
    return presence


class BridgeComponent(component.Service):
    """Handles IQs for the bridge's component domain and keeps its brewery presence fresh."""

    def __init__(self, bridge: Bridge, domain: str, brewery: str, region: str,
                 schedule: Callable[[float, Callable[[], None]], object],
                 focus_jids: frozenset[str] = frozenset()) -> None:
        self.bridge = bridge
        self.allocations = Allocations(bridge, focus_jids)
        self.domain = domain
        self.occupant = f"{brewery}/{bridge.id}"
        self.region = region
        self._schedule = schedule
        self._stream: xmlstream.XmlStream | None = None

    def componentConnected(self, stream: xmlstream.XmlStream) -> None:
        self._stream = stream
        stream.addObserver("/iq", self._iq)
        self._announce()
        log.info("bridge {id} connected to XMPP as {domain}", id=self.bridge.id,
                 domain=self.domain)

    def componentDisconnected(self) -> None:
        self._stream = None

    def _announce(self) -> None:
        if self._stream is None:
            return
        self._stream.send(stats_presence(self.bridge, self.domain, self.occupant, self.region))
        self._schedule(PRESENCE_INTERVAL, self._announce)

    def _iq(self, iq: Element) -> None:
        reply = self.allocations.handle_iq(iq)
        if reply is not None and self._stream is not None:
            reply.uri = reply.defaultUri = iq.uri
            self._stream.send(reply)


def build(bridge: Bridge, domain: str, secret: str, host: str, port: int, brewery: str,
          region: str, schedule: Callable[[float, Callable[[], None]], object],
          focus_jids: frozenset[str]) -> component.ServiceManager:
    """A service that keeps the component connection up (and reconnects)."""
    manager = component.buildServiceManager(domain, secret, f"tcp:{host}:{port}")
    BridgeComponent(bridge, domain, brewery, region, schedule,
                    focus_jids).setServiceParent(manager)
    return manager
