"""The compiled ChannelData relay (vw/turn/_channelrelay.c) on real loopback sockets: what a
lease covers is relayed, everything else reaches the Python handler byte for byte."""

from __future__ import annotations

import gc
import select
import signal
import socket
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vw.stun import (
    ChannelData,
    Data,
    DontFragment,
    Message,
    MessageClass,
    Method,
    RawAttribute,
    StunError,
    XorPeerAddress,
)
from vw.turn.fastpath import data_indication, parse_send
from vw.turn.leases import ChannelRelay, pack

pytestmark = pytest.mark.skipif(ChannelRelay is None, reason="vw.turn._channelrelay not built")

NOW = 1_700_000_000.0
CHANNEL = 0x4001


class Sockets:
    """The listening port, a relay port, a client and a peer, all bound on loopback."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.all = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(4)]
        for sock in self.all:
            sock.bind((host, 0))
            sock.setblocking(False)
        self.listening, self.relay, self.client, self.peer = self.all
        self.client.settimeout(2)
        self.peer.settimeout(2)

    def address(self, sock: socket.socket) -> tuple[str, int]:
        host, port = sock.getsockname()[:2]
        return host, port

    def client_leases(self, until: float = NOW + 60, channel: int = CHANNEL) -> dict:
        key = pack(self.address(self.client)) + channel.to_bytes(2, "big")
        return {key: (self.relay.fileno(), pack(self.address(self.peer)), until)}

    def send_leases(self, until: float = NOW + 60) -> dict:
        peer = pack(self.address(self.peer))
        return {pack(self.address(self.client)) + peer: (self.relay.fileno(), peer, until)}

    def peer_leases(self, until: float = NOW + 60, channel: int = CHANNEL) -> dict:
        return {pack(self.address(self.peer)): (self.listening.fileno(),
                                                pack(self.address(self.client)), until, channel)}

    def close(self) -> None:
        for sock in self.all:
            sock.close()


@pytest.fixture
def sockets() -> Iterator[Sockets]:
    ends = Sockets()
    yield ends
    ends.close()


class Handler:
    """The Python handler: remembers what it was given."""

    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, tuple[str, int]]] = []

    def __call__(self, data: bytes, address: tuple[str, int]) -> None:
        self.datagrams.append((data, address))


def clock() -> float:
    return NOW


def fail_test(error: BaseException, address: object) -> None:
    raise AssertionError(f"no handler should fail here ({address})") from error


def read(relay: ChannelRelay, fd: int, leases: object, now: float, limit: int,
         handler: object, from_peers: object) -> int:
    """Drain the one socket ``fd`` through an epoll object, ``limit`` datagrams at most."""
    with select.epoll() as ready:
        ready.register(fd, select.EPOLLIN)
        return relay.drain(ready.fileno(), {fd: (leases, handler, from_peers)}, lambda: now,
                           limit, limit)


def frame(data: bytes, channel: int = CHANNEL) -> bytes:
    return struct.pack("!HH", channel, len(data)) + data


def test_leased_channel_data_goes_to_the_peer(sockets: Sockets) -> None:
    relay, handler = ChannelRelay(fail_test), Handler()
    sockets.client.sendto(frame(b"hello"), sockets.address(sockets.listening))
    sockets.client.sendto(frame(b"pad") + b"\0", sockets.address(sockets.listening))
    count = read(relay, sockets.listening.fileno(), sockets.client_leases(), NOW, 16, handler,
                 False)
    assert count == 2 and handler.datagrams == []
    assert sockets.peer.recvfrom(100) == (b"hello", sockets.address(sockets.relay))
    assert sockets.peer.recvfrom(100) == (b"pad", sockets.address(sockets.relay))
    assert (relay.to_peers, relay.bytes_to_peers, relay.to_clients) == (2, 8, 0)


def test_leased_peer_data_goes_to_the_client_as_channel_data(sockets: Sockets) -> None:
    relay, handler = ChannelRelay(fail_test), Handler()
    for data in (b"media", b""):
        sockets.peer.sendto(data, sockets.address(sockets.relay))
    count = read(relay, sockets.relay.fileno(), sockets.peer_leases(), NOW, 16, handler, True)
    assert count == 2 and handler.datagrams == []
    for data in (b"media", b""):
        received, source = sockets.client.recvfrom(100)
        assert source == sockets.address(sockets.listening)
        assert received == ChannelData(CHANNEL, data).bytes()  # no padding over UDP
    assert (relay.to_clients, relay.bytes_to_clients, relay.to_peers) == (2, 5, 0)


@pytest.mark.parametrize("case", ["expired", "other channel", "no lease", "truncated",
                                  "trailing bytes", "stun", "short"])
def test_anything_not_leased_reaches_the_handler(sockets: Sockets, case: str) -> None:
    datagram = {
        "expired": frame(b"x"), "other channel": frame(b"x", CHANNEL + 1),
        "no lease": frame(b"x"), "truncated": frame(b"abcdef")[:-1],
        "trailing bytes": frame(b"abcd") + b"\0", "short": b"\x40\x01",
        "stun": bytes.fromhex("000100002112a442") + bytes(12),
    }[case]
    leases = {} if case == "no lease" else sockets.client_leases(
        until=NOW if case == "expired" else NOW + 60)
    relay, handler = ChannelRelay(fail_test), Handler()
    sockets.client.sendto(datagram, sockets.address(sockets.listening))
    assert read(relay, sockets.listening.fileno(), leases, NOW, 16, handler, False) == 1
    assert handler.datagrams == [(datagram, sockets.address(sockets.client))]
    assert relay.to_peers == 0


def test_an_unknown_or_expired_peer_reaches_the_handler(sockets: Sockets) -> None:
    relay, handler = ChannelRelay(fail_test), Handler()
    sockets.peer.sendto(b"one", sockets.address(sockets.relay))
    assert read(relay, sockets.relay.fileno(), {}, NOW, 16, handler, True) == 1
    sockets.peer.sendto(b"two", sockets.address(sockets.relay))
    expired = sockets.peer_leases(until=NOW - 1)
    assert read(relay, sockets.relay.fileno(), expired, NOW, 16, handler, True) == 1
    peer = sockets.address(sockets.peer)
    assert handler.datagrams == [(b"one", peer), (b"two", peer)] and relay.to_clients == 0


@pytest.mark.parametrize("broken", ["fd not an int", "negative fd", "address too short",
                                    "address not bytes", "until not a float", "until missing",
                                    "not a tuple"])
def test_malformed_leases_are_not_used(sockets: Sockets, broken: str) -> None:
    [(key, (fd, peer, until))] = sockets.client_leases().items()
    lease = {
        "fd not an int": (str(fd), peer, until), "negative fd": (-1, peer, until),
        "address too short": (fd, peer[:5], until), "address not bytes": (fd, bytearray(peer),
                                                                          until),
        "until not a float": (fd, peer, int(until)), "until missing": (fd, peer),
        "not a tuple": [fd, peer, until],
    }[broken]
    relay, handler = ChannelRelay(fail_test), Handler()
    sockets.client.sendto(frame(b"x"), sockets.address(sockets.listening))
    assert read(relay, sockets.listening.fileno(), {key: lease}, NOW, 16, handler, False) == 1
    assert len(handler.datagrams) == 1 and relay.to_peers == 0


@pytest.mark.parametrize("channel", [0x3FFF, 0x8000, -1, "0x4001"])
def test_peer_leases_with_impossible_channels_are_not_used(sockets: Sockets,
                                                           channel: object) -> None:
    relay, handler = ChannelRelay(fail_test), Handler()
    leases = sockets.peer_leases()
    key = next(iter(leases))
    leases[key] = (*leases[key][:3], channel)
    sockets.peer.sendto(b"x", sockets.address(sockets.relay))
    assert read(relay, sockets.relay.fileno(), leases, NOW, 16, handler, True) == 1
    assert len(handler.datagrams) == 1 and relay.to_clients == 0


def test_limit_and_an_empty_socket(sockets: Sockets) -> None:
    relay, handler = ChannelRelay(fail_test), Handler()
    for n in range(5):
        sockets.peer.sendto(bytes([n]), sockets.address(sockets.relay))
    fd = sockets.relay.fileno()
    assert read(relay, fd, {}, NOW, 2, handler, True) == 2
    assert read(relay, fd, {}, NOW, 16, handler, True) == 3
    assert read(relay, fd, {}, NOW, 16, handler, True) == 0
    assert [data for data, _ in handler.datagrams] == [bytes([n]) for n in range(5)]


def test_a_failing_handler_is_reported_and_the_rest_is_read(sockets: Sockets) -> None:
    errors: list[BaseException] = []

    def report(error: BaseException, address: tuple[str, int]) -> None:
        assert address == sockets.address(sockets.client)
        errors.append(error)

    relay = ChannelRelay(report)

    def fail(data: bytes, address: tuple[str, int]) -> None:
        raise RuntimeError(f"handler failed on {data!r}")

    for datagram in (frame(b"ok"), b"bad one", frame(b"later"), b"bad two"):
        sockets.client.sendto(datagram, sockets.address(sockets.listening))
    fd = sockets.listening.fileno()
    assert read(relay, fd, sockets.client_leases(), NOW, 16, fail, False) == 4
    assert [str(error) for error in errors] == ["handler failed on b'bad one'",
                                                "handler failed on b'bad two'"]
    assert errors[0].__traceback__ is not None
    assert [sockets.peer.recv(100) for _ in range(2)] == [b"ok", b"later"]
    assert relay.to_peers == 2


def test_a_failing_error_reporter_is_unraisable(sockets: Sockets) -> None:
    def broken(error: BaseException, address: object) -> None:
        raise ValueError("reporter failed")

    def fail(data: bytes, address: tuple[str, int]) -> None:
        raise RuntimeError("handler failed")

    relay, unraisable = ChannelRelay(broken), []
    sockets.client.sendto(b"x", sockets.address(sockets.listening))
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        assert read(relay, sockets.listening.fileno(), {}, NOW, 16, fail, False) == 1
    finally:
        sys.unraisablehook = hook
    assert len(unraisable) == 1 and isinstance(unraisable[0].exc_value, ValueError)


def test_the_constructor_and_drain_check_their_arguments(sockets: Sockets) -> None:
    with pytest.raises(TypeError):
        ChannelRelay()
    with pytest.raises(TypeError, match="on_error must be callable"):
        ChannelRelay("not callable")
    with pytest.raises(RuntimeError, match="__init__ was not called"):
        ChannelRelay.__new__(ChannelRelay).drain(0, {}, clock, 16, 16)
    with pytest.raises(ValueError, match="per_socket"):
        ChannelRelay(fail_test).drain(0, {}, clock, 16, 0)
    for lingering in [(5, lambda: 1.0, []), (6, None, []), (6, lambda: 1.0)]:
        with pytest.raises(ValueError, match="lingering takes"):
            ChannelRelay(fail_test).drain(5, {}, clock, 16, 16, *lingering)


def test_bad_arguments_raise_type_error(sockets: Sockets) -> None:
    relay = ChannelRelay(fail_test)
    sockets.client.sendto(frame(b"x"), sockets.address(sockets.listening))
    fd = sockets.listening.fileno()
    with pytest.raises(TypeError, match="not a .dict, handler, bool. tuple"):
        read(relay, fd, [], NOW, 16, Handler(), False)
    with select.epoll() as ready:
        ready.register(fd, select.EPOLLIN)
        with pytest.raises(TypeError):
            relay.drain("epoll", {}, clock, 16, 16)
        with pytest.raises(TypeError):
            relay.drain(ready.fileno(), [], clock, 16, 16)
        with pytest.raises(TypeError, match="not a .dict, handler, bool. tuple"):
            relay.drain(ready.fileno(), {fd: "reader"}, clock, 16, 16)
        with pytest.raises(TypeError, match="must be real number"):
            relay.drain(ready.fileno(), {fd: ({}, Handler(), False)}, lambda: "now", 16, 16)
        handler = Handler()
        assert relay.drain(ready.fileno(), {fd: ({}, handler, False)}, clock, 16, 16) == 1
    assert handler.datagrams == [(frame(b"x"), sockets.address(sockets.client))]


def test_sockets_without_a_reader_are_skipped(sockets: Sockets) -> None:
    """A socket removed by an earlier handler is left alone."""
    relay = ChannelRelay(fail_test)
    sockets.peer.sendto(b"x", sockets.address(sockets.relay))
    with select.epoll() as ready:
        ready.register(sockets.relay.fileno(), select.EPOLLIN)
        assert relay.drain(ready.fileno(), {}, clock, 16, 16) == 0
    assert sockets.relay.recv(10) == b"x"


def test_ipv6() -> None:
    try:
        ends = Sockets("::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        relay, handler = ChannelRelay(fail_test), Handler()
        ends.client.sendto(frame(b"six"), ends.address(ends.listening))
        assert read(relay, ends.listening.fileno(), ends.client_leases(), NOW, 16, handler,
                          False) == 1
        data, source = ends.peer.recvfrom(100)
        assert data == b"six" and source[:2] == ends.address(ends.relay)
        ends.peer.sendto(b"back", ends.address(ends.relay))
        assert read(relay, ends.relay.fileno(), ends.peer_leases(), NOW, 16, handler, True) == 1
        data, source = ends.client.recvfrom(100)
        assert data == ChannelData(CHANNEL, b"back").bytes()
        assert source[:2] == ends.address(ends.listening)
        ends.peer.sendto(b"indicated", ends.address(ends.relay))
        assert read(relay, ends.relay.fileno(), ends.peer_leases(channel=0), NOW, 16, handler,
                    True) == 1
        assert same_but_id(ends.client.recv(200), data_indication(ends.address(ends.peer),
                                                                  b"indicated"))
        assert handler.datagrams == []
    finally:
        ends.close()


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=40),
    st.tuples(st.sampled_from([CHANNEL, CHANNEL + 1, 0x3FFF, 0x7FFF, 0x8001]),
              st.integers(0, 40), st.binary(max_size=40)).map(
        lambda t: struct.pack("!HH", t[0], t[1]) + t[2]),
))
def test_fuzz_relayed_exactly_as_the_python_parser_reads_it(sockets: Sockets,
                                                              datagram: bytes) -> None:
    """A datagram is relayed only if ChannelData.parse reads it as the leased channel, and then
    exactly its data; every other one reaches the handler unchanged."""
    try:
        parsed: ChannelData | None = ChannelData.parse(datagram)
    except StunError:
        parsed = None
    relay, handler = ChannelRelay(fail_test), Handler()
    sockets.client.sendto(datagram, sockets.address(sockets.listening))
    assert read(relay, sockets.listening.fileno(), sockets.client_leases(), NOW, 16, handler,
                      False) == 1
    if parsed is not None and parsed.channel == CHANNEL:
        assert handler.datagrams == [] and relay.to_peers == 1
        assert sockets.peer.recvfrom(100)[0] == parsed.data
    else:
        assert handler.datagrams == [(datagram, sockets.address(sockets.client))]
        assert relay.to_peers == 0


def test_batches_keep_order_and_every_datagram(sockets: Sockets) -> None:
    """More datagrams than one socket's batch, from several relay sockets at once: the slots
    fill, are sent and reused; every datagram arrives once, in order."""
    relays = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(5)]
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(5)]
    try:
        readers = {}
        for n, (relay_socket, client) in enumerate(zip(relays, clients, strict=True)):
            relay_socket.bind(("127.0.0.1", 0))
            relay_socket.setblocking(False)
            client.bind(("127.0.0.1", 0))
            client.settimeout(2)
            leases = {pack(sockets.address(sockets.peer)): (
                sockets.listening.fileno(), pack(client.getsockname()), NOW + 60, CHANNEL + n)}
            readers[relay_socket.fileno()] = (leases, fail_test, True)
            for i in range(20):
                sockets.peer.sendto(b"%d-%d" % (n, i), relay_socket.getsockname())
        relay = ChannelRelay(fail_test)
        with select.epoll() as ready:
            for fd in readers:
                ready.register(fd, select.EPOLLIN)
            assert relay.drain(ready.fileno(), readers, clock, 1000, 16) == 100
        for n, client in enumerate(clients):
            got = [client.recv(100) for _ in range(20)]
            assert got == [ChannelData(CHANNEL + n, b"%d-%d" % (n, i)).bytes()
                           for i in range(20)]
        assert relay.to_clients == 100
    finally:
        for sock in relays + clients:
            sock.close()


def test_a_handler_that_revokes_stops_the_rest_of_the_batch(sockets: Sockets) -> None:
    leases = sockets.client_leases()
    handler = Handler()

    def revoke(data: bytes, address: tuple[str, int]) -> None:
        handler(data, address)
        leases.clear()

    for datagram in (frame(b"one"), b"not channel data", frame(b"two")):
        sockets.client.sendto(datagram, sockets.address(sockets.listening))
    relay = ChannelRelay(fail_test)
    assert read(relay, sockets.listening.fileno(), leases, NOW, 16, revoke, False) == 3
    assert sockets.peer.recv(100) == b"one"
    assert [data for data, _ in handler.datagrams] == [b"not channel data", frame(b"two")]


def test_the_clock_is_read_again_after_a_handler(sockets: Sockets) -> None:
    """A lease ends when the clock passes it, also in the middle of a batch."""
    now = [NOW]
    handler = Handler()

    def slow(data: bytes, address: tuple[str, int]) -> None:
        handler(data, address)
        now[0] = NOW + 61

    for datagram in (frame(b"one"), b"slow request", frame(b"two")):
        sockets.client.sendto(datagram, sockets.address(sockets.listening))
    relay, fd = ChannelRelay(fail_test), sockets.listening.fileno()
    with select.epoll() as ready:
        ready.register(fd, select.EPOLLIN)
        readers = {fd: (sockets.client_leases(until=NOW + 60), slow, False)}
        assert relay.drain(ready.fileno(), readers, lambda: now[0], 16, 16) == 3
    assert [data for data, _ in handler.datagrams] == [b"slow request", frame(b"two")]
    assert relay.to_peers == 1


def test_drain_may_not_be_called_from_its_handlers(sockets: Sockets) -> None:
    errors: list[BaseException] = []
    relay = ChannelRelay(lambda error, address: errors.append(error))
    fd = sockets.listening.fileno()

    def again(data: bytes, address: tuple[str, int]) -> None:
        relay.drain(0, {}, clock, 16, 16)

    sockets.client.sendto(b"x", sockets.address(sockets.listening))
    assert read(relay, fd, {}, NOW, 16, again, False) == 1
    assert [str(error) for error in errors] == [
        "drain is running already (called from a handler or another thread)"]


def test_keyboard_interrupt_and_system_exit_are_not_reported_but_raised(
        sockets: Sockets) -> None:
    def interrupt(data: bytes, address: tuple[str, int]) -> None:
        raise KeyboardInterrupt

    relay, fd = ChannelRelay(fail_test), sockets.listening.fileno()
    sockets.client.sendto(frame(b"relayed"), sockets.address(sockets.listening))
    sockets.client.sendto(b"x", sockets.address(sockets.listening))
    with pytest.raises(KeyboardInterrupt):
        read(relay, fd, sockets.client_leases(), NOW, 16, interrupt, False)
    assert sockets.peer.recv(100) == b"relayed"  # what was relayed before went out


def test_the_relay_and_what_it_reports_to_are_collected() -> None:
    class Owner:
        def __init__(self) -> None:
            self.relay = ChannelRelay(self.report)

        def report(self, error: BaseException, address: object) -> None:
            pass

    owner = Owner()
    gone = weakref.ref(owner)
    del owner
    gc.collect()
    assert gone() is None


class EventLoop:
    """An event loop's epoll object watching the relay's (as the reactor's does), one
    descriptor of its own, ``wake``, that gives it other work, and its queue of calls from
    other threads."""

    def __init__(self, sockets: Sockets) -> None:
        self.relayed = select.epoll()
        self.relayed.register(sockets.listening.fileno(), select.EPOLLIN)
        self.loop = select.epoll()
        self.loop.register(self.relayed.fileno(), select.EPOLLIN)
        self.wake_reader, self.wake_writer = socket.socketpair()
        self.loop.register(self.wake_reader.fileno(), select.EPOLLIN)
        self.calls: list[object] = []
        self.readers = {sockets.listening.fileno(): (sockets.client_leases(), Handler(), False)}

    def drain(self, relay: ChannelRelay, *spans: float) -> int:
        """Drain, lingering for each of ``spans`` in turn when asked, then the last one."""
        answers = list(spans)
        self.asked = 0

        def linger() -> float:
            self.asked += 1
            return answers.pop(0) if len(answers) > 1 else answers[0]

        return relay.drain(self.relayed.fileno(), self.readers, clock, 64, 16,
                           self.loop.fileno(), linger, self.calls)

    def close(self) -> None:
        for closable in (self.relayed, self.loop, self.wake_reader, self.wake_writer):
            closable.close()


@pytest.fixture
def loop(sockets: Sockets) -> Iterator[EventLoop]:
    event_loop = EventLoop(sockets)
    yield event_loop
    event_loop.close()


class Driver:
    """Work done on another thread while drain() runs on this one; ``late`` is set if drain()
    had not returned ``patience`` seconds after the work was done (then the driver wakes the
    event loop itself, so that the test ends). What the work raised is raised again here."""

    def __init__(self, loop: EventLoop, work: Callable[[], None], patience: float = 10) -> None:
        self.loop, self.work, self.patience = loop, work, patience
        self.returned, self.late = threading.Event(), False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.work()
        except BaseException as error:  # noqa: BLE001 - raised again on the test's thread
            self.error = error
        if not self.returned.wait(self.patience):
            self.late = True
            self.loop.wake_writer.send(b"!")

    def drain(self, relay: ChannelRelay, *spans: float) -> int:
        try:
            return self.loop.drain(relay, *(spans or (30.0,)))
        finally:
            self.returned.set()
            self.thread.join()
            if self.error is not None:
                raise self.error


def test_lingering_relays_until_the_event_loop_has_other_work(sockets: Sockets,
                                                              loop: EventLoop) -> None:
    """After a wake-up that only relayed, drain() waits on the event loop's epoll object and
    relays what comes next, until another of the loop's descriptors is ready."""
    seen: list[bytes] = []

    def client() -> None:
        for data in (b"one", b"two", b"three"):
            sockets.client.sendto(frame(data), sockets.address(sockets.listening))
            seen.append(sockets.peer.recv(100))
            time.sleep(0.05)  # the first pass of drain() is long over
        loop.wake_writer.send(b"!")

    driver = Driver(loop, client)
    assert driver.drain(ChannelRelay(fail_test)) == 3
    assert seen == [b"one", b"two", b"three"] and not driver.late


def test_lingering_ends_at_the_deadline(sockets: Sockets, loop: EventLoop) -> None:
    def client() -> None:
        sockets.client.sendto(frame(b"now"), sockets.address(sockets.listening))
        time.sleep(0.05)
        sockets.client.sendto(frame(b"later"), sockets.address(sockets.listening))

    driver = Driver(loop, client)
    assert driver.drain(ChannelRelay(fail_test), 1.0) == 2 and not driver.late
    assert [sockets.peer.recv(100) for _ in range(2)] == [b"now", b"later"]
    assert loop.drain(ChannelRelay(fail_test), 0.0) == 0


def test_linger_is_asked_again_after_handlers_ran(sockets: Sockets, loop: EventLoop) -> None:
    """A handler may have set a timer: drain() asks how long it may stay once handlers ran
    (and returns if no longer), not after passes that only relayed."""
    def client() -> None:
        time.sleep(0.05)
        sockets.client.sendto(frame(b"leased"), sockets.address(sockets.listening))
        assert sockets.peer.recv(100) == b"leased"
        sockets.client.sendto(b"not leased", sockets.address(sockets.listening))

    driver = Driver(loop, client)
    assert driver.drain(ChannelRelay(fail_test), 30.0, 0.0) == 2 and not driver.late
    assert loop.asked == 2
    handler = loop.readers[sockets.listening.fileno()][1]
    assert [data for data, _ in handler.datagrams] == [b"not leased"]


def test_lingering_goes_on_after_handlers_while_linger_allows(sockets: Sockets,
                                                             loop: EventLoop) -> None:
    def client() -> None:
        for data in (b"first", b"second"):
            time.sleep(0.05)
            sockets.client.sendto(data, sockets.address(sockets.listening))
        time.sleep(0.05)
        loop.wake_writer.send(b"!")

    driver = Driver(loop, client)
    assert driver.drain(ChannelRelay(fail_test), 30.0) == 2 and not driver.late
    handler = loop.readers[sockets.listening.fileno()][1]
    assert [data for data, _ in handler.datagrams] == [b"first", b"second"]
    assert loop.asked == 3


def test_a_failing_linger_is_raised(sockets: Sockets, loop: EventLoop) -> None:
    def broken() -> float:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        ChannelRelay(fail_test).drain(loop.relayed.fileno(), loop.readers, clock, 64, 16,
                                      loop.loop.fileno(), broken, loop.calls)


def test_a_call_from_another_thread_ends_lingering(sockets: Sockets, loop: EventLoop) -> None:
    """A call queued without a wake-up (one queued while the loop's waker was being read) is
    seen at the relay's next wake-up; a queue holding calls already means no lingering."""
    def relay_then_queue_then_send() -> None:
        time.sleep(0.05)
        sockets.client.sendto(frame(b"relayed"), sockets.address(sockets.listening))
        assert sockets.peer.recv(100) == b"relayed"  # drain() is lingering now
        loop.calls.append("a call")
        sockets.client.sendto(frame(b"left"), sockets.address(sockets.listening))

    driver = Driver(loop, relay_then_queue_then_send)
    assert driver.drain(ChannelRelay(fail_test)) == 1 and not driver.late
    driver = Driver(loop, lambda: None, patience=5)
    assert driver.drain(ChannelRelay(fail_test)) == 1 and not driver.late  # "left", no linger
    assert sockets.peer.recv(100) == b"left"


class Interrupted(Exception):
    """What the test's signal handler raises."""


def test_a_signal_handlers_exception_comes_out_of_a_lingering_drain(
        sockets: Sockets, loop: EventLoop) -> None:
    """The signal comes once drain() has relayed a datagram and lingers: its handler's
    exception ends drain() (were drain() gone already, it would come out of the join)."""
    def interrupted(number: int, frame: object) -> None:
        raise Interrupted

    main = threading.get_ident()

    def relay_then_signal() -> None:
        time.sleep(0.05)
        sockets.client.sendto(frame(b"relayed"), sockets.address(sockets.listening))
        assert sockets.peer.recv(100) == b"relayed"
        time.sleep(0.05)
        signal.pthread_kill(main, signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, interrupted)
    thread = threading.Thread(target=relay_then_signal, daemon=True)
    try:
        thread.start()
        with pytest.raises(Interrupted):
            loop.drain(ChannelRelay(fail_test), 30.0)
    finally:
        thread.join()
        signal.signal(signal.SIGUSR1, previous)


# --- Send and Data indications -------------------------------------------------------------


def send_indication(peer: tuple[str, int], data: bytes, *, fingerprint: bool = False,
                    extra: list | None = None, data_first: bool = False) -> bytes:
    attributes = [XorPeerAddress(*peer), Data(data)]
    if data_first:
        attributes.reverse()
    message = Message(Method.SEND, MessageClass.INDICATION,
                      attributes=attributes + (extra or []))
    return message.bytes(fingerprint=fingerprint)


def flip_last_bit(datagram: bytes) -> bytes:
    return datagram[:-1] + bytes([datagram[-1] ^ 1])


def same_but_id(message: bytes, expected: bytes) -> bool:
    """Whether two STUN messages say the same but for their transaction ids (which the
    XOR-PEER-ADDRESS of an IPv6 peer is masked with), padded alike with zeros."""
    got, wanted = Message.parse(message), Message.parse(expected)
    return (got.method, got.message_class, got.attributes, len(message)) == (
        wanted.method, wanted.message_class, wanted.attributes, len(expected)
    ) and got.bytes() == message


@pytest.mark.parametrize("form", ["plain", "fingerprint", "data first", "dont fragment"])
def test_a_leased_send_indication_goes_to_the_peer(sockets: Sockets, form: str) -> None:
    relay, handler = ChannelRelay(fail_test), Handler()
    peer = sockets.address(sockets.peer)
    datagram = send_indication(peer, b"sent", fingerprint=form == "fingerprint",
                               data_first=form == "data first",
                               extra=[DontFragment()] if form == "dont fragment" else None)
    assert parse_send(datagram) == (peer, b"sent")
    sockets.client.sendto(datagram, sockets.address(sockets.listening))
    assert read(relay, sockets.listening.fileno(), sockets.send_leases(), NOW, 16, handler,
                False) == 1
    assert handler.datagrams == []
    assert sockets.peer.recvfrom(100) == (b"sent", sockets.address(sockets.relay))
    assert (relay.to_peers, relay.bytes_to_peers) == (1, 4)


@pytest.mark.parametrize("case", ["bad fingerprint", "other peer", "expired", "unknown attribute",
                                  "two peers", "no data", "request"])
def test_any_other_send_indication_reaches_the_handler(sockets: Sockets, case: str) -> None:
    peer = sockets.address(sockets.peer)
    until = NOW - 1 if case == "expired" else NOW + 60
    datagram = {
        "bad fingerprint": flip_last_bit(send_indication(peer, b"x", fingerprint=True)),
        "other peer": send_indication((peer[0], peer[1] ^ 1), b"x"),
        "expired": send_indication(peer, b"x"),
        "unknown attribute": send_indication(peer, b"x", extra=[RawAttribute(0x8030, b"?")]),
        "two peers": send_indication(peer, b"x", extra=[XorPeerAddress(*peer)]),
        "no data": Message(Method.SEND, MessageClass.INDICATION,
                           attributes=[XorPeerAddress(*peer)]).bytes(),
        "request": Message(Method.SEND, MessageClass.REQUEST,
                           attributes=[XorPeerAddress(*peer), Data(b"x")]).bytes(),
    }[case]
    relay, handler = ChannelRelay(fail_test), Handler()
    sockets.client.sendto(datagram, sockets.address(sockets.listening))
    assert read(relay, sockets.listening.fileno(), sockets.send_leases(until), NOW, 16, handler,
                False) == 1
    assert handler.datagrams == [(datagram, sockets.address(sockets.client))]
    assert relay.to_peers == 0


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 1200])
def test_peer_data_goes_to_the_client_as_a_data_indication(sockets: Sockets, size: int) -> None:
    relay, handler = ChannelRelay(fail_test), Handler()
    payload = bytes(range(256)) * 5
    payload = payload[:size]
    sockets.peer.sendto(payload, sockets.address(sockets.relay))
    assert read(relay, sockets.relay.fileno(), sockets.peer_leases(channel=0), NOW, 16, handler,
                True) == 1
    indication, source = sockets.client.recvfrom(2000)
    assert source == sockets.address(sockets.listening) and handler.datagrams == []
    assert same_but_id(indication, data_indication(sockets.address(sockets.peer), payload))
    assert (relay.to_clients, relay.bytes_to_clients) == (1, size)


