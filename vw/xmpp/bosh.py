"""XEP-0124/XEP-0206 BOSH at /http-bind: an XMPP stream carried by long-polled HTTP requests."""

from __future__ import annotations

import secrets
from collections import deque

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.words.xish.domish import Element

from vw.xmpp.errors import StreamError
from vw.xmpp.serializer import serialize
from vw.xmpp.server import XMPPServer
from vw.xmpp.stanzas import STREAMS_NS
from vw.xmpp.stream import ClientStream
from vw.xmpp.websocket import query_token
from vw.xmpp.xmlparser import ElementReceived, StreamClosed, StreamOpened, XMLStreamParser

log = Logger()

HTTPBIND_NS = "http://jabber.org/protocol/httpbind"
XBOSH_NS = "urn:xmpp:xbosh"
MAX_WAIT = 60
MAX_HOLD = 1
#: How far ahead of the last seen rid a request may be (XEP-0124 §14.3 window).
RID_WINDOW = 2
CORS_HEADERS = {
    b"access-control-allow-origin": b"*",
    b"access-control-allow-methods": b"GET, POST, OPTIONS",
    b"access-control-allow-headers": b"content-type",
    b"access-control-max-age": b"86400",
}


class BoshError(Exception):
    """Ends a BOSH session with a ``terminate`` body carrying ``condition``."""

    def __init__(self, condition: str) -> None:
        super().__init__(condition)
        self.condition = condition


class BoshSession:
    """A BOSH session: a ClientStream whose output waits for the next held request."""

    can_starttls = False

    def __init__(self, resource: BoshResource, sid: str, token: str | None, wait: int,
                 hold: int) -> None:
        self.resource = resource
        self.server = resource.xmpp
        self.sid = sid
        self.token = token
        self.secure = resource.secure
        self.wait = wait
        self.hold = hold
        self.rid = 0
        self.pending: list[str] = []
        self.held: deque[tuple[Request, IDelayedCall]] = deque()
        self.terminated = False
        self.stream = ClientStream(self.server, self)
        self._inactivity: IDelayedCall | None = None
        self._flush_call: IDelayedCall | None = None

    # -- requests ------------------------------------------------------------------------

    def handle(self, request: Request, rid: int, body: StreamOpened,
               children: list[Element]) -> None:
        if rid <= self.rid - RID_WINDOW or rid > self.rid + RID_WINDOW:
            raise BoshError("item-not-found")
        if rid <= self.rid:
            self._answer(request, [])  # a resent request: nothing new to say
            return
        self.rid = rid
        if body.attributes.get("restart") == "true":
            self.stream.stream_opened(StreamOpened(STREAMS_NS, "stream", {
                "to": body.attributes.get("to", self.stream.host), "version": "1.0"},
                "jabber:client"))
        for child in children:
            self.stream.element_received(child)
        if body.attributes.get("type") == "terminate":
            self.stream.stream_closed()
            self._answer(request, self._take(), terminate=True)
            return
        self._hold(request)

    def _hold(self, request: Request) -> None:
        if self._inactivity is not None and self._inactivity.active():
            self._inactivity.cancel()
        timer = self.server.clock.callLater(self.wait, self._release, request)
        self.held.append((request, timer))
        request.notifyFinish().addBoth(lambda _: self._forget(request))
        while len(self.held) > self.hold:
            self._release_oldest()
        if self.pending:
            self._release_oldest()

    def _forget(self, request: Request) -> None:
        for entry in list(self.held):
            if entry[0] is request:
                self.held.remove(entry)
                if entry[1].active():
                    entry[1].cancel()
        self._watch_inactivity()

    def _release(self, request: Request) -> None:
        for entry in list(self.held):
            if entry[0] is request:
                self.held.remove(entry)
                self._answer(request, self._take())
        self._watch_inactivity()

    def _release_oldest(self) -> None:
        request, timer = self.held.popleft()
        if timer.active():
            timer.cancel()
        self._answer(request, self._take())

    def _take(self) -> list[str]:
        pending, self.pending = self.pending, []
        return pending

    def _answer(self, request: Request, stanzas: list[str], terminate: bool = False,
                condition: str = "") -> None:
        attributes = f" type='terminate' condition='{condition}'" if condition else (
            " type='terminate'" if terminate else "")
        body = (f"<body xmlns='{HTTPBIND_NS}' xmlns:stream='{STREAMS_NS}'{attributes}>"
                + "".join(stanzas) + "</body>")
        self.resource.respond(request, body.encode())

    def _watch_inactivity(self) -> None:
        if self.held or self.terminated:
            return
        if self._inactivity is None or not self._inactivity.active():
            self._inactivity = self.server.clock.callLater(
                self.server.config.bosh_inactivity, self._inactive)

    def _inactive(self) -> None:
        if not self.held:
            self.stream.connection_lost()
            self._end()

    def _end(self) -> None:
        self.terminated = True
        self.resource.sessions.pop(self.sid, None)
        if self._inactivity is not None and self._inactivity.active():
            self._inactivity.cancel()

    # -- StreamTransport -----------------------------------------------------------------

    def send_header(self, stream_id: str, host: str) -> None:
        """The session creation response stands for the stream header."""

    def send_element(self, element: Element) -> None:
        self.pending.append(serialize(element, stream_prefix=True))
        if self._flush_call is None:
            self._flush_call = self.server.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        if self.held and self.pending:
            self._release_oldest()

    def start_tls(self) -> None:
        raise StreamError("unsupported-feature", "no STARTTLS over BOSH")

    def reset(self) -> None:
        """The client restarts the stream with ``xmpp:restart``."""

    def close(self, error: StreamError | None = None) -> None:
        if self.terminated:
            return
        if error is not None:
            self.pending.append(serialize(error.to_element(), stream_prefix=True))
        while self.held:
            request, timer = self.held.popleft()
            if timer.active():
                timer.cancel()
            self._answer(request, self._take(),
                         condition="remote-stream-error" if error else "", terminate=True)
        self.stream.connection_lost()
        self._end()


