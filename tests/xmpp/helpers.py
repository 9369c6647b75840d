"""Drive ClientStream cores in memory: a fake framing layer and a server on a fake clock."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from twisted.internet.task import Clock
from twisted.words.xish.domish import Element

from vw.config import Config, GeneralConfig, TokenConfig, XMPPConfig
from vw.xmpp.errors import StreamError
from vw.xmpp.server import XMPPServer
from vw.xmpp.stanzas import STREAMS_NS
from vw.xmpp.stream import ClientStream
from vw.xmpp.xmlparser import StreamOpened, XMLStreamParser

TOKEN_SECRET = "unit-test-secret-that-is-long-enough"


def make_server(tmp_path: Path, clock: Clock | None = None, **xmpp: object) -> XMPPServer:
    token = TokenConfig(app_id="app", app_secret=TOKEN_SECRET, allow_anonymous=True)
    config = Config(general=GeneralConfig(state_dir=str(tmp_path / "var")),
                    xmpp=dataclasses.replace(XMPPConfig(token=token), **xmpp))
    return XMPPServer(config, clock or Clock())


class FakeTransport:
    """Records what the stream sends; behaves like WebSocket framing (secure, no STARTTLS)."""

    can_starttls = False

    def __init__(self, token: str | None = None, secure: bool = True) -> None:
        self.token = token
        self.secure = secure
        self.sent: list[Element] = []
        self.closed: StreamError | None | bool = False
        self.resets = 0

    def send_header(self, stream_id: str, host: str) -> None:
        pass

    def send_element(self, element: Element) -> None:
        self.sent.append(element)

    def start_tls(self) -> None:
        raise AssertionError("no TLS here")

    def reset(self) -> None:
        self.resets += 1

    def close(self, error: StreamError | None = None) -> None:
        self.closed = error if error is not None else True

    def take(self) -> list[Element]:
        sent, self.sent = self.sent, []
        return sent


def header(host: str = "localhost") -> StreamOpened:
    return StreamOpened(STREAMS_NS, "stream", {"to": host, "version": "1.0"}, "jabber:client")


def xml(text: str) -> Element:
    """One element from XML text (jabber:client by default)."""
    parser = XMLStreamParser()
    parser.feed(b"<s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams'>")
    (event,) = parser.feed(text.encode())
    return event.element


class Client:
    """An in-memory client on a ClientStream."""

    def __init__(self, server: XMPPServer, token: str | None = None) -> None:
        self.transport = FakeTransport(token)
        self.stream = ClientStream(server, self.transport)

    def send(self, text: str) -> list[Element]:
        self.stream.element_received(xml(text))
        return self.transport.take()

    def login_anonymous(self) -> str:
        self.stream.stream_opened(header())
        self.transport.take()
        sent = self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
        assert sent[0].name == "success", sent[0].toXml()
        self.stream.stream_opened(header())
        self.transport.take()
        (result,) = self.send("<iq type='set' id='b'><bind "
                              "xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        return str(result.bind.jid)