def test_data_indications_have_fresh_transaction_ids(sockets: Sockets) -> None:
    relay = ChannelRelay(fail_test)
    for _ in range(20):
        sockets.peer.sendto(b"x", sockets.address(sockets.relay))
    assert read(relay, sockets.relay.fileno(), sockets.peer_leases(channel=0), NOW, 32,
                Handler(), True) == 20
    ids = {sockets.client.recv(100)[8:20] for _ in range(20)}
    assert len(ids) == 20


@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["peer", "data", "dont fragment", "fingerprint",
                                 "bad fingerprint", "peer6", "other"]), max_size=5),
       st.binary(max_size=12), st.sampled_from([0, 1, 2, 4, 8]),
       st.none() | st.tuples(st.integers(0, 80), st.integers(1, 255)))
def test_fuzz_send_indications_relayed_exactly_as_the_python_fast_path_reads_them(
        sockets: Sockets, parts: list[str], payload: bytes, cut: int,
        flip: tuple[int, int] | None) -> None:
    """The compiled relay takes a Send indication only if vw.turn.fastpath.parse_send reads it
    (and its peer is leased), and then relays exactly the data parse_send reads: for
    well-formed ones, cut ones and ones with a byte changed anywhere (lengths, padding, the
    address family, the fingerprint)."""
    peer = sockets.address(sockets.peer)
    attributes = {"peer": XorPeerAddress(*peer), "data": Data(payload),
                  "peer6": XorPeerAddress("::1", peer[1]),
                  "dont fragment": DontFragment(), "other": RawAttribute(0x0024, b"1234")}
    body = Message(Method.SEND, MessageClass.INDICATION,
                   attributes=[attributes[p] for p in parts if p in attributes])
    datagram = body.bytes(fingerprint="fingerprint" in parts or "bad fingerprint" in parts)
    if "bad fingerprint" in parts:
        datagram = flip_last_bit(datagram)
    datagram = datagram[:len(datagram) - cut]
    if flip is not None and flip[0] < len(datagram):
        changed = bytearray(datagram)
        changed[flip[0]] ^= flip[1]
        datagram = bytes(changed)
    relay, handler = ChannelRelay(fail_test), Handler()
    sockets.client.sendto(datagram, sockets.address(sockets.listening))
    assert read(relay, sockets.listening.fileno(), sockets.send_leases(), NOW, 16, handler,
                False) == 1
    fast = parse_send(datagram)
    if fast is not None and fast[0] == peer:
        assert handler.datagrams == [] and sockets.peer.recvfrom(100)[0] == fast[1]
    else:
        assert handler.datagrams == [(datagram, sockets.address(sockets.client))]
