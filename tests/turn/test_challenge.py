"""The 401 that starts every allocation, leased to the compiled relay: the core says what it
is and until when, the relay answers with it byte for byte as the core would, and anything
else still reaches Python."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.turn.test_allocations import CLIENT, NOW, REALM, make_core
from tests.turn.test_channelrelay import Handler, Sockets, fail_test, read
from tests.turn.test_leases import Turn
from vw.stun import (
    TRANSPORT_UDP,
    Attribute,
    DontFragment,
    ErrorCode,
    EvenPort,
    Lifetime,
    Message,
    MessageClass,
    MessageIntegrity,
    Method,
    Nonce,
    RawAttribute,
    Realm,
    RequestedTransport,
    Software,
)
from vw.stun.constants import HEADER_LENGTH
from vw.turn.allocations import TurnCore
from vw.turn.leases import ChannelRelay

compiled = pytest.mark.skipif(ChannelRelay is None, reason="vw.turn._channelrelay not built")


def allocate(*attributes: Attribute, fingerprint: bool = False) -> bytes:
    """An Allocate request without credentials, as a browser's first."""
    request = Message(Method.ALLOCATE, MessageClass.REQUEST,
                      attributes=list(attributes or (RequestedTransport(TRANSPORT_UDP),)))
    return request.bytes(fingerprint=fingerprint)


def python_answer(core: TurnCore, datagram: bytes, client: tuple[str, int]) -> bytes | None:
    """What the core itself answers ``datagram`` with, if anything."""
    outputs = core.client_datagram(datagram, client, NOW)
    return outputs[0].data if outputs else None


# --- the core's side -----------------------------------------------------------------------


@pytest.mark.parametrize("fingerprint", [False, True])
@pytest.mark.parametrize("software", ["", "vw test"])
def test_the_challenge_is_the_cores_own_401(fingerprint: bool, software: str) -> None:
    core = make_core(software=software)
    attributes, since, until = core.challenge(NOW + 0.25)
    assert (since, until) == (NOW, NOW + 1)
    datagram = allocate(RequestedTransport(TRANSPORT_UDP), Lifetime(600), DontFragment(),
                        fingerprint=fingerprint)  # room for SOFTWARE under the limit
    answer = python_answer(core, datagram, CLIENT)
    assert answer is not None
    trailer = answer[len(answer) - 8:] if fingerprint else b""
    assert answer[HEADER_LENGTH:len(answer) - len(trailer)] == attributes
    message = Message.parse(answer)
    assert message.get(ErrorCode) == ErrorCode(401, "")
    assert message.get(Realm) == Realm(REALM)
    assert (message.get(Software) is not None) is bool(software)


def test_a_new_second_brings_a_new_challenge() -> None:
    core = make_core()
    first, _, until = core.challenge(NOW)
    second, since, later = core.challenge(until)
    assert (since, later) == (until, until + 1) and first != second
    assert Message.parse(b"\x01\x13" + len(second).to_bytes(2, "big") + allocate()[4:20]
                         + second).get(Nonce) == Nonce(core.auth.nonces.issue(until))


def test_admitting_counts_the_401_and_keeps_to_the_sources_budget() -> None:
    core = make_core(unauthenticated_rate=1)
    admitted = [core.challenge_admitted(CLIENT, NOW) for _ in range(10)]
    assert admitted[0] and not all(admitted)
    assert core.stats.refusals["401"] == sum(admitted)
    assert core.stats.refusals["rate"] == len(admitted) - sum(admitted)


# --- the compiled relay's side -------------------------------------------------------------


class Challenged:
    """A compiled relay with the core's challenge leased to the listening socket."""

    def __init__(self, sockets: Sockets, core: TurnCore, *, since: float = NOW,
                 until: float = NOW + 1, limit: float = 3.0,
                 admit: Callable[[tuple[str, int], float], bool] | None = None,
                 on_error: Callable[[BaseException, object], None] = fail_test) -> None:
        self.sockets, self.core = sockets, core
        self.relay, self.handler = ChannelRelay(on_error), Handler()
        attributes, _, _ = core.challenge(NOW)
        self.relay.challenge = (sockets.listening.fileno(), attributes, since, until, limit,
                                admit or core.challenge_admitted)

    def send(self, datagram: bytes) -> bytes | None:
        """Send from the client; what it got back, if anything."""
        self.sockets.client.sendto(datagram, self.sockets.address(self.sockets.listening))
        assert read(self.relay, self.sockets.listening.fileno(), {}, NOW, 16, self.handler,
                    False) == 1
        self.sockets.client.settimeout(0.05)
        try:
            return self.sockets.client.recv(2000)
        except TimeoutError:
            return None

    @property
    def client(self) -> tuple[str, int]:
        return self.sockets.address(self.sockets.client)


