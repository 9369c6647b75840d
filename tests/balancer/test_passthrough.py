"""Pass-through forwards on in-memory transports: limits, failover, timeouts, half-close."""

from __future__ import annotations

from dataclasses import replace

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from tests.balancer.test_proxy import make
from vw.balancer.passthrough import DRAIN, Inbound, Outbound, target_order
from vw.balancer.proxy import Balancer
from vw.common import proxyproto
from vw.config import ForwardConfig


class Transport(StringTransport):
    """A StringTransport that can end its writing side alone."""

    write_closed = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True


FORWARD = ForwardConfig("c2s", 5222, ["10.0.0.1:5222", "10.0.0.2:5222"])


class Connection:
    """An Inbound on a StringTransport; its target connections accepted or refused."""

    def __init__(self, balancer: Balancer, reactor: MemoryReactorClock,
                 peer: str = "192.0.2.1") -> None:
        self.reactor = reactor
        self.inbound = Inbound(balancer, "c2s")
        self.transport = Transport(peerAddress=IPv4Address("TCP", peer, 40000),
                                         hostAddress=IPv4Address("TCP", "198.51.100.1", 5222))
        self.seen = len(reactor.tcpClients)
        self.inbound.makeConnection(self.transport)

    def target(self) -> tuple[Outbound, Transport, str]:
        host, port, factory, _, _ = self.reactor.tcpClients[self.seen]
        self.seen += 1
        outbound = factory.buildProtocol(None)
        transport = Transport()
        outbound.makeConnection(transport)
        return outbound, transport, f"{host}:{port}"

    def refuse(self) -> str:
        host, port, factory, _, _ = self.reactor.tcpClients[self.seen]
        self.seen += 1
        factory.clientConnectionFailed(None, None)
        return f"{host}:{port}"


def test_bytes_wait_for_the_target_then_flow_both_ways() -> None:
    balancer, reactor = make(forwards=[FORWARD])
    connection = Connection(balancer, reactor)
    assert connection.transport.producerState == "paused"
    connection.inbound.dataReceived(b"<stream:stream>")
    outbound, target, address = connection.target()
    assert address == target_order(FORWARD, "192.0.2.1")[0]
    assert target.value() == b"<stream:stream>"
    assert connection.transport.producerState == "producing"
    outbound.dataReceived(b"<features/>")
    assert connection.transport.value() == b"<features/>"
    connection.inbound.dataReceived(b"more")
    assert target.value() == b"<stream:stream>more"
    assert balancer.stats.forwarded == {"c2s": 1}


def test_a_refused_target_gives_way_to_the_next_then_none_is_left() -> None:
    balancer, reactor = make(forwards=[FORWARD])
    connection = Connection(balancer, reactor)
    first = connection.refuse()
    _, _, second = connection.target()
    assert [first, second] == target_order(FORWARD, "192.0.2.1")
    assert balancer.stats.backend_failures == {f"c2s:{first}": 1}
    alone = Connection(balancer, reactor, peer="192.0.2.2")
    alone.refuse()
    alone.refuse()
    assert alone.transport.disconnected
    assert balancer.stats.refused["forward_unavailable"] == 1


def test_limits_refuse_connections_before_any_target_is_tried() -> None:
    balancer, reactor = make(forwards=[FORWARD], connection_rate=1.0, connection_burst=1)
    Connection(balancer, reactor, peer="192.0.2.9")
    limited = Connection(balancer, reactor, peer="192.0.2.9")
    assert limited.transport.disconnected and balancer.stats.refused["rate"] == 1
    full, reactor = make(forwards=[FORWARD], max_connections=1)
    Connection(full, reactor)
    over = Connection(full, reactor, peer="192.0.2.3")
    assert over.transport.disconnected and full.stats.refused["max_connections"] == 1
    assert len(reactor.tcpClients) == 1
    gone, reactor = make(forwards=[])  # the forward was removed by a reload
    assert Connection(gone, reactor).transport.disconnected


def test_a_trusted_peer_has_header_timeout_and_silence_ends_a_connection() -> None:
    balancer, reactor = make(forwards=[FORWARD], trusted_proxies=["192.0.2.0/24"],
                             header_timeout=2.0, tunnel_timeout=30.0)
    quiet = Connection(balancer, reactor)
    reactor.advance(1.0)
    quiet.inbound.dataReceived(b"PROXY TCP4 203.0.113.5")  # half a header
    reactor.advance(1.0)
    assert quiet.transport.disconnected and reactor.tcpClients == []
    talking = Connection(balancer, reactor)
    talking.inbound.dataReceived(b"hello")  # a trusted peer without a header
    outbound, target, _ = talking.target()
    assert target.value() == b"hello"
    reactor.advance(20.0)
    outbound.dataReceived(b"x")  # the target's bytes count as activity
    reactor.advance(20.0)
    assert not talking.transport.disconnected
    reactor.advance(10.1)
    assert talking.transport.disconnected and balancer.stats.refused["timeout"] == 2


def test_each_side_half_closes_the_other_and_the_end_of_one_ends_both() -> None:
    balancer, reactor = make(forwards=[FORWARD])
    connection = Connection(balancer, reactor)
    connection.inbound.readConnectionLost()  # the client ended before the target answered
    outbound, target, _ = connection.target()
    assert target.write_closed and not target.disconnecting
    outbound.dataReceived(b"last words")
    assert connection.transport.value() == b"last words"
    outbound.readConnectionLost()  # the target ended too
    assert connection.transport.write_closed and not connection.transport.disconnecting
    connection.inbound.writeConnectionLost()
    assert connection.transport.disconnecting  # both directions done
    other = Connection(balancer, reactor, peer="192.0.2.7")
    outbound, target, _ = other.target()
    outbound.connectionLost()  # the target went away: the client's connection goes too
    assert other.transport.disconnecting


def test_a_gone_side_frees_the_other_from_waiting_on_it_and_closes_it_in_time() -> None:
    balancer, reactor = make(forwards=[FORWARD])
    connection = Connection(balancer, reactor)
    outbound, target, _ = connection.target()
    assert connection.transport.producer is target and target.producer is connection.transport
    outbound.connectionLost()  # the target went away while the client was being written to
    assert connection.transport.producer is None and connection.transport.disconnecting
    assert not connection.transport.disconnected  # what it holds may still go out...
    reactor.advance(DRAIN)
    assert connection.transport.disconnected  # ...but a client that never reads is cut off
    other = Connection(balancer, reactor, peer="192.0.2.8")
    outbound, target, _ = other.target()
    other.inbound.connectionLost()
    assert target.producer is None and target.disconnecting
    reactor.advance(DRAIN)
    assert target.disconnected


def test_a_trusted_peers_header_names_client_and_destination_and_ends_the_header_timer(
        ) -> None:
    balancer, reactor = make(forwards=[replace(FORWARD, proxy_protocol=2)],
                             trusted_proxies=["192.0.2.0/24"], header_timeout=2.0)
    connection = Connection(balancer, reactor)
    connection.inbound.dataReceived(
        proxyproto.build_v1(("203.0.113.5", 4000), ("198.51.100.9", 443)) + b"hi")
    reactor.advance(5.0)  # longer than the header timeout, shorter than connecting's
    assert not connection.transport.disconnected
    _, target, _ = connection.target()
    header = proxyproto.parse(target.value())
    assert header is not None and header.source == ("203.0.113.5", 4000)
    assert header.destination == ("198.51.100.9", 443)
    assert target.value()[header.length:] == b"hi"
