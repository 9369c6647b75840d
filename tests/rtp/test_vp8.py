"""VP8 payload descriptor, keyframe detection and rewriting (vw.rtp.vp8)."""

from __future__ import annotations

import fractions

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vw.rtp.rtp import RtpPacket, header_length
from vw.rtp.vp8 import (
    Vp8Descriptor,
    frame_dimensions,
    is_keyframe,
    rewrite_descriptor,
    rewrite_descriptor_into,
)

try:
    from aiortc.codecs.vpx import Vp8Encoder, VpxPayloadDescriptor
    from av import VideoFrame
except ImportError:  # pragma: no cover - aiortc is the reference peer, optional
    Vp8Encoder = None

needs_aiortc = pytest.mark.skipif(
    Vp8Encoder is None, reason="aiortc (reference peer) not installed"
)


def video_frames(count: int, width: int = 176, height: int = 144):
    """Small synthetic yuv420p frames (no numpy needed)."""
    for i in range(count):
        frame = VideoFrame(width, height, "yuv420p")
        for k, plane in enumerate(frame.planes):
            plane.update(bytes((x * 7 + i * 13 + k * 50) & 0xFF for x in range(plane.buffer_size)))
        frame.pts = i * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        yield frame


@pytest.fixture(scope="module")
def encoded() -> list[list[bytes]]:
    """Payloads of 4 frames from aiortc's VP8 encoder: a key frame, 2 deltas, a forced key frame."""
    if Vp8Encoder is None:
        pytest.skip("aiortc (reference peer) not installed")
    encoder = Vp8Encoder()
    return [encoder.encode(f, force_keyframe=(i == 3))[0] for i, f in enumerate(video_frames(4))]


@needs_aiortc
def test_encoder_output_keyframes(encoded: list[list[bytes]]) -> None:
    flags = [[is_keyframe(p) for p in frame] for frame in encoded]
    assert flags[0][0] and flags[3][0]
    assert not flags[1][0] and not flags[2][0]
    assert not any(f for frame in flags for f in frame[1:])  # only the first packet starts it
    assert frame_dimensions(encoded[0][0]) == (176, 144)
    assert frame_dimensions(encoded[3][0]) == (176, 144)
    assert frame_dimensions(encoded[1][0]) is None
    assert frame_dimensions(encoded[0][1]) is None


@needs_aiortc
def test_encoder_descriptors_match_aiortc(encoded: list[list[bytes]]) -> None:
    first = Vp8Descriptor.parse(encoded[0][0]).picture_id
    for i, frame in enumerate(encoded):
        for j, payload in enumerate(frame):
            d = Vp8Descriptor.parse(payload)
            theirs, rest = VpxPayloadDescriptor.parse(payload)
            assert d.start_of_partition == bool(theirs.partition_start) == (j == 0)
            assert d.partition_id == theirs.partition_id == 0
            assert d.picture_id == theirs.picture_id == (first + i) % 32768
            assert d.long_picture_id and d.tl0picidx is None and d.tid is None
            assert payload[d.size :] == rest
            assert bytes(d) == payload[: d.size] == bytes(theirs)


@needs_aiortc
def test_rewrite_encoder_payload(encoded: list[list[bytes]]) -> None:
    payload = encoded[0][0]
    out = rewrite_descriptor(payload, picture_id=40000)  # wraps to 15 bits
    assert len(out) == len(payload) and out[4:] == payload[4:]
    assert VpxPayloadDescriptor.parse(out)[0].picture_id == 40000 - 32768
    assert is_keyframe(out)
    with pytest.raises(ValueError, match="no TL0PICIDX"):
        rewrite_descriptor(payload, tl0picidx=1)


