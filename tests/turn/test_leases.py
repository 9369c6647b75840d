"""vw-turn's leases in the running service, with the compiled relay and without it: channels
relay both ways alike, and a lease never outlives what the core decided."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher

import tests.turn.test_allocations as unit
from tests.turn.test_allocations import CLIENT, NOW, PEER, allocate, bind, make_core, signed
from vw.config import load
from vw.stun import (
    TRANSPORT_UDP,
    ChannelData,
    ChannelNumber,
    Data,
    Lifetime,
    Message,
    MessageClass,
    Method,
    Nonce,
    Realm,
    RequestedTransport,
    Username,
    XorPeerAddress,
    XorRelayedAddress,
    long_term_key,
)
from vw.turn.allocations import Address
from vw.turn.auth import rest_password
from vw.turn.leases import MAX_LEASES_PER_RELAY, ChannelPoller, ChannelRelay
from vw.turn.service import TurnService

SECRET, REALM = "lease test secret", "leases.example"
USER = f"{10 ** 10}:alice"
KEY = long_term_key(USER, REALM, rest_password(SECRET, USER))
CHANNEL = 0x4010


class Turn:
    """A TurnService on a memory reactor whose UDP sockets are real; the test turns the crank
    (:meth:`pump`) and plays client and peer on loopback."""

    def __init__(self, directory: Path, compiled: bool, extra: str = "") -> None:
        path = directory / "vw.toml"
        path.write_text(f"""
[general]
state_dir = "{directory / 'var'}"
bind = "127.0.0.1"
[xmpp.turn]
secret = "{SECRET}"
[turn]
udp_port = 0
realm = "{REALM}"
allowed_peers = ["127.0.0.1/32"]
compiled_relay = {'true' if compiled else 'false'}
{extra}
""")
        self.clock = MemoryReactorClock()
        self.clock.advance(1_700_000_000)
        self.service = TurnService(load(str(path)), self.clock)
        self.service.privilegedStartService()
        self.service.startService()
        self.server = self.service.listener.address()
        self.client, self.peer = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                                  for _ in range(2))
        for sock in (self.client, self.peer):
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(2)
        self.relay = ("", 0)

    def pump(self) -> None:
        """Let the datagrams sent so far arrive, and the service read them."""
        time.sleep(0.01)
        self.service.poller.doRead()

    def request(self, method: int, *attributes: object) -> Message:
        nonce = self.service.core.auth.nonces.issue(self.clock.seconds())
        message = Message(method, MessageClass.REQUEST, attributes=[
            *attributes, Username(USER), Realm(REALM), Nonce(nonce)])
        self.client.sendto(message.bytes(KEY), self.server)
        self.pump()
        answer = Message.parse(self.client.recv(2000))
        assert answer.message_class is MessageClass.SUCCESS, answer
        return answer

    def allocate_and_bind(self, lifetime: int = 600) -> None:
        answer = self.request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP),
                              Lifetime(lifetime))
        relayed = answer.get(XorRelayedAddress)
        assert relayed is not None
        self.relay = relayed.address
        self.request(Method.CHANNEL_BIND, ChannelNumber(CHANNEL),
                     XorPeerAddress(*self.peer.getsockname()))

    def to_peer(self, data: bytes) -> bytes | None:
        """Send ChannelData from the client; what the peer got from the relay, if anything."""
        return self.from_client(ChannelData(CHANNEL, data).bytes())

    def from_client(self, datagram: bytes) -> bytes | None:
        """Send from the client to the server; what the peer got from the relay, if anything."""
        self.client.sendto(datagram, self.server)
        self.pump()
        return received(self.peer, self.relay)

    def from_peer(self, data: bytes) -> bytes | None:
        """Send from the peer to the relay; what the client got from the server, if anything."""
        self.peer.sendto(data, self.relay)
        self.pump()
        return received(self.client, self.server)

    def to_client(self, data: bytes) -> bytes | None:
        """Send from the peer to the relay; the ChannelData's data the client got, if any."""
        frame = self.from_peer(data)
        if frame is None:
            return None
        parsed = ChannelData.parse(frame)
        assert frame == ChannelData(CHANNEL, parsed.data).bytes()  # no padding over UDP
        return parsed.data

    def allocate_and_permit(self) -> None:
        answer = self.request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP))
        self.relay = answer.get(XorRelayedAddress).address  # type: ignore[union-attr]
        self.request(Method.CREATE_PERMISSION, XorPeerAddress(*self.peer.getsockname()))

    def send_to_peer(self, data: bytes) -> bytes | None:
        """A Send indication from the client; what the peer got from the relay, if anything."""
        message = Message(Method.SEND, MessageClass.INDICATION, attributes=[
            XorPeerAddress(*self.peer.getsockname()), Data(data)])
        return self.from_client(message.bytes(fingerprint=True))

    def indicated_to_client(self, data: bytes) -> bytes | None:
        """Send from the peer to the relay; the Data indication's data the client got."""
        indication = self.from_peer(data)
        if indication is None:
            return None
        message = Message.parse(indication)
        assert (message.method, message.message_class) == (Method.DATA,
                                                           MessageClass.INDICATION)
        assert [type(a) for a in message.attributes] == [XorPeerAddress, Data]
        assert message.get(XorPeerAddress).address == self.peer.getsockname()  # type: ignore
        return message.get(Data).value  # type: ignore[union-attr]

    @property
    def leases(self) -> int:
        channels = self.service.channels
        return 0 if channels is None else channels.leases

    def close(self) -> None:
        self.service.stopService()
        self.clock.advance(60)
        self.client.close()
        self.peer.close()


