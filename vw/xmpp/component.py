"""XEP-0114 external components: a shared-secret handshake, then stanzas for one domain."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from twisted.internet import protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.xish.domish import Element

from vw.xmpp.errors import StanzaError, StreamError
from vw.xmpp.serializer import serialize
from vw.xmpp.server import XMPPServer
from vw.xmpp.stanzas import CLIENT_NS, STREAMS_NS, parse_jid, stanza
from vw.xmpp.xmlparser import ElementReceived, StreamOpened, XMLStreamParser

log = Logger()

COMPONENT_NS = "jabber:component:accept"
STANZA_NAMES = ("message", "presence", "iq")


def rebase(element: Element, old: str, new: str) -> Element:
    """A copy of ``element`` with namespace ``old`` replaced by ``new`` (stanza and children)."""
    uri = new if element.uri == old else element.uri
    clone = Element((uri, element.name), defaultUri=uri, attribs=dict(element.attributes))
    for child in element.children:
        clone.addChild(rebase(child, old, new) if isinstance(child, Element) else child)
    return clone


def handshake_digest(stream_id: str, secret: str) -> str:
    return hashlib.sha1((stream_id + secret).encode()).hexdigest()


class ComponentProtocol(protocol.Protocol):
    """One component connection; once authenticated it serves its domain on the router."""

    def __init__(self, server: XMPPServer) -> None:
        self.server = server
        config = server.config
        self._parser = XMLStreamParser(config.max_stanza_bytes, config.max_depth)
        self.domain = ""
        self.stream_id = ""
        self.authenticated = False
        self._closing = False
        #: (from, to) of each directed available presence sent and not yet withdrawn.
        self._directed: set[tuple[str, str]] = set()

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            for event in self._parser.feed(data):
                if self._closing:
                    return
                if isinstance(event, StreamOpened):
                    self._opened(event)
                elif isinstance(event, ElementReceived):
                    self._element(event.element)
                else:
                    self.close()
        except StreamError as error:
            log.info("component stream error {condition}: {text}", condition=error.condition,
                     text=error.text)
            self.close(error)

    def _opened(self, event: StreamOpened) -> None:
        self.stream_id = secrets.token_hex(8)
        domain = event.attributes.get("to", "").lower()
        self.transport.write(
            f"<?xml version='1.0'?><stream:stream xmlns='{COMPONENT_NS}' "
            f"xmlns:stream='{STREAMS_NS}' id='{self.stream_id}' from='{domain}'>".encode())
        if event.default_namespace != COMPONENT_NS:
            raise StreamError("invalid-namespace", "expected jabber:component:accept")
        if domain not in self.server.config.components:
            raise StreamError("host-unknown", f"no component is configured for {domain}")
        if domain in self.server.router.components:
            raise StreamError("conflict", f"{domain} is already connected")
        self.domain = domain

    def _element(self, element: Element) -> None:
        if not self.authenticated:
            if element.name != "handshake" or not self.domain:
                raise StreamError("not-authorized", "handshake first")
            expected = handshake_digest(self.stream_id, self.server.config.components[self.domain])
            if not hmac.compare_digest(str(element).strip().lower(), expected):
                raise StreamError("not-authorized", "wrong handshake")
            self.authenticated = True
            self.server.router.register_component(self.domain, self)
            self.transport.write(b"<handshake/>")
            log.info("component {domain} connected", domain=self.domain)
            return
        if element.uri != COMPONENT_NS or element.name not in STANZA_NAMES:
            raise StreamError("unsupported-stanza-type", element.name)
        forwarded = rebase(element, COMPONENT_NS, CLIENT_NS)
        try:
            sender = parse_jid(forwarded.getAttribute("from", ""))
        except StanzaError:
            raise StreamError("invalid-from", "a component stanza needs a valid from") from None
        if sender.host != self.domain and not sender.host.endswith("." + self.domain):
            raise StreamError("invalid-from", f"{sender.host} is not {self.domain}")
        if forwarded.name == "presence":
            self._track(forwarded)
        self.server.router.route(forwarded)

    def _track(self, presence: Element) -> None:
        to = presence.getAttribute("to")
        if not to:
            return
        sent = (presence["from"], to)
        kind = presence.getAttribute("type")
        if kind is None:
            self._directed.add(sent)
        elif kind == "unavailable":
            self._directed.discard(sent)

    def _leave(self) -> None:
        """The connection is gone: withdraw its directed presence, as a client's session end
        does, so that the MUC rooms it sat in see its occupants leave."""
        directed, self._directed = sorted(self._directed), set()
        for sender, to in directed:
            self.server.router.route(stanza("presence", to=to, sender=sender,
                                            stanza_type="unavailable"))

    def receive(self, stanza: Element) -> None:
        """A stanza for our domain, from the router."""
        if not self._closing:
            self.transport.write(serialize(rebase(stanza, CLIENT_NS, COMPONENT_NS),
                                           COMPONENT_NS, stream_prefix=True).encode())

    def close(self, error: StreamError | None = None) -> None:
        if self._closing:
            return
        if error is not None:
            self.transport.write(serialize(error.to_element(), stream_prefix=True).encode())
        self.transport.write(b"</stream:stream>")
        self._closing = True
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._closing = True
        if self.authenticated:
            self._leave()
            self.server.router.unregister_component(self.domain, self)
            log.info("component {domain} disconnected", domain=self.domain)


class ComponentFactory(protocol.Factory):
    def __init__(self, server: XMPPServer) -> None:
        self.server = server

    def buildProtocol(self, addr: object) -> ComponentProtocol:
        return ComponentProtocol(self.server)
