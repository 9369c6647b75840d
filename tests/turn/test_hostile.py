"""Hostile input against the sans-IO TURN core (RFC 8489, RFC 8656).

Every attack comes from ``ATTACKER`` (who holds an allocation of their own) while a second
client, the witness, has a channel bound to a public peer; after each attack the witness's
allocation must still relay both ways. The peer policy is the default one: nothing is allowed
besides the public internet.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from tests.turn.test_allocations import (
    CLIENT,
    NOW,
    REALM,
    SECRET,
    USER,
    allocate,
    answer,
    error,
    make_core,
    send,
    signed,
)
from vw.stun import (
    TRANSPORT_UDP,
    Attribute,
    ChannelData,
    ChannelNumber,
    Data,
    Lifetime,
    Message,
    MessageClass,
    MessageIntegrity,
    Method,
    Nonce,
    RawAttribute,
    Realm,
    RequestedTransport,
    UnknownAttributes,
    Username,
    XorMappedAddress,
    XorPeerAddress,
    check_integrity,
    long_term_key,
)
from vw.turn.allocations import Address, Client, Output, StreamClient, TurnCore
from vw.turn.auth import Nonces, rest_password
from vw.turn.peers import PeerPolicy
from vw.turn.stream import TurnStreamProtocol

if TYPE_CHECKING:
    from vw.turn.service import TurnService

ATTACKER = CLIENT
WITNESS = ("192.0.2.77", 41000)
WITNESS_USER = f"{int(NOW) + 86400}:witness"
#: A public address: allowed by the default policy (nothing is ever sent in these tests).
WITNESS_PEER = ("11.0.0.1", 7000)
PUBLIC_PEER = ("11.0.0.2", 7001)
WITNESS_CHANNEL = 0x4000

fuzz = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: One address or more in each range the default policy refuses, as XOR-PEER-ADDRESS hosts.
DENIED_PEERS = [
    # loopback, "this" network
    "127.0.0.1", "127.255.255.254", "0.0.0.0", "0.1.2.3",
    # RFC 1918
    "10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.254", "192.168.0.1",
    "192.168.255.254",
    # carrier-grade NAT, link-local and the cloud metadata address
    "100.64.0.1", "100.127.255.254", "169.254.0.1", "169.254.169.254",
    # multicast, reserved, broadcast
    "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    # IPv6 loopback, unspecified, unique local, link-local, multicast, NAT64
    "::1", "::", "fc00::1", "fdff::1", "fe80::1", "febf::1", "ff02::1", "ff0e::1",
    "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1",
    # IPv4 embedded in IPv6: mapped, compatible, translated, 6to4
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:192.168.1.1",
    "::ffff:0.0.0.0", "::ffff:255.255.255.255", "::127.0.0.1", "::ffff:0:169.254.169.254",
    "2002:a9fe:a9fe::1", "2002:7f00:1::1",
]

MALFORMED_USERNAMES = {
    "expired": f"{int(NOW) - 1}:alice",
    "expired-at-epoch": "0:alice",
    "no-colon": "alice",
    "non-numeric-expiry": "tomorrow:alice",
    "empty": "",
    "empty-expiry": ":alice",
    "negative-expiry": f"-{int(NOW) + 60}:alice",
    "fractional-expiry": f"{int(NOW) + 60}.5:alice",
    "spaced-expiry": f" {int(NOW) + 60}:alice",
    "arabic-digits": "".join(chr(0x0660 + int(d)) for d in str(int(NOW) + 60)) + ":alice",
    "21-digit-expiry": "9" * 21 + ":alice",
}


# --- the arena: an attacker and a witness --------------------------------------------------


def arena(**options: int) -> TurnCore:
    """A core with the default peer policy, the attacker's allocation and the witness's, whose
    channel is bound to ``WITNESS_PEER``."""
    core = make_core(PeerPolicy(), **options)
    assert error(allocate(core)) is None
    assert error(allocate(core, WITNESS, WITNESS_USER)) is None
    bound = signed(core, Method.CHANNEL_BIND, ChannelNumber(WITNESS_CHANNEL),
                   XorPeerAddress(*WITNESS_PEER), user=WITNESS_USER, client=WITNESS)
    assert error(bound) is None
    return core


@pytest.fixture
def core() -> TurnCore:
    return arena()


def witness_relays(core: TurnCore, now: float = NOW) -> None:
    """The witness's channel still carries data both ways."""
    relay = core.allocations[WITNESS].relay
    frame = ChannelData(WITNESS_CHANNEL, b"ping").bytes()
    assert core.client_datagram(frame, WITNESS, now) == [
        Output("peer", b"ping", WITNESS_PEER, relay)]
    [back] = core.peer_datagram(relay, b"pong", WITNESS_PEER, now)
    assert (back.kind, back.address, back.relay) == ("client", WITNESS, None)
    assert ChannelData.parse(back.data) == ChannelData(WITNESS_CHANNEL, b"pong")


