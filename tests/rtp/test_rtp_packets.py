"""RTP packets, header extensions, RTX and the forwarding-path helpers (vw.rtp.rtp/extensions)."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vw.rtp import extensions as ext
from vw.rtp.rtp import (
    ONE_BYTE_PROFILE,
    TWO_BYTE_PROFILE,
    RtpPacket,
    header_length,
    is_rtcp,
    pack_extensions,
    parse_extensions,
    peek_marker,
    peek_payload_type,
    peek_sequence,
    peek_ssrc,
    peek_timestamp,
    rewrite_header,
    rewrite_header_into,
    unwrap_rtx,
    wrap_rtx,
)

try:
    from aiortc import rtp as artp
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
except ImportError:  # pragma: no cover - aiortc is the reference peer, optional
    artp = None

needs_aiortc = pytest.mark.skipif(artp is None, reason="aiortc (reference peer) not installed")

MID, AUDIO_LEVEL, ABS_SEND_TIME, TCC = 1, 2, 3, 5


def aiortc_map():
    """aiortc's extension map with the IDs used here."""
    params = RTCRtpParameters(
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=MID, uri=ext.MID_URI),
            RTCRtpHeaderExtensionParameters(id=AUDIO_LEVEL, uri=ext.AUDIO_LEVEL_URI),
            RTCRtpHeaderExtensionParameters(id=ABS_SEND_TIME, uri=ext.ABS_SEND_TIME_URI),
            RTCRtpHeaderExtensionParameters(id=TCC, uri=ext.TRANSPORT_CC_URI),
        ]
    )
    m = artp.HeaderExtensionsMap()
    m.configure(params)
    return m


def aiortc_packet(**kw):
    p = artp.RtpPacket(
        payload_type=kw.get("pt", 111),
        marker=kw.get("marker", 1),
        sequence_number=kw.get("seq", 4321),
        timestamp=kw.get("ts", 0xDEADBEEF),
        ssrc=kw.get("ssrc", 0x01020304),
        payload=kw.get("payload", b"opus payload"),
    )
    p.csrc = kw.get("csrc", [])
    p.padding_size = kw.get("padding", 0)
    p.extensions.mid = kw.get("mid")
    p.extensions.audio_level = kw.get("audio_level")
    p.extensions.abs_send_time = kw.get("abs_send_time")
    p.extensions.transport_sequence_number = kw.get("tcc")
    return p


def simple(payload: bytes = b"\x11" * 40, **kw) -> bytes:
    return bytes(
        RtpPacket(
            payload_type=96,
            sequence_number=1000,
            timestamp=90000,
            ssrc=0xCAFE,
            payload=payload,
            **kw,
        )
    )


# --- interop with aiortc --------------------------------------------------------------------


@needs_aiortc
def test_parse_aiortc_packet_with_extensions_and_csrcs() -> None:
    a = aiortc_packet(
        csrc=[7, 8], mid="0", audio_level=(True, 42), abs_send_time=0x123456, tcc=65000
    )
    data = a.serialize(aiortc_map())
    p = RtpPacket.parse(data)
    assert (p.payload_type, p.marker, p.sequence_number, p.timestamp, p.ssrc) == (
        111,
        True,
        4321,
        0xDEADBEEF,
        0x01020304,
    )
    assert p.csrcs == [7, 8]
    assert p.extension_profile == ONE_BYTE_PROFILE
    assert p.payload == b"opus payload"
    assert p.extensions[MID] == b"0"
    assert ext.parse_audio_level(p.extensions[AUDIO_LEVEL]) == (True, 42)
    assert ext.parse_abs_send_time(p.extensions[ABS_SEND_TIME]) == 0x123456
    assert ext.parse_transport_cc(p.extensions[TCC]) == 65000
    # Our serialization of the same content is byte for byte theirs.
    assert bytes(p) == data
    ours = RtpPacket(
        payload_type=111,
        marker=True,
        sequence_number=4321,
        timestamp=0xDEADBEEF,
        ssrc=0x01020304,
        csrcs=[7, 8],
        extensions={  # in the order aiortc writes them
            MID: b"0",
            ABS_SEND_TIME: ext.pack_abs_send_time(0x123456),
            AUDIO_LEVEL: ext.pack_audio_level(True, 42),
            TCC: ext.pack_transport_cc(65000),
        },
        payload=b"opus payload",
    )
    assert bytes(ours) == data
    # Raw-packet accessors agree.
    assert ext.get_audio_level(data, AUDIO_LEVEL) == (True, 42)
    assert ext.get_transport_cc(data, TCC) == 65000
    assert ext.get_extension(data, MID) == b"0"
    assert ext.get_extension(data, 9) is None


