"""RFC 6120 TCP framing: one XML stream per connection, with STARTTLS, limits and keepalives."""

from __future__ import annotations

from twisted.internet import protocol
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.xish.domish import Element

from vw.common.ratelimit import TokenBucket
from vw.common.tls import PreparedContextFactory
from vw.xmpp.errors import StreamError
from vw.xmpp.serializer import serialize
from vw.xmpp.server import XMPPServer
from vw.xmpp.stanzas import CLIENT_NS, STREAMS_NS
from vw.xmpp.stream import ClientStream
from vw.xmpp.xmlparser import XMLStreamParser

log = Logger()

#: A connection may send in a burst this many seconds' worth of its byte rate.
BURST_SECONDS = 4


class XMPPStreamProtocol(protocol.Protocol):
    """Bytes from a TCP connection to a ClientStream, and its elements back to bytes."""

    token = None

    def __init__(self, server: XMPPServer,
                 tls: PreparedContextFactory | None) -> None:
        self.server = server
        self._tls = tls
        self.secure = False
        self._clock = server.clock
        self._parser = self._new_parser()
        self._closing = False
        self._paused_until: IDelayedCall | None = None
        self._idle: IDelayedCall | None = None
        self._keepalive = LoopingCall(self._send_keepalive)
        self._keepalive.clock = self._clock
        self._wrote = False

    @property
    def can_starttls(self) -> bool:
        return self._tls is not None and not self.secure

    def _new_parser(self) -> XMLStreamParser:
        return XMLStreamParser(self.server.config.max_stanza_bytes, self.server.config.max_depth)

    def connectionMade(self) -> None:
        self.stream = ClientStream(self.server, self)
        rate = self.server.config.rate_bytes_per_second
        self._limiter = TokenBucket(rate, rate * BURST_SECONDS, self._clock.seconds())
        self._touch()
        interval = self.server.config.keepalive_interval
        if interval > 0:
            self._keepalive.start(interval, now=False)

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self._touch()
        wait = 0.0 if self._internal() else self._limiter.consume(len(data), self._clock.seconds())
        if wait > 0 and self._paused_until is None:
            self.transport.pauseProducing()
            self._paused_until = self._clock.callLater(wait, self._resume_reading)
        try:
            events = self._parser.feed(data)
        except StreamError as error:
            self.stream.fail(error)
            return
        self.stream.handle_events(events)

    def _internal(self) -> bool:
        """Accounts of the auth domain are the deployment's own services (the focus carries
        every conference's signalling): no byte-rate limit for them."""
        session = self.stream.session
        return session is not None and session.jid.host == self.server.full_config.auth_domain

    def _resume_reading(self) -> None:
        self._paused_until = None
        if not self._closing:
            self.transport.resumeProducing()

    def _touch(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.reset(self.server.config.idle_timeout)
        else:
            self._idle = self._clock.callLater(self.server.config.idle_timeout, self._timed_out)

    def _timed_out(self) -> None:
        self.stream.fail(StreamError("connection-timeout", "idle for too long"))

    def _send_keepalive(self) -> None:
        if not self._wrote and not self._closing:
            self.transport.write(b" ")
        self._wrote = False

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._closing = True
        for call in (self._idle, self._paused_until):
            if call is not None and call.active():
                call.cancel()
        if self._keepalive.running:
            self._keepalive.stop()
        self.stream.connection_lost()

    # -- StreamTransport ------------------------------------------------------------

    def send_header(self, stream_id: str, host: str) -> None:
        self._write(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            f"xmlns:stream='{STREAMS_NS}' id='{stream_id}' from='{host}' version='1.0'>")

    def send_element(self, element: Element) -> None:
        self._write(serialize(element, CLIENT_NS, stream_prefix=True))

    def _write(self, text: str) -> None:
        if not self._closing:
            self._wrote = True
            self.transport.write(text.encode())

    def start_tls(self) -> None:
        assert self._tls is not None
        self.transport.startTLS(self._tls)
        self.secure = True
        self.reset()

    def reset(self) -> None:
        self._parser = self._new_parser()

    def close(self, error: StreamError | None = None) -> None:
        if self._closing:
            return
        if error is not None:
            self.send_element(error.to_element())
        self._write("</stream:stream>")
        self._closing = True
        self.transport.loseConnection()


class XMPPStreamFactory(protocol.Factory):
    def __init__(self, server: XMPPServer,
                 tls: PreparedContextFactory | None) -> None:
        self.server = server
        self.tls = tls

    def buildProtocol(self, addr: object) -> XMPPStreamProtocol:
        return XMPPStreamProtocol(self.server, self.tls)