def received(sock: socket.socket, source: tuple[str, int]) -> bytes | None:
    """What ``sock`` holds from ``source``: loopback delivers a datagram within the sendto
    that sends it, so nothing here means nothing was sent."""
    sock.setblocking(False)
    try:
        data, sender = sock.recvfrom(70000)
    except BlockingIOError:
        return None
    finally:
        sock.settimeout(2)
    assert sender == source
    return data


MODES = [pytest.param(True, id="compiled", marks=pytest.mark.skipif(
    ChannelRelay is None, reason="vw.turn._channelrelay not built")),
    pytest.param(False, id="python")]


@pytest.fixture(params=MODES)
def turn(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Turn]:
    harness = Turn(tmp_path, request.param)
    assert (harness.service.channels is not None) is request.param
    yield harness
    harness.close()


@pytest.mark.parametrize("media", ["channels", "indications"])
def test_media_relays_both_ways_and_is_counted(turn: Turn, media: str) -> None:
    if media == "channels":
        turn.allocate_and_bind()
        up, down = turn.to_peer, turn.to_client
    else:
        turn.allocate_and_permit()
        up, down = turn.send_to_peer, turn.indicated_to_client
    for n in range(3):
        assert up(b"up %d" % n) == b"up %d" % n
        assert down(b"down %d!" % n) == b"down %d!" % n
    service = turn.service
    assert [service.relayed(key) for key in ("to_peers", "to_clients", "bytes_to_peers",
                                             "bytes_to_clients")] == [3, 3, 12, 21]
    if service.channels is not None:
        # the first datagram each way went through Python, which leased the rest
        assert turn.leases == 2
        assert (service.channels.relay.to_peers, service.channels.relay.to_clients) == (2, 2)
        assert (service.core.stats.to_peers, service.core.stats.to_clients) == (1, 1)


@pytest.mark.skipif(ChannelRelay is None, reason="vw.turn._channelrelay not built")
def test_leases_through_a_relay_are_capped_and_scoped_or_ipv6_sends_not_leased() -> None:
    """A permission covers every port of its peer: leases per relay socket stop at a cap."""
    poller = ChannelPoller(MemoryReactorClock(), "test", time.time)
    relay = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        poller.add(relay, lambda data, address: None)
        client, until = ("192.0.2.1", 4000), time.time() + 60
        for port in range(1, 2 * MAX_LEASES_PER_RELAY):
            poller.lease_send(client, ("198.51.100.1", port), relay.fileno(), until)
            poller.lease_peer(relay.fileno(), ("198.51.100.1", port), 99, client, 0, until)
        assert poller.leases == 2 * MAX_LEASES_PER_RELAY
        poller.revoke(relay.fileno())
        poller.lease_send(client, ("2001:db8::1", 1), relay.fileno(), until)
        poller.lease_send(("fe80::1%lo", 1), ("198.51.100.1", 1), relay.fileno(), until)
        poller.lease_peer(relay.fileno(), ("fe80::2%lo", 1), 99, client, 0, until)
        assert poller.leases == 0
        poller.lease_send(client, ("198.51.100.1", 1), relay.fileno(), until)
        assert poller.leases == 1
    finally:
        relay.close()


def test_binding_a_channel_ends_the_data_indications(turn: Turn) -> None:
    turn.allocate_and_permit()
    assert turn.send_to_peer(b"a") == b"a"
    assert turn.indicated_to_client(b"b") == b"b"
    assert turn.indicated_to_client(b"leased") == b"leased"
    turn.request(Method.CHANNEL_BIND, ChannelNumber(CHANNEL),
                 XorPeerAddress(*turn.peer.getsockname()))
    assert turn.to_client(b"as ChannelData") == b"as ChannelData"
    assert turn.send_to_peer(b"Send goes on") == b"Send goes on"