@needs_aiortc
def test_aiortc_reads_our_packets() -> None:
    ours = RtpPacket(
        payload_type=100,
        sequence_number=65535,
        timestamp=1,
        ssrc=0xFFFFFFFF,
        extensions={TCC: ext.pack_transport_cc(3), MID: b"video"},
        payload=b"x" * 100,
        padding_size=7,
    )
    a = artp.RtpPacket.parse(bytes(ours), aiortc_map())
    assert (a.payload_type, a.sequence_number, a.timestamp, a.ssrc) == (100, 65535, 1, 0xFFFFFFFF)
    assert a.extensions.transport_sequence_number == 3
    assert a.extensions.mid == "video"
    assert a.payload == b"x" * 100
    assert a.padding_size == 7


@needs_aiortc
def test_parse_aiortc_padding() -> None:
    data = aiortc_packet(padding=13, payload=b"abc").serialize(aiortc_map())
    p = RtpPacket.parse(data)
    assert p.payload == b"abc" and p.padding_size == 13
    assert len(bytes(p)) == len(data)


@needs_aiortc
def test_two_byte_form_matches_aiortc() -> None:
    # ID 15+ or an empty or >16-byte value forces the two-byte form in both implementations.
    elements = [(1, b"a"), (20, b""), (3, bytes(range(17)))]
    profile, block = artp.pack_header_extensions(elements)
    ours = pack_extensions(dict(elements))
    assert ours == (profile, block) and profile == TWO_BYTE_PROFILE
    assert parse_extensions(profile, block) == dict(elements)
    # one-byte form for small elements
    elements = [(1, b"a"), (14, bytes(16))]
    assert pack_extensions(dict(elements)) == artp.pack_header_extensions(elements)


@needs_aiortc
def test_rtx_matches_aiortc() -> None:
    m = aiortc_map()
    original = aiortc_packet(seq=777, tcc=12, payload=b"media")
    rtx_a = artp.wrap_rtx(original, payload_type=97, sequence_number=5, ssrc=0xABC)
    data = original.serialize(m)
    rtx_ours = wrap_rtx(data, rtx_pt=97, rtx_ssrc=0xABC, rtx_seq=5)
    assert rtx_ours == rtx_a.serialize(m)
    osn, back = unwrap_rtx(rtx_ours, original_pt=111)
    assert osn == 777
    assert rewrite_header(back, 0x01020304, osn, peek_timestamp(back)) == data


# --- parse / serialize ----------------------------------------------------------------------


def test_round_trip_fields() -> None:
    p = RtpPacket(
        payload_type=127,
        sequence_number=0xFFFF,
        timestamp=0xFFFFFFFF,
        ssrc=0,
        marker=True,
        csrcs=list(range(15)),
        extensions={1: b"\x01\x02", 14: b"z" * 16},
        payload=b"payload",
        padding_size=255,
    )
    data = bytes(p)
    q = RtpPacket.parse(data)
    assert dataclasses.replace(q, extension_profile=None) == p
    assert q.extension_profile == ONE_BYTE_PROFILE
    assert data[-1] == 255 and data[-255:-1] == bytes(254)


def test_one_byte_padding_and_reserved_id() -> None:
    # element 1 (2 bytes), padding byte, element 2 (1 byte), then ID 15 stops parsing.
    block = b"\x11\xaa\xbb\x00\x20\xcc\xf0\x31"
    assert parse_extensions(ONE_BYTE_PROFILE, block) == {1: b"\xaa\xbb", 2: b"\xcc"}


