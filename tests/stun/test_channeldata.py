"""TURN ChannelData and splitting a TCP stream into frames."""

from __future__ import annotations

import struct

import pytest

from tests.stun.vectors import SAMPLE_IPV4_RESPONSE, SAMPLE_REQUEST
from vw.stun import (
    CHANNEL_MAX_RFC5766,
    MAX_FRAME_SIZE,
    AttributeOverrunError,
    ChannelData,
    ChannelDataError,
    Message,
    StreamError,
    TruncatedError,
    is_channel_data,
    is_channel_number,
    is_stun,
    parse_stream,
)


def test_round_trip() -> None:
    frame = ChannelData(0x4001, b"hello")
    assert frame.bytes() == b"\x40\x01\x00\x05hello"
    assert frame.bytes(pad=True) == b"\x40\x01\x00\x05hello\0\0\0"
    assert bytes(frame) == frame.bytes()
    assert ChannelData.parse(frame.bytes()) == frame
    assert ChannelData.parse(frame.bytes(pad=True)) == frame
    assert ChannelData.parse(bytearray(frame.bytes())) == frame
    assert ChannelData(0x4FFF, b"").bytes(pad=True) == b"\x4f\xff\x00\x00"
    assert ChannelData.parse(b"\x40\x00\x00\x00") == ChannelData(0x4000, b"")
    big = ChannelData(0x4000, bytes(65535))
    assert ChannelData.parse(big.bytes(pad=True)) == big


@pytest.mark.parametrize("channel", [0x3FFF, 0x8000, 0xFFFF, 0x0000])
def test_bad_channel_numbers(channel: int) -> None:
    with pytest.raises(ChannelDataError):
        ChannelData.parse(struct.pack("!HH", channel, 4) + b"data")
    with pytest.raises(ChannelDataError):
        ChannelData(channel, b"")
    assert not is_channel_number(channel)
    assert not is_channel_number(channel, CHANNEL_MAX_RFC5766)


@pytest.mark.parametrize("channel", [0x5000, 0x7FFF])
def test_rfc5766_channel_numbers(channel: int) -> None:
    """Framed like any channel, but not an RFC 8656 channel number."""
    frame = ChannelData(channel, b"data")
    assert ChannelData.parse(frame.bytes()) == frame
    assert is_channel_data(frame.bytes())
    assert not is_channel_number(channel)
    assert is_channel_number(channel, CHANNEL_MAX_RFC5766)


def test_malformed() -> None:
    with pytest.raises(TruncatedError):
        ChannelData.parse(b"\x40\x00\x00")
    with pytest.raises(TruncatedError):
        ChannelData.parse(b"\x40\x00\x00\x05abcd")
    with pytest.raises(ChannelDataError):
        ChannelData.parse(b"\x40\x00\x00\x01a\0\0\0\0")  # more than padding
    with pytest.raises(ChannelDataError):
        ChannelData(0x4000, bytes(65536))


def test_demultiplexing() -> None:
    frame = ChannelData(0x4ABC, b"x").bytes()
    assert is_channel_data(frame)
    assert not is_stun(frame)
    assert not is_channel_data(SAMPLE_REQUEST)
    assert not is_channel_data(b"\x40\x00")
    assert not is_channel_data(b"\x80\x00\x00\x00")
    assert not is_channel_data(b"\x3f\xff\x00\x00")


def test_parse_stream() -> None:
    one = ChannelData(0x4000, b"abcde")
    two = ChannelData(0x4001, b"")
    stream = SAMPLE_REQUEST + one.bytes(pad=True) + SAMPLE_IPV4_RESPONSE + two.bytes(pad=True)
    frames, rest = parse_stream(stream)
    assert frames == [
        Message.parse(SAMPLE_REQUEST),
        one,
        Message.parse(SAMPLE_IPV4_RESPONSE),
        two,
    ]
    assert rest == b""
    assert frames[0].raw == SAMPLE_REQUEST  # type: ignore[union-attr]


def test_parse_stream_in_pieces() -> None:
    stream = SAMPLE_REQUEST + ChannelData(0x4000, b"abcde").bytes(pad=True) + SAMPLE_REQUEST
    for chunk in (1, 3, 7, 64):
        frames: list[object] = []
        buffer = b""
        for i in range(0, len(stream), chunk):
            parsed, buffer = parse_stream(buffer + stream[i : i + chunk])
            frames.extend(parsed)
        assert buffer == b""
        assert len(frames) == 3
        assert frames[1] == ChannelData(0x4000, b"abcde")


def test_parse_stream_incomplete() -> None:
    assert parse_stream(b"") == ([], b"")
    assert parse_stream(b"\x40\x00\x00") == ([], b"\x40\x00\x00")
    # An unpadded ChannelData is incomplete on a stream: its padding has not arrived yet.
    assert parse_stream(b"\x40\x00\x00\x01a") == ([], b"\x40\x00\x00\x01a")
    frames, rest = parse_stream(SAMPLE_REQUEST + SAMPLE_REQUEST[:30])
    assert len(frames) == 1 and rest == SAMPLE_REQUEST[:30]


@pytest.mark.parametrize(
    ("stream", "error"),
    [
        (b"\x80\x00\x00\x00", StreamError),  # RTP-like first byte
        (b"\xc0\x00\x00\x00", StreamError),
        (b"\x00\x01\x00\x00\x21\x12\xa4\x43", StreamError),  # bad cookie, caught early
        (b"\x00\x01\x00\x02", StreamError),  # length not a multiple of 4
        (b"\x00\x01\x00\x04" + SAMPLE_REQUEST[4:20] + b"\x00\x06\x00\x08", AttributeOverrunError),
    ],
)
def test_parse_stream_errors(stream: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_stream(stream)


def test_parse_stream_max_size() -> None:
    big = ChannelData(0x4000, bytes(2000)).bytes(pad=True)
    assert parse_stream(big)[0] == [ChannelData(0x4000, bytes(2000))]
    with pytest.raises(StreamError):
        parse_stream(big[:4], max_size=1500)  # refused from the header alone
    with pytest.raises(StreamError):
        parse_stream(SAMPLE_REQUEST, max_size=100)
    assert parse_stream(SAMPLE_REQUEST, max_size=len(SAMPLE_REQUEST))[1] == b""
    assert MAX_FRAME_SIZE >= 20 + 65535