def key_of(user: str, secret: str = SECRET, realm: str = REALM) -> bytes:
    return long_term_key(user, realm, rest_password(secret, user))


def request(
    method: int,
    *attributes: Attribute,
    user: str | None = USER,
    key: bytes | None = None,
    nonce: str | None = None,
    sha256: bool = False,
    transaction_id: bytes = bytes(range(12)),
) -> bytes:
    """A request with long-term credentials (USERNAME, REALM, NONCE, integrity with ``key``,
    by default the REST key of ``user``); ``user`` None: an unauthenticated one."""
    message = Message(method, MessageClass.REQUEST, transaction_id, list(attributes))
    if user is None:
        return message.bytes()
    message.attributes += [Username(user), Realm(REALM),
                           Nonce(nonce or Nonces(b"nonce secret").issue(NOW))]
    return message.bytes(key_of(user) if key is None else key, sha256=sha256)


def counters(core: TurnCore) -> tuple[int, ...]:
    stats = core.stats
    return stats.malformed, stats.dropped, stats.to_peers, stats.to_clients


# --- peers in denied ranges ----------------------------------------------------------------


@pytest.mark.parametrize("host", DENIED_PEERS)
def test_create_permission_to_denied_peer_is_403(core: TurnCore, host: str) -> None:
    for peers in ([host], [PUBLIC_PEER[0], host], [host, PUBLIC_PEER[0]]):
        reply = signed(core, Method.CREATE_PERMISSION, *(XorPeerAddress(h, 80) for h in peers))
        assert error(reply) == 403
    assert core.allocations[ATTACKER].permissions == {}  # all or nothing
    witness_relays(core)


@pytest.mark.parametrize("host", DENIED_PEERS)
def test_channel_bind_to_denied_peer_is_403(core: TurnCore, host: str) -> None:
    reply = signed(core, Method.CHANNEL_BIND, ChannelNumber(0x4001), XorPeerAddress(host, 80))
    assert error(reply) == 403
    allocation = core.allocations[ATTACKER]
    assert allocation.channels == {} and allocation.permissions == {}
    witness_relays(core)


@pytest.mark.parametrize("host", DENIED_PEERS)
def test_send_to_denied_peer_is_dropped_and_counted(core: TurnCore, host: str) -> None:
    assert error(signed(core, Method.CREATE_PERMISSION, XorPeerAddress(*PUBLIC_PEER))) is None
    assert send(core, PUBLIC_PEER, b"fine") != []  # the attacker may relay, just not there
    before = core.stats.dropped, core.stats.to_peers
    for port in (0, 53, 80):
        assert send(core, (host, port), b"GET /latest/meta-data/ HTTP/1.0\r\n\r\n") == []
    assert (core.stats.dropped, core.stats.to_peers) == (before[0] + 3, before[1])
    # What a denied address sends to the relay does not reach the client either.
    relay = core.allocations[ATTACKER].relay
    assert core.peer_datagram(relay, b"spoofed", (host, 80), NOW) == []
    assert core.stats.dropped == before[0] + 4
    witness_relays(core)


def test_permission_is_per_address_text_not_reinterpreted(core: TurnCore) -> None:
    """A permission for a public IPv4 address is no permission for its IPv4-mapped form."""
    assert error(signed(core, Method.CREATE_PERMISSION, XorPeerAddress(*PUBLIC_PEER))) is None
    assert send(core, ("::ffff:" + PUBLIC_PEER[0], PUBLIC_PEER[1]), b"x") == []
    witness_relays(core)


# --- credentials ---------------------------------------------------------------------------


def unsigned(outputs: list[Output], client: Address = ATTACKER) -> Message:
    """The one answer to a request without valid credentials (and without FINGERPRINT)."""
    return answer(outputs, client, fingerprint=False)


def assert_challenge(reply: Message, code: int) -> None:
    """An unsigned error ``code`` with REALM and a NONCE good at NOW (RFC 8489 §9.2.4)."""
    assert error(reply) == code
    assert reply.get(MessageIntegrity) is None
    assert reply.get(Realm) == Realm(REALM)
    nonce = reply.get(Nonce)
    assert nonce is not None and Nonces(b"nonce secret").check(nonce.value, NOW) == "ok"


@pytest.mark.parametrize("user", MALFORMED_USERNAMES.values(), ids=MALFORMED_USERNAMES.keys())
def test_expired_or_malformed_rest_username_is_401(core: TurnCore, user: str) -> None:
    client = ("198.51.100.8", 1)
    data = request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP), user=user)
    assert_challenge(unsigned(core.client_datagram(data, client, NOW), client), 401)
    assert client not in core.allocations
    witness_relays(core)