@pytest.fixture(params=["127.0.0.1", "::1"])
def sockets(request: pytest.FixtureRequest) -> Iterator[Sockets]:
    ends = Sockets(request.param)
    yield ends
    ends.close()


@compiled
@pytest.mark.parametrize("attributes", [
    (RequestedTransport(TRANSPORT_UDP),),
    (RequestedTransport(TRANSPORT_UDP), DontFragment()),
    (Lifetime(3600), RequestedTransport(TRANSPORT_UDP), DontFragment()),
])
@pytest.mark.parametrize("fingerprint", [False, True])
@pytest.mark.parametrize("software", ["", "vw test"])
def test_the_relay_answers_as_the_core_would(sockets: Sockets, attributes: tuple[Attribute, ...],
                                             fingerprint: bool, software: str) -> None:
    core = make_core(software=software, amplification_limit=10)
    challenged = Challenged(sockets, core, limit=10.0)
    request = Message(Method.ALLOCATE, MessageClass.REQUEST, attributes=list(attributes))
    datagram = request.bytes(fingerprint=fingerprint)
    answer = challenged.send(datagram)
    assert challenged.handler.datagrams == [] and challenged.relay.challenges == 1
    assert core.stats.refusals["401"] == 1
    expected = python_answer(make_core(software=software, amplification_limit=10), datagram,
                             challenged.client)
    assert answer == expected


@compiled
@pytest.mark.parametrize("room", [0, 1])
def test_an_answer_of_exactly_the_limit_is_sent(sockets: Sockets, room: int) -> None:
    """As in Python: an answer may be ``limit`` times its request, not a byte more."""
    datagram = allocate()
    answer_size = HEADER_LENGTH + len(make_core().challenge(NOW)[0])
    limit = (answer_size - room) / len(datagram)
    challenged = Challenged(sockets, make_core(amplification_limit=limit), limit=limit)
    answer = challenged.send(datagram)
    assert challenged.relay.challenges == (room == 0)
    if room == 0:
        assert answer is not None and len(answer) == answer_size
    else:
        assert challenged.handler.datagrams == [(datagram, challenged.client)]
        assert python_answer(challenged.core, datagram, challenged.client) is None


@compiled
@pytest.mark.parametrize("case", [
    "integrity", "unknown attribute", "even port", "bad fingerprint", "fingerprint not last",
    "binding request", "refresh request", "allocate indication", "truncated", "long",
    "overrun",
])
def test_any_other_request_reaches_python(sockets: Sockets, case: str) -> None:
    challenged = Challenged(sockets, make_core())
    transport = RequestedTransport(TRANSPORT_UDP)
    datagram = {
        "integrity": Message(Method.ALLOCATE, MessageClass.REQUEST,
                             attributes=[transport]).bytes(b"key"),
        "unknown attribute": allocate(transport, RawAttribute(0x0030, b"1234")),
        "even port": allocate(transport, EvenPort()),
        "bad fingerprint": allocate(transport, fingerprint=True)[:-1] + b"\0",
        "fingerprint not last": Message(
            Method.ALLOCATE, MessageClass.REQUEST,
            attributes=[transport]).bytes(fingerprint=True) + b"\x00\x1a\x00\x00",
        "binding request": Message(Method.BINDING, MessageClass.REQUEST).bytes(),
        "refresh request": Message(Method.REFRESH, MessageClass.REQUEST).bytes(),
        "allocate indication": Message(Method.ALLOCATE, MessageClass.INDICATION).bytes(),
        "truncated": allocate(transport)[:-4],
        "long": allocate(transport) + b"\0\0\0\0",
        "overrun": allocate(transport)[:22] + b"\x00\x08" + allocate(transport)[24:],
    }[case]
    assert challenged.send(datagram) is None
    assert challenged.handler.datagrams == [(datagram, challenged.client)]
    assert challenged.relay.challenges == 0


