"""Hypothesis: garbage only ever raises StunError; tampering never passes the integrity check."""

from __future__ import annotations

import contextlib
import hmac
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.stun.test_attributes import SAMPLES
from vw.stun import (
    ATTRIBUTE_CLASSES,
    ChannelData,
    Message,
    MessageClass,
    Method,
    StunError,
    check_fingerprint,
    check_integrity,
    parse_stream,
)
from vw.stun.wire import keyed_hmac

fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KNOWN_TYPES = sorted(ATTRIBUTE_CLASSES)


@st.composite
def tlv(draw: st.DrawFn) -> bytes:
    """One attribute of a known (or any) type with a random value, padded or not."""
    attr_type = draw(st.one_of(st.sampled_from(KNOWN_TYPES), st.integers(0, 0xFFFF)))
    value = draw(st.binary(max_size=40))
    declared = draw(st.one_of(st.just(len(value)), st.integers(0, 0xFFFF)))
    return struct.pack("!HH", attr_type, declared) + value + bytes(-len(value) & 3)


@st.composite
def framed(draw: st.DrawFn) -> bytes:
    """A STUN header with the right cookie and length, then random attributes."""
    body = b"".join(draw(st.lists(tlv(), max_size=6)))
    body += bytes(-len(body) & 3)
    message_type = draw(st.integers(0, 0x3FFF))
    tid = draw(st.binary(min_size=12, max_size=12))
    data = struct.pack("!HHI", message_type, len(body), 0x2112A442) + tid + body
    cut = draw(st.integers(0, len(data)))
    return draw(st.sampled_from([data, data[:cut]]))


stun_inputs = st.one_of(st.binary(max_size=200), framed())


@fuzz
@given(stun_inputs)
def test_message_parse_raises_only_stun_errors(data: bytes) -> None:
    try:
        message = Message.parse(data)
    except StunError:
        return
    # Whatever parses serializes and parses back to the same attributes.
    assert Message.parse(message.bytes()) == message
    # A parsed message is checked on the walk of its bytes that parsing made: as its bytes.
    assert message.layout is not None and message.layout[0] is message.raw
    assert check_integrity(message, b"key") == check_integrity(data, b"key")
    assert check_fingerprint(message) == check_fingerprint(data)


@fuzz
@given(stun_inputs)
def test_checks_never_raise(data: bytes) -> None:
    assert check_integrity(data, b"key") in (True, False)
    assert check_fingerprint(data) in (True, False)


@fuzz
@given(st.one_of(st.binary(max_size=80), st.binary(max_size=80).map(lambda b: b"\x40" + b)))
def test_channel_data_parse_raises_only_stun_errors(data: bytes) -> None:
    try:
        frame = ChannelData.parse(data)
    except StunError:
        return
    assert ChannelData.parse(frame.bytes(pad=True)) == frame


@fuzz
@given(st.lists(st.one_of(st.binary(max_size=40), framed()), max_size=4).map(b"".join))
def test_parse_stream_raises_only_stun_errors(data: bytes) -> None:
    try:
        frames, rest = parse_stream(data)
    except StunError:
        return
    assert len(rest) <= len(data)


@st.composite
def protected(draw: st.DrawFn) -> tuple[bytes, bytes, int]:
    """A message with MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT, its key, and where the
    integrity attribute ends."""
    attributes = draw(st.lists(st.sampled_from(SAMPLES), max_size=5))
    message = Message(
        draw(st.sampled_from(list(Method))),
        draw(st.sampled_from(list(MessageClass))),
        draw(st.binary(min_size=12, max_size=12)),
        [a for a in attributes if a.type not in (0x0008, 0x001C, 0x8028)],
    )
    key = draw(st.binary(min_size=1, max_size=32))
    data = message.bytes(key, sha256=draw(st.booleans()), fingerprint=True)
    return data, key, len(data) - 8


@fuzz
@given(protected(), st.data())
def test_tampering_never_passes_integrity(
    sample: tuple[bytes, bytes, int], data: st.DataObject
) -> None:
    message, key, integrity_end = sample
    assert check_integrity(message, key) and check_integrity(Message.parse(message), key)
    assert check_fingerprint(message) and check_fingerprint(Message.parse(message))
    position = data.draw(st.integers(0, integrity_end - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = bytearray(message)
    tampered[position] ^= flip
    assert not check_integrity(bytes(tampered), key)
    assert not check_fingerprint(bytes(tampered))
    with contextlib.suppress(StunError):  # the parsed form, checked on its walk of the bytes
        parsed = Message.parse(bytes(tampered))
        assert not check_integrity(parsed, key) and not check_fingerprint(parsed)


@fuzz
@given(protected(), st.data())
def test_tampering_after_integrity_only_breaks_fingerprint(
    sample: tuple[bytes, bytes, int], data: st.DataObject
) -> None:
    message, key, integrity_end = sample
    position = data.draw(st.integers(integrity_end + 4, len(message) - 1))  # FINGERPRINT value
    tampered = bytearray(message)
    tampered[position] ^= data.draw(st.integers(1, 255))
    assert check_integrity(bytes(tampered), key)
    assert not check_fingerprint(bytes(tampered))


def test_a_parsed_message_given_other_bytes_is_checked_on_those() -> None:
    key = b"key"
    message = Message.parse(Message(Method.BINDING, MessageClass.REQUEST, bytes(12)).bytes(
        key, fingerprint=True))
    assert check_integrity(message, key) and check_fingerprint(message)
    message.raw = Message(Method.BINDING, MessageClass.REQUEST, bytes(12)).bytes()
    assert not check_integrity(message, key) and not check_fingerprint(message)


@given(st.binary(max_size=150), st.binary(max_size=300), st.booleans())
def test_keyed_hmac_is_hmac(key: bytes, data: bytes, sha256: bool) -> None:
    """The HMAC from prepared hash states equals the standard library's, for keys shorter and
    longer than a block, asked again (from the cache) as well as the first time."""
    expected = hmac.digest(key, data, "sha256" if sha256 else "sha1")
    assert keyed_hmac(key, data, sha256) == expected
    assert keyed_hmac(key, data, sha256) == expected
    assert keyed_hmac(bytearray(key), data, sha256) == expected
    assert keyed_hmac(memoryview(key), data, sha256) == expected
