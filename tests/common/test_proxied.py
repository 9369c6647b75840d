"""Listeners behind trusted proxies: the PROXY header is read from trusted peers only, and the
wrapped protocol sees the client it names as its peer."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from vw.common.proxied import HEADER_TIMEOUT, ProxiedFactory
from vw.common.proxyproto import build_v1, build_v2

PROXY = IPv4Address("TCP", "10.0.0.5", 40000)
STRANGER = IPv4Address("TCP", "192.0.2.50", 40001)
CLIENT = ("203.0.113.9", 51234)
SERVER = ("198.51.100.1", 443)
HEADERS = [build_v1(CLIENT, SERVER), build_v2(CLIENT, SERVER)]


class Recorder(Protocol):
    """The wrapped protocol: what it received and the peer it saw when connected."""

    def __init__(self) -> None:
        self.received = b""
        self.peer: object = None
        self.lost = False

    def connectionMade(self) -> None:
        self.peer = self.transport.getPeer()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = True


class Connection:
    """One connection to a ProxiedFactory trusting 10.0.0.0/24, from ``peer``."""

    def __init__(self, peer: IPv4Address | IPv6Address = PROXY) -> None:
        self.built: list[Recorder] = []
        wrapped = Factory.forProtocol(self.build)
        self.clock = MemoryReactorClock()
        self.factory = ProxiedFactory(wrapped, ["10.0.0.0/24"], self.clock)
        self.protocol = self.factory.buildProtocol(peer)
        self.transport = StringTransport(peerAddress=peer)
        self.protocol.makeConnection(self.transport)

    def build(self) -> Recorder:
        recorder = Recorder()
        self.built.append(recorder)
        return recorder

    @property
    def wrapped(self) -> Recorder:
        (recorder,) = self.built
        return recorder

    def send(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.protocol.dataReceived(chunk)


def test_v1_and_v2_headers_name_the_client() -> None:
    for header in HEADERS:
        connection = Connection()
        connection.send(header + b"hello")
        assert connection.wrapped.peer == IPv4Address("TCP", *CLIENT)
        assert connection.wrapped.received == b"hello"
        assert connection.wrapped.transport.getPeer() == IPv4Address("TCP", *CLIENT)
        assert not connection.transport.disconnecting


def test_a_header_split_over_reads_with_payload_after_it() -> None:
    for header in HEADERS:
        connection = Connection()
        data = header + b"payload"
        connection.send(*(data[i:i + 3] for i in range(0, len(data), 3)))
        assert connection.wrapped.peer == IPv4Address("TCP", *CLIENT)
        assert connection.wrapped.received == b"payload"


def test_the_wrapped_protocol_waits_for_the_header() -> None:
    connection = Connection()
    connection.send(HEADERS[1][:20])
    assert connection.built == []
    connection.send(HEADERS[1][20:])
    assert connection.wrapped.received == b""
    connection.wrapped.transport.write(b"answer")
    assert connection.transport.value() == b"answer"


def test_an_ipv6_source() -> None:
    connection = Connection()
    connection.send(build_v2(("2001:db8::7", 4444), ("2001:db8::1", 443)) + b"x")
    assert connection.wrapped.peer == IPv6Address("TCP", "2001:db8::7", 4444)


def test_local_and_unknown_keep_the_real_peer() -> None:
    for header in [build_v2(None, None), b"PROXY UNKNOWN\r\n"]:
        connection = Connection()
        connection.send(header + b"health")
        assert connection.wrapped.peer == PROXY
        assert connection.wrapped.received == b"health"


def test_a_trusted_peer_without_header_is_refused() -> None:
    connection = Connection()
    connection.send(b"G", b"ET / HTTP/1.1\r\n")  # a client's own bytes, no header first
    assert connection.protocol.wrappedProtocol is None
    assert connection.transport.disconnecting
    assert connection.factory.refusals["proxy_malformed"] == 1


def test_an_untrusted_peer_is_not_parsed() -> None:
    connection = Connection(STRANGER)
    assert isinstance(connection.protocol, Recorder)
    connection.send(HEADERS[0] + b"hello")
    assert connection.wrapped.peer == STRANGER
    assert connection.wrapped.received == HEADERS[0] + b"hello"
    assert connection.clock.getDelayedCalls() == []


def test_a_malformed_header_closes_and_is_counted() -> None:
    connection = Connection()
    connection.send(b"PROXY TCP4 nonsense\r\nhello")
    assert connection.transport.disconnecting
    assert connection.built == []
    assert connection.factory.refusals["proxy_malformed"] == 1
    connection.send(b"more")  # what was read before the close is dropped
    assert connection.clock.getDelayedCalls() == []


def test_an_incomplete_header_times_out() -> None:
    connection = Connection()
    connection.send(b"PROXY TCP4 203.0.113.9")
    connection.clock.advance(HEADER_TIMEOUT - 0.5)
    assert not connection.transport.disconnecting
    connection.clock.advance(1)
    assert connection.transport.disconnecting
    assert connection.factory.refusals["proxy_timeout"] == 1
    assert connection.built == []


def test_a_timely_header_cancels_the_timer_and_the_loss_reaches_the_wrapped_protocol() -> None:
    connection = Connection()
    connection.send(HEADERS[0])
    assert connection.clock.getDelayedCalls() == []
    connection.protocol.connectionLost(Failure(ConnectionError("gone")))
    assert connection.wrapped.lost
    assert connection.factory.protocols == {}


def test_a_connection_lost_before_the_header_cancels_the_timer() -> None:
    connection = Connection()
    connection.send(b"PRO")
    connection.protocol.connectionLost(Failure(ConnectionError("gone")))
    assert connection.clock.getDelayedCalls() == []
    assert connection.built == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(min_size=1, max_size=120), min_size=1, max_size=4))
def test_random_first_bytes_from_a_trusted_peer_close_or_pass_through(
        chunks: list[bytes]) -> None:
    connection = Connection()
    connection.send(*chunks)
    data = b"".join(chunks)
    if connection.transport.disconnecting:
        assert connection.built == []
    elif connection.built:
        assert data.endswith(connection.wrapped.received)
    else:  # the start of a header: waiting for more, until the timeout
        connection.clock.advance(HEADER_TIMEOUT)
        assert connection.transport.disconnecting