@compiled
@pytest.mark.parametrize("case", ["expired", "not yet", "another socket", "amplification",
                                  "none", "not a tuple", "limit not a float"])
def test_no_live_challenge_for_the_socket_leaves_it_to_python(sockets: Sockets,
                                                              case: str) -> None:
    core = make_core()
    since, until = {"expired": (NOW - 1, NOW), "not yet": (NOW + 1, NOW + 2)}.get(
        case, (NOW, NOW + 1))
    challenged = Challenged(sockets, core, since=since, until=until,
                            limit=1.0 if case == "amplification" else 3.0)
    fd, attributes, since, until, limit, admit = challenged.relay.challenge
    challenged.relay.challenge = {
        "another socket": (sockets.relay.fileno(), attributes, since, until, limit, admit),
        "none": None,
        "not a tuple": [fd, attributes, since, until, limit, admit],
        "limit not a float": (fd, attributes, since, until, 3, admit),
    }.get(case, challenged.relay.challenge)
    datagram = allocate()
    assert challenged.send(datagram) is None
    assert challenged.handler.datagrams == [(datagram, challenged.client)]
    assert challenged.relay.challenges == 0 and core.stats.refusals["401"] == 0


@compiled
def test_a_source_over_its_budget_gets_nothing(sockets: Sockets) -> None:
    core = make_core(unauthenticated_rate=1)
    challenged = Challenged(sockets, core)
    answers = [challenged.send(allocate()) for _ in range(8)]
    assert answers[0] is not None and None in answers
    assert challenged.handler.datagrams == []
    assert challenged.relay.challenges == core.stats.refusals["401"] == 8 - answers.count(None)
    assert core.stats.refusals["rate"] == answers.count(None)


@compiled
def test_a_failing_admit_is_reported_and_python_answers(sockets: Sockets) -> None:
    reports: list[tuple[BaseException, object]] = []

    def admit(client: tuple[str, int], now: float) -> bool:
        raise RuntimeError("admit failed")

    challenged = Challenged(sockets, make_core(), admit=admit,
                            on_error=lambda error, address: reports.append((error, address)))
    datagram = allocate()
    assert challenged.send(datagram) is None
    [(error, address)] = reports
    assert isinstance(error, RuntimeError) and address == challenged.client
    assert challenged.handler.datagrams == [(datagram, challenged.client)]


@compiled
def test_keyboard_interrupt_in_admit_is_raised(sockets: Sockets) -> None:
    def admit(client: tuple[str, int], now: float) -> bool:
        raise KeyboardInterrupt

    challenged = Challenged(sockets, make_core(), admit=admit)
    sockets.client.sendto(allocate(), sockets.address(sockets.listening))
    with pytest.raises(KeyboardInterrupt):
        read(challenged.relay, sockets.listening.fileno(), {}, NOW, 16, challenged.handler,
             False)


@compiled
def test_admit_may_lease_another_challenge(sockets: Sockets) -> None:
    core = make_core()
    leased: list[Challenged] = []
    litter: list[object] = []

    def admit(client: tuple[str, int], now: float) -> bool:
        size = len(leased[0].relay.challenge[1])
        leased[0].relay.challenge = None  # the tuple in use must outlive this
        # were it freed, new objects of its attributes' size would take its memory
        litter.extend(bytes([0xEE]) * size for _ in range(1000))
        return core.challenge_admitted(client, now)

    leased.append(Challenged(sockets, core, admit=admit))
    datagram = allocate()
    assert leased[0].send(datagram) == python_answer(make_core(), datagram, leased[0].client)
    assert leased[0].send(datagram) is None  # no challenge now: Python's
    assert leased[0].handler.datagrams == [(datagram, leased[0].client)]


@compiled
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["transport", "lifetime", "dont fragment", "even port",
                                 "unknown", "integrity"]), max_size=4),
       st.booleans(), st.sampled_from([0, 1, 2, 4, 8]),
       st.none() | st.tuples(st.integers(0, 60), st.integers(1, 255)))