WRONG_KEYS = {
    "wrong-secret": key_of(USER, secret="not the secret"),
    "wrong-realm": key_of(USER, realm="evil.example"),
    "another-users-password": long_term_key(USER, REALM, rest_password(SECRET, WITNESS_USER)),
    "password-as-key": rest_password(SECRET, USER).encode(),
}


@pytest.mark.parametrize("key", WRONG_KEYS.values(), ids=WRONG_KEYS.keys())
@pytest.mark.parametrize("sha256", [False, True], ids=["sha1", "sha256"])
def test_wrongly_signed_request_is_401(core: TurnCore, key: bytes, sha256: bool) -> None:
    client = ("198.51.100.8", 2)
    data = request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP), key=key, sha256=sha256)
    assert_challenge(unsigned(core.client_datagram(data, client, NOW), client), 401)
    # Nor may the attacker act on their own allocation with a wrong key.
    data = request(Method.CREATE_PERMISSION, XorPeerAddress(*PUBLIC_PEER), key=key)
    assert_challenge(unsigned(core.client_datagram(data, ATTACKER, NOW)), 401)
    assert core.allocations[ATTACKER].permissions == {} and client not in core.allocations
    witness_relays(core)


def test_tampered_integrity_is_401(core: TurnCore) -> None:
    data = bytearray(request(Method.CREATE_PERMISSION, XorPeerAddress(*PUBLIC_PEER)))
    data[-1] ^= 0x01
    assert_challenge(unsigned(core.client_datagram(bytes(data), ATTACKER, NOW)), 401)
    assert core.allocations[ATTACKER].permissions == {}
    witness_relays(core)


def test_integrity_without_realm_or_nonce_is_400(core: TurnCore) -> None:
    message = Message(Method.ALLOCATE, MessageClass.REQUEST,
                      attributes=[RequestedTransport(TRANSPORT_UDP), Username(USER)])
    client = ("198.51.100.8", 3)
    reply = unsigned(core.client_datagram(message.bytes(key_of(USER)), client, NOW), client)
    assert error(reply) == 400 and reply.get(MessageIntegrity) is None
    witness_relays(core)


STALE_NONCES = {
    "stale": Nonces(b"nonce secret").issue(NOW - 700),
    "from-another-server": Nonces(b"another secret").issue(NOW),
    "from-the-future": Nonces(b"nonce secret").issue(NOW + 60),
    "garbage": "0-" + "0" * 32,
}


@pytest.mark.parametrize("nonce", STALE_NONCES.values(), ids=STALE_NONCES.keys())
def test_stale_or_foreign_nonce_is_438_with_a_new_one(core: TurnCore, nonce: str) -> None:
    client = ("198.51.100.8", 4)
    data = request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP), nonce=nonce)
    for _ in range(2):  # replayed: the same answer, no allocation
        reply = unsigned(core.client_datagram(data, client, NOW), client)
        assert_challenge(reply, 438)
        assert client not in core.allocations
    fresh = cast(Nonce, reply.get(Nonce)).value
    data = request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP), nonce=fresh,
                   transaction_id=bytes(12))
    reply = answer(core.client_datagram(data, client, NOW), client)
    assert error(reply) is None and check_integrity(reply.raw or b"", key_of(USER))
    witness_relays(core)


def test_user_quota_is_486() -> None:
    core = arena(max_allocations_per_user=3)
    assert error(allocate(core, ("198.51.100.7", 1))) is None
    assert error(allocate(core, ("198.51.100.7", 2))) is None
    for port in range(3, 8):
        assert error(allocate(core, ("198.51.100.7", port))) == 486
    assert len(core.allocations) == 4
    witness_relays(core)


def test_total_quota_is_486() -> None:
    core = arena(max_allocations=3)
    other = f"{int(NOW) + 60}:mallory"
    assert error(allocate(core, ("198.51.100.7", 1), user=other)) is None
    for port in range(2, 6):
        assert error(allocate(core, ("198.51.100.7", port), user=other)) == 486
    witness_relays(core)


# --- channels ------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", [0x0000, 0x3FFF, 0x5000, 0x7FFF, 0x8000, 0xFFFF])
def test_channel_numbers_outside_rfc8656_range_are_400(core: TurnCore, channel: int) -> None:
    reply = signed(core, Method.CHANNEL_BIND, ChannelNumber(channel), XorPeerAddress(*PUBLIC_PEER))
    assert error(reply) == 400
    allocation = core.allocations[ATTACKER]
    assert allocation.channels == {} and allocation.permissions == {}
    frame = struct.pack("!HH", channel, 4) + b"data"
    assert core.client_datagram(frame, ATTACKER, NOW) == []
    witness_relays(core)


def test_attacker_cannot_use_the_witness_channel(core: TurnCore) -> None:
    frame = ChannelData(WITNESS_CHANNEL, b"hijack").bytes()
    assert core.client_datagram(frame, ATTACKER, NOW) == []
    witness_relays(core)


# --- attributes after MESSAGE-INTEGRITY (RFC 8489 §14.5) -----------------------------------