def test_deleting_the_allocation_stops_relaying_at_once(turn: Turn) -> None:
    turn.allocate_and_bind()
    assert turn.to_peer(b"a") == b"a" and turn.to_client(b"b") == b"b"
    assert turn.to_peer(b"leased") == b"leased" and turn.to_client(b"leased") == b"leased"
    turn.request(Method.REFRESH, Lifetime(0))
    assert turn.leases == 0
    assert turn.to_peer(b"after") is None
    assert turn.to_client(b"after") is None


def test_a_refresh_revokes_and_the_next_datagram_leases_again(turn: Turn) -> None:
    turn.allocate_and_bind(lifetime=3600)
    assert turn.to_peer(b"a") == b"a" and turn.to_client(b"b") == b"b"
    assert turn.leases == (2 if turn.service.channels is not None else 0)
    turn.request(Method.REFRESH, Lifetime(600))  # shorter: every lease ends
    assert turn.leases == 0
    assert turn.to_peer(b"c") == b"c" and turn.to_client(b"d") == b"d"
    assert turn.leases == (2 if turn.service.channels is not None else 0)


def test_ended_leases_are_pruned_every_tick(turn: Turn) -> None:
    turn.allocate_and_bind()
    assert turn.to_peer(b"a") == b"a" and turn.to_client(b"b") == b"b"
    turn.clock.advance(299)
    turn.service.expire()
    assert turn.leases == (2 if turn.service.channels is not None else 0)
    turn.clock.advance(1)  # the permission's 300 s are up
    turn.service.expire()
    assert turn.leases == 0


def test_leases_end_with_the_permission(turn: Turn) -> None:
    turn.allocate_and_bind()
    assert turn.to_peer(b"a") == b"a" and turn.to_client(b"b") == b"b"
    dropped = turn.service.core.stats.dropped
    turn.clock.advance(301)  # the permission (300 s) lapses; the channel (600 s) does not
    assert turn.to_peer(b"late") is None
    assert turn.to_client(b"late") is None
    assert turn.service.core.stats.dropped == dropped + 2
    turn.request(Method.CHANNEL_BIND, ChannelNumber(CHANNEL),
                 XorPeerAddress(*turn.peer.getsockname()))
    assert turn.to_peer(b"again") == b"again"


def test_an_expired_allocation_closes_its_relay_and_leases(turn: Turn) -> None:
    turn.allocate_and_bind()
    assert turn.to_peer(b"a") == b"a" and turn.to_client(b"b") == b"b"
    turn.clock.advance(601)
    turn.service.expire()
    assert turn.service.relays == {} and turn.leases == 0
    assert turn.to_peer(b"late") is None


@pytest.mark.parametrize("compiled", MODES)
def test_a_bandwidth_cap_takes_no_lease(tmp_path: Path, compiled: bool) -> None:
    turn = Turn(tmp_path, compiled, "max_bandwidth = 100000")
    try:
        turn.allocate_and_bind()
        for data in (b"one", b"two"):
            assert turn.to_peer(data) == data and turn.to_client(data) == data
        assert turn.leases == 0
        assert turn.service.core.stats.to_peers == 2
    finally:
        turn.close()


@pytest.mark.skipif(ChannelRelay is None, reason="vw.turn._channelrelay not built")
def test_a_failing_handler_is_logged_and_the_others_are_served() -> None:
    clock, handled, failures = MemoryReactorClock(), [], []

    def fail(data: bytes, address: tuple[str, int]) -> None:
        raise RuntimeError("handler failed")

    def log(event: dict) -> None:
        if event.get("log_level") == LogLevel.critical:
            failures.append(event)

    poller = ChannelPoller(clock, "test", clock.seconds)
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    globalLogPublisher.addObserver(log)
    try:
        for sock, handler in zip(sockets[:2], [fail, lambda d, a: handled.append(d)],
                                 strict=True):
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            poller.add(sock, handler)
        for sock in sockets[:2]:
            for data in (b"1", b"2"):
                sockets[2].sendto(data, sock.getsockname())
        time.sleep(0.01)
        poller.doRead()
        sender = ("127.0.0.1", sockets[2].getsockname()[1])
    finally:
        globalLogPublisher.removeObserver(log)
        for sock in sockets:
            sock.close()
    assert handled == [b"1", b"2"] and [event["address"] for event in failures] == [sender] * 2


