"""Every attribute: round trips, wire encodings, malformed values."""

from __future__ import annotations

import struct

import pytest

from vw.stun import (
    ATTRIBUTE_CLASSES,
    AdditionalAddressFamily,
    AddressErrorCode,
    AlternateServer,
    Attribute,
    AttributeFormatError,
    AttributeType,
    ChannelNumber,
    ConnectionId,
    Data,
    DontFragment,
    ErrorCode,
    EvenPort,
    Fingerprint,
    IceControlled,
    IceControlling,
    Icmp,
    Lifetime,
    MappedAddress,
    Message,
    MessageClass,
    MessageIntegrity,
    MessageIntegritySha256,
    Method,
    Nonce,
    PasswordAlgorithm,
    PasswordAlgorithms,
    Priority,
    RawAttribute,
    Realm,
    RequestedAddressFamily,
    RequestedTransport,
    ReservationToken,
    Software,
    UnknownAttributes,
    UseCandidate,
    Userhash,
    Username,
    XorMappedAddress,
    XorPeerAddress,
    XorRelayedAddress,
)

TID = bytes(range(1, 13))

SAMPLES: list[Attribute] = [
    MappedAddress("192.0.2.1", 3478),
    MappedAddress("2001:db8::1", 65535),
    AlternateServer("198.51.100.7", 443),
    XorMappedAddress("192.0.2.1", 32853),
    XorMappedAddress("2001:db8:1234:5678:11:2233:4455:6677", 0),
    XorPeerAddress("203.0.113.9", 50000),
    XorPeerAddress("::1", 1),
    XorRelayedAddress("203.0.113.1", 49152),
    XorRelayedAddress("fe80::abcd", 49153),
    Username("evtj:h6vY"),
    Username("\u30de\u30c8\u30ea\u30c3\u30af\u30b9"),
    Username("x" * 513),
    Realm("example.org"),
    Nonce("obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"),
    Software("vw \u00e9"),
    Data(b""),
    Data(b"\x00\x01\x02"),
    Userhash(bytes(range(32))),
    ReservationToken(b"\xff" * 8),
    MessageIntegrity(bytes(20)),
    MessageIntegritySha256(bytes(32)),
    MessageIntegritySha256(bytes(16)),
    UseCandidate(),
    DontFragment(),
    Priority(0x6E0001FF),
    Lifetime(600),
    ConnectionId(0xFFFFFFFF),
    Fingerprint(0),
    IceControlled(0x932FF9B151263B36),
    IceControlling(2**64 - 1),
    ChannelNumber(0x4000),
    RequestedAddressFamily(0x02),
    AdditionalAddressFamily(0x02),
    RequestedTransport(17),
    EvenPort(True),
    EvenPort(False),
    ErrorCode(420, "Unknown Attribute"),
    ErrorCode(699),
    ErrorCode.from_code(438),
    AddressErrorCode(0x02, 440, "Address Family not Supported"),
    UnknownAttributes((0x0003,)),
    UnknownAttributes((0x0003, 0x7FFF, 0x0001)),
    PasswordAlgorithm(PasswordAlgorithm.MD5),
    PasswordAlgorithm(0x7FFF, b"\x01\x02\x03"),
    PasswordAlgorithms(
        (PasswordAlgorithm(PasswordAlgorithm.SHA256), PasswordAlgorithm(PasswordAlgorithm.MD5))
    ),
    PasswordAlgorithms((PasswordAlgorithm(9, b"\xaa"), PasswordAlgorithm(2))),
    Icmp(3, 4, 1400),
    Icmp(127, 511, 0),
    RawAttribute(0x7FFE, b"comprehension required"),
    RawAttribute(0xC057, b"\x00\x01\x00\x02"),
]


def test_samples_cover_every_attribute_class() -> None:
    assert {type(a) for a in SAMPLES} == set(ATTRIBUTE_CLASSES.values()) | {RawAttribute}
    assert set(ATTRIBUTE_CLASSES) == {t.value for t in AttributeType}


@pytest.mark.parametrize("attribute", SAMPLES, ids=repr)
def test_round_trip(attribute: Attribute) -> None:
    message = Message(Method.ALLOCATE, MessageClass.REQUEST, TID, [attribute])
    data = message.bytes()
    assert len(data) % 4 == 0
    parsed = Message.parse(data)
    assert parsed.attributes == [attribute]
    assert parsed.bytes() == data


def encoded(attribute: Attribute, transaction_id: bytes = TID) -> bytes:
    """The whole attribute (header, value, padding) as a message carries it."""
    return Message(Method.BINDING, MessageClass.REQUEST, transaction_id, [attribute]).bytes()[20:]


