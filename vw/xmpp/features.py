"""Server-answered IQs: disco (XEP-0030), ping (XEP-0199), version (XEP-0092), TURN (XEP-0215)."""

from __future__ import annotations

import datetime
import platform
from collections.abc import Callable
from dataclasses import dataclass

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish.domish import Element

from vw.config import TURN_TRANSPORTS
from vw.turn.auth import rest_password
from vw.xmpp.errors import StanzaError
from vw.xmpp.router import Router
from vw.xmpp.session import Session
from vw.xmpp.stanzas import DISCO_INFO_NS, DISCO_ITEMS_NS

PING_NS = "urn:xmpp:ping"
VERSION_NS = "jabber:iq:version"
EXTDISCO_NAMESPACES = ("urn:xmpp:extdisco:1", "urn:xmpp:extdisco:2")
VERSION = "0.1.0"


@dataclass(frozen=True)
class Identity:
    category: str
    type: str
    name: str = ""


def turn_credentials(secret: str, user: str, expires: int) -> tuple[str, str]:
    """The coturn REST API credentials: ``expiry:user`` and base64 HMAC-SHA1 of it."""
    username = f"{expires}:{user}"
    return username, rest_password(secret, username)


@dataclass(frozen=True)
class TurnOffer:
    """The TURN server XEP-0215 hands out: where, which transports, and the REST secret."""

    host: str
    port: int
    tls_port: int
    secret: str
    ttl: int
    #: Some of TURN_TRANSPORTS: "udp" (STUN and TURN), "tcp" (TURN), "tls" (TURNS).
    transports: tuple[str, ...] = TURN_TRANSPORTS

    def services(self) -> list[tuple[str, str, int, bool]]:
        """(type, transport, port, needs credentials) of each service offered."""
        offers = {"udp": [("stun", "udp", self.port, False), ("turn", "udp", self.port, True)],
                  "tcp": [("turn", "tcp", self.port, True)],
                  "tls": [("turns", "tcp", self.tls_port, True)]}
        return [offer for transport in TURN_TRANSPORTS if transport in self.transports
                for offer in offers[transport]]


class ServerFeatures:
    """The IQ handlers of the server's own JIDs, and what disco says about them."""

    def __init__(self, router: Router, domain: str, turn: TurnOffer,
                 now: Callable[[], float]) -> None:
        self._router = router
        self._domain = domain
        self._turn = turn
        self._now = now
        self.identities = [Identity("server", "im", "vw")]
        self.features = {DISCO_INFO_NS, DISCO_ITEMS_NS, PING_NS, VERSION_NS,
                         *EXTDISCO_NAMESPACES, "urn:xmpp:sm:3", "jabber:iq:roster"}
        router.server_iq[DISCO_INFO_NS] = self.disco_info
        router.server_iq[DISCO_ITEMS_NS] = self.disco_items
        router.server_iq[PING_NS] = self.ping
        router.server_iq[VERSION_NS] = self.version
        for namespace in EXTDISCO_NAMESPACES:
            router.server_iq[namespace] = self.external_services
        router.account_iq[PING_NS] = self.ping
        router.account_iq[DISCO_INFO_NS] = self.account_info

    def disco_info(self, jid: JID, iq: Element, origin: Session | None) -> Element:
        query = Element((DISCO_INFO_NS, "query"))
        node = next(iq.elements()).getAttribute("node")
        if node:
            raise StanzaError("item-not-found")
        for identity in self.identities:
            element = query.addElement("identity")
            element["category"] = identity.category
            element["type"] = identity.type
            if identity.name:
                element["name"] = identity.name
        for feature in sorted(self.features):
            query.addElement("feature")["var"] = feature
        return query

    def disco_items(self, jid: JID, iq: Element, origin: Session | None) -> Element:
        query = Element((DISCO_ITEMS_NS, "query"))
        for domain in sorted(self._router.components):
            query.addElement("item")["jid"] = domain
        return query

    def account_info(self, jid: JID, iq: Element, origin: Session | None) -> Element:
        query = Element((DISCO_INFO_NS, "query"))
        identity = query.addElement("identity")
        identity["category"] = "account"
        identity["type"] = "registered"
        query.addElement("feature")["var"] = DISCO_INFO_NS
        return query

    def ping(self, jid: JID, iq: Element, origin: Session | None) -> None:
        if iq["type"] != "get":
            raise StanzaError("bad-request")
        return None

    def version(self, jid: JID, iq: Element, origin: Session | None) -> Element:
        if iq["type"] != "get":
            raise StanzaError("bad-request")
        query = Element((VERSION_NS, "query"))
        query.addElement("name", content="vw")
        query.addElement("version", content=VERSION)
        query.addElement("os", content=platform.system())
        return query

    def external_services(self, jid: JID, iq: Element, origin: Session | None) -> Element:
        request = next(iq.elements())
        if iq["type"] != "get" or request.name not in ("services", "credentials"):
            raise StanzaError("bad-request")
        wanted = request.getAttribute("type")
        user = origin.jid.user if origin is not None and origin.jid.user else "vw"
        expires = int(self._now()) + self._turn.ttl
        username, password = turn_credentials(self._turn.secret, user, expires)
        answer = Element((request.uri, request.name))
        for kind, transport, port, restricted in self._turn.services():
            if wanted and wanted != kind:
                continue
            service = answer.addElement("service")
            service["type"] = kind
            service["host"] = self._turn.host
            service["port"] = str(port)
            service["transport"] = transport
            if restricted:
                service["restricted"] = "1"
                service["username"] = username
                service["password"] = password
                service["expires"] = _iso8601(expires)
        return answer


def _iso8601(timestamp: int) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