class LeasedStream:
    """A ChannelPoller on a fresh epoll reactor, relaying one leased channel from ``client``
    to ``peer``; its wake-ups (``doRead`` calls) are counted."""

    def __init__(self) -> None:
        self.reactor = EPollReactor()
        self.poller = ChannelPoller(self.reactor, "test", self.reactor.seconds)
        self.reads = 0
        self.sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
        self.listening, relay, self.client, self.peer = self.sockets
        for sock in self.sockets:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
        self.poller.add(self.listening, lambda data, address: None)
        self.poller.serve_clients(self.listening)
        self.poller.add(relay, lambda data, address: None)
        self.poller.lease_client(self.client.getsockname(), CHANNEL, relay.fileno(),
                                 self.peer.getsockname(), time.time() + 60)
        counted_read = self.poller.doRead

        def read() -> None:
            self.reads += 1
            counted_read()

        self.poller.doRead = read  # type: ignore[method-assign]

    def send(self, count: int = 1) -> None:
        for _ in range(count):
            self.client.sendto(ChannelData(CHANNEL, b"media").bytes(),
                               self.listening.getsockname())

    def close(self) -> None:
        self.poller.connectionLost(None)  # type: ignore[arg-type]
        self.reactor.waker.connectionLost(None)
        self.reactor._poller.close()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def stream() -> Iterator[LeasedStream]:
    if ChannelRelay is None:
        pytest.skip("vw.turn._channelrelay not built")
    leased = LeasedStream()
    yield leased
    leased.close()


def test_the_reactor_keeps_its_timers_and_threads_while_the_relay_lingers(
        stream: LeasedStream) -> None:
    """Under a real epoll reactor a stream of leased ChannelData is relayed in few wake-ups,
    and the reactor's timers and calls from other threads still run in time."""
    reactor, stopping, lateness = stream.reactor, threading.Event(), {}

    def note(what: str, due: float) -> None:
        lateness[what] = reactor.seconds() - due

    def media() -> None:
        for burst in range(2_000):
            if stopping.is_set():
                return
            stream.send(10)
            if burst == 10:
                reactor.callFromThread(note, "thread", time.time())
            time.sleep(0.001)

    thread = threading.Thread(target=media, daemon=True)
    reactor.callWhenRunning(thread.start)
    reactor.callLater(0.5, note, "timer", reactor.seconds() + 0.5)
    reactor.callLater(1.0, reactor.stop)
    try:
        reactor.run(installSignalHandlers=False)
    finally:
        stopping.set()
        thread.join()
    relayed = stream.poller.relay.to_peers
    assert sorted(lateness) == ["thread", "timer"] and max(lateness.values()) < 0.25
    assert relayed > 100 and stream.reads < relayed / 10


def test_a_call_queued_while_the_waker_is_read_does_not_wait_for_the_linger(
        stream: LeasedStream, monkeypatch: pytest.MonkeyPatch) -> None:
    """The waker and the relay ready at once: the waker's read empties its pipe, and the
    call it announced is still queued when the relay would linger."""
    monkeypatch.setattr("vw.turn.leases.LINGER_MAX", 30.0)
    reactor, called = stream.reactor, []
    reactor.running = True  # as within reactor.run(), which would run the call at once
    reactor.callFromThread(called.append, "call")
    stream.send()
    time.sleep(0.05)
    started = time.monotonic()
    reactor.doIteration(5)
    assert time.monotonic() - started < 10 and stream.poller.relay.to_peers == 1
    reactor.runUntilCurrent()
    assert called == ["call"]


# --- the core's side: routes and when they change ---------------------------------------------


def test_routes_last_until_the_first_expiry_of_allocation_channel_and_permission() -> None:
    relays: list[Address] = []
    core = make_core(routes_changed=relays.append)
    relay = allocate(core).get(XorRelayedAddress).address  # expires NOW + 600
    bind(core, CHANNEL, now=NOW + 100)  # channel NOW + 700, permission NOW + 400
    assert relays == [relay]  # the peer's data now goes as ChannelData
    relays.clear()
    assert core.channel_route(CLIENT, CHANNEL, NOW + 100) == (PEER, NOW + 400)
    assert core.send_route(CLIENT, PEER, NOW + 100) == NOW + 400
    assert core.peer_route(relay, PEER, NOW + 100) == (CLIENT, CHANNEL, NOW + 400)
    signed(core, Method.CREATE_PERMISSION, XorPeerAddress(PEER[0], 1), now=NOW + 350)
    # the permission now lasts to NOW + 650: the allocation ends first
    assert core.channel_route(CLIENT, CHANNEL, NOW + 350) == (PEER, NOW + 600)
    signed(core, Method.REFRESH, Lifetime(600), now=NOW + 380)  # to NOW + 980
    assert relays == [relay]
    assert core.channel_route(CLIENT, CHANNEL, NOW + 380) == (PEER, NOW + 650)  # permission
    signed(core, Method.CREATE_PERMISSION, XorPeerAddress(PEER[0], 1), now=NOW + 600)
    assert core.channel_route(CLIENT, CHANNEL, NOW + 600) == (PEER, NOW + 700)  # the channel
    assert core.peer_route(relay, PEER, NOW + 600) == (CLIENT, CHANNEL, NOW + 700)
    assert core.channel_route(CLIENT, CHANNEL, NOW + 700) is None  # the end is exclusive
    # the channel gone, the peer's data goes in Data indications while it is permitted
    assert core.peer_route(relay, PEER, NOW + 700) == (CLIENT, 0, NOW + 900)
    assert core.send_route(CLIENT, PEER, NOW + 700) == NOW + 900
    assert core.send_route(CLIENT, PEER, NOW + 900) is None