def after_integrity(data: bytes, *extra: Attribute, fingerprint: bool = True) -> bytes:
    """``data`` (a message ending with MESSAGE-INTEGRITY) with ``extra`` appended after it,
    then FINGERPRINT."""
    message = Message.parse(data)
    assert isinstance(message.attributes[-1], MessageIntegrity)
    message.attributes += extra
    return message.bytes(fingerprint=fingerprint)


def test_attributes_after_integrity_are_ignored(core: TurnCore) -> None:
    base = request(Method.CREATE_PERMISSION, XorPeerAddress(*PUBLIC_PEER))
    data = after_integrity(base, XorPeerAddress("169.254.169.254", 80),
                           RawAttribute(0x7F31, b"unknown"), Lifetime(1))
    reply = answer(core.client_datagram(data, ATTACKER, NOW))
    assert error(reply) is None  # neither 403 nor 420: those attributes do not count
    assert set(core.allocations[ATTACKER].permissions) == {PUBLIC_PEER[0]}
    witness_relays(core)


def test_attributes_after_integrity_cannot_supply_what_is_missing(core: TurnCore) -> None:
    client = ("198.51.100.8", 5)
    base = request(Method.ALLOCATE, Lifetime(3000))
    data = after_integrity(base, RequestedTransport(TRANSPORT_UDP))
    assert error(answer(core.client_datagram(data, client, NOW), client)) == 400
    base = request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP))
    data = after_integrity(base, Lifetime(3000))
    reply = answer(core.client_datagram(data, client, NOW), client)
    assert error(reply) is None and reply.get(Lifetime) == Lifetime(600)
    witness_relays(core)


def test_fingerprint_after_ignored_attributes_is_still_checked(core: TurnCore) -> None:
    base = request(Method.CREATE_PERMISSION, XorPeerAddress(*PUBLIC_PEER))
    data = bytearray(after_integrity(base, RawAttribute(0x7F31, b"unknown")))
    data[-1] ^= 0x01
    before = core.stats.malformed
    assert core.client_datagram(bytes(data), ATTACKER, NOW) == []
    assert core.stats.malformed == before + 1
    # Without FINGERPRINT the trailing attribute is ignored all the same.
    data = after_integrity(base, RawAttribute(0x7F31, b"unknown"), fingerprint=False)
    assert error(answer(core.client_datagram(data, ATTACKER, NOW))) is None
    witness_relays(core)


# --- lengths and sizes ---------------------------------------------------------------------


def with_length(data: bytes, offset: int, length: int) -> bytes:
    return data[:offset] + struct.pack("!H", length) + data[offset + 2:]


def overruns() -> dict[str, bytes]:
    allocate_ = request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP))
    send_ = Message(Method.SEND, MessageClass.INDICATION, bytes(12),
                    [XorPeerAddress(*PUBLIC_PEER), Data(b"abcd")]).bytes()
    # The first attribute (REQUESTED-TRANSPORT, XOR-PEER-ADDRESS) has its length at 22.
    return {
        "header-length-past-end": with_length(allocate_, 2, len(allocate_) - 20 + 4),
        "header-length-max": with_length(allocate_, 2, 0xFFFC),
        "header-length-short": with_length(allocate_, 2, len(allocate_) - 20 - 4),
        "attribute-past-end": with_length(allocate_, 22, 0xFFFF),
        "attribute-one-past-end": with_length(allocate_, 22, len(allocate_) - 24 + 1),
        "send-data-past-end": with_length(send_, len(send_) - 8 + 2, 9),
        "send-peer-past-end": with_length(send_, 22, 0x0100),
        "truncated-header": allocate_[:19],
        "channel-data-past-end": struct.pack("!HH", WITNESS_CHANNEL, 100) + b"short",
        "channel-data-max": struct.pack("!HH", WITNESS_CHANNEL, 0xFFFF) + bytes(4),
    }


OVERRUNS = overruns()


@pytest.mark.parametrize("data", OVERRUNS.values(), ids=OVERRUNS.keys())
def test_overrunning_lengths_are_dropped_as_malformed(core: TurnCore, data: bytes) -> None:
    before = core.stats.malformed
    for client in (ATTACKER, WITNESS):
        assert core.client_datagram(data, client, NOW) == []
    assert core.stats.malformed == before + 2
    assert core.allocations[ATTACKER].permissions == {}
    witness_relays(core)


def long_username_request(size: int, signed_: bool) -> bytes:
    """An Allocate whose USERNAME is ``size`` bytes (a REST name: it starts with an expiry)."""
    name = f"{int(NOW) + 60}:" + "u" * (size - 11)
    attributes: list[Attribute] = [RequestedTransport(TRANSPORT_UDP),
                                   RawAttribute(Username.type, name.encode())]
    message = Message(Method.ALLOCATE, MessageClass.REQUEST, bytes(12), attributes)
    if not signed_:
        return message.bytes()
    message.attributes += [Realm(REALM), Nonce(Nonces(b"nonce secret").issue(NOW))]
    return message.bytes(key_of(name))


