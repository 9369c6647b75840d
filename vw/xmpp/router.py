"""Stanza routing between sessions, the server itself and components (RFC 6120 §10, RFC 6121 §8)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from twisted.logger import Logger
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish.domish import Element

from vw.xmpp.errors import StanzaError, error_reply
from vw.xmpp.session import Session
from vw.xmpp.stanzas import parse_jid

log = Logger()

IQ_HANDLER_TYPES = ("get", "set")


class Component(Protocol):
    """Anything serving a domain: the MUC service, the focus, an XEP-0114 connection."""

    def receive(self, stanza: Element) -> None: ...


#: Handles an IQ addressed to the server (``to`` = a host, or the sender's own account).
#: Returns the result payload (or None for an empty result) or raises StanzaError.
IQHandler = Callable[[JID, Element, Session | None], Element | None]


class Router:
    """The routing table of one XMPP server: hosts, bound sessions and components."""

    def __init__(self, hosts: Iterable[str]) -> None:
        self.hosts = set(hosts)
        self.sessions: dict[str, dict[str, Session]] = {}
        self.components: dict[str, Component] = {}
        #: (namespace of payload) -> handler, for IQs to a host.
        self.server_iq: dict[str, IQHandler] = {}
        #: (namespace of payload) -> handler, for IQs to the sender's own bare JID or no ``to``.
        self.account_iq: dict[str, IQHandler] = {}
        #: Set by the presence module: handles presence needing server logic.
        self.presence_handler: PresenceHandler | None = None
        #: Tells whether a local account exists (besides connected sessions).
        self.account_exists: Callable[[str, str], bool] = lambda user, host: False
        self.stanzas_routed = 0

    # -- the routing table -------------------------------------------------

    def bind(self, session: Session) -> None:
        self.sessions.setdefault(session.bare, {})[session.jid.resource] = session

    def unbind(self, session: Session) -> None:
        resources = self.sessions.get(session.bare)
        if resources and resources.get(session.jid.resource) is session:
            del resources[session.jid.resource]
            if not resources:
                del self.sessions[session.bare]

    def session_for(self, full: str) -> Session | None:
        jid = parse_jid(full)
        return self.sessions.get(jid.userhost(), {}).get(jid.resource or "")

    def resources(self, bare: str) -> list[Session]:
        return list(self.sessions.get(bare, {}).values())

    def register_component(self, domain: str, component: Component) -> None:
        self.components[domain] = component

    def unregister_component(self, domain: str, component: Component) -> None:
        if self.components.get(domain) is component:
            del self.components[domain]

    def session_count(self) -> int:
        return sum(len(r) for r in self.sessions.values())

    # -- routing -----------------------------------------------------------

    def route(self, stanza: Element, origin: Session | None = None) -> None:
        """Deliver a stanza whose ``from`` is already validated; answer errors in one place."""
        self.stanzas_routed += 1
        try:
            self._route(stanza, origin)
        except StanzaError as error:
            self.bounce(stanza, error)

    def bounce(self, stanza: Element, error: StanzaError) -> None:
        """Send ``error`` back to the sender of ``stanza`` (never for errors and results)."""
        reply = error_reply(stanza, error)
        if reply is not None and reply.hasAttribute("to"):
            try:
                self._route(reply, None)
            except StanzaError as e:
                log.debug("dropped an undeliverable error reply: {e}", e=e)

    def _route(self, stanza: Element, origin: Session | None) -> None:
        to = stanza.getAttribute("to")
        if not to:
            self._to_own_account(stanza, origin)
            return
        jid = parse_jid(to)
        component = self.components.get(jid.host)
        if component is not None:
            component.receive(stanza)
        elif jid.host in self.hosts:
            if jid.user is None:
                self._to_server(jid, stanza, origin)
            else:
                self._to_local_user(jid, stanza, origin)
        else:
            raise StanzaError("remote-server-not-found", text=f"{jid.host} is not served here")

    def _to_own_account(self, stanza: Element, origin: Session | None) -> None:
        if origin is None:
            raise StanzaError("bad-request", text="no recipient")
        if stanza.name == "presence":
            raise StanzaError("bad-request", text="presence is handled by the presence module")
        if stanza.name == "iq":
            self._handle_iq(self.account_iq, origin.jid, stanza, origin)
        else:
            stanza["to"] = origin.bare
            self._to_local_user(origin.jid.userhostJID(), stanza, origin)

    def _to_server(self, jid: JID, stanza: Element, origin: Session | None) -> None:
        if stanza.name == "iq":
            self._handle_iq(self.server_iq, jid, stanza, origin)
        elif stanza.name == "message" and stanza.getAttribute("type") not in ("error", "groupchat"):
            raise StanzaError("service-unavailable")

    def _handle_iq(self, handlers: dict[str, IQHandler], jid: JID, iq: Element,
                   origin: Session | None) -> None:
        iq_type = iq.getAttribute("type")
        if iq_type not in IQ_HANDLER_TYPES:
            if iq_type not in ("result", "error"):
                raise StanzaError("bad-request", text="unknown IQ type")
            return
        payload = next(iter(iq.elements()), None)
        if payload is None or not iq.getAttribute("id"):
            raise StanzaError("bad-request", text="an IQ needs an id and one payload")
        handler = handlers.get(payload.uri)
        if handler is None:
            raise StanzaError("service-unavailable")
        result = handler(jid, iq, origin)
        reply = Element((iq.uri, "iq"))
        reply.defaultUri = iq.uri
        reply["type"] = "result"
        reply["id"] = iq["id"]
        reply["from"] = iq.getAttribute("to") or (origin.bare if origin else "")
        reply["to"] = iq["from"]
        if result is not None:
            reply.addChild(result)
        self._route(reply, None)

    def _to_local_user(self, jid: JID, stanza: Element, origin: Session | None) -> None:
        bare = jid.userhost()
        resources = self.sessions.get(bare, {})
        kind = stanza.name
        stanza_type = stanza.getAttribute("type")
        if jid.resource is not None:
            target = resources.get(jid.resource)
            if target is not None:
                if kind == "presence" and self.presence_handler is not None:
                    if self.presence_handler.inbound_to_resource(target, stanza):
                        return
                target.deliver(stanza)
                return
            if kind == "iq":
                if stanza_type in ("get", "set"):
                    raise StanzaError("service-unavailable")
                return
            if kind == "message" and stanza_type in ("groupchat", "error", "headline"):
                return
            if kind == "presence" and stanza_type not in ("subscribe", "subscribed",
                                                          "unsubscribe", "unsubscribed"):
                return
        if kind == "presence":
            if self.presence_handler is not None:
                self.presence_handler.inbound_to_bare(jid, stanza, resources)
            return
        if kind == "iq":
            if origin is not None and origin.bare == bare:
                self._handle_iq(self.account_iq, jid, stanza, origin)
            elif stanza_type in ("get", "set"):
                raise StanzaError("service-unavailable")
            return
        self._message_to_bare(jid, stanza, resources)

    def _message_to_bare(self, jid: JID, stanza: Element, resources: dict[str, Session]) -> None:
        stanza_type = stanza.getAttribute("type", "normal")
        if stanza_type == "error":
            return
        if stanza_type == "groupchat":
            raise StanzaError("service-unavailable")
        available = [s for s in resources.values() if s.available and s.priority >= 0]
        if not available:
            if stanza_type == "headline":
                return
            raise StanzaError("service-unavailable", text="the recipient is not available")
        if stanza_type != "headline":
            top = max(s.priority for s in available)
            available = [s for s in available if s.priority == top]
        for session in available:
            session.deliver(stanza)


class PresenceHandler(Protocol):
    def inbound_to_bare(self, jid: JID, presence: Element,
                        resources: dict[str, Session]) -> None: ...
    def inbound_to_resource(self, session: Session, presence: Element) -> bool: ...
