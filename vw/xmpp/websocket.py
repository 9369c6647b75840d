"""RFC 7395 XMPP over WebSocket at /xmpp-websocket (the ``xmpp`` subprotocol)."""

from __future__ import annotations

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web._websocket_impl import _WebSocketWireProtocol, serverBootstrap
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.websocket import WebSocketTransport
from twisted.words.xish.domish import Element
from wsproto.connection import ConnectionType
from wsproto.events import AcceptConnection
from wsproto.events import Request as WebSocketRequest
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from vw.xmpp.errors import StreamError
from vw.xmpp.serializer import serialize
from vw.xmpp.server import XMPPServer
from vw.xmpp.stream import ClientStream
from vw.xmpp.xmlparser import FRAMING_NS, XMLStreamParser

log = Logger()

SUBPROTOCOL = "xmpp"


def query_token(request: Request) -> str | None:
    """The ``?token=`` of an HTTP request, if present and text."""
    values = request.args.get(b"token") or []
    try:
        return values[0].decode("ascii") if values else None
    except UnicodeDecodeError:
        return None


class XMPPWebSocket:
    """One WebSocket connection carrying one framed XMPP stream."""

    can_starttls = False

    def __init__(self, server: XMPPServer, token: str | None, secure: bool) -> None:
        self.server = server
        self.token = token
        self.secure = secure
        self._parser = XMLStreamParser(server.config.max_stanza_bytes, server.config.max_depth,
                                       framed=True)
        self._transport: WebSocketTransport | None = None
        self._closing = False
        self.stream = ClientStream(server, self)

    # -- WebSocketProtocol -------------------------------------------------------------

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self._transport = transport

    def negotiationFinished(self) -> None:
        pass

    def textMessageReceived(self, message: str) -> None:
        self._feed(message.encode())

    def bytesMessageReceived(self, data: bytes) -> None:
        self._feed(bytes(data))

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self._closing = True
        self.stream.connection_lost()

    def _feed(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            events = self._parser.feed(data)
        except StreamError as error:
            self.stream.fail(error)
            return
        self.stream.handle_events(events)

    # -- StreamTransport -----------------------------------------------------------------

    def send_header(self, stream_id: str, host: str) -> None:
        self._send(f"<open xmlns='{FRAMING_NS}' id='{stream_id}' from='{host}' version='1.0' "
                   "xml:lang='en'/>")

    def send_element(self, element: Element) -> None:
        self._send(serialize(element))

    def _send(self, text: str) -> None:
        if self._transport is not None and not self._closing:
            self._transport.sendTextMessage(text)

    def start_tls(self) -> None:
        raise StreamError("unsupported-feature", "no STARTTLS over WebSocket")

    def reset(self) -> None:
        """Framed streams restart with a fresh ``<open/>``; the parser keeps going."""

    def close(self, error: StreamError | None = None) -> None:
        if self._closing:
            return
        if error is not None:
            self.send_element(error.to_element())
        self._send(f"<close xmlns='{FRAMING_NS}'/>")
        self._closing = True
        if self._transport is not None:
            self._transport.loseConnection()


class XMPPWebSocketResource(Resource):
    """Accepts WebSocket upgrades offering the ``xmpp`` subprotocol."""

    isLeaf = True

    def __init__(self, xmpp: XMPPServer, secure: bool) -> None:
        super().__init__()
        self.xmpp = xmpp
        self.secure = secure

    def render_GET(self, request: Request) -> bytes | int:
        handshake = H11Handshake(ConnectionType.SERVER)
        headers = [(name, value) for name, values in request.requestHeaders.getAllRawHeaders()
                   for value in values]
        try:
            handshake.initiate_upgrade_connection(headers, request.uri)
        except RemoteProtocolError:
            return _refuse(request, b"an XMPP WebSocket needs a WebSocket upgrade\n")
        upgrades = [e for e in handshake.events() if isinstance(e, WebSocketRequest)]
        if not upgrades or SUBPROTOCOL not in upgrades[0].subprotocols:
            return _refuse(request, b"the xmpp subprotocol is required\n")
        connection = XMPPWebSocket(self.xmpp, query_token(request), self.secure)
        accepted = handshake.send(AcceptConnection(subprotocol=SUBPROTOCOL))
        wire = _WebSocketWireProtocol(handshake.connection, serverBootstrap, connection)
        request.channel._protocolUpgradeForWebsockets(wire)
        request.channel.transport.write(accepted)
        connection.negotiationFinished()
        return server.NOT_DONE_YET


def _refuse(request: Request, why: bytes) -> bytes:
    request.setResponseCode(400)
    request.setHeader(b"content-type", b"text/plain")
    return why