@pytest.mark.parametrize("signed_", [False, True], ids=["unsigned", "signed"])
def test_600_byte_username_is_refused_with_400_or_401(core: TurnCore, signed_: bool) -> None:
    """USERNAME must be shorter than 509 bytes (RFC 8489 §14.3; 513 in RFC 5389): the request
    is refused with 400 (Bad Request) or 401, and no allocation is made."""
    client = ("198.51.100.8", 6)
    data = long_username_request(600, signed_)
    outputs = core.client_datagram(data, client, NOW)
    assert outputs, "no answer: the request was dropped as malformed"
    reply = unsigned(outputs, client)
    assert reply.transaction_id == bytes(12)
    assert error(reply) in (400, 401)
    assert reply.get(MessageIntegrity) is None
    assert client not in core.allocations
    witness_relays(core)


# --- unknown comprehension-required attributes ---------------------------------------------


def test_binding_with_unknown_comprehension_required_is_420(core: TurnCore) -> None:
    attributes = [RawAttribute(0x7F00, b""), RawAttribute(0x8F00, b"optional"),
                  RawAttribute(0x0031, b"x" * 5), RawAttribute(0x7F00, b"again")]
    message = Message(Method.BINDING, MessageClass.REQUEST, attributes=attributes)
    reply = unsigned(core.client_datagram(message.bytes(), ATTACKER, NOW))
    assert error(reply) == 420
    assert reply.get(UnknownAttributes) == UnknownAttributes((0x7F00, 0x0031))
    # Unknown comprehension-optional attributes alone are ignored.
    message = Message(Method.BINDING, MessageClass.REQUEST,
                      attributes=[RawAttribute(0x8F00, b"optional")])
    assert error(unsigned(core.client_datagram(message.bytes(), ATTACKER, NOW))) is None
    witness_relays(core)


def test_authenticated_allocate_with_unknown_comprehension_required_is_signed_420(
    core: TurnCore,
) -> None:
    client = ("198.51.100.8", 7)
    reply = signed(core, Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP),
                   RawAttribute(0x7F02, b"what"), RawAttribute(0x8F02, b"fine"), client=client)
    assert error(reply) == 420
    assert reply.get(UnknownAttributes) == UnknownAttributes((0x7F02,))
    assert client not in core.allocations
    # Unauthenticated, the same request is challenged first (RFC 5389 §7.3: authentication,
    # then unknown attributes): over TCP or TLS; over UDP only while the challenge is no
    # larger than the request allows (nothing comes back under a limit of 1).
    data = Message(Method.ALLOCATE, MessageClass.REQUEST,
                   attributes=[RequestedTransport(TRANSPORT_UDP), RawAttribute(0x7F02, b"what")])
    core.amplification_limit = 1
    assert core.client_datagram(data.bytes(), client, NOW) == []
    core.client_connected(client)
    assert_challenge(unsigned(core.client_datagram(data.bytes(), client, NOW), client), 401)
    witness_relays(core)


def test_send_with_unknown_comprehension_required_is_dropped(core: TurnCore) -> None:
    assert error(signed(core, Method.CREATE_PERMISSION, XorPeerAddress(*PUBLIC_PEER))) is None
    message = Message(Method.SEND, MessageClass.INDICATION, attributes=[
        XorPeerAddress(*PUBLIC_PEER), Data(b"x"), RawAttribute(0x7F03, b"")])
    before = core.stats.dropped
    assert core.client_datagram(message.bytes(), ATTACKER, NOW) == []
    assert core.stats.dropped == before + 1
    witness_relays(core)


# --- no amplification ----------------------------------------------------------------------


def unauthenticated_requests() -> dict[str, bytes]:
    """Requests other than Binding that do not authenticate, from a client without an
    allocation."""
    bare = {
        "allocate-bare": request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP), user=None),
        "allocate-as-aioice": request(Method.ALLOCATE, Lifetime(600),
                                      RequestedTransport(TRANSPORT_UDP), user=None),
        "allocate-fingerprint": Message(Method.ALLOCATE, MessageClass.REQUEST, bytes(12),
                                        [RequestedTransport(TRANSPORT_UDP)])
        .bytes(fingerprint=True),
        "allocate-no-transport": request(Method.ALLOCATE, user=None),
        "allocate-unknown-attribute": request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP),
                                              RawAttribute(0x7F00, b""), user=None),
        "refresh": request(Method.REFRESH, user=None),
        "create-permission": request(Method.CREATE_PERMISSION, XorPeerAddress(*PUBLIC_PEER),
                                     user=None),
        "channel-bind": request(Method.CHANNEL_BIND, ChannelNumber(0x4000),
                                XorPeerAddress(*PUBLIC_PEER), user=None),
        "unknown-method": Message(0x0FF, MessageClass.REQUEST, bytes(12)).bytes(),
        "connect": Message(Method.CONNECT, MessageClass.REQUEST, bytes(12)).bytes(),
    }
    credentials = {
        f"user-{name}": request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP), user=user)
        for name, user in MALFORMED_USERNAMES.items()
    }
    credentials |= {
        f"key-{name}": request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP), key=key)
        for name, key in WRONG_KEYS.items()
    }
    credentials |= {
        f"nonce-{name}": request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP), nonce=nonce)
        for name, nonce in STALE_NONCES.items()
    }
    credentials["integrity-without-realm"] = Message(
        Method.ALLOCATE, MessageClass.REQUEST, bytes(12),
        [RequestedTransport(TRANSPORT_UDP), Username(USER)]).bytes(key_of(USER))
    credentials["username-600-unsigned"] = long_username_request(600, False)
    credentials["username-600-signed"] = long_username_request(600, True)
    return bare | credentials | {f"overrun-{k}": v for k, v in OVERRUNS.items()}