def test_indications_route_while_the_peer_is_permitted_and_no_channel_is_bound() -> None:
    relays: list[Address] = []
    core = make_core(routes_changed=relays.append)
    relay = allocate(core).get(XorRelayedAddress).address  # expires NOW + 600
    signed(core, Method.CREATE_PERMISSION, XorPeerAddress(PEER[0], 1), now=NOW + 100)
    assert core.send_route(CLIENT, PEER, NOW + 100) == NOW + 400
    assert core.send_route(CLIENT, ("127.0.0.1", PEER[1] + 1), NOW + 100) == NOW + 400
    assert core.send_route(CLIENT, ("127.0.0.2", PEER[1]), NOW + 100) is None  # no permission
    assert core.send_route(("198.51.100.99", 1), PEER, NOW + 100) is None  # no allocation
    assert core.peer_route(relay, PEER, NOW + 100) == (CLIENT, 0, NOW + 400)
    assert relays == []
    bind(core, CHANNEL, now=NOW + 200)
    assert relays == [relay]  # the Data indication lease ends with the binding
    assert core.peer_route(relay, PEER, NOW + 200) == (CLIENT, CHANNEL, NOW + 500)
    bind(core, CHANNEL, now=NOW + 250)  # a refresh of a live binding (to NOW + 850)
    assert relays == [relay]  # changes no route
    signed(core, Method.REFRESH, Lifetime(3600), now=NOW + 300)
    signed(core, Method.CREATE_PERMISSION, XorPeerAddress(PEER[0], 1), now=NOW + 800)
    relays.clear()
    assert core.peer_route(relay, PEER, NOW + 851) == (CLIENT, 0, NOW + 1100)
    bind(core, CHANNEL, now=NOW + 860)  # bound again once expired: the route changes
    assert relays == [relay]


def test_no_route_without_channel_or_permission_or_with_a_cap() -> None:
    core = make_core()
    relay = allocate(core).get(XorRelayedAddress).address
    assert core.channel_route(CLIENT, CHANNEL, NOW) is None
    assert core.peer_route(relay, PEER, NOW) is None
    assert core.channel_route(("198.51.100.99", 1), CHANNEL, NOW) is None
    assert core.peer_route(("192.0.2.99", 1), PEER, NOW) is None
    capped = make_core(max_bandwidth=1000)
    capped_relay = allocate(capped).get(XorRelayedAddress).address
    bind(capped, CHANNEL)
    assert capped.channel_route(CLIENT, CHANNEL, NOW) is None
    assert capped.peer_route(capped_relay, PEER, NOW) is None
    assert capped.send_route(CLIENT, PEER, NOW) is None


@pytest.mark.parametrize("end", ["refresh 0", "expiry", "expired on use"])
def test_the_core_says_when_an_allocation_ends(end: str) -> None:
    relays: list[Address] = []
    core = make_core(routes_changed=relays.append)
    relay = allocate(core).get(XorRelayedAddress).address
    bind(core, CHANNEL)
    relays.clear()
    if end == "refresh 0":
        request = Message(Method.REFRESH, MessageClass.REQUEST, attributes=[
            Lifetime(0), Username(unit.USER), Realm(unit.REALM),
            Nonce(core.auth.nonces.issue(NOW))])
        core.client_datagram(request.bytes(unit.KEY), CLIENT, NOW)
    elif end == "expiry":
        core.expire(NOW + 601)
    else:
        core.client_datagram(ChannelData(CHANNEL, b"late").bytes(), CLIENT, NOW + 601)
    assert relays == [relay]
    assert core.channel_route(CLIENT, CHANNEL, NOW) is None
