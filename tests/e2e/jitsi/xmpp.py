"""A minimal asyncio XMPP client over WebSocket (RFC 7395), connecting as lib-jitsi-meet does.

PROTOCOL.md §1: ``new WebSocket(serviceUrl, "xmpp")`` (the server must echo the subprotocol),
one complete element per text frame, ``<open xmlns="urn:ietf:params:xml:ns:xmpp-framing"
to version="1.0"/>``, SASL ANONYMOUS (a JWT rides in the URL's ``?token=``, never in SASL), a
stream restart, and a resource bind with no requested resource. Stream management (XEP-0198)
is not used.

Once bound, a reader task dispatches stanzas: IQ results and errors complete the request they
answer (matched by ``id``), IQ requests go to a handler registered for their payload's
namespace and name (``urn:xmpp:ping`` and disco#info are answered here; anything else gets
``service-unavailable``), presences and messages go to listeners.

Stanzas are twisted ``domish`` elements, so the vw Jingle and Colibri models
(:mod:`vw.focus.jingle`, :mod:`vw.bridge.colibri2`) read and write them directly. Frames are
parsed with vw's bounded framed parser (:class:`vw.xmpp.xmlparser.XMLStreamParser`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from twisted.words.xish.domish import Element
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from vw.xmpp.xmlparser import ElementReceived, StreamClosed, StreamOpened, XMLStreamParser

log = logging.getLogger(__name__)

CLIENT_NS = "jabber:client"
FRAMING_NS = "urn:ietf:params:xml:ns:xmpp-framing"
STREAMS_NS = "http://etherx.jabber.org/streams"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION_NS = "urn:ietf:params:xml:ns:xmpp-session"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
PING_NS = "urn:xmpp:ping"
DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"

#: What lib-jitsi-meet's disco#info answer lists (PROTOCOL.md §1, keepalive).
CLIENT_FEATURES = (
    "urn:xmpp:jingle:1", "urn:xmpp:jingle:apps:rtp:1", "urn:xmpp:jingle:apps:rtp:audio",
    "urn:xmpp:jingle:apps:rtp:video", "urn:xmpp:jingle:transports:ice-udp:1",
    "urn:xmpp:jingle:apps:dtls:0", "urn:xmpp:jingle:transports:dtls-sctp:1",
    "http://jitsi.org/json-encoded-sources", "http://jitsi.org/remb", "http://jitsi.org/tcc",
    "urn:ietf:rfc:4588", "urn:ietf:rfc:5761", "urn:ietf:rfc:5888", "urn:xmpp:ping",
    DISCO_INFO_NS,
)
#: Error types for the conditions this client sends (RFC 6120 §8.3.3).
_ERROR_TYPES = {"bad-request": "modify", "not-acceptable": "modify", "not-allowed": "cancel",
                "item-not-found": "cancel", "service-unavailable": "cancel",
                "feature-not-implemented": "cancel", "internal-server-error": "wait",
                "unexpected-request": "wait"}


class WebSocketClosed(ConnectionError):
    """The WebSocket is closed (by either side, or the TCP connection dropped)."""


class WebSocketRefused(ConnectionError):
    def __init__(self, status: int) -> None:
        super().__init__(f"WebSocket refused with HTTP {status}")
        self.status = status


class WebSocket:
    """One client WebSocket (RFC 6455) on asyncio streams and wsproto: whole text messages in
    and out. One coroutine receives; any may send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 connection: WSConnection) -> None:
        self._reader = reader
        self._writer = writer
        self._ws = connection
        self._messages: deque[str] = deque()
        self._partial: list[str] = []
        self._accepted: AcceptConnection | None = None
        self._refused: int | None = None
        self.closed = False
        #: The subprotocol the server chose, if any.
        self.subprotocol: str | None = None

    @classmethod
    async def connect(cls, url: str, subprotocols: Iterable[str] = (),
                      timeout: float = 10.0) -> WebSocket:
        """Open ``url`` (``ws://`` only), offering ``subprotocols``; WebSocketRefused on a
        non-101 answer."""
        parts = urlsplit(url)
        if parts.scheme != "ws" or parts.hostname is None:
            raise ValueError(f"only ws:// URLs are supported: {url!r}")
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        connection = WSConnection(ConnectionType.CLIENT)
        socket = cls(reader, writer, connection)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        try:
            async with asyncio.timeout(timeout):
                writer.write(connection.send(Request(host=parts.netloc, target=target,
                                                     subprotocols=list(subprotocols))))
                while socket._accepted is None:
                    await socket._pump()
                    if socket._refused is not None:
                        raise WebSocketRefused(socket._refused)
        except BaseException:
            writer.close()
            raise
        socket.subprotocol = socket._accepted.subprotocol
        return socket

    async def _pump(self) -> None:
        """Read once from the socket and handle the events it completes."""
        data = await self._reader.read(65536)
        if not data:
            self.closed = True
            raise WebSocketClosed("the connection was closed")
        self._ws.receive_data(data)
        for event in self._ws.events():
            if isinstance(event, AcceptConnection):
                self._accepted = event
            elif isinstance(event, RejectConnection):
                self._refused = event.status_code
            elif isinstance(event, RejectData):
                continue
            elif isinstance(event, TextMessage | BytesMessage):
                data = event.data if isinstance(event.data, str) else event.data.decode()
                self._partial.append(data)
                if event.message_finished:
                    self._messages.append("".join(self._partial))
                    self._partial.clear()
            elif isinstance(event, Ping):
                self._write(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                with contextlib.suppress(Exception):
                    self._write(self._ws.send(event.response()))
                self.closed = True

    def _write(self, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(data)

    async def receive(self) -> str:
        """The next text message; WebSocketClosed once the socket is closed."""
        while not self._messages:
            if self.closed:
                raise WebSocketClosed("the WebSocket is closed")
            await self._pump()
        return self._messages.popleft()

    def send(self, text: str) -> None:
        if self.closed:
            raise WebSocketClosed("the WebSocket is closed")
        self._write(self._ws.send(TextMessage(data=text)))

    async def close(self) -> None:
        """Send a close frame (if still open) and drop the TCP connection."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                self._write(self._ws.send(CloseConnection(code=1000)))
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 2)


class XMPPError(Exception):
    """A stanza error: one this client received (``stanza`` is the error IQ) or raises from an
    IQ handler to answer with. ``extra`` are application-specific condition elements."""

    def __init__(self, condition: str, text: str = "", stanza: Element | None = None,
                 extra: Iterable[Element] = ()) -> None:
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text
        self.stanza = stanza
        self.extra = list(extra)

    @classmethod
    def from_stanza(cls, stanza: Element) -> XMPPError:
        error = next((c for c in stanza.elements() if c.name == "error"), None)
        condition, text = "undefined-condition", ""
        if error is not None:
            for child in error.elements():
                if child.uri == STANZAS_NS and child.name == "text":
                    text = str(child)
                elif child.uri == STANZAS_NS:
                    condition = child.name
        return cls(condition, text, stanza)


class XMPPConnectionError(ConnectionError):
    """Connecting failed: SASL refused, no bind, a stream error, or the socket closed."""


def stanza(name: str, **attributes: str | None) -> Element:
    """A ``jabber:client`` stanza with the given attributes (None ones left out)."""
    element = Element((CLIENT_NS, name), defaultUri=CLIENT_NS)
    for key, value in attributes.items():
        if value is not None:
            element[key] = value
    return element


def child(element: Element, uri: str | None, name: str) -> Element | None:
    """The first child called ``name`` in ``uri`` (any namespace when None)."""
    return next((c for c in element.elements() if c.name == name
                 and (uri is None or c.uri == uri)), None)


def error_reply(request: Element, error: XMPPError) -> Element:
    reply = stanza(request.name, type="error", to=request.getAttribute("from"),
                   id=request.getAttribute("id"))
    body = reply.addElement("error")
    body["type"] = _ERROR_TYPES.get(error.condition, "cancel")
    body.addElement((STANZAS_NS, error.condition))
    if error.text:
        body.addElement((STANZAS_NS, "text"), content=error.text)
    for extra in error.extra:
        body.addChild(extra)
    return reply


IqHandler = Callable[[Element], Element | None]


class XMPPClient:
    """An XMPP client over WebSocket.

    ``url`` is the service URL (``ws://HOST:PORT/xmpp-websocket?room=ROOM``); ``token``, when
    given, is appended as ``token=`` as lib-jitsi-meet does. After :meth:`connect`, ``jid`` is
    the bound full JID.
    """

    def __init__(self, url: str, domain: str, token: str | None = None,
                 ping_interval: float | None = 10.0) -> None:
        if token is not None:
            url += ("&" if "?" in url else "?") + f"token={token}"
        self.url = url
        self.domain = domain
        self.ping_interval = ping_interval
        self.jid: str | None = None
        self.features: Element | None = None
        self._socket: WebSocket | None = None
        self._parser = XMLStreamParser(framed=True)
        self._pending: deque[StreamOpened | Element | None] = deque()
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(3)
        self._requests: dict[str, asyncio.Future[Element]] = {}
        self._iq_handlers: dict[tuple[str, str], IqHandler] = {
            (PING_NS, "ping"): lambda iq: None,
            (DISCO_INFO_NS, "query"): self._disco_info,
        }
        self._presence_listeners: list[Callable[[Element], None]] = []
        self._message_listeners: list[Callable[[Element], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        #: Set once the stream is over (closed by either side, or lost).
        self.closed = asyncio.Event()
        #: Failed keepalive pings (lib-jitsi-meet gives up after two in a row).
        self.ping_failures = 0

    # -- connecting ----------------------------------------------------------------------

    async def connect(self, timeout: float = 15.0) -> str:
        """Open the WebSocket, authenticate (SASL ANONYMOUS), bind; returns the full JID."""
        try:
            await self._negotiate(timeout)
        except BaseException:
            if self._socket is not None:
                await self._socket.close()
            self._finish()
            raise
        self._tasks.append(asyncio.create_task(self._read_loop()))
        for element in list(self._pending):  # anything that came along with the bind result
            if isinstance(element, Element):
                self._dispatch(element)
        self._pending.clear()
        if self.ping_interval:
            self._tasks.append(asyncio.create_task(self._keepalive()))
        return self.jid

    async def _negotiate(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            self._socket = await WebSocket.connect(self.url, ["xmpp"])
            if self._socket.subprotocol != "xmpp":
                await self._socket.close()
                raise XMPPConnectionError("the server did not echo the xmpp subprotocol")
            features = await self._open_stream()
            mechanisms = child(features, SASL_NS, "mechanisms")
            names = [str(m).strip() for m in mechanisms.elements()] if mechanisms else []
            if "ANONYMOUS" not in names:
                raise XMPPConnectionError(f"ANONYMOUS is not offered: {names}")
            auth = Element((SASL_NS, "auth"), defaultUri=SASL_NS)
            auth["mechanism"] = "ANONYMOUS"
            self.send(auth)
            outcome = await self._next_element()
            if outcome.name != "success":
                text = child(outcome, None, "text")
                raise XMPPConnectionError(f"SASL {outcome.name}: "
                                          f"{[c.name for c in outcome.elements()]} "
                                          f"{'' if text is None else str(text)}")
            features = await self._open_stream()
            if child(features, BIND_NS, "bind") is None:
                raise XMPPConnectionError("no resource binding offered")
            self.features = features
            bind = stanza("iq", type="set", id=self._next_id())
            bind.addElement((BIND_NS, "bind"))
            self.send(bind)
            reply = await self._next_element()
            jid = child(child(reply, BIND_NS, "bind") or reply, None, "jid")
            if reply.getAttribute("type") != "result" or jid is None:
                raise XMPPConnectionError(f"bind failed: {reply.toXml()}")
            self.jid = str(jid).strip()
            session = child(features, SESSION_NS, "session")
            if session is not None and child(session, None, "optional") is None:
                request = stanza("iq", type="set", id=self._next_id())
                request.addElement((SESSION_NS, "session"))
                self.send(request)
                await self._next_element()

    async def _open_stream(self) -> Element:
        opening = Element((FRAMING_NS, "open"), defaultUri=FRAMING_NS)
        opening["to"] = self.domain
        opening["version"] = "1.0"
        self.send(opening)
        header = await self._next_event()
        if not isinstance(header, StreamOpened) or header.name != "open":
            raise XMPPConnectionError(f"expected <open/>, got {header!r}")
        features = await self._next_element()
        if (features.uri, features.name) != (STREAMS_NS, "features"):
            raise XMPPConnectionError(f"expected stream features, got <{features.name}/>")
        return features

    async def _next_event(self) -> StreamOpened | Element:
        while not self._pending:
            text = await self._socket.receive()
            for event in self._parser.feed(text.encode()):
                if isinstance(event, StreamOpened):
                    self._pending.append(event)
                elif isinstance(event, ElementReceived):
                    self._pending.append(event.element)
                elif isinstance(event, StreamClosed):
                    self._pending.append(None)
        event = self._pending.popleft()
        if event is None:
            raise XMPPConnectionError("the server closed the stream")
        if isinstance(event, Element) and (event.uri, event.name) == (STREAMS_NS, "error"):
            raise XMPPConnectionError(f"stream error: {[c.name for c in event.elements()]}")
        return event

    async def _next_element(self) -> Element:
        event = await self._next_event()
        if not isinstance(event, Element):
            raise XMPPConnectionError(f"unexpected {event!r}")
        return event

    # -- the bound stream ----------------------------------------------------------------

    def _next_id(self) -> str:
        return f"{self._id_prefix}:{next(self._ids)}"

    def send(self, element: Element) -> None:
        if self._socket is None or self._socket.closed:
            raise XMPPConnectionError("not connected")
        self._socket.send(element.toXml())

    async def request(self, iq: Element, timeout: float = 10.0) -> Element:
        """Send an IQ get/set and wait for its result; XMPPError on an error answer."""
        if not iq.getAttribute("id"):
            iq["id"] = self._next_id()
        waiter: asyncio.Future[Element] = asyncio.get_running_loop().create_future()
        self._requests[iq["id"]] = waiter
        try:
            self.send(iq)
            async with asyncio.timeout(timeout):
                reply = await waiter
        finally:
            self._requests.pop(iq["id"], None)
        if reply.getAttribute("type") == "error":
            raise XMPPError.from_stanza(reply)
        return reply

    def on_iq(self, uri: str, name: str, handler: IqHandler) -> None:
        """Answer IQ get/set whose payload is ``<name xmlns=uri>``: the handler returns the
        result's payload (or None for an empty result), or raises XMPPError."""
        self._iq_handlers[(uri, name)] = handler

    def on_presence(self, listener: Callable[[Element], None]) -> None:
        self._presence_listeners.append(listener)

    def on_message(self, listener: Callable[[Element], None]) -> None:
        self._message_listeners.append(listener)

    async def _read_loop(self) -> None:
        try:
            while True:
                event = await self._next_event()
                if isinstance(event, Element):
                    self._dispatch(event)
        except (XMPPConnectionError, WebSocketClosed, ConnectionError) as reason:
            log.debug("%s: stream over: %s", self.jid, reason)
        finally:
            self._finish()

    def _finish(self) -> None:
        self.closed.set()
        for waiter in self._requests.values():
            if not waiter.done():
                waiter.set_exception(XMPPConnectionError("the stream is closed"))

    def _dispatch(self, element: Element) -> None:
        try:
            if element.name == "iq":
                self._iq(element)
            elif element.name == "presence":
                for listener in list(self._presence_listeners):
                    listener(element)
            elif element.name == "message":
                for listener in list(self._message_listeners):
                    listener(element)
        except Exception:  # a listener bug must not end the stream
            log.exception("%s: handling %s failed", self.jid, element.toXml()[:300])

    def _iq(self, iq: Element) -> None:
        kind = iq.getAttribute("type")
        if kind in ("result", "error"):
            waiter = self._requests.get(iq.getAttribute("id", ""))
            if waiter is not None and not waiter.done():
                waiter.set_result(iq)
            return
        if kind not in ("get", "set"):
            return
        payload = iq.firstChildElement()
        handler = None if payload is None else self._iq_handlers.get((payload.uri, payload.name))
        try:
            if handler is None:
                raise XMPPError("service-unavailable")
            answer = handler(iq)
        except XMPPError as error:
            self.send(error_reply(iq, error))
            return
        reply = stanza("iq", type="result", to=iq.getAttribute("from"), id=iq.getAttribute("id"))
        if answer is not None:
            reply.addChild(answer)
        self.send(reply)

    def _disco_info(self, iq: Element) -> Element:
        query = Element((DISCO_INFO_NS, "query"), defaultUri=DISCO_INFO_NS)
        for feature in CLIENT_FEATURES:
            query.addElement("feature")["var"] = feature
        return query

    async def _keepalive(self) -> None:
        """lib-jitsi-meet's XMPP ping to the domain every 10 s (5 s timeout)."""
        while not self.closed.is_set():
            await asyncio.sleep(self.ping_interval)
            ping = stanza("iq", type="get", to=self.domain)
            ping.addElement((PING_NS, "ping"))
            try:
                await self.request(ping, timeout=5)
                self.ping_failures = 0
            except (XMPPError, TimeoutError):
                self.ping_failures += 1
                log.warning("%s: ping %d failed", self.jid, self.ping_failures)
            except XMPPConnectionError:
                return

    async def close(self) -> None:
        """End the stream (``<close/>``) and the WebSocket."""
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        if self._socket is not None:
            with contextlib.suppress(Exception):
                if not self._socket.closed:
                    closing = Element((FRAMING_NS, "close"), defaultUri=FRAMING_NS)
                    self._socket.send(closing.toXml())
            await self._socket.close()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._finish()


async def run_quietly(awaitable: Awaitable[object], what: str) -> None:
    """Await ``awaitable``, logging (not raising) any failure: for fire-and-forget requests."""
    try:
        await awaitable
    except Exception as error:  # logged, as lib-jitsi-meet logs them
        log.info("%s failed: %s", what, error)