UNAUTHENTICATED = unauthenticated_requests()


@pytest.mark.parametrize("limit", [1.0, 3.0])
@pytest.mark.parametrize("data", UNAUTHENTICATED.values(), ids=UNAUTHENTICATED.keys())
def test_unauthenticated_request_never_gets_a_larger_answer_than_the_limit(
        core: TurnCore, data: bytes, limit: float) -> None:
    """No amplification over UDP beyond the configured factor (1: never larger; 3, the
    default, as QUIC): a spoofed source cannot make the server much of an amplifier."""
    core.amplification_limit = limit
    client = ("198.51.100.9", 9)
    outputs = core.client_datagram(data, client, NOW)
    assert all(out.kind == "client" and out.address == client for out in outputs)
    answered = sum(len(out.data) for out in outputs)
    assert answered <= limit * len(data), f"{len(data)}-byte request, {answered}-byte answer"
    assert client not in core.allocations
    witness_relays(core)


@pytest.mark.parametrize("fingerprint", [False, True])
@pytest.mark.parametrize("client", [("198.51.100.9", 9), ("2001:db8::9", 9)], ids=["v4", "v6"])
def test_binding_answers_are_bounded_and_rate_limited(
    core: TurnCore, fingerprint: bool, client: Address
) -> None:
    """Binding, which ICE needs answered: its success is larger by an XOR-MAPPED-ADDRESS (12
    or 24 bytes) at most, and a source only gets so many answers without credentials."""
    data = Message(Method.BINDING, MessageClass.REQUEST, bytes(12)).bytes(fingerprint=fingerprint)
    bound = len(data) + (12 if ":" not in client[0] else 24)
    answered = 0
    for _ in range(1000):
        outputs = core.client_datagram(data, client, NOW)
        if not outputs:
            break
        assert len(answer(outputs, client, fingerprint=fingerprint).raw or b"") <= bound
        answered += 1
    assert 0 < answered < 1000
    assert core.client_datagram(data, client, NOW + 60) != []  # the budget refills
    witness_relays(core)


# --- fuzzing -------------------------------------------------------------------------------


def valid_inputs() -> list[tuple[bytes, Address]]:
    """Well-formed datagrams from the attacker (or a newcomer) the mutations start from."""
    newcomer = ("198.51.100.10", 10)
    permission = request(Method.CREATE_PERMISSION, XorPeerAddress(*PUBLIC_PEER))
    return [
        (request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP), Lifetime(900)), newcomer),
        (request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP), user=None), newcomer),
        (request(Method.REFRESH, Lifetime(1200)), ATTACKER),
        (request(Method.REFRESH, Lifetime(0)), ATTACKER),
        (permission, ATTACKER),
        (after_integrity(permission, RawAttribute(0x7F31, b"x")), ATTACKER),
        (request(Method.CHANNEL_BIND, ChannelNumber(0x4001), XorPeerAddress(*PUBLIC_PEER)),
         ATTACKER),
        (request(Method.CHANNEL_BIND, ChannelNumber(0x4001), XorPeerAddress("::1", 80),
                 sha256=True), ATTACKER),
        (Message(Method.SEND, MessageClass.INDICATION, bytes(12),
                 [XorPeerAddress(*PUBLIC_PEER), Data(b"payload")]).bytes(fingerprint=True),
         ATTACKER),
        (Message(Method.BINDING, MessageClass.REQUEST, bytes(12)).bytes(fingerprint=True),
         newcomer),
        (ChannelData(0x4001, b"channel payload").bytes(), ATTACKER),
        (ChannelData(WITNESS_CHANNEL, b"channel payload").bytes(), ATTACKER),
    ]