def test_wire_encodings() -> None:
    # RFC 5769 §2.2's XOR-MAPPED-ADDRESS.
    assert encoded(XorMappedAddress("192.0.2.1", 32853)) == bytes.fromhex(
        "00200008 0001a147 e112a643"
    )
    assert encoded(MappedAddress("192.0.2.1", 32853)) == bytes.fromhex("00010008 00018055 c0000201")
    assert encoded(ErrorCode(420, "Unknown")) == bytes.fromhex("0009000b 00000414") + b"Unknown\0"
    assert encoded(AddressErrorCode(1, 440)) == bytes.fromhex("80010004 01000428")
    assert encoded(UnknownAttributes((0x0003,))) == bytes.fromhex("000a0002 00030000")
    assert encoded(ChannelNumber(0x4001)) == bytes.fromhex("000c0004 40010000")
    assert encoded(EvenPort(True)) == bytes.fromhex("00180001 80000000")
    assert encoded(RequestedTransport(17)) == bytes.fromhex("00190004 11000000")
    assert encoded(RequestedAddressFamily(2)) == bytes.fromhex("00170004 02000000")
    assert encoded(DontFragment()) == bytes.fromhex("001a0000")
    assert encoded(UseCandidate()) == bytes.fromhex("00250000")
    assert encoded(Lifetime(600)) == bytes.fromhex("000d0004 00000258")
    assert encoded(IceControlling(1)) == bytes.fromhex("802a0008 00000000 00000001")
    assert encoded(Icmp(3, 4, 1400)) == bytes.fromhex("80040008 00000604 00000578")
    assert encoded(PasswordAlgorithms((PasswordAlgorithm(2), PasswordAlgorithm(1)))) == (
        bytes.fromhex("80020008 00020000 00010000")
    )
    assert encoded(Data(b"abcde")) == bytes.fromhex("00130005") + b"abcde\0\0\0"


def test_xor_ipv6_uses_transaction_id() -> None:
    a = encoded(XorPeerAddress("2001:db8::1", 5000), bytes(12))
    b = encoded(XorPeerAddress("2001:db8::1", 5000), b"\xff" * 12)
    assert a[:12] == b[:12]  # header, family, port, the cookie-XORed first 4 address bytes
    assert a[12:] != b[12:]


def test_address_helpers() -> None:
    assert XorMappedAddress("192.0.2.1", 1).address == ("192.0.2.1", 1)


def test_error_code_helpers() -> None:
    assert ErrorCode.from_code(401) == ErrorCode(401, "Unauthenticated")
    assert ErrorCode.from_code(499) == ErrorCode(499, "")


def raw_message(attr_type: int, value: bytes) -> bytes:
    """A Binding request carrying one attribute with an arbitrary value."""
    body = struct.pack("!HH", attr_type, len(value)) + value + bytes(-len(value) & 3)
    return struct.pack("!HHI", 0x0001, len(body), 0x2112A442) + TID + body


MALFORMED = [
    (AttributeType.USERNAME, b"u" * 600),
    (AttributeType.USERNAME, b"\xff\xfe"),
    (AttributeType.REALM, b"r" * 764),
    (AttributeType.SOFTWARE, b"\xc3"),
    (AttributeType.XOR_MAPPED_ADDRESS, b"\x00\x01\x00"),
    (AttributeType.XOR_MAPPED_ADDRESS, bytes.fromhex("0001a147e112a6")),
    (AttributeType.XOR_MAPPED_ADDRESS, bytes.fromhex("0003a147e112a643")),
    (AttributeType.MAPPED_ADDRESS, bytes.fromhex("0002a147e112a643")),  # IPv6 needs 16 bytes
    (AttributeType.XOR_PEER_ADDRESS, bytes(24)),
    (AttributeType.MESSAGE_INTEGRITY, bytes(19)),
    (AttributeType.MESSAGE_INTEGRITY_SHA256, bytes(12)),
    (AttributeType.MESSAGE_INTEGRITY_SHA256, bytes(30)),
    (AttributeType.MESSAGE_INTEGRITY_SHA256, bytes(36)),
    (AttributeType.FINGERPRINT, bytes(8)),
    (AttributeType.PRIORITY, bytes(3)),
    (AttributeType.ICE_CONTROLLING, bytes(4)),
    (AttributeType.ICE_CONTROLLED, bytes(9)),
    (AttributeType.USE_CANDIDATE, b"\x00"),
    (AttributeType.DONT_FRAGMENT, bytes(4)),
    (AttributeType.ERROR_CODE, b"\x00\x00\x04"),
    (AttributeType.ERROR_CODE, b"\x00\x00\x02\x00"),  # class 2
    (AttributeType.ERROR_CODE, b"\x00\x00\x04\x64"),  # number 100
    (AttributeType.ADDRESS_ERROR_CODE, b"\x01\x00\x07\x00"),
    (AttributeType.UNKNOWN_ATTRIBUTES, b"\x00\x01\x00"),
    (AttributeType.CHANNEL_NUMBER, b"\x40\x00"),
    (AttributeType.LIFETIME, bytes(5)),
    (AttributeType.REQUESTED_TRANSPORT, b"\x11"),
    (AttributeType.REQUESTED_ADDRESS_FAMILY, b"\x01\x00"),
    (AttributeType.EVEN_PORT, bytes(4)),
    (AttributeType.USERHASH, bytes(31)),
    (AttributeType.RESERVATION_TOKEN, bytes(4)),
    (AttributeType.PASSWORD_ALGORITHM, b"\x00\x01"),
    (AttributeType.PASSWORD_ALGORITHM, b"\x00\x01\x00\x04\x00"),  # parameters overrun
    (AttributeType.PASSWORD_ALGORITHM, bytes.fromhex("00010000 00020000")),  # two of them
    (AttributeType.PASSWORD_ALGORITHMS, b"\x00\x01\x00"),
    (AttributeType.ICMP, bytes(4)),
    (AttributeType.CONNECTION_ID, bytes(2)),
]


