"""Message header, type encoding, integrity and fingerprint, answering requests."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest

from tests.stun.vectors import SAMPLE_PASSWORD, SAMPLE_REQUEST
from vw.stun import (
    AttributeOverrunError,
    ErrorCode,
    Fingerprint,
    HeaderError,
    IceControlling,
    Message,
    MessageClass,
    MessageIntegrity,
    MessageIntegritySha256,
    Method,
    Nonce,
    Priority,
    RawAttribute,
    Realm,
    Software,
    StunError,
    TruncatedError,
    UseCandidate,
    Username,
    XorMappedAddress,
    check_fingerprint,
    check_integrity,
    is_stun,
    new_transaction_id,
    short_term_key,
)

TID = bytes(range(12))
KEY = short_term_key(SAMPLE_PASSWORD)


def header(message_type: int, length: int, cookie: int = 0x2112A442) -> bytes:
    return struct.pack("!HHI", message_type, length, cookie) + TID


def binding_request() -> Message:
    """A connectivity check as a browser sends it."""
    return Message(
        Method.BINDING,
        MessageClass.REQUEST,
        TID,
        [
            Username("bridgeufrag:peerufrag"),
            IceControlling(0x1122334455667788),
            UseCandidate(),
            Priority(1853824767),
        ],
    )


# --- header ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "message_class", "message_type"),
    [
        (Method.BINDING, MessageClass.REQUEST, 0x0001),
        (Method.BINDING, MessageClass.INDICATION, 0x0011),
        (Method.BINDING, MessageClass.SUCCESS, 0x0101),
        (Method.BINDING, MessageClass.ERROR, 0x0111),
        (Method.ALLOCATE, MessageClass.REQUEST, 0x0003),
        (Method.ALLOCATE, MessageClass.ERROR, 0x0113),
        (Method.REFRESH, MessageClass.SUCCESS, 0x0104),
        (Method.SEND, MessageClass.INDICATION, 0x0016),
        (Method.DATA, MessageClass.INDICATION, 0x0017),
        (Method.CREATE_PERMISSION, MessageClass.REQUEST, 0x0008),
        (Method.CHANNEL_BIND, MessageClass.SUCCESS, 0x0109),
        (Method.CONNECT, MessageClass.ERROR, 0x011A),
        (Method.CONNECTION_BIND, MessageClass.REQUEST, 0x000B),
        (Method.CONNECTION_ATTEMPT, MessageClass.INDICATION, 0x001C),
        (0xFFF, MessageClass.ERROR, 0x3FFF),
        (0x080, MessageClass.REQUEST, 0x0200),
    ],
)
def test_message_type(method: int, message_class: MessageClass, message_type: int) -> None:
    data = Message(method, message_class, TID).bytes()
    assert data == header(message_type, 0)
    parsed = Message.parse(data)
    assert (parsed.method, parsed.message_class) == (method, message_class)
    assert type(parsed.message_class) is MessageClass


def test_unknown_method_parses_as_int() -> None:
    parsed = Message.parse(header(0x0002, 0))
    assert parsed.method == 2 and not isinstance(parsed.method, Method)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", TruncatedError),
        (header(0x0001, 0)[:19], TruncatedError),
        (header(0x0001, 4), TruncatedError),  # length says 4 more bytes
        (header(0x0001, 0) + bytes(4), HeaderError),  # 4 bytes the length does not count
        (header(0x0001, 0, cookie=0x2112A443), HeaderError),
        (header(0x4001, 0), HeaderError),
        (header(0x8001, 0), HeaderError),
        (header(0x0001, 2) + bytes(2), HeaderError),  # not a multiple of 4
        (header(0x0001, 6) + bytes(6), HeaderError),
        (header(0x0001, 8) + struct.pack("!HH", 0x0006, 5) + b"abcd", AttributeOverrunError),
        (header(0x0001, 4) + struct.pack("!HH", 0x8022, 1), AttributeOverrunError),
    ],
)
def test_malformed_header(data: bytes, error: type[StunError]) -> None:
    with pytest.raises(error) as info:
        Message.parse(data)
    assert info.value.code == 400
    assert isinstance(info.value, ValueError)


def test_parse_accepts_buffers() -> None:
    data = binding_request().bytes()
    assert Message.parse(bytearray(data)) == Message.parse(memoryview(data))
    assert Message.parse(memoryview(data)).raw == data


def test_constructor_checks() -> None:
    with pytest.raises(ValueError):
        Message(Method.BINDING, MessageClass.REQUEST, bytes(11))
    with pytest.raises(ValueError):
        Message(0x1000, MessageClass.REQUEST)
    assert len(new_transaction_id()) == 12
    assert Message(Method.BINDING, MessageClass.REQUEST).transaction_id != new_transaction_id()


def test_too_big_to_encode() -> None:
    message = Message(Method.SEND, MessageClass.INDICATION, TID, [RawAttribute(0x13, bytes(65536))])
    with pytest.raises(ValueError):
        message.bytes()
    message.attributes = [RawAttribute(0x13, bytes(40000)), RawAttribute(0x13, bytes(40000))]
    with pytest.raises(ValueError):
        message.bytes()


def test_is_stun() -> None:
    assert is_stun(SAMPLE_REQUEST)
    assert is_stun(header(0x0101, 0))
    assert not is_stun(header(0x0101, 0)[:19])
    assert not is_stun(header(0x0101, 0, cookie=0))
    assert not is_stun(b"\x80" + SAMPLE_REQUEST[1:])  # RTP
    assert not is_stun(b"\x16" + SAMPLE_REQUEST[1:])  # DTLS
    assert not is_stun(b"\x40" + SAMPLE_REQUEST[1:])  # ChannelData


# --- integrity and fingerprint ---------------------------------------------------------------


@pytest.mark.parametrize("sha256", [False, True])
@pytest.mark.parametrize("fingerprint", [False, True])
def test_integrity_round_trip(sha256: bool, fingerprint: bool) -> None:
    data = binding_request().bytes(KEY, sha256=sha256, fingerprint=fingerprint)
    parsed = Message.parse(data)
    kinds = [type(a) for a in parsed.attributes[4:]]
    expected = [MessageIntegritySha256 if sha256 else MessageIntegrity]
    assert kinds == expected + ([Fingerprint] if fingerprint else [])
    assert check_integrity(data, KEY)
    assert check_integrity(parsed, KEY)
    assert check_integrity(data, KEY, sha256=sha256)
    assert not check_integrity(data, KEY, sha256=not sha256)
    assert not check_integrity(data, b"other key")
    assert check_fingerprint(data) is fingerprint
    assert parsed.attributes_before_integrity == binding_request().attributes
    assert parsed.bytes() == data


def test_integrity_on_built_message_and_rebuilt() -> None:
    message = binding_request()
    assert not check_integrity(message, KEY)  # no MESSAGE-INTEGRITY in it
    assert not check_fingerprint(message)
    data = message.bytes(KEY, fingerprint=True)
    parsed = Message.parse(data)
    # Integrity and fingerprint already present are replaced, not repeated.
    assert parsed.bytes(KEY, fingerprint=True) == data
    assert parsed.bytes(b"k2", sha256=True).count(b"\x00\x08\x00\x14") == 0
    assert check_integrity(parsed.bytes(b"k2", sha256=True), b"k2")
    refingerprinted = parsed.bytes(fingerprint=True)
    assert refingerprinted == data
    # The header length counts the attributes up to and including the one computed.
    assert struct.unpack_from("!H", data, 2)[0] == len(data) - 20


def test_both_integrity_attributes() -> None:
    # MESSAGE-INTEGRITY then MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6): each is checked.
    base = binding_request().bytes(KEY)
    parsed = Message.parse(base)
    mi_then_sha = Message(
        Method.BINDING,
        MessageClass.REQUEST,
        TID,
        [*parsed.attributes, MessageIntegritySha256(bytes(32))],
    )
    # Compute a correct MESSAGE-INTEGRITY-SHA256 after the MESSAGE-INTEGRITY by hand.
    raw = mi_then_sha.bytes()
    prefix = raw[: len(raw) - 36]
    mac = hmac.new(KEY, prefix, hashlib.sha256).digest()  # the header length already counts it
    data = prefix + struct.pack("!HH", 0x001C, 32) + mac
    assert check_integrity(data, KEY)  # prefers SHA-256
    assert check_integrity(data, KEY, sha256=False)
    assert check_integrity(data, KEY, sha256=True)
    forged = data[:-1] + bytes([data[-1] ^ 1])
    assert not check_integrity(forged, KEY)
    assert check_integrity(forged, KEY, sha256=False)  # SHA-1 still right: the caller's choice


def test_attributes_after_integrity_are_ignored() -> None:
    data = binding_request().bytes(KEY)
    # Append attributes after MESSAGE-INTEGRITY (and fix the header length): an on-path
    # attacker can do this, so they must neither break the check nor be believed.
    extra = struct.pack("!HH", 0x8022, 4) + b"evil" + struct.pack("!HH", 0x0006, 4) + b"mall"
    extra += struct.pack("!HH", 0x7FFF, 0)  # unknown comprehension-required
    tampered = bytearray(data + extra)
    struct.pack_into("!H", tampered, 2, len(tampered) - 20)
    message = Message.parse(bytes(tampered))
    assert check_integrity(message, KEY)
    assert len(message.attributes) == 8
    assert message.attributes_before_integrity == binding_request().attributes
    assert message.get(Username) == Username("bridgeufrag:peerufrag")
    assert message.get(Software) is None
    assert message.get_all(Username) == [Username("bridgeufrag:peerufrag")]
    assert message.unknown_comprehension_required() == []
    assert [type(a) for a in message.effective_attributes()][-1] is MessageIntegrity

    # FINGERPRINT after MESSAGE-INTEGRITY is heeded.
    with_fingerprint = Message.parse(binding_request().bytes(KEY, fingerprint=True))
    assert isinstance(with_fingerprint.get(Fingerprint), Fingerprint)


def test_fingerprint_must_be_last() -> None:
    data = binding_request().bytes(fingerprint=True)
    tampered = bytearray(data + struct.pack("!HH", 0x8022, 0))
    struct.pack_into("!H", tampered, 2, len(tampered) - 20)
    assert check_fingerprint(data)
    assert not check_fingerprint(bytes(tampered))
    flipped = bytearray(data)
    flipped[25] ^= 1
    assert not check_fingerprint(bytes(flipped))
    assert not check_fingerprint(data[:-4])
    assert not check_fingerprint(b"garbage")


def test_malformed_input_is_not_authentic() -> None:
    assert not check_integrity(b"", KEY)
    assert not check_integrity(SAMPLE_REQUEST[:-4], KEY)
    assert not check_integrity(SAMPLE_REQUEST + bytes(4), KEY)
    # A wrong MESSAGE-INTEGRITY length is not an HMAC.
    bad = header(0x0001, 8) + struct.pack("!HH", 0x0008, 4) + bytes(4)
    assert not check_integrity(bad, KEY)
    bad = header(0x0001, 16) + struct.pack("!HH", 0x001C, 12) + bytes(12)
    assert not check_integrity(bad, KEY)


def test_length_field_is_checked() -> None:
    data = bytearray(binding_request().bytes(KEY))
    struct.pack_into("!H", data, 2, len(data) - 20 + 4)
    assert not check_integrity(bytes(data), KEY)  # no longer the datagram's length
    data = bytearray(binding_request().bytes(KEY))
    data[24] ^= 0x20  # a USERNAME byte
    assert not check_integrity(bytes(data), KEY)


# --- answering -------------------------------------------------------------------------------


def test_responses() -> None:
    request = binding_request()
    success = request.success_response(XorMappedAddress("192.0.2.1", 5000))
    assert (success.method, success.message_class) == (Method.BINDING, MessageClass.SUCCESS)
    assert success.transaction_id == request.transaction_id
    assert success.attributes == [XorMappedAddress("192.0.2.1", 5000)]

    error = request.error_response(401, Realm("example.org"), Nonce("n"))
    assert error.message_class is MessageClass.ERROR
    assert error.attributes == [
        ErrorCode(401, "Unauthenticated"),
        Realm("example.org"),
        Nonce("n"),
    ]
    assert request.error_response(487, reason="").attributes == [ErrorCode(487, "")]
    parsed = Message.parse(error.bytes(fingerprint=True))
    assert parsed.get(ErrorCode) == ErrorCode(401, "Unauthenticated")