VALID_INPUTS = valid_inputs()


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, Address]:
    """A valid datagram with a few bytes flipped, cut, inserted or length fields rewritten."""
    data, client = draw(st.sampled_from(VALID_INPUTS))
    buffer = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "length", "append"]))
        position = draw(st.integers(0, max(len(buffer) - 1, 0)))
        if kind == "flip" and buffer:
            buffer[position] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del buffer[position:position + draw(st.integers(1, 16))]
        elif kind == "insert":
            buffer[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "length" and len(buffer) >= position + 2:
            buffer[position:position + 2] = struct.pack("!H", draw(st.integers(0, 0xFFFF)))
        elif kind == "append":
            buffer += draw(st.binary(min_size=1, max_size=8))
    return bytes(buffer), client


def assert_only_protocol_outputs(
    core: TurnCore, data: bytes, outputs: list[Output], client: Address, before: tuple[int, ...]
) -> None:
    """Answers go to the sender, parse, answer its transaction and, unsigned, are within the
    amplification limit; relayed data goes to permitted peers only; what brings no output at
    all is counted."""
    policy = PeerPolicy()
    for out in outputs:
        assert out.kind in ("client", "peer", "close"), out
        if out.kind == "client":
            assert out.address == client and out.relay is None
            reply = Message.parse(out.data)
            assert reply.message_class in (MessageClass.SUCCESS, MessageClass.ERROR)
            assert reply.transaction_id == data[8:20]
            if reply.get(MessageIntegrity) is None:
                assert len(out.data) <= core.amplification_limit * len(data)
        elif out.kind == "peer":
            assert policy.permitted(out.address[0]), out
            assert out.relay == core.allocations[client].relay
    if not outputs:
        assert sum(counters(core)[:2]) + core.stats.refusals.total() > before[0] + before[1]


@fuzz
@given(st.one_of(mutated(), st.tuples(st.binary(max_size=120), st.sampled_from(
    [ATTACKER, WITNESS, ("198.51.100.10", 10)]))))
def test_mutated_client_datagrams_get_protocol_answers_only(
    sample: tuple[bytes, Address],
) -> None:
    data, client = sample
    core = arena()
    before = counters(core)
    core.stats.refusals.clear()
    outputs = core.client_datagram(data, client, NOW)
    assert_only_protocol_outputs(core, data, outputs, client, before)
    if client in core.allocations:
        assert all(PeerPolicy().permitted(p) for p in core.allocations[client].permissions)
    witness_relays(core)


@fuzz
@given(
    st.sampled_from(["attacker", "witness", "unknown"]),
    st.one_of(st.sampled_from(DENIED_PEERS), st.just(WITNESS_PEER[0]), st.just(PUBLIC_PEER[0])),
    st.one_of(st.integers(0, 0xFFFF), st.just(WITNESS_PEER[1])),
    st.one_of(st.binary(max_size=200), st.integers(0xFFC0, 0x10010).map(bytes)),
)
def test_peer_datagrams_reach_only_their_client(
    whose: str, host: str, port: int, data: bytes
) -> None:
    """Only the witness's peer reaches the witness: on its channel from the bound port, in a
    Data indication from another port of its permitted address; nothing else gets through."""
    core = arena()
    relay = {"attacker": core.allocations[ATTACKER].relay,
             "witness": core.allocations[WITNESS].relay, "unknown": ("192.0.2.1", 1)}[whose]
    before = counters(core)
    outputs = core.peer_datagram(relay, data, (host, port), NOW)
    if whose != "witness" or host != WITNESS_PEER[0]:
        assert outputs == [] and core.stats.dropped == before[1] + 1
    elif outputs:
        [out] = outputs
        assert (out.kind, out.address, out.relay) == ("client", WITNESS, None)
        if port == WITNESS_PEER[1]:
            assert ChannelData.parse(out.data) == ChannelData(WITNESS_CHANNEL, data)
        else:
            indication = Message.parse(out.data)
            assert (indication.method, indication.message_class) == (
                Method.DATA, MessageClass.INDICATION)
            assert indication.get(XorPeerAddress) == XorPeerAddress(host, port)
            assert indication.get(Data) == Data(data)
    else:  # too big to wrap for the client
        assert len(data) > 0xFFFF - 36 and core.stats.dropped == before[1] + 1
    witness_relays(core)


# --- the stream framer (TCP and TLS) -------------------------------------------------------


class StreamService:
    """What :class:`TurnStreamProtocol` uses of the service: the core, the streams, the clock
    and ``perform``, which here only records."""

    def __init__(self, core: TurnCore) -> None:
        self.core = core
        self.streams: dict[Client, TurnStreamProtocol] = {}
        self.peer_connections: dict[int, object] = {}
        self.performed: list[Output] = []

    def perform(self, outputs: list[Output]) -> None:
        self.performed.extend(outputs)

    def now(self) -> float:
        return NOW


def stream_of(core: TurnCore, client: Address) -> tuple[TurnStreamProtocol, StringTransport,
                                                        StreamService]:
    service = StreamService(core)
    protocol = TurnStreamProtocol(cast("TurnService", service))
    transport = StringTransport(peerAddress=IPv4Address("TCP", *client))
    protocol.makeConnection(transport)
    return protocol, transport, service


def padded(frame: bytes) -> bytes:
    return frame + bytes(-len(frame) & 3)


STREAM_PIECES = [padded(data) for data, _ in VALID_INPUTS]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    chunks, position = [], 0
    for cut in cuts:
        chunks.append(data[position:position + cut])
        position += cut
    return [*chunks, data[position:]]


@fuzz
@given(
    st.lists(st.one_of(st.sampled_from(STREAM_PIECES), mutated().map(lambda s: s[0]),
                       st.binary(max_size=24)), max_size=6).map(b"".join),
    st.lists(st.integers(1, 64), max_size=12),
)
def test_stream_gets_protocol_answers_or_is_closed(data: bytes, cuts: list[int]) -> None:
    """Any byte stream, in any chunks, gives answers that parse and relays to permitted peers,
    or a closed connection, never an exception; chunking does not change what comes out."""
    client = ("198.51.100.11", 11)
    results = []
    for chunks in ([data], split(data, cuts)):
        core = arena()
        protocol, transport, service = stream_of(core, client)
        for chunk in chunks:
            if transport.disconnecting:
                break
            protocol.dataReceived(chunk)
        for out in service.performed:
            assert out.kind in ("client", "peer", "close"), out
            if out.kind == "client":
                assert out.address == protocol.client
                if out.data[0] < 0x40:
                    assert Message.parse(out.data).message_class in (
                        MessageClass.SUCCESS, MessageClass.ERROR)
            elif out.kind == "peer":
                assert PeerPolicy().permitted(out.address[0])
        results.append(([(o.kind, o.address, o.data) for o in service.performed],
                        transport.disconnecting))
        witness_relays(core)
    assert results[0] == results[1]


def test_stream_relays_for_an_allocated_client_and_closes_on_garbage() -> None:
    """A stream that allocates, binds and sends works, fed one byte at a time; a byte that is
    neither STUN nor ChannelData closes the connection (it cannot be resynchronized)."""
    client = ("198.51.100.12", 12)
    core = arena()
    protocol, transport, service = stream_of(core, client)
    allocate_ = request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP))
    bind = request(Method.CHANNEL_BIND, ChannelNumber(0x4002), XorPeerAddress(*PUBLIC_PEER),
                   transaction_id=bytes(12))
    stream = allocate_ + bind + ChannelData(0x4002, b"abc").bytes(pad=True)
    for byte in range(len(stream)):
        protocol.dataReceived(stream[byte:byte + 1])
    kinds = [(out.kind, out.data if out.kind == "peer" else error(Message.parse(out.data)))
             for out in service.performed]
    assert kinds == [("client", None), ("client", None), ("peer", b"abc")]
    assert not transport.disconnecting
    protocol.dataReceived(b"\xff" + bytes(7))
    assert transport.disconnecting
    witness_relays(core)


