"""H.264 RTP payload inspection for keyframes (vw.rtp.h264)."""

from __future__ import annotations

import fractions

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vw.rtp.h264 import (
    NAL_FU_A,
    NAL_IDR,
    NAL_PPS,
    NAL_SLICE,
    NAL_SPS,
    NAL_STAP_A,
    H264PayloadInfo,
    is_keyframe,
    nal_unit_types,
    parse_payload,
)

try:
    from aiortc.codecs.h264 import H264Encoder
    from av import VideoFrame
except ImportError:  # pragma: no cover - aiortc is the reference peer, optional
    H264Encoder = None

SPS = bytes([0x67, 0x42, 0xC0, 0x1F, 0xDA])
PPS = bytes([0x68, 0xCE, 0x3C, 0x80])
IDR = bytes([0x65, 0x88, 0x84, 0x00, 0x33])
SLICE = bytes([0x41, 0x9A, 0x21, 0x6C])


def stap_a(*nalus: bytes) -> bytes:
    return bytes([0x78]) + b"".join(len(n).to_bytes(2, "big") + n for n in nalus)


def fu_a(nalu: bytes, start: bool, end: bool) -> bytes:
    indicator = (nalu[0] & 0xE0) | NAL_FU_A
    header = (0x80 if start else 0) | (0x40 if end else 0) | (nalu[0] & 0x1F)
    return bytes([indicator, header]) + nalu[1:]


def test_single_nal_units() -> None:
    assert parse_payload(IDR) == H264PayloadInfo(NAL_IDR, (NAL_IDR,))
    assert is_keyframe(IDR) and is_keyframe(SPS)
    assert not is_keyframe(SLICE) and not is_keyframe(PPS)
    info = parse_payload(PPS)
    assert info.has_pps and not info.has_sps and not info.is_keyframe


def test_stap_a() -> None:
    info = parse_payload(stap_a(SPS, PPS, IDR))
    assert info.packetization == NAL_STAP_A
    assert info.nal_types == (NAL_SPS, NAL_PPS, NAL_IDR)
    assert info.has_sps and info.has_pps and info.has_idr and info.is_keyframe
    assert is_keyframe(stap_a(SPS, PPS))  # parameter sets lead a key frame
    assert not is_keyframe(stap_a(PPS, bytes([0x06, 0x05])))
    assert nal_unit_types(stap_a(SLICE, SLICE)) == (NAL_SLICE, NAL_SLICE)


def test_fu_a() -> None:
    start = fu_a(IDR, start=True, end=False)
    middle = fu_a(IDR, start=False, end=False)
    end = fu_a(IDR, start=False, end=True)
    assert parse_payload(start) == H264PayloadInfo(NAL_FU_A, (NAL_IDR,), True, False)
    assert parse_payload(middle) == H264PayloadInfo(NAL_FU_A, ())
    assert parse_payload(end) == H264PayloadInfo(NAL_FU_A, (), False, True)
    assert is_keyframe(start) and not is_keyframe(middle) and not is_keyframe(end)
    assert not is_keyframe(fu_a(SLICE, start=True, end=True))
    # NRI bits in the indicator do not matter
    assert is_keyframe(bytes([0x1C, 0x85, 0x00]))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty"),
        (b"\x7c", "FU header"),
        (b"\x78\x00", "size is truncated"),
        (b"\x78\x00\x05\x65\x00", "5 bytes is invalid"),
        (b"\x78\x00\x00", "0 bytes is invalid"),
        (b"\x79\x00", "DON"),
    ],
)
def test_errors(payload: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_payload(payload)
    with pytest.raises(ValueError):
        is_keyframe(payload)


@pytest.mark.skipif(H264Encoder is None, reason="aiortc (reference peer) not installed")
def test_aiortc_encoder_output() -> None:
    encoder = H264Encoder()
    frames = []
    for i in range(3):
        frame = VideoFrame(176, 144, "yuv420p")
        for k, plane in enumerate(frame.planes):
            plane.update(bytes((x * 5 + i * 11 + k * 40) & 0xFF for x in range(plane.buffer_size)))
        frame.pts = i * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        frames.append(encoder.encode(frame, force_keyframe=(i == 2))[0])
    for index in (0, 2):  # key frames: SPS/PPS aggregated, then the IDR
        infos = [parse_payload(p) for p in frames[index]]
        assert infos[0].has_sps and infos[0].has_pps and is_keyframe(frames[index][0])
        assert any(i.has_idr for i in infos)
        assert not any(NAL_SLICE in i.nal_types for i in infos)
    infos = [parse_payload(p) for p in frames[1]]
    assert not any(is_keyframe(p) for p in frames[1])
    assert any(NAL_SLICE in i.nal_types for i in infos)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=24))
def test_fuzz_raises_only_value_error(data: bytes) -> None:
    try:
        info = parse_payload(data)
    except ValueError:
        with pytest.raises(ValueError):
            is_keyframe(data)
    else:
        assert is_keyframe(data) == info.is_keyframe