@pytest.mark.parametrize(("attr_type", "value"), MALFORMED, ids=lambda v: repr(v)[:40])
def test_malformed_value(attr_type: int, value: bytes) -> None:
    with pytest.raises(AttributeFormatError) as info:
        Message.parse(raw_message(attr_type, value))
    assert info.value.attr_type == attr_type
    assert info.value.code == 400
    assert isinstance(info.value, ValueError)


def test_username_too_long() -> None:
    with pytest.raises(AttributeFormatError, match="USERNAME"):
        Message.parse(raw_message(AttributeType.USERNAME, b"u" * 600))
    with pytest.raises(AttributeFormatError):
        Message(Method.BINDING, MessageClass.REQUEST, TID, [Username("u" * 600)]).bytes()


def test_values_out_of_range_refused_on_construction() -> None:
    for build in (
        lambda: Priority(-1),
        lambda: Lifetime(2**32),
        lambda: IceControlled(2**64),
        lambda: ChannelNumber(0x10000),
        lambda: ErrorCode(200),
        lambda: ErrorCode(700),
        lambda: XorMappedAddress("192.0.2.1", 65536),
        lambda: Userhash(bytes(31)),
        lambda: MessageIntegrity(bytes(32)),
        lambda: MessageIntegritySha256(bytes(18)),
        lambda: Icmp(128, 0),
        lambda: RawAttribute(0x10000, b""),
    ):
        with pytest.raises(ValueError):
            build()
    with pytest.raises(AttributeFormatError):
        encoded(XorMappedAddress("not-an-address", 1))


def test_lenient_values_a_server_answers_otherwise() -> None:
    # 440 and 442 are the server's answers, so these parse.
    message = Message.parse(raw_message(AttributeType.REQUESTED_ADDRESS_FAMILY, b"\x07\0\0\0"))
    assert message.get(RequestedAddressFamily) == RequestedAddressFamily(7)
    message = Message.parse(raw_message(AttributeType.REQUESTED_TRANSPORT, b"\x06\0\0\0"))
    assert message.get(RequestedTransport) == RequestedTransport(6)
    message = Message.parse(raw_message(AttributeType.CHANNEL_NUMBER, b"\x30\0\0\0"))
    assert message.get(ChannelNumber) == ChannelNumber(0x3000)


def test_unknown_attributes() -> None:
    body = b"".join(struct.pack("!HH", t, 4) + b"abcd" for t in (0x7FFE, 0xC057, 0x0003, 0x7FFE))
    data = struct.pack("!HHI", 0x0001, len(body), 0x2112A442) + TID + body
    message = Message.parse(data)
    assert message.attributes == [
        RawAttribute(0x7FFE, b"abcd"),
        RawAttribute(0xC057, b"abcd"),
        RawAttribute(0x0003, b"abcd"),
        RawAttribute(0x7FFE, b"abcd"),
    ]
    assert message.unknown_comprehension_required() == [0x7FFE, 0x0003]
    assert message.bytes() == data
    unknown = UnknownAttributes(tuple(message.unknown_comprehension_required()))
    reply = message.error_response(420, unknown)
    assert Message.parse(reply.bytes()).attributes == [
        ErrorCode(420, "Unknown Attribute"),
        UnknownAttributes((0x7FFE, 0x0003)),
    ]
