"""The bridge on XMPP: an XEP-0114 component that answers Colibri2 and sits in the brewery."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.words.protocols.jabber import component, xmlstream
from twisted.words.xish.domish import Element

from vw.bridge.allocation import Allocations
from vw.bridge.bridge import Bridge

log = Logger()

COMPONENT_NS = "jabber:component:accept"
COLIBRI_NS = "http://jitsi.org/protocol/colibri"
PING_NS = "urn:xmpp:ping"
#: Seconds between presence updates carrying the bridge's stats.
PRESENCE_INTERVAL = 10


def stats_presence(bridge: Bridge, sender: str, room_occupant: str, region: str) -> Element:
    """The brewery presence jicofo reads: stress, drain flag, region, version, counts."""
    stats = bridge.stats()
    presence = Element((COMPONENT_NS, "presence"))
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


def ping_reply(iq: Element) -> Element:
    """The empty result answering an XEP-0199 ping (the focus's health check)."""
    reply = Element((COMPONENT_NS, "iq"))
    reply["type"] = "result"
    for key, value in (("id", iq.getAttribute("id")), ("to", iq.getAttribute("from")),
                       ("from", iq.getAttribute("to"))):
        if value is not None:
            reply[key] = value
    return reply


class BridgeComponent(component.Service):
    """Handles IQs for the bridge's component domain and keeps its brewery presence fresh."""

    def __init__(self, bridge: Bridge, domain: str, brewery: str, region: str,
                 schedule: Callable[[float, Callable[[], None]], IDelayedCall],
                 focus_jids: frozenset[str] = frozenset()) -> None:
        self.bridge = bridge
        self.allocations = Allocations(bridge, focus_jids)
        self.domain = domain
        self.occupant = f"{brewery}/{bridge.id}"
        self.region = region
        self._schedule = schedule
        self._stream: xmlstream.XmlStream | None = None
        self._next_announce: IDelayedCall | None = None

    def componentConnected(self, stream: xmlstream.XmlStream) -> None:
        self._stream = stream
        stream.addObserver("/iq", self._iq)
        self._cancel_announce()
        self._announce()
        log.info("bridge {id} connected to XMPP as {domain}", id=self.bridge.id,
                 domain=self.domain)

    def componentDisconnected(self) -> None:
        self._stream = None
        self._cancel_announce()

    def stopService(self) -> None:
        """Leave the brewery before the connection closes, so the focus moves us at once."""
        super().stopService()
        self._cancel_announce()
        if self._stream is not None:
            presence = Element((COMPONENT_NS, "presence"))
            presence["from"] = self.domain
            presence["to"] = self.occupant
            presence["type"] = "unavailable"
            self._stream.send(presence)

    def _announce(self) -> None:
        self._next_announce = None
        if self._stream is None:
            return
        self._stream.send(stats_presence(self.bridge, self.domain, self.occupant, self.region))
        self._next_announce = self._schedule(PRESENCE_INTERVAL, self._announce)

    def _cancel_announce(self) -> None:
        if self._next_announce is not None and self._next_announce.active():
            self._next_announce.cancel()
        self._next_announce = None

    def _iq(self, iq: Element) -> None:
        payload = iq.firstChildElement()
        if (iq.getAttribute("type") == "get" and payload is not None
                and (payload.uri, payload.name) == (PING_NS, "ping")):
            reply: Element | None = ping_reply(iq)
        else:
            reply = self.allocations.handle_iq(iq)
        if reply is not None and self._stream is not None:
            reply.uri = reply.defaultUri = iq.uri
            self._stream.send(reply)


def build(bridge: Bridge, domain: str, secret: str, host: str, port: int, brewery: str,
          region: str, schedule: Callable[[float, Callable[[], None]], IDelayedCall],
          focus_jids: frozenset[str]) -> component.ServiceManager:
    """A service that keeps the component connection up (and reconnects)."""
    manager = component.buildServiceManager(domain, secret, f"tcp:{host}:{port}")
    BridgeComponent(bridge, domain, brewery, region, schedule,
                    focus_jids).setServiceParent(manager)
    return manager