class BoshResource(Resource):
    """The /http-bind endpoint: creates sessions and routes requests to them by sid."""

    isLeaf = True

    def __init__(self, xmpp: XMPPServer, secure: bool) -> None:
        super().__init__()
        self.xmpp = xmpp
        self.secure = secure
        self.sessions: dict[str, BoshSession] = {}

    def respond(self, request: Request, body: bytes, status: int = 200) -> None:
        if request.finished or request._disconnected:
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        for name, value in CORS_HEADERS.items():
            request.setHeader(name, value)
        request.write(body)
        request.finish()

    def render_OPTIONS(self, request: Request) -> bytes:
        for name, value in CORS_HEADERS.items():
            request.setHeader(name, value)
        return b""

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return b"BOSH (XEP-0206): POST here\n"

    def render_POST(self, request: Request) -> int:
        config = self.xmpp.config
        data = request.content.read(config.max_stanza_bytes + 1)
        try:
            if len(data) > config.max_stanza_bytes:
                raise BoshError("policy-violation")
            body, children = _parse_body(data, config.max_stanza_bytes, config.max_depth)
            rid = _int(body.attributes.get("rid"))
            sid = body.attributes.get("sid")
            if sid is None:
                self._create(request, body, rid, children)
            else:
                session = self.sessions.get(sid)
                if session is None:
                    raise BoshError("item-not-found")
                session.handle(request, rid, body, children)
        except BoshError as error:
            log.info("BOSH request refused: {condition}", condition=error.condition)
            terminate = (f"<body xmlns='{HTTPBIND_NS}' type='terminate' "
                         f"condition='{error.condition}'/>")
            self.respond(request, terminate.encode())
        return server.NOT_DONE_YET

    def _create(self, request: Request, body: StreamOpened, rid: int,
                children: list[Element]) -> None:
        wait = min(MAX_WAIT, max(1, _int(body.attributes.get("wait", "60"))))
        hold = min(MAX_HOLD, max(0, _int(body.attributes.get("hold", "1"))))
        sid = secrets.token_urlsafe(18)
        session = BoshSession(self, sid, query_token(request), wait, hold)
        session.rid = rid
        self.sessions[sid] = session
        session.stream.stream_opened(StreamOpened(STREAMS_NS, "stream", {
            "to": body.attributes.get("to", ""), "version": "1.0"}, "jabber:client"))
        if session.terminated:
            self.respond(request, (f"<body xmlns='{HTTPBIND_NS}' type='terminate' "
                                   "condition='host-unknown'/>").encode())
            return
        inactivity = self.xmpp.config.bosh_inactivity
        head = (f"<body xmlns='{HTTPBIND_NS}' xmlns:xmpp='{XBOSH_NS}' "
                f"xmlns:stream='{STREAMS_NS}' sid='{sid}' wait='{wait}' hold='{hold}' "
                f"requests='{hold + 1}' inactivity='{inactivity}' polling='2' ver='1.11' "
                f"from='{session.stream.host}' authid='{session.stream.stream_id}' "
                "xmpp:version='1.0' xmpp:restartlogic='true'>")
        stanzas = session._take()
        self.respond(request, (head + "".join(stanzas) + "</body>").encode())
        session._watch_inactivity()


def _parse_body(data: bytes, max_bytes: int, max_depth: int) -> tuple[StreamOpened, list[Element]]:
    parser = XMLStreamParser(max_bytes, max_depth)
    try:
        events = parser.feed(data)
    except StreamError:
        raise BoshError("bad-request") from None
    if not events or not isinstance(events[0], StreamOpened):
        raise BoshError("bad-request")
    body = events[0]
    if (body.uri, body.name) != (HTTPBIND_NS, "body") or not isinstance(events[-1], StreamClosed):
        raise BoshError("bad-request")
    children = [e.element for e in events[1:] if isinstance(e, ElementReceived)]
    return body, children


def _int(text: str | None) -> int:
    try:
        return int(text or "")
    except ValueError:
        raise BoshError("bad-request") from None