def test_one_address_over_udp_tcp_and_tls_holds_three_allocations() -> None:
    """RFC 8656 §2: the 5-tuple names an allocation. A UDP client and two connections (to the
    TCP and the TLS port) from the same host and port are three clients: each allocates, is
    answered on its own transport, and deleting one leaves the others."""
    address = ("198.51.100.14", 14)
    core = arena()
    arena_clients = set(core.allocations)
    service = StreamService(core)
    protocols = []
    for server_port in (3478, 5349):
        protocol = TurnStreamProtocol(cast("TurnService", service))
        protocol.makeConnection(StringTransport(
            hostAddress=IPv4Address("TCP", "192.0.2.1", server_port),
            peerAddress=IPv4Address("TCP", *address)))
        protocols.append(protocol)
    assert [p.client for p in protocols] == [
        StreamClient(*address, ("192.0.2.1", 3478)), StreamClient(*address, ("192.0.2.1", 5349))]
    over_udp = core.client_datagram(request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP)),
                                    address, NOW)
    assert error(answer(over_udp, address)) is None
    for protocol in protocols:
        protocol.dataReceived(request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP)))
    streamed = [(out.address, Message.parse(out.data)) for out in service.performed]
    assert [(client, error(reply)) for client, reply in streamed] == [
        (p.client, None) for p in protocols]
    assert all(reply.get(XorMappedAddress) == XorMappedAddress(*address)
               for _, reply in streamed)
    relays = {core.allocations[client].relay for client in (address, *service.streams)}
    assert len(relays) == 3
    deleted = core.client_datagram(request(Method.REFRESH, Lifetime(0)), address, NOW)
    assert error(answer(deleted[:1], address)) is None
    assert set(core.allocations) - arena_clients == {p.client for p in protocols}
    protocols[0].connectionLost()
    assert set(core.allocations) - arena_clients == {protocols[1].client}
    witness_relays(core)