@needs_aiortc
def test_aiortc_descriptor_fields() -> None:
    theirs = VpxPayloadDescriptor(
        partition_start=1, partition_id=3, picture_id=0x1234, tl0picidx=200, tid=(2, 1), keyidx=17
    )
    data = bytes(theirs) + b"frame"
    d = Vp8Descriptor.parse(data)
    assert (d.start_of_partition, d.partition_id, d.picture_id, d.tl0picidx) == (
        True,
        3,
        0x1234,
        200,
    )
    assert (d.tid, d.layer_sync, d.keyidx, d.size) == (2, True, 17, 6)
    assert bytes(d) == bytes(theirs)


def test_descriptor_forms() -> None:
    assert Vp8Descriptor.parse(b"\x10\x9d") == Vp8Descriptor(start_of_partition=True)
    assert bytes(Vp8Descriptor(start_of_partition=True, partition_id=2)) == b"\x12"
    # 7-bit PictureID, N bit, TL0PICIDX, TID without KEYIDX
    data = bytes([0xA0, 0xE0, 0x7F, 0x05, 0x40])
    d = Vp8Descriptor.parse(data + b"rest")
    assert d == Vp8Descriptor(
        non_reference=True,
        picture_id=0x7F,
        long_picture_id=False,
        tl0picidx=5,
        tid=1,
        extended=True,
    )
    assert d.size == 5 and bytes(d) == data
    # K without T: the shared byte is there, TID is not
    d = Vp8Descriptor.parse(bytes([0x90, 0x10, 0x1F]))
    assert d.tid is None and d.keyidx == 31 and d.size == 3
    # X with no optional field keeps its byte
    assert bytes(Vp8Descriptor.parse(b"\x80\x00")) == b"\x80\x00"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x80", "extension byte"),
        (b"\x80\x80", "in its PictureID"),
        (b"\x80\x80\x80", "15-bit PictureID"),
        (b"\x80\x40", "TL0PICIDX"),
        (b"\x80\x20", "TID/KEYIDX"),
    ],
)
def test_descriptor_errors(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Vp8Descriptor.parse(data)


@pytest.mark.parametrize(
    "desc",
    [
        Vp8Descriptor(partition_id=8),
        Vp8Descriptor(picture_id=1 << 15),
        Vp8Descriptor(picture_id=128, long_picture_id=False),
        Vp8Descriptor(tl0picidx=256),
        Vp8Descriptor(tid=4),
        Vp8Descriptor(keyidx=32),
    ],
)
def test_serialize_errors(desc: Vp8Descriptor) -> None:
    with pytest.raises(ValueError):
        bytes(desc)


KEY_HEADER = bytes([0x50, 0x2A, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x41])  # 640x480


def test_keyframe_rules() -> None:
    descriptor = bytes([0x90, 0x80, 0x12])  # S=1, PID=0, 7-bit PictureID
    assert is_keyframe(descriptor + KEY_HEADER)
    assert frame_dimensions(descriptor + KEY_HEADER) == (640, 480)  # scale bits ignored
    assert not is_keyframe(bytes([0x80, 0x80, 0x12]) + KEY_HEADER)  # S=0
    assert not is_keyframe(bytes([0x91, 0x80, 0x12]) + KEY_HEADER)  # PID=1
    assert not is_keyframe(descriptor + bytes([0x51]) + KEY_HEADER[1:])  # P=1: inter frame
    assert not is_keyframe(descriptor + KEY_HEADER[:3] + b"\x00\x00\x00")  # no start code
    assert not is_keyframe(descriptor)  # descriptor only
    assert is_keyframe(descriptor + KEY_HEADER[:4])  # start code only partly there
    assert frame_dimensions(descriptor + KEY_HEADER[:8]) is None
    with pytest.raises(ValueError):
        is_keyframe(b"")
    with pytest.raises(ValueError):
        is_keyframe(b"\x90\x80")


def test_rewrite_short_picture_id_and_tl0picidx() -> None:
    payload = bytes([0x90, 0xC0, 0x7E, 0x09]) + b"frame"
    out = rewrite_descriptor(payload, picture_id=0x81, tl0picidx=0x1FF)
    assert out == bytes([0x90, 0xC0, 0x01, 0xFF]) + b"frame"
    assert rewrite_descriptor(payload) == payload
    with pytest.raises(ValueError, match="no PictureID"):
        rewrite_descriptor(b"\x10frame", picture_id=1)
    with pytest.raises(ValueError, match="no PictureID"):
        rewrite_descriptor(b"\x80\x40\x01", picture_id=1)
    with pytest.raises(ValueError, match="TL0PICIDX"):
        rewrite_descriptor(b"\x80\xc0\x01", tl0picidx=1)


def test_rewrite_in_rtp_packet() -> None:
    payload = bytes([0x90, 0xE0, 0x80, 0x01, 0x07, 0x40]) + KEY_HEADER
    data = bytes(RtpPacket(payload_type=96, extensions={5: b"\x00\x01"}, payload=payload))
    buf = bytearray(data)
    offset = header_length(data)
    rewrite_descriptor_into(buf, offset, picture_id=0x7FFF, tl0picidx=8)
    d = Vp8Descriptor.parse(bytes(buf[offset:]))
    assert (d.picture_id, d.tl0picidx, d.tid, d.layer_sync) == (0x7FFF, 8, 1, False)
    assert buf[:offset] == data[:offset] and buf[offset + 6 :] == data[offset + 6 :]


# --- hypothesis -----------------------------------------------------------------------------


@st.composite
def descriptors(draw) -> Vp8Descriptor:
    long_id = draw(st.booleans())
    d = Vp8Descriptor(
        start_of_partition=draw(st.booleans()),
        partition_id=draw(st.integers(0, 7)),
        non_reference=draw(st.booleans()),
        picture_id=draw(st.none() | st.integers(0, 0x7FFF if long_id else 0x7F)),
        long_picture_id=long_id,
        tl0picidx=draw(st.none() | st.integers(0, 255)),
        keyidx=draw(st.none() | st.integers(0, 31)),
    )
    if draw(st.booleans()):
        d.tid = draw(st.integers(0, 3))
        d.layer_sync = draw(st.booleans())
    d.extended = d.picture_id is not None or d.tl0picidx is not None or d.tid is not None
    d.extended = d.extended or d.keyidx is not None or draw(st.booleans())
    if d.picture_id is None:
        d.long_picture_id = True
    return d


@settings(max_examples=300, deadline=None)
@given(descriptors(), st.binary(max_size=12), st.integers(-5, 70000), st.integers(0, 300))
def test_round_trip_and_rewrite(d: Vp8Descriptor, rest: bytes, pid: int, tl0: int) -> None:
    data = bytes(d) + rest
    assert len(bytes(d)) == d.size
    assert Vp8Descriptor.parse(data) == d
    kwargs = {}
    if d.picture_id is not None:
        kwargs["picture_id"] = pid
    if d.tl0picidx is not None:
        kwargs["tl0picidx"] = tl0
    out = rewrite_descriptor(data, **kwargs)
    assert len(out) == len(data) and out[d.size :] == rest
    e = Vp8Descriptor.parse(out)
    if d.picture_id is not None:
        assert e.picture_id == pid % (32768 if d.long_picture_id else 128)
    if d.tl0picidx is not None:
        assert e.tl0picidx == tl0 % 256
    assert (e.tid, e.keyidx, e.start_of_partition, e.partition_id) == (
        d.tid,
        d.keyidx,
        d.start_of_partition,
        d.partition_id,
    )


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=24))
def test_fuzz_raises_only_value_error(data: bytes) -> None:
    for f in (
        Vp8Descriptor.parse,
        is_keyframe,
        frame_dimensions,
        lambda d: rewrite_descriptor(d, picture_id=5, tl0picidx=6),
        lambda d: rewrite_descriptor(d, picture_id=5),
    ):
        try:
            f(data)
        except ValueError:
            pass