def test_two_byte_appbits_and_padding() -> None:
    block = b"\x00\x05\x02hi\x00\x00\x07\x00\x00\x00\x00"
    assert len(block) == 12
    assert parse_extensions(0x100A, block) == {5: b"hi", 7: b""}
    header = struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + struct.pack("!HH", 0x100A, 3)
    p = RtpPacket.parse(header + block + b"\x01\x02\x03\x04")
    assert p.extension_profile == 0x100A
    assert p.extensions == {5: b"hi", 7: b""}
    assert p.payload == b"\x01\x02\x03\x04"
    # the two-byte form (and its appbits) is kept even though the one-byte form would fit
    p.extensions = {5: b"hi"}
    assert RtpPacket.parse(bytes(p)).extension_profile == 0x100A


def test_generic_extension_kept_raw() -> None:
    header = struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + struct.pack("!HH", 0x1234, 1)
    data = header + b"abcd" + b"payload"
    p = RtpPacket.parse(data)
    assert p.extension_profile == 0x1234 and p.extension_data == b"abcd" and p.extensions == {}
    assert bytes(p) == data
    assert header_length(data) == 20
    with pytest.raises(ValueError, match="not RFC 8285"):
        ext.set_extension(data, 1, b"x")
    assert ext.find_extension(data, 1) is None