def test_fuzz_whatever_the_relay_answers_the_core_answers_alike(
        sockets: Sockets, parts: list[str], fingerprint: bool, cut: int,
        flip: tuple[int, int] | None) -> None:
    """For well-formed requests, cut ones and ones with a byte changed anywhere: the relay
    answers only what the core answers with this very 401, and hands the rest over as it
    came."""
    attributes: dict[str, Attribute] = {
        "transport": RequestedTransport(TRANSPORT_UDP), "lifetime": Lifetime(600),
        "dont fragment": DontFragment(), "even port": EvenPort(),
        "unknown": RawAttribute(0x0030, b"12"), "integrity": MessageIntegrity(bytes(20))}
    request = Message(Method.ALLOCATE, MessageClass.REQUEST,
                      attributes=[attributes[part] for part in parts])
    datagram = request.bytes(fingerprint=fingerprint)
    datagram = datagram[:len(datagram) - cut]
    if flip is not None and flip[0] < len(datagram):
        changed = bytearray(datagram)
        changed[flip[0]] ^= flip[1]
        datagram = bytes(changed)
    challenged = Challenged(sockets, make_core())
    answer = challenged.send(datagram)
    if challenged.relay.challenges:
        assert answer == python_answer(make_core(), datagram, challenged.client)
        assert challenged.handler.datagrams == []
    else:
        assert answer is None
        assert challenged.handler.datagrams == [(datagram, challenged.client)]


# --- in the running service ----------------------------------------------------------------


@pytest.fixture(params=[True, False], ids=["compiled", "python"])
def turn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Turn]:
    if request.param and ChannelRelay is None:
        pytest.skip("vw.turn._channelrelay not built")
    service = Turn(tmp_path, request.param)
    yield service
    service.service.stopService()
    service.client.close()
    service.peer.close()


def first_allocate(turn: Turn) -> Message:
    turn.client.sendto(allocate(RequestedTransport(TRANSPORT_UDP), DontFragment()), turn.server)
    turn.pump()
    return Message.parse(turn.client.recv(2000))


def test_the_service_leases_each_seconds_challenge(turn: Turn) -> None:
    """The first Allocate of a second is Python's and leases the 401; the rest of that
    second's are the relay's; all alike but for their transaction ids, and all counted."""
    answers = [first_allocate(turn) for _ in range(3)]
    turn.clock.advance(1)
    answers += [first_allocate(turn) for _ in range(2)]
    nonces = [answer.get(Nonce) for answer in answers]
    assert all(answer.get(ErrorCode) == ErrorCode(401, "") for answer in answers)
    assert nonces[0] == nonces[1] == nonces[2] != nonces[3] == nonces[4]
    assert len({answer.transaction_id for answer in answers}) == 5
    compiled = turn.service.registry.get_sample_value("vw_turn_compiled_challenges")
    assert compiled == (3 if turn.service.channels is not None else None)
    errors = turn.service.registry.get_sample_value("vw_turn_compiled_send_errors")
    assert errors == (0 if turn.service.channels is not None else None)
    assert turn.service.core.stats.refusals["401"] == 5


def test_a_clock_stepped_back_gets_that_seconds_nonce(turn: Turn) -> None:
    """The leased 401 holds for its own second only: after the wall clock steps back, the
    nonce is the one the core issues then, and it authenticates."""
    first_allocate(turn)
    turn.clock.rightNow -= 3600
    answer = first_allocate(turn)
    core = turn.service.core
    assert answer.get(Nonce) == Nonce(core.auth.nonces.issue(turn.clock.seconds()))
    again = first_allocate(turn)
    assert again.get(Nonce) == answer.get(Nonce)
    if turn.service.channels is not None:
        assert turn.service.channels.relay.challenges == 1


@compiled
def test_stopping_the_listener_ends_the_challenge(tmp_path: Path) -> None:
    turn = Turn(tmp_path, compiled=True)
    first_allocate(turn)
    channels, listening = turn.service.channels, turn.service.listener.socket
    assert channels is not None and isinstance(listening, socket.socket)
    assert channels.relay.challenge is not None
    channels.remove(listening)
    assert channels.relay.challenge is None
    turn.service.stopService()
    turn.client.close()
    turn.peer.close()
