"""One client stream's negotiation and stanza handling (RFC 6120), shared by TCP, WebSocket, BOSH.

The framing layer (a ``StreamTransport``) turns bytes into parser events and
elements into bytes; this class holds the protocol: features, STARTTLS, SASL,
binding, XEP-0198, and the checks every client stanza passes before routing.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import uuid
from typing import TYPE_CHECKING, Protocol

from twisted.logger import Logger
from twisted.words.xish.domish import Element

from vw.xmpp import sasl
from vw.xmpp.errors import StanzaError, StreamError, error_reply
from vw.xmpp.session import SM_NS, Session
from vw.xmpp.stanzas import CLIENT_NS, STREAMS_NS, parse_jid
from vw.xmpp.token import TokenIdentity, TokenRejected
from vw.xmpp.xmlparser import FRAMING_NS, ElementReceived, Event, StreamOpened

if TYPE_CHECKING:
    from vw.xmpp.server import XMPPServer

log = Logger()

TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION_NS = "urn:ietf:params:xml:ns:xmpp-session"
STANZA_NAMES = ("message", "presence", "iq")
#: A connection gets this many failed SASL attempts before it is closed.
MAX_AUTH_FAILURES = 3


class StreamTransport(Protocol):
    """What a framing layer offers the stream."""

    #: The bytes are protected by TLS (or by the HTTP front, for WebSocket and BOSH).
    secure: bool
    #: STARTTLS can be offered (TCP without TLS yet).
    can_starttls: bool
    #: The ``?token=`` of the WebSocket or BOSH URL, if any.
    token: str | None

    def send_header(self, stream_id: str, host: str) -> None: ...
    def send_element(self, element: Element) -> None: ...
    def start_tls(self) -> None: ...
    def reset(self) -> None: ...
    def close(self, error: StreamError | None = None) -> None: ...


class ClientStream:
    """The state of one client connection, from header to bound session."""

    def __init__(self, server: XMPPServer, transport: StreamTransport) -> None:
        self.server = server
        self.transport = transport
        self.host = ""
        self.stream_id = ""
        self.user: str | None = None
        self.anonymous = False
        self.token: TokenIdentity | None = None
        self.session: Session | None = None
        self._mechanism: sasl.ServerMechanism | None = None
        self._auth_failures = 0
        self._headers = 0
        self._closed = False

    # -- events from the framing layer ---------------------------------------------

    def stream_opened(self, event: StreamOpened) -> None:
        try:
            self._check_header(event)
        except StreamError as error:
            self.fail(error)
            return
        self._headers += 1
        self.stream_id = secrets.token_hex(8)
        self.transport.send_header(self.stream_id, self.host)
        self.transport.send_element(self._features())

    def element_received(self, element: Element) -> None:
        if self._closed:
            return
        try:
            if self.session is not None:
                self._bound_element(element)
            else:
                self._negotiation_element(element)
        except StreamError as error:
            self.fail(error)

    def stream_closed(self) -> None:
        self.close()

    def handle_events(self, events: list[Event]) -> None:
        """Dispatch parser events, stopping once the stream is closed."""
        for event in events:
            if self._closed:
                return
            if isinstance(event, ElementReceived):
                self.element_received(event.element)
            elif isinstance(event, StreamOpened):
                self.stream_opened(event)
            else:
                self.stream_closed()

    def connection_lost(self) -> None:
        self._closed = True
        session = self.session
        self.session = None
        if session is not None and session.sink is self:
            self.server.detach(session)

    # -- output ----------------------------------------------------------------------

    def send_stanza(self, element: Element) -> None:
        """The session's sink: write to this connection."""
        if not self._closed:
            self.transport.send_element(element)

    def fail(self, error: StreamError) -> None:
        """Send a stream error and close (RFC 6120 §4.9)."""
        log.info("stream error {condition} to {peer}: {text}", condition=error.condition,
                 peer=self.session.full if self.session else self.host, text=error.text)
        self.server.metrics.stream_errors.labels(error.condition).inc()
        if not self.stream_id:
            # RFC 6120 §4.9.1.1: an error before the client's header still opens our stream.
            self.stream_id = secrets.token_hex(8)
            self.transport.send_header(self.stream_id, self.host or self.server.domain)
        self.close(error)

    def close(self, error: StreamError | None = None) -> None:
        if self._closed:
            return
        session, self.session = self.session, None
        if session is not None and session.sink is self:
            session.sink = None
            self.server.end_session(session)
        self._closed = True
        self.transport.close(error)

    # -- negotiation -----------------------------------------------------------------

    def _check_header(self, event: StreamOpened) -> None:
        framed = event.uri == FRAMING_NS
        if not framed and (event.uri, event.name) != (STREAMS_NS, "stream"):
            raise StreamError("invalid-namespace", "expected a stream header")
        if framed and event.name != "open":
            raise StreamError("invalid-namespace", "expected <open/>")
        if not framed and event.default_namespace != CLIENT_NS:
            raise StreamError("invalid-namespace", "the content namespace must be jabber:client")
        if event.attributes.get("version") != "1.0":
            raise StreamError("unsupported-version", "version 1.0 is required")
        to = event.attributes.get("to", "").lower()
        if to not in self.server.hosts:
            raise StreamError("host-unknown", f"{to or 'no host'} is not served here")
        if self.host and to != self.host:
            raise StreamError("host-unknown", "the host changed on a restarted stream")
        self.host = to

    def _features(self) -> Element:
        features = Element((STREAMS_NS, "features"))
        if self.user is None:
            if self.transport.can_starttls:
                starttls = features.addElement((TLS_NS, "starttls"))
                if self.server.config.require_starttls:
                    starttls.addElement("required")
            if self.transport.secure or not self.server.config.require_starttls:
                mechanisms = features.addElement((SASL_NS, "mechanisms"))
                for name in self._mechanism_names():
                    mechanisms.addElement("mechanism", content=name)
        else:
            features.addElement((BIND_NS, "bind"))
            features.addElement((SESSION_NS, "session")).addElement("optional")
            features.addElement((SM_NS, "sm"))
        return features

    def _mechanism_names(self) -> list[str]:
        names = ["SCRAM-SHA-256", "SCRAM-SHA-1"]
        if self.transport.secure:
            names.append("PLAIN")
        if self.host in self.server.anonymous_hosts:
            names.append("ANONYMOUS")
        return names

    def _negotiation_element(self, element: Element) -> None:
        key = (element.uri, element.name)
        if key == (TLS_NS, "starttls"):
            self._starttls()
        elif element.uri == SASL_NS and self.user is None:
            self._sasl(element)
        elif self.user is None:
            raise StreamError("not-authorized", "authenticate first")
        elif key == (SM_NS, "resume"):
            self._resume(element)
        elif key == (CLIENT_NS, "iq") and self._is_bind(element):
            self._bind(element)
        elif element.uri == SM_NS:
            failed = Element((SM_NS, "failed"))
            failed.addElement(("urn:ietf:params:xml:ns:xmpp-stanzas", "unexpected-request"))
            self.transport.send_element(failed)
        elif element.uri == CLIENT_NS and element.name in STANZA_NAMES:
            raise StreamError("not-authorized", "bind a resource first")
        else:
            raise StreamError("unsupported-stanza-type", element.name)

    def _starttls(self) -> None:
        if not self.transport.can_starttls or self.user is not None:
            failure = Element((TLS_NS, "failure"))
            self.transport.send_element(failure)
            self.close()
            return
        self.transport.send_element(Element((TLS_NS, "proceed")))
        self.transport.start_tls()

    # -- SASL ----------------------------------------------------------------------------

    def _sasl(self, element: Element) -> None:
        if not self.transport.secure and self.server.config.require_starttls:
            self._sasl_failure("encryption-required", "use STARTTLS first")
            return
        if element.name == "auth":
            name = element.getAttribute("mechanism", "")
            if name not in self._mechanism_names():
                self._sasl_failure("invalid-mechanism", "")
                return
            if name == "ANONYMOUS":
                self._anonymous()
                return
            store = self.server.credentials_for(self.host)
            self._mechanism = sasl.create_mechanism(name, store, domain=self.host)
            data = self._decode(element)
            if data is not False:
                self._step(self._mechanism.start(data))
        elif element.name == "response" and self._mechanism is not None:
            data = self._decode(element)
            if data is not False:
                self._step(self._mechanism.respond(data or b""))
        elif element.name == "abort":
            self._sasl_failure("aborted", "")
        else:
            self._sasl_failure("malformed-request", "unexpected SASL element")

    def _decode(self, element: Element) -> bytes | None | bool:
        """The SASL payload: None when absent, b"" for "=", False (answered) when invalid."""
        text = str(element).strip()
        if not text:
            return None
        if text == "=":
            return b""
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self._sasl_failure("incorrect-encoding", "")
            return False

    def _step(self, step: sasl.Step) -> None:
        if isinstance(step, sasl.Challenge):
            challenge = Element((SASL_NS, "challenge"))
            challenge.addContent(base64.b64encode(step.data).decode() if step.data else "=")
            self.transport.send_element(challenge)
        elif isinstance(step, sasl.Success):
            self._authenticated(step.username, step.data)
        else:
            self._sasl_failure(step.condition, step.text)

    def _anonymous(self) -> None:
        verifier = self.server.token_verifier
        token = self.transport.token
        if verifier.enabled and token:
            try:
                self.token = verifier.verify(token, self.server.domain)
            except TokenRejected as e:
                self.server.metrics.auth_failures.labels("token").inc()
                self._sasl_failure("not-allowed", str(e))
                return
        elif verifier.enabled and not self.server.config.token.allow_anonymous:
            self._sasl_failure("not-allowed", "a token is required")
            return
        self.anonymous = True
        self._authenticated(uuid.uuid4().hex, b"")

    def _authenticated(self, username: str | None, data: bytes) -> None:
        self._mechanism = None
        self.user = username or uuid.uuid4().hex
        success = Element((SASL_NS, "success"))
        if data:
            success.addContent(base64.b64encode(data).decode())
        self.transport.send_element(success)
        self.server.metrics.logins.inc()
        self.transport.reset()

    def _sasl_failure(self, condition: str, text: str) -> None:
        self._mechanism = None
        self._auth_failures += 1
        self.server.metrics.auth_failures.labels("sasl").inc()
        failure = Element((SASL_NS, "failure"))
        failure.addElement(condition)
        if text:
            failure.addElement("text", content=text)
        self.transport.send_element(failure)
        if self._auth_failures >= MAX_AUTH_FAILURES:
            self.fail(StreamError("policy-violation", "too many failed authentication attempts"))

    # -- binding and resumption ----------------------------------------------------------------

    @staticmethod
    def _is_bind(iq: Element) -> bool:
        return iq.getAttribute("type") == "set" and any(
            child.uri == BIND_NS and child.name == "bind" for child in iq.elements())

    def _bind(self, iq: Element) -> None:
        bind = next(c for c in iq.elements() if c.uri == BIND_NS)
        requested = "".join(str(r) for r in bind.elements(BIND_NS, "resource")).strip()
        bare = f"{self.user}@{self.host}"
        resource = requested or secrets.token_hex(6)
        try:
            jid = parse_jid(f"{bare}/{resource}")
        except StanzaError as error:
            self.transport.send_element(error_reply(iq, error, sender=None))
            return
        if jid.resource in {s.jid.resource for s in self.server.router.resources(bare)}:
            jid = parse_jid(f"{bare}/{resource}-{secrets.token_hex(3)}")
        session = Session(jid=jid, sink=self, anonymous=self.anonymous, token=self.token)
        self.session = session
        self.server.bind(session)
        result = Element((CLIENT_NS, "iq"))
        result["type"] = "result"
        result["id"] = iq.getAttribute("id", "")
        result.addElement((BIND_NS, "bind")).addElement("jid", content=jid.full())
        self.transport.send_element(result)

    def _resume(self, element: Element) -> None:
        previd = element.getAttribute("previd", "")
        try:
            handled = int(element.getAttribute("h", ""))
        except ValueError:
            handled = -1
        session = self.server.resumable.get(previd)
        allowed = session is not None and (
            session.bare == f"{self.user}@{self.host}" or (self.anonymous and session.anonymous))
        if session is None or not allowed or handled < 0:
            failed = Element((SM_NS, "failed"))
            failed.addElement(("urn:ietf:params:xml:ns:xmpp-stanzas", "item-not-found"))
            self.transport.send_element(failed)
            return
        old = session.sink
        if isinstance(old, ClientStream) and old is not self:
            old.session = None
            old.close(StreamError("conflict", "the session was resumed elsewhere"))
        resumed = Element((SM_NS, "resumed"))
        resumed["previd"] = previd
        resumed["h"] = str(session.handled_inbound)
        self.transport.send_element(resumed)
        if not session.resume(self, handled):
            self.session = None
            raise StreamError("undefined-condition", "handled-count-too-high")
        self.session = session
        self.server.resumed(session)

    # -- stanzas of a bound session ----------------------------------------------------------

    def _bound_element(self, element: Element) -> None:
        session = self.session
        assert session is not None
        if element.uri == SM_NS:
            self._sm_element(session, element)
            return
        if element.uri != CLIENT_NS or element.name not in STANZA_NAMES:
            raise StreamError("unsupported-stanza-type", element.name)
        session.count_inbound()
        sender = element.getAttribute("from")
        if sender is not None and sender not in (session.full, session.bare):
            raise StreamError("invalid-from", "from does not match the authenticated JID")
        element["from"] = session.full
        if element.name == "iq" and any(c.uri == SESSION_NS for c in element.elements()):
            result = Element((CLIENT_NS, "iq"))
            result["type"] = "result"
            result["id"] = element.getAttribute("id", "")
            self.transport.send_element(result)
            return
        self.server.handle_client_stanza(session, element)

    def _sm_element(self, session: Session, element: Element) -> None:
        if element.name == "r":
            answer = Element((SM_NS, "a"))
            answer["h"] = str(session.handled_inbound)
            self.transport.send_element(answer)
        elif element.name == "a":
            try:
                handled = int(element.getAttribute("h", ""))
            except ValueError:
                raise StreamError("undefined-condition", "bad h") from None
            if not session.ack(handled):
                raise StreamError("undefined-condition", "handled-count-too-high")
        elif element.name == "enable" and not session.sm_enabled:
            enabled = Element((SM_NS, "enabled"))
            enabled["id"] = session.enable_sm()
            if element.getAttribute("resume") in ("true", "1"):
                enabled["resume"] = "true"
                enabled["max"] = str(self.server.config.resume_timeout)
                self.server.resumable[session.sm_id] = session
            self.transport.send_element(enabled)
        else:
            failed = Element((SM_NS, "failed"))
            failed.addElement(("urn:ietf:params:xml:ns:xmpp-stanzas", "unexpected-request"))
            self.transport.send_element(failed)

