"""The proxy's glue on in-memory transports: forwarding, rewriting, keep-alive, moving
between backends, tunnels, timeouts, limits, PROXY headers from trusted peers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from vw.balancer.geo import Geo
from vw.balancer.proxy import (
    FORGET_INTERVAL,
    LINGER,
    PARKED,
    PARKED_SECONDS,
    BackendProtocol,
    Balancer,
    ClientProtocol,
)
from vw.balancer.router import Router
from vw.common import proxyproto
from vw.config import BalancerConfig, Config, ShardConfig

SHARDS = [ShardConfig("s1", "127.0.0.1:7001"), ShardConfig("s2", "127.0.0.1:7002")]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def make(**settings: object) -> tuple[Balancer, MemoryReactorClock]:
    balancer_config = replace(BalancerConfig(), **{"shards": SHARDS,
                                                   "portal": "127.0.0.1:7100", **settings})
    config = replace(Config(), balancer=balancer_config)
    reactor = MemoryReactorClock()
    return Balancer(Router(config, Geo({})), reactor), reactor


class Client:
    """A ClientProtocol on a StringTransport, with its backend connections at hand."""

    def __init__(self, balancer: Balancer, reactor: MemoryReactorClock,
                 peer: str = "192.0.2.1", scheme: bytes = b"http") -> None:
        self.reactor = reactor
        self.protocol = ClientProtocol(balancer, scheme)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000),
                                         hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        self.seen = len(reactor.tcpClients)
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def backend(self) -> tuple[BackendProtocol, StringTransport, tuple[str, int]]:
        """Accept the newest backend connection."""
        host, port, factory, _, _ = self.reactor.tcpClients[self.seen]
        self.seen += 1
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport, (host, port)

    def refuse(self) -> tuple[str, int]:
        """Refuse the next backend connection; its address."""
        host, port, factory, _, _ = self.reactor.tcpClients[self.seen]
        self.seen += 1
        factory.clientConnectionFailed(None, None)
        return host, port

    def received(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data


def request(target: str, *headers: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: vw", *headers, "", ""]
    return "\r\n".join(lines).encode()


def test_a_request_is_forwarded_rewritten_and_answered() -> None:
    balancer, reactor = make()
    client = Client(balancer, reactor)
    client.send(request("/MyRoom", "X-Forwarded-For: 6.6.6.6"))
    backend, transport, address = client.backend()
    shard = balancer.router.shards.pick("myroom", "", 0)
    assert address == (shard.host, shard.port)
    assert transport.value() == (b"GET /MyRoom HTTP/1.1\r\nHost: vw\r\n"
                                 b"x-forwarded-for: 192.0.2.1\r\nx-forwarded-proto: http\r\n\r\n")
    backend.dataReceived(OK)
    assert client.received() == (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                 b"X-VW-Shard: %s\r\n\r\nok" % shard.name.encode())
    assert balancer.stats.routed[shard.name] == 1


def test_keep_alive_reuses_the_backend_connection_for_the_same_shard() -> None:
    balancer, reactor = make()
    client = Client(balancer, reactor)
    client.send(request("/room1"))
    backend, transport, _ = client.backend()
    backend.dataReceived(OK)
    client.send(request("/xmpp-websocket?room=ROOM1") + request("/room1"))
    assert transport.value().count(b"GET ") == 3
    assert len(reactor.tcpClients) == 1
    backend.dataReceived(OK + OK)
    assert client.received().count(b"200 OK") == 3


def rooms_on_both_shards(balancer: Balancer) -> tuple[str, str]:
    names = {}
    for i in range(100):
        names.setdefault(balancer.router.shards.pick(f"r{i}", "", 0).name, f"r{i}")
    return names["s1"], names["s2"]


def test_a_request_for_another_shard_waits_for_the_responses_before_it() -> None:
    balancer, reactor = make()
    first, second = rooms_on_both_shards(balancer)
    client = Client(balancer, reactor)
    client.send(request(f"/{first}") + request(f"/{second}"))
    backend1, transport1, _ = client.backend()
    assert len(reactor.tcpClients) == 1 and client.transport.producerState == "paused"
    backend1.dataReceived(OK[:10])
    assert len(reactor.tcpClients) == 1
    backend1.dataReceived(OK[10:])
    assert not transport1.disconnecting and list(client.protocol.parked.values()) == [backend1]
    backend2, transport2, address = client.backend()
    assert address == ("127.0.0.1", 7002) and transport2.value().startswith(
        f"GET /{second} ".encode())
    assert client.transport.producerState == "producing"


def on_both_shards() -> tuple[MemoryReactorClock, Client, tuple[str, str],
                              list[tuple[BackendProtocol, StringTransport]]]:
    """A client that asked for a room on s1 (answered), then one on s2 (not yet)."""
    balancer, reactor = make()
    rooms = rooms_on_both_shards(balancer)
    client = Client(balancer, reactor)
    connections = []
    for room in rooms:
        if connections:
            connections[-1][0].dataReceived(OK)
        client.send(request(f"/{room}"))
        backend, transport, _ = client.backend()
        connections.append((backend, transport))
    return reactor, client, rooms, connections


def test_a_client_moving_between_shards_reuses_its_backend_connections() -> None:
    reactor, client, (first, second), connections = on_both_shards()
    (backend1, transport1), (backend2, transport2) = connections
    for sent in range(2, 5):
        backend2.dataReceived(OK)
        client.send(request(f"/xmpp-websocket?room={first}"))
        assert transport1.value().count(b"GET ") == sent
        assert client.transport.producer.transport is transport1
        backend1.dataReceived(OK)
        client.send(request(f"/{second}"))
    assert len(reactor.tcpClients) == 2
    assert transport2.value().count(b"GET ") == 4
    backend2.dataReceived(OK)
    assert client.received().count(b"200 OK") == 8
    assert client.transport.producer.transport is transport2
    client.protocol.connectionLost()
    assert transport1.disconnecting and transport2.disconnecting


def test_a_parked_connection_that_speaks_or_closes_is_dropped() -> None:
    _, client, (first, second), connections = on_both_shards()
    (backend1, transport1), (backend2, _) = connections
    backend1.dataReceived(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    assert transport1.disconnecting and not client.protocol.parked
    backend2.dataReceived(OK)
    client.send(request(f"/{first}"))
    backend3, _, _ = client.backend()
    backend3.dataReceived(OK)
    client.send(request(f"/{second}"))
    assert list(client.protocol.parked.values()) == [backend3]
    backend3.connectionLost()
    assert not client.protocol.parked
    backend2.dataReceived(OK)
    assert client.received().count(b"200 OK") == 4 and not client.transport.disconnecting


def test_parked_connections_are_bounded() -> None:
    shards = [ShardConfig(f"s{i}", f"127.0.0.1:{7001 + i}") for i in range(PARKED + 2)]
    balancer, reactor = make(shards=shards)
    rooms: dict[str, str] = {}
    for i in range(1000):
        rooms.setdefault(balancer.router.shards.pick(f"r{i}", "", 0).name, f"r{i}")
    assert len(rooms) == PARKED + 2
    client = Client(balancer, reactor)
    transports = []
    for room in rooms.values():
        client.send(request(f"/{room}"))
        backend, transport, _ = client.backend()
        backend.dataReceived(OK)
        transports.append(transport)
    assert len(client.protocol.parked) == PARKED
    assert [t.disconnecting for t in transports] == [True] + [False] * (PARKED + 1)
    client.send(request(f"/{list(rooms.values())[1]}"))  # the oldest parked, taken back
    assert len(reactor.tcpClients) == PARKED + 2
    assert transports[1].value().count(b"GET ") == 2 and not transports[1].disconnecting


def draining_s1(balancer: Balancer) -> list[tuple[str, str, Callable[[bool], None]]]:
    """Drain s1 (forgetting its rooms); the questions the balancer then asks, recorded."""
    questions: list[tuple[str, str, Callable[[bool], None]]] = []
    balancer.ask = lambda shard, room, answer: questions.append((shard.name, room, answer))
    s1 = balancer.router.shards.shards["s1"]
    s1.drain = True
    s1.rooms.clear()
    return questions


def test_a_room_new_to_a_draining_shard_waits_for_its_answer() -> None:
    balancer, reactor = make()
    first, second = rooms_on_both_shards(balancer)
    questions = draining_s1(balancer)
    client = Client(balancer, reactor)
    client.send(request(f"/{first}") + request(f"/{second}"))
    assert [q[:2] for q in questions] == [("s1", first)] and not reactor.tcpClients
    assert client.transport.producerState == "paused"
    questions[0][2](True)  # s1 hosts it: the request goes there
    backend, transport, address = client.backend()
    assert address == ("127.0.0.1", 7001) and transport.value().startswith(
        f"GET /{first} ".encode())
    assert balancer.stats.drain_queries["s1"] == 1
    other = Client(balancer, reactor)
    other.send(request(f"/{first}") + request("/xmpp-websocket?room=" + first))
    assert len(questions) == 1  # remembered: not asked again
    assert other.backend()[2] == ("127.0.0.1", 7001)


def test_a_room_a_draining_shard_does_not_host_goes_elsewhere() -> None:
    balancer, reactor = make()
    first, _ = rooms_on_both_shards(balancer)
    questions = draining_s1(balancer)
    client = Client(balancer, reactor)
    client.send(request(f"/{first}"))
    questions[0][2](False)
    assert client.backend()[2] == ("127.0.0.1", 7002)


def test_an_answer_after_the_client_left_is_kept_and_nothing_sent() -> None:
    balancer, reactor = make()
    first, _ = rooms_on_both_shards(balancer)
    questions = draining_s1(balancer)
    client = Client(balancer, reactor)
    client.send(request(f"/{first}"))
    client.protocol.connectionLost(None)
    questions[0][2](True)
    assert not reactor.tcpClients and first in balancer.router.shards.shards["s1"].rooms


def test_a_chunked_body_is_forwarded_as_it_comes() -> None:
    balancer, reactor = make()
    client = Client(balancer, reactor)
    client.send(b"POST /http-bind?room=a HTTP/1.1\r\nHost: vw\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n5\r\nhel")
    _, transport, _ = client.backend()
    client.send(b"lo\r\n0\r\n\r\n" + request("/a"))
    assert transport.value().endswith(b"5\r\nhello\r\n0\r\n\r\nGET /a HTTP/1.1\r\nHost: vw\r\n"
                                      b"x-forwarded-for: 192.0.2.1\r\n"
                                      b"x-forwarded-proto: http\r\n\r\n")


def test_flow_control_both_ways() -> None:
    balancer, reactor = make()
    client = Client(balancer, reactor)
    client.send(request("/room"))
    backend, transport, _ = client.backend()
    assert transport.producer is not None and client.transport.producer is not None
    transport.producer.pauseProducing()
    assert client.transport.producerState == "paused"
    transport.producer.resumeProducing()
    client.transport.producer.pauseProducing()
    assert transport.producerState == "paused"


def test_a_websocket_upgrade_becomes_a_tunnel() -> None:
    balancer, reactor = make()
    client = Client(balancer, reactor)
    client.send(request("/xmpp-websocket?room=r", "Connection: Upgrade", "Upgrade: websocket")
                + b"\x81\x05early")
    backend, transport, _ = client.backend()
    assert transport.value().endswith(b"\r\n\r\n\x81\x05early")
    backend.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x02hi")
    assert client.received().endswith(b"\r\n\r\n\x81\x02hi")
    assert balancer.stats.tunnels == 1
    client.send(b"GET / HTTP/1.1\r\n\r\n")
    assert transport.value().endswith(b"GET / HTTP/1.1\r\n\r\n")
    reactor.advance(balancer.settings.idle_timeout + 1)
    assert not client.transport.disconnecting
    reactor.advance(balancer.settings.tunnel_timeout)
    assert client.transport.disconnecting


def test_a_refused_upgrade_closes_after_its_response() -> None:
    balancer, reactor = make()
    client = Client(balancer, reactor)
    client.send(request("/xmpp-websocket?room=r", "Connection: Upgrade", "Upgrade: websocket"))
    backend, _, _ = client.backend()
    backend.dataReceived(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    assert client.received().startswith(b"HTTP/1.1 403") and client.transport.disconnecting


@pytest.mark.parametrize("data, status", [
    (request("/a%2Fb"), b"400"), (request("/../x"), b"400"),
    (request("/" + "r" * 300), b"400"), (request("/a%00"), b"400"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n" + request("/a"), b"400"),
    (proxyproto.build_v2(("1.2.3.4", 1), ("5.6.7.8", 2)) + request("/a"), b"400"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 20000, b"431"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
     b"400"),
])
def test_hostile_requests_are_answered_and_closed(data: bytes, status: bytes) -> None:
    balancer, reactor = make()
    client = Client(balancer, reactor)
    client.send(data)
    assert client.received().startswith(b"HTTP/1.1 " + status)
    assert not reactor.tcpClients
    client.send(request("/more"))
    assert client.received() == b"" and not reactor.tcpClients
    reactor.advance(LINGER)
    assert client.transport.disconnecting


def test_slowloris_gets_408_after_the_header_timeout() -> None:
    balancer, reactor = make(header_timeout=5.0)
    client = Client(balancer, reactor)
    for _ in range(4):
        client.send(b"G")
        reactor.advance(1)
    assert not client.transport.disconnecting
    reactor.advance(1.5)
    assert client.received().startswith(b"HTTP/1.1 408")
    reactor.advance(LINGER)
    assert client.transport.disconnecting


def test_a_long_poll_is_not_a_slow_header() -> None:
    balancer, reactor = make(header_timeout=5.0, idle_timeout=100.0)
    client = Client(balancer, reactor)
    client.send(request("/http-bind?room=a"))
    backend, _, _ = client.backend()
    reactor.advance(60)
    assert not client.transport.disconnecting
    backend.dataReceived(OK)
    reactor.advance(4)
    assert not client.transport.disconnecting
    reactor.advance(2)
    assert client.transport.disconnecting and client.received() == OK.replace(
        b"\r\n\r\n", b"\r\nX-VW-Shard: %s\r\n\r\n" % backend.target.name.encode())


def test_health_is_answered_by_the_balancer() -> None:
    balancer, reactor = make()
    client = Client(balancer, reactor)
    client.send(request("/about/health"))
    assert client.received().endswith(b'{"status": "ok"}') and not reactor.tcpClients


def test_a_trusted_proxy_header_names_the_client() -> None:
    balancer, reactor = make(trusted_proxies=["127.0.0.0/8"])
    client = Client(balancer, reactor, peer="127.0.0.1")
    header = proxyproto.build_v2(("203.0.113.5", 5555), ("127.0.0.1", 8080))
    client.send(header[:10])
    client.send(header[10:] + request("/a", "X-Forwarded-For: 6.6.6.6"))
    _, transport, _ = client.backend()
    assert b"x-forwarded-for: 203.0.113.5\r\n" in transport.value()


def test_a_trusted_http_proxy_keeps_its_forwarded_for() -> None:
    balancer, reactor = make(trusted_proxies=["127.0.0.1/32"])
    client = Client(balancer, reactor, peer="127.0.0.1")
    client.send(request("/a", "X-Forwarded-For: 203.0.113.5"))
    _, transport, _ = client.backend()
    assert b"x-forwarded-for: 203.0.113.5, 127.0.0.1\r\n" in transport.value()


def test_a_malformed_proxy_header_from_a_trusted_peer_is_refused() -> None:
    balancer, reactor = make(trusted_proxies=["127.0.0.1/32"])
    client = Client(balancer, reactor, peer="127.0.0.1")
    client.send(b"PROXY TCP4 " + b"1" * 120)
    assert client.received().startswith(b"HTTP/1.1 400")
    reactor.advance(LINGER)
    assert client.transport.disconnecting


def test_backends_may_get_a_proxy_header() -> None:
    balancer, reactor = make(backend_proxy_protocol=1)
    client = Client(balancer, reactor)
    client.send(request("/a"))
    _, transport, _ = client.backend()
    assert transport.value().startswith(b"PROXY TCP4 192.0.2.1 127.0.0.1 40000 8080\r\nGET")


def test_an_unreachable_backend_gives_503_and_counts_against_its_health() -> None:
    balancer, reactor = make(connect_retries=0)
    client = Client(balancer, reactor)
    client.send(request("/a"))
    _, _, _, _, _ = reactor.tcpClients[0]
    factory = reactor.tcpClients[0][2]
    factory.clientConnectionFailed(None, None)
    assert client.received().startswith(b"HTTP/1.1 503")
    shard = factory.protocol.target.shard
    assert shard.health.streak == 1


def test_a_refused_shard_connection_is_retried_on_the_next_shard() -> None:
    balancer, reactor = make(backend_proxy_protocol=1)
    first, _ = rooms_on_both_shards(balancer)
    client = Client(balancer, reactor)
    client.send(request(f"/{first}") + request(f"/{first}?x=1"))
    assert client.refuse() == ("127.0.0.1", 7001)
    backend, transport, address = client.backend()
    assert address == ("127.0.0.1", 7002) and client.received() == b""
    assert transport.value().startswith(b"PROXY TCP4 192.0.2.1 127.0.0.1 40000 8080\r\nGET")
    assert transport.value().count(b"GET /") == 2
    backend.dataReceived(OK + OK)
    assert client.received().count(b"X-VW-Shard: s2\r\n") == 2
    stats = balancer.stats
    assert stats.retries == {"s1": 1} and stats.backend_failures == {"s1": 1}
    assert balancer.router.shards.shards["s1"].health.streak == 1


def test_a_websocket_upgrade_is_retried_with_its_early_bytes() -> None:
    balancer, reactor = make()
    first, _ = rooms_on_both_shards(balancer)
    client = Client(balancer, reactor)
    client.send(request(f"/xmpp-websocket?room={first}", "Connection: Upgrade",
                        "Upgrade: websocket") + b"\x81\x05early")
    client.refuse()
    backend, transport, address = client.backend()
    assert address == ("127.0.0.1", 7002) and transport.value().endswith(b"\x81\x05early")
    backend.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    assert client.received().startswith(b"HTTP/1.1 101") and balancer.stats.tunnels == 1


def test_after_the_retries_the_client_gets_503() -> None:
    balancer, reactor = make(shards=[*SHARDS, ShardConfig("s3", "127.0.0.1:7003")],
                             connect_retries=1)
    client = Client(balancer, reactor)
    client.send(request("/a"))
    client.refuse()
    assert client.received() == b""
    client.refuse()
    assert client.received().startswith(b"HTTP/1.1 503") and len(reactor.tcpClients) == 2
    assert sum(balancer.stats.backend_failures.values()) == 2
    assert sum(balancer.stats.retries.values()) == 1


def test_when_every_shard_failed_the_client_gets_503() -> None:
    balancer, reactor = make(connect_retries=5)
    client = Client(balancer, reactor)
    client.send(request("/a"))
    assert {client.refuse(), client.refuse()} == {("127.0.0.1", 7001),
                                                        ("127.0.0.1", 7002)}
    assert client.received().startswith(b"HTTP/1.1 503") and len(reactor.tcpClients) == 2
    assert balancer.stats.backend_failures == {"s1": 1, "s2": 1}


@pytest.mark.parametrize("target, settings", [
    ("/a", {"connect_retries": 0}),
    ("/api/x", {}),
    ("/colibri-ws/jvb1/c/e", {"bridges": {"jvb1": "127.0.0.1:7200"}}),
])
def test_no_retry_without_retries_or_another_target(target: str, settings: dict) -> None:
    balancer, reactor = make(**settings)
    client = Client(balancer, reactor)
    client.send(request(target))
    client.refuse()
    assert client.received().startswith(b"HTTP/1.1 503") and len(reactor.tcpClients) == 1
    assert not balancer.stats.retries


def test_requests_for_several_rooms_are_not_redispatched_together() -> None:
    balancer, reactor = make()
    rooms = [f"r{i}" for i in range(100)
             if balancer.router.shards.pick(f"r{i}", "", 0).name == "s1"]
    client = Client(balancer, reactor)
    client.send(request(f"/{rooms[0]}") + request(f"/{rooms[1]}"))
    client.refuse()
    assert client.received().startswith(b"HTTP/1.1 503") and len(reactor.tcpClients) == 1


def test_a_backend_closing_mid_response_closes_the_client() -> None:
    balancer, reactor = make()
    client = Client(balancer, reactor)
    client.send(request("/a"))
    backend, _, _ = client.backend()
    backend.dataReceived(OK[:-1])
    backend.connectionLost()
    assert client.transport.disconnecting
    other = Client(balancer, reactor)
    other.send(request("/a"))
    backend, _, _ = other.backend()
    backend.connectionLost()
    assert other.received().startswith(b"HTTP/1.1 502")


def served_once() -> tuple[Balancer, MemoryReactorClock, Client, BackendProtocol,
                           StringTransport]:
    """A client whose backend connection has answered one request."""
    balancer, reactor = make()
    client = Client(balancer, reactor)
    client.send(request("/a"))
    backend, transport, _ = client.backend()
    backend.dataReceived(OK)
    client.received()
    return balancer, reactor, client, backend, transport


def test_an_idle_backend_closing_leaves_the_client_open() -> None:
    _, reactor, client, backend, _ = served_once()
    backend.connectionLost()
    assert not client.transport.disconnecting
    client.send(request("/a"))
    assert len(reactor.tcpClients) == 2


def test_connection_close_closes_after_the_response() -> None:
    balancer, reactor = make()
    client = Client(balancer, reactor)
    client.send(request("/a", "Connection: close") + request("/b"))
    backend, transport, _ = client.backend()
    assert transport.value().count(b"GET") == 1
    backend.dataReceived(OK)
    assert client.transport.disconnecting


def test_connection_rate_per_address() -> None:
    balancer, reactor = make(connection_rate=1.0, connection_burst=2)
    clients = [Client(balancer, reactor) for _ in range(3)]
    assert [c.transport.disconnecting for c in clients] == [False, False, True]
    assert clients[2].received().startswith(b"HTTP/1.1 429")
    assert not Client(balancer, reactor, peer="192.0.2.2").transport.disconnecting


def test_max_connections() -> None:
    balancer, reactor = make(max_connections=2)
    clients = [Client(balancer, reactor, peer=f"192.0.2.{i}") for i in range(3)]
    assert clients[2].transport.disconnecting and balancer.stats.refused["max_connections"]
    clients[0].protocol.connectionLost()
    clients[2].protocol.connectionLost()
    assert not Client(balancer, reactor, peer="192.0.2.9").transport.disconnecting


def test_a_malformed_response_closes_both_sides() -> None:
    balancer, reactor = make()
    client = Client(balancer, reactor)
    client.send(request("/a"))
    backend, transport, _ = client.backend()
    backend.dataReceived(b"SSH-2.0-OpenSSH\r\n\r\n")
    assert client.transport.disconnecting and transport.disconnecting
    assert client.received() == b""


def test_tunnel_bytes_after_the_backend_is_gone_are_dropped() -> None:
    balancer, reactor = make()
    client = Client(balancer, reactor)
    client.send(request("/xmpp-websocket?room=r", "Connection: Upgrade", "Upgrade: websocket"))
    backend, _, _ = client.backend()
    backend.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    backend.connectionLost()
    assert client.transport.disconnecting and balancer.stats.tunnels == 0
    client.send(b"\x81\x00late")


def test_a_half_closed_client_still_gets_its_response() -> None:
    balancer, reactor = make()
    client = Client(balancer, reactor)
    client.send(request("/a"))
    client.protocol.readConnectionLost()
    assert not client.transport.disconnecting
    backend, _, _ = client.backend()
    backend.dataReceived(OK)
    assert client.received().endswith(b"ok") and client.transport.disconnecting
    idle = Client(balancer, reactor)
    idle.protocol.readConnectionLost()
    assert idle.transport.disconnecting


def test_an_error_is_written_before_a_half_close_closes() -> None:
    balancer, reactor = make()
    client = Client(balancer, reactor)
    client.send(request("/a%2Fb"))
    client.protocol.readConnectionLost()
    assert client.received().startswith(b"HTTP/1.1 400") and client.transport.disconnecting


def test_rooms_and_addresses_are_forgotten_at_intervals() -> None:
    balancer, _ = make(room_memory=5.0)
    shard = balancer.router.shards.pick("r", "", 0.0)
    assert shard is not None and "r" in shard.rooms
    assert balancer.admit("192.0.2.9")
    balancer.tick(1.0)  # the first look: the room is 1 s old
    assert "r" in shard.rooms and "192.0.2.9" not in balancer.buckets  # the bucket is full
    balancer.tick(6.0)  # old enough, but the next look is not due yet
    assert "r" in shard.rooms
    balancer.tick(1.0 + FORGET_INTERVAL)
    assert "r" not in shard.rooms


def test_a_redispatch_onto_a_parked_shard_leaves_one_connection_parked_there() -> None:
    balancer, reactor = make()
    first, second = rooms_on_both_shards(balancer)
    client = Client(balancer, reactor)
    client.send(request(f"/{second}"))
    idle, idle_transport, _ = client.backend()
    idle.dataReceived(OK)
    client.send(request(f"/{first}"))  # the connection to s2 is parked; s1 refuses
    client.refuse()
    retried, retried_transport, address = client.backend()
    assert address == ("127.0.0.1", 7002)
    retried.dataReceived(OK)
    client.send(request(f"/{first}"))  # back to s1: the retried connection is parked
    third, _, _ = client.backend()
    assert idle_transport.disconnecting and list(client.protocol.parked.values()) == [retried]
    idle.dataReceived(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    idle.connectionLost()
    assert client.transport.producer.transport is third.transport
    third.dataReceived(OK)
    client.send(request(f"/{second}"))
    assert retried_transport.value().count(b"GET ") == 2
    client.protocol.connectionLost()
    assert retried_transport.disconnecting and third.transport.disconnecting


@pytest.mark.parametrize("why", ["reload", "age"])
def test_a_connection_from_before_a_reload_or_parked_too_long_is_closed(why: str) -> None:
    reactor, client, (first, _), connections = on_both_shards()
    (_, transport1), (backend2, transport2) = connections
    balancer = client.protocol.balancer
    if why == "reload":
        balancer.router.configure(replace(Config(), balancer=balancer.settings))
    else:
        reactor.advance(PARKED_SECONDS + 1)
    backend2.dataReceived(OK)
    client.send(request(f"/{first}"))
    assert transport1.disconnecting and len(reactor.tcpClients) == 3
    if why == "age":  # only the one parked too long is closed
        assert list(client.protocol.parked.values()) == [backend2]
    else:
        assert transport2.disconnecting and not client.protocol.parked


@pytest.mark.parametrize("header", ["Connection: close", "Upgrade: websocket"])
def test_nothing_stays_parked_once_a_request_is_the_last(header: str) -> None:
    reactor, client, (first, _), connections = on_both_shards()
    (_, transport1), (backend2, transport2) = connections
    backend2.dataReceived(OK)
    upgrade = ["Connection: Upgrade"] if "Upgrade" in header else []
    client.send(request(f"/{first}", *upgrade, header))
    assert transport1.value().count(b"GET ") == 2 and not transport1.disconnecting
    assert transport2.disconnecting and not client.protocol.parked
    assert len(reactor.tcpClients) == 2


@pytest.mark.parametrize("second", [request("/a"), request("/a", "Connection: close")])
def test_a_reused_connection_closing_unanswered_sends_the_request_again(second: bytes) -> None:
    balancer, reactor, client, backend, transport = served_once()
    client.send(second)
    backend.connectionLost()  # the backend closed it as idle as the request went out
    fresh, fresh_transport, _ = client.backend()
    assert fresh_transport.value() == transport.value().split(b"\r\n\r\n")[1] + b"\r\n\r\n"
    assert balancer.stats.resent == {backend.target.name: 1}
    fresh.dataReceived(OK)
    assert client.received().count(b"200 OK") == 1


def test_a_request_is_sent_again_only_once() -> None:
    _, reactor, client, backend, _ = served_once()
    client.send(request("/a"))
    backend.connectionLost()
    fresh, _, _ = client.backend()
    fresh.connectionLost()  # the new connection never answered either
    assert client.received().endswith(b"the backend closed the connection\n")
    assert len(reactor.tcpClients) == 2


@pytest.mark.parametrize("second", [
    b"POST /a HTTP/1.1\r\nHost: vw\r\nContent-Length: 2\r\n\r\nhi",
    b"GET /a HTTP/1.1\r\nHost: vw\r\nContent-Length: 2\r\n\r\nhi",
    request("/a") + request("/a", "Connection: Upgrade", "Upgrade: websocket"),
])
def test_requests_that_may_not_be_sent_twice_get_502(second: bytes) -> None:
    balancer, reactor, client, backend, _ = served_once()
    client.send(second)
    backend.connectionLost()
    assert client.received().startswith(b"HTTP/1.1 502")
    assert len(reactor.tcpClients) == 1 and not balancer.stats.resent


def test_pipelined_requests_are_sent_again_once_and_a_paused_client_resumes() -> None:
    _, reactor, client, backend, transport = served_once()
    client.send(request("/a?x=1") + request("/a?x=2"))
    transport.producer.pauseProducing()  # this connection's write buffer was full
    assert client.transport.producerState == "paused"
    backend.connectionLost()
    assert client.transport.producerState == "producing"
    fresh, fresh_transport, _ = client.backend()
    assert fresh_transport.value().count(b"GET /a?x=") == 2
    fresh.dataReceived(OK)
    fresh.connectionLost()  # answered one, closed before the other: no third try
    answers = client.received()
    assert answers.count(b"200 OK") == 1 and b"HTTP/1.1 502" in answers
    assert len(reactor.tcpClients) == 2


@pytest.mark.parametrize("why", ["reload", "interim", "refused"])
def test_no_resend_to_a_replaced_backend_after_an_interim_answer_or_elsewhere(why: str) -> None:
    balancer, reactor, client, backend, _ = served_once()
    client.send(request("/a"))
    if why == "reload":
        balancer.router.configure(replace(Config(), balancer=balancer.settings))
    elif why == "interim":
        backend.dataReceived(b"HTTP/1.1 103 Early Hints\r\n\r\n")
    backend.connectionLost()
    if why == "refused":  # the new connection fails: 503, no other shard (rooms may differ)
        client.refuse()
        assert client.received().startswith(b"HTTP/1.1 503") and len(reactor.tcpClients) == 2
    elif why == "reload":
        assert client.received().startswith(b"HTTP/1.1 502") and len(reactor.tcpClients) == 1
    else:
        answers = client.received()
        assert answers.startswith(b"HTTP/1.1 103") and b"HTTP/1.1 502" in answers
        assert len(reactor.tcpClients) == 1


def test_after_an_interim_and_a_final_answer_the_next_request_may_be_sent_again() -> None:
    _, reactor, client, backend, _ = served_once()
    client.send(request("/a"))
    backend.dataReceived(b"HTTP/1.1 103 Early Hints\r\n\r\n" + OK)
    client.send(request("/a"))
    backend.connectionLost()
    assert len(reactor.tcpClients) == 2 and client.received().count(b"200 OK") == 1
