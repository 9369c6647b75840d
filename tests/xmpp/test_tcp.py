"""TCP framing on a fake clock: keepalives, idle timeouts, rate limiting, STARTTLS offer."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.words.protocols.jabber.jid import JID

from tests.xmpp.helpers import make_server
from vw.xmpp.tcp import XMPPStreamProtocol

HEADER = (b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
          b"to='localhost' version='1.0'>")


def connect(tmp_path: Path, **xmpp: object) -> tuple[XMPPStreamProtocol, StringTransport, Clock]:
    clock = Clock()
    server = make_server(tmp_path, clock=clock, **xmpp)
    protocol = XMPPStreamProtocol(server, tls=None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, clock


def test_whitespace_keepalive_only_when_idle(tmp_path: Path) -> None:
    protocol, transport, clock = connect(tmp_path, keepalive_interval=30, idle_timeout=600)
    protocol.dataReceived(HEADER)
    transport.clear()
    clock.advance(30)  # the features were just written: no keepalive needed yet
    assert transport.value() == b""
    clock.advance(30)
    assert transport.value() == b" "


def test_idle_connection_times_out(tmp_path: Path) -> None:
    protocol, transport, clock = connect(tmp_path, keepalive_interval=0, idle_timeout=120)
    protocol.dataReceived(HEADER)
    clock.advance(100)
    protocol.dataReceived(b" ")
    clock.advance(100)
    assert not transport.disconnecting
    clock.advance(21)
    assert b"<connection-timeout" in transport.value()
    assert transport.disconnecting


def test_starttls_required_without_tls_means_no_mechanisms(tmp_path: Path) -> None:
    protocol, transport, _ = connect(tmp_path)
    protocol.dataReceived(HEADER)
    assert b"<mechanisms" not in transport.value()


def test_rate_limit_pauses_reading(tmp_path: Path) -> None:
    protocol, transport, clock = connect(tmp_path, rate_bytes_per_second=1000,
                                         max_stanza_bytes=100000)
    protocol.dataReceived(HEADER)
    protocol.dataReceived(b" " * 5000)  # more than the 4 s burst
    assert transport.producerState == "paused"
    clock.advance(2)
    assert transport.producerState == "producing"


def test_the_deployments_own_accounts_are_not_rate_limited(tmp_path: Path) -> None:
    protocol, transport, _ = connect(tmp_path, rate_bytes_per_second=1000,
                                     max_stanza_bytes=100000)
    protocol.dataReceived(HEADER)
    protocol.stream.session = SimpleNamespace(jid=JID("focus@auth.localhost/focus"))
    protocol.dataReceived(b" " * 5000)
    assert transport.producerState == "producing"