def test_empty_extension_block_round_trips() -> None:
    data = struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + struct.pack("!HH", 0xBEDE, 0) + b"pl"
    p = RtpPacket.parse(data)
    assert p.extensions == {} and p.extension_profile == ONE_BYTE_PROFILE
    assert bytes(p) == data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x60\x00", "shorter than the 12-byte header"),
        (b"\x40" + bytes(11), "version is 1"),
        (b"\x82" + bytes(11) + bytes(4), "truncated in its 2 CSRCs"),
        (b"\x90" + bytes(11) + b"\xbe\xde", "truncated in its extension header"),
        (b"\x90" + bytes(11) + b"\xbe\xde\x00\x02" + bytes(4), "truncated at 4"),
        (b"\x90" + bytes(11) + b"\xbe\xde\x00\x01\x13\x00\x00\x00", "one-byte header extension 1"),
        (b"\x90" + bytes(11) + b"\x10\x00\x00\x01\x00\x00\x00\x05", "two-byte header extension 5"),
        (b"\xa0" + bytes(11), "padding bit is set but there is no padding"),
        (b"\xa0" + bytes(11) + b"ab\x00", "padding length 0"),
        (b"\xa0" + bytes(11) + b"ab\x04", "padding length 4"),
    ],
)
def test_parse_errors(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RtpPacket.parse(data)


@pytest.mark.parametrize(
    "fields",
    [
        {"payload_type": 128},
        {"sequence_number": 65536},
        {"timestamp": -1},
        {"ssrc": 1 << 32},
        {"csrcs": [0] * 16},
        {"csrcs": [1 << 32]},
        {"padding_size": 256},
        {"extensions": {0: b"x"}},
        {"extensions": {256: b"x"}},
        {"extensions": {1: bytes(256)}},
        {"extensions": {1: b"x"}, "extension_profile": 0x1234},
    ],
)
def test_serialize_errors(fields: dict) -> None:
    with pytest.raises(ValueError):
        bytes(RtpPacket(**fields))


def test_padding_only_packet() -> None:
    p = RtpPacket(payload_type=96, padding_size=200)
    q = RtpPacket.parse(bytes(p))
    assert q.payload == b"" and q.padding_size == 200


# --- hot path -------------------------------------------------------------------------------


def test_peek_helpers() -> None:
    data = bytes(
        RtpPacket(
            payload_type=111,
            marker=True,
            sequence_number=0xBEEF,
            timestamp=0x8000_0001,
            ssrc=0xF00D,
        )
    )
    assert peek_payload_type(data) == 111
    assert peek_marker(data) is True
    assert peek_sequence(data) == 0xBEEF
    assert peek_timestamp(data) == 0x8000_0001
    assert peek_ssrc(data) == 0xF00D
    assert header_length(data) == 12
    for peek in (peek_payload_type, peek_marker, peek_sequence, peek_timestamp, peek_ssrc):
        with pytest.raises(ValueError, match="shorter than the 12-byte header"):
            peek(data[:11])


def test_is_rtcp_demux() -> None:
    # RFC 5761: RTCP packet types 192-223 in the second byte; RTP PT 96 with or without marker
    # (96, 224) is RTP.
    assert is_rtcp(b"\x80\xc8\x00\x06") and is_rtcp(b"\x81\xcd") and is_rtcp(b"\x80\xdf")
    assert not is_rtcp(simple())
    assert not is_rtcp(b"\x80\xe0" + bytes(10))
    assert not is_rtcp(b"\x80\xbf") and not is_rtcp(b"\x80") and not is_rtcp(b"")


def test_header_length_with_csrcs_and_extension() -> None:
    p = RtpPacket(csrcs=[1, 2], extensions={1: b"abc"}, payload=b"PAYLOAD")
    data = bytes(p)
    assert data[header_length(data) :] == b"PAYLOAD"
    with pytest.raises(ValueError, match="truncated"):
        header_length(data[:24])


def test_rewrite_header() -> None:
    original = bytes(
        RtpPacket(
            payload_type=96,
            marker=True,
            sequence_number=1,
            timestamp=2,
            ssrc=3,
            csrcs=[9],
            extensions={TCC: b"\x00\x01"},
            payload=bytes(range(200)),
            padding_size=4,
        )
    )
    out = rewrite_header(original, ssrc=0xAABBCCDD, sequence=65535, timestamp=0xFFFFFFFF)
    assert isinstance(out, bytes) and len(out) == len(original)
    assert out[:2] == original[:2] and out[12:] == original[12:]
    assert (peek_ssrc(out), peek_sequence(out), peek_timestamp(out)) == (
        0xAABBCCDD,
        65535,
        2**32 - 1,
    )
    # optional payload type keeps the marker bit
    out = rewrite_header(original, 3, 1, 2, payload_type=100)
    assert out[1] == 0x80 | 100 and out[2:] == original[2:]
    buf = bytearray(original)
    rewrite_header_into(buf, 5, 6, 7)
    assert bytes(buf) == rewrite_header(original, 5, 6, 7)
    for bad in ((1 << 32, 0, 0), (0, 1 << 16, 0), (0, 0, -1)):
        with pytest.raises(ValueError, match="out of range"):
            rewrite_header(original, *bad)
    with pytest.raises(ValueError, match="out of range"):
        rewrite_header(original, 1, 2, 3, payload_type=128)
    with pytest.raises(ValueError, match="shorter"):
        rewrite_header(original[:8], 1, 2, 3)


# --- RTX ------------------------------------------------------------------------------------


def test_rtx_round_trip_packets() -> None:
    p = RtpPacket(
        payload_type=96,
        marker=True,
        sequence_number=40000,
        timestamp=123,
        ssrc=0x1111,
        csrcs=[5],
        extensions={TCC: b"\x00\x09"},
        payload=b"vp8 data",
        padding_size=3,
    )
    rtx = wrap_rtx(p, rtx_pt=97, rtx_ssrc=0x2222, rtx_seq=17)
    assert (rtx.payload_type, rtx.ssrc, rtx.sequence_number) == (97, 0x2222, 17)
    assert rtx.payload == b"\x9c\x40vp8 data" and rtx.marker and rtx.timestamp == 123
    osn, back = unwrap_rtx(RtpPacket.parse(bytes(rtx)), original_pt=96)
    assert osn == 40000
    assert dataclasses.replace(back, ssrc=0x1111) == RtpPacket.parse(bytes(p))
    # bytes form gives the same bytes as the packet form
    raw = wrap_rtx(bytes(p), 97, 0x2222, 17)
    assert raw == bytes(rtx)
    osn, raw_back = unwrap_rtx(raw, 96)
    assert osn == 40000
    assert rewrite_header(raw_back, 0x1111, osn, 123) == bytes(p)


def test_rtx_padding_probe_has_no_osn() -> None:
    probe = bytes(RtpPacket(payload_type=97, padding_size=255))
    with pytest.raises(ValueError, match="no original sequence number"):
        unwrap_rtx(probe, 96)
    with pytest.raises(ValueError, match="no original sequence number"):
        unwrap_rtx(RtpPacket.parse(probe), 96)
    with pytest.raises(ValueError):
        unwrap_rtx(b"\x80", 96)


# --- extension values and raw-packet editing ------------------------------------------------


def test_extension_values() -> None:
    assert ext.pack_audio_level(True, 0) == b"\x80"
    assert ext.pack_audio_level(False, 127) == b"\x7f"
    assert ext.parse_audio_level(b"\xaa") == (True, 42)
    with pytest.raises(ValueError):
        ext.pack_audio_level(False, 128)
    with pytest.raises(ValueError):
        ext.parse_audio_level(b"")
    # abs-send-time: 6.18 fixed point seconds, wraps at 64 s
    assert ext.abs_send_time_from_seconds(1.5) == 0x060000
    assert ext.abs_send_time_from_seconds(64.25) == ext.abs_send_time_from_seconds(0.25)
    assert ext.abs_send_time_to_seconds(0x060000) == 1.5
    assert ext.pack_abs_send_time(0x060000) == b"\x06\x00\x00"
    assert ext.parse_abs_send_time(b"\xff\xff\xff") == 0xFFFFFF
    with pytest.raises(ValueError):
        ext.parse_abs_send_time(b"\x00\x00")
    with pytest.raises(ValueError):
        ext.pack_abs_send_time(1 << 24)
    assert ext.pack_transport_cc(0x1234) == b"\x12\x34"
    assert ext.parse_transport_cc(b"\x12\x34\x80\x01") == 0x1234  # v2 carries 2 more bytes
    with pytest.raises(ValueError):
        ext.pack_transport_cc(65536)
    with pytest.raises(ValueError):
        ext.parse_transport_cc(b"\x01")


def test_set_extension_in_place() -> None:
    data = simple(extensions={MID: b"m", TCC: b"\x00\x01", AUDIO_LEVEL: b"\x85"}, csrcs=[4])
    out = ext.set_extension(data, TCC, ext.pack_transport_cc(0xABCD))
    assert len(out) == len(data)
    assert ext.get_transport_cc(out, TCC) == 0xABCD
    diff = [i for i in range(len(data)) if data[i] != out[i]]
    assert len(diff) == 2
    buf = bytearray(data)
    assert ext.set_extension_into(buf, TCC, b"\x00\x02") and ext.get_transport_cc(buf, TCC) == 2
    assert not ext.set_extension_into(buf, TCC, b"\x00\x02\x03")  # other length
    assert not ext.set_extension_into(buf, 9, b"\x00\x02")  # absent
    assert ext.get_transport_cc(buf, TCC) == 2


def test_set_extension_adds_and_grows() -> None:
    data = simple(payload=b"PAYLOAD", padding_size=5)
    out = ext.set_extension(data, TCC, b"\x00\x07")
    p = RtpPacket.parse(out)
    assert p.extensions == {TCC: b"\x00\x07"} and p.payload == b"PAYLOAD" and p.padding_size == 5
    assert p.extension_profile == ONE_BYTE_PROFILE
    # a different length rebuilds the block; others are kept
    out2 = ext.set_extension(out, MID, b"mid")
    out3 = ext.set_extension(out2, MID, b"longer-mid")
    assert RtpPacket.parse(out3).extensions == {TCC: b"\x00\x07", MID: b"longer-mid"}
    # a value the one-byte form cannot carry moves the block to the two-byte form
    out4 = ext.set_extension(out3, 20, b"")
    p = RtpPacket.parse(out4)
    assert p.extension_profile == TWO_BYTE_PROFILE
    assert p.extensions == {TCC: b"\x00\x07", MID: b"longer-mid", 20: b""}
    assert p.payload == b"PAYLOAD"


def test_strip_extensions() -> None:
    data = simple(extensions={MID: b"m", TCC: b"\x00\x01", AUDIO_LEVEL: b"\x85"}, csrcs=[1, 2])
    assert ext.strip_extensions(data, {MID, TCC, AUDIO_LEVEL}) is data
    out = ext.strip_extensions(data, {TCC})
    assert RtpPacket.parse(out).extensions == {TCC: b"\x00\x01"}
    none_left = ext.strip_extensions(data, ())
    p = RtpPacket.parse(none_left)
    assert not none_left[0] & 0x10 and p.extension_profile is None and p.csrcs == [1, 2]
    assert p.payload == b"\x11" * 40
    plain = simple()
    assert ext.strip_extensions(plain, ()) is plain


def test_find_extension_errors() -> None:
    with pytest.raises(ValueError, match="shorter"):
        ext.find_extension(b"\x90\x00", 1)
    bad = b"\x90" + bytes(11) + b"\xbe\xde\x00\x01\x1f\x00\x00\x00"
    with pytest.raises(ValueError, match="one-byte header extension 1 is truncated"):
        ext.find_extension(bad, 2)


# --- hypothesis -----------------------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


@st.composite
def rtp_packets(draw) -> RtpPacket:
    form = draw(st.sampled_from(["none", "one", "two"]))
    if form == "one":
        exts = draw(
            st.dictionaries(st.integers(1, 14), st.binary(min_size=1, max_size=16), max_size=6)
        )
        profile = ONE_BYTE_PROFILE
    elif form == "two":
        exts = draw(st.dictionaries(st.integers(1, 255), st.binary(max_size=40), max_size=6))
        profile = TWO_BYTE_PROFILE | draw(st.integers(0, 15))
    else:
        exts, profile = {}, None
    return RtpPacket(
        payload_type=draw(st.integers(0, 127)),
        sequence_number=draw(u16),
        timestamp=draw(u32),
        ssrc=draw(u32),
        marker=draw(st.booleans()),
        csrcs=draw(st.lists(u32, max_size=15)),
        extensions=exts,
        payload=draw(st.binary(max_size=64)),
        padding_size=draw(st.integers(0, 255)),
        extension_profile=profile,
    )


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_fuzz_parse_raises_only_value_error(data: bytes) -> None:
    for f in (
        RtpPacket.parse,
        header_length,
        peek_ssrc,
        peek_sequence,
        peek_payload_type,
        lambda d: unwrap_rtx(d, 96),
        lambda d: wrap_rtx(d, 97, 1, 2),
        lambda d: ext.find_extension(d, 1),
        lambda d: ext.set_extension(d, 3, b"\x00\x01"),
        lambda d: ext.strip_extensions(d, {1}),
        lambda d: rewrite_header(d, 1, 2, 3),
    ):
        try:
            f(data)
        except ValueError:
            pass


@settings(max_examples=200, deadline=None)
@given(rtp_packets())
def test_round_trip_generated(p: RtpPacket) -> None:
    data = bytes(p)
    q = RtpPacket.parse(data)
    assert q == p
    assert bytes(q) == data
    assert header_length(data) + len(p.payload) + p.padding_size == len(data)
    assert (peek_ssrc(data), peek_sequence(data), peek_payload_type(data)) == (
        p.ssrc,
        p.sequence_number,
        p.payload_type,
    )
    for ext_id, value in p.extensions.items():
        assert ext.get_extension(data, ext_id) == value


@settings(max_examples=200, deadline=None)
@given(rtp_packets(), st.integers(1, 255), st.binary(max_size=20), u32, u16, u32)
def test_edits_keep_everything_else(
    p: RtpPacket, ext_id: int, value: bytes, ssrc: int, seq: int, ts: int
) -> None:
    data = bytes(p)
    out = ext.set_extension(data, ext_id, value)
    q = RtpPacket.parse(out)
    assert q.extensions[ext_id] == value
    assert {k: v for k, v in q.extensions.items() if k != ext_id} == {
        k: v for k, v in p.extensions.items() if k != ext_id
    }
    assert dataclasses.replace(q, extensions={}, extension_profile=None) == dataclasses.replace(
        p, extensions={}, extension_profile=None
    )
    q = RtpPacket.parse(rewrite_header(data, ssrc, seq, ts))
    assert q == dataclasses.replace(p, ssrc=ssrc, sequence_number=seq, timestamp=ts)
    rtx = wrap_rtx(data, 97, ssrc, seq)
    assert wrap_rtx(p, 97, ssrc, seq) == RtpPacket.parse(rtx)
    osn, back = unwrap_rtx(rtx, p.payload_type)
    assert osn == p.sequence_number
    assert rewrite_header(back, p.ssrc, osn, p.timestamp) == data
