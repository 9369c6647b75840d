"""/colibri-ws/{bridge}/{conference}/{endpoint}?pwd=: the bridge channel over WebSocket."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.websocket import WebSocketResource, WebSocketTransport

from vw.bridge.channel import ChannelMessage, ChannelMessageError, parse_message, server_hello
from vw.bridge.conference import Endpoint

log = Logger()

#: Finds the endpoint a colibri-ws path names: (conference id, endpoint id) -> endpoint.
EndpointLookup = Callable[[str, str], Endpoint | None]
#: Acts on a message from an endpoint's channel.
MessageHandler = Callable[[Endpoint, ChannelMessage], None]


class BridgeChannel:
    """One endpoint's WebSocket: JSON frames in and out."""

    def __init__(self, endpoint: Endpoint, handle: MessageHandler, version: str) -> None:
        self.endpoint = endpoint
        self._handle = handle
        self._version = version
        self._transport: WebSocketTransport | None = None

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self._transport = transport

    def negotiationFinished(self) -> None:
        self.endpoint.channel_send = self.send
        self.send(server_hello(self._version))

    def send(self, frame: str) -> None:
        if self._transport is not None:
            self._transport.sendTextMessage(frame)

    def textMessageReceived(self, message: str) -> None:
        try:
            parsed = parse_message(message)
        except ChannelMessageError as e:
            log.info("bad bridge-channel frame from {endpoint}: {error}",
                     endpoint=self.endpoint.id, error=e)
            return
        self._handle(self.endpoint, parsed)

    def bytesMessageReceived(self, data: bytes) -> None:
        self.textMessageReceived(bytes(data).decode("utf-8", "replace"))

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        if self.endpoint.channel_send == self.send:
            self.endpoint.channel_send = None
        self._transport = None


class ColibriWebSocketResource(Resource):
    """Checks the bridge id, the conference, the endpoint and its pwd, then upgrades."""

    isLeaf = True

    def __init__(self, bridge_id: str, lookup: EndpointLookup, handle: MessageHandler,
                 version: str) -> None:
        super().__init__()
        self._bridge_id = bridge_id
        self._lookup = lookup
        self._handle = handle
        self._version = version

    def render_GET(self, request: Request) -> bytes | int:
        parts = [p.decode("utf-8", "replace") for p in request.postpath]
        pwd = (request.args.get(b"pwd") or [b""])[0]
        endpoint = None
        if len(parts) == 3 and parts[0] == self._bridge_id:
            endpoint = self._lookup(parts[1], parts[2])
        if endpoint is None or not hmac.compare_digest(pwd, endpoint.channel_pwd.encode()):
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain")
            return b"unknown endpoint or wrong pwd\n"
        channel = BridgeChannel(endpoint, self._handle, self._version)
        return WebSocketResource(_Factory(channel)).render_GET(request)


class _Factory:
    def __init__(self, channel: BridgeChannel) -> None:
        self._channel = channel

    def buildProtocol(self, request: Request) -> BridgeChannel:
        return self._channel
