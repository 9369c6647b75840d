"""Simulcast projection (vw.bridge.projection): one continuous stream out of switched layers."""

from __future__ import annotations

import fractions
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vw.bridge.projection import HISTORY, VideoProjection
from vw.bridge.sources import SourceDescription
from vw.rtp.rtp import RtpPacket, header_length, peek_sequence, peek_ssrc, peek_timestamp
from vw.rtp.vp8 import Vp8Descriptor, frame_dimensions, is_keyframe

try:
    from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
    from aiortc.jitterbuffer import JitterFrame
    from av import VideoFrame
except ImportError:  # pragma: no cover - aiortc is the reference peer, optional
    Vp8Encoder = None

needs_aiortc = pytest.mark.skipif(Vp8Encoder is None, reason="aiortc not installed")

PT = 96
LAYERS = (0x11111111, 0x22222222, 0x33333333)
SOURCE = SourceDescription("video", LAYERS, {s: s + 1 for s in LAYERS})
SIZES = ((64, 48), (128, 96), (256, 192))
FRAMES = 24
#: Frames (after the first) where each layer's encoder is forced to a key frame.
FORCED = {0: {12}, 1: {18}, 2: {4}}


# -- stream helpers --------------------------------------------------------------------------


def synthetic_frame(key: bool, size: int = 30, width: int = 64, height: int = 48) -> bytes:
    """A VP8 frame that looks right to keyframe detection (not decodable)."""
    if key:
        head = b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", width, height)
    else:
        head = b"\x11\x02\x00"
    return head + bytes(i & 0xFF for i in range(max(0, size - len(head))))


@dataclass
class LayerStream:
    """One simulcast layer's RTP packetizer, 15-bit PictureID and TL0PICIDX on every frame."""

    ssrc: int
    seq: int = 1000
    ts: int = 500_000
    pic: int = 100
    tl0: int = 7
    mtu: int = 300

    def frame(self, data: bytes, ts_step: int = 3000) -> list[bytes]:
        chunks = [data[i : i + self.mtu] for i in range(0, len(data), self.mtu)] or [b""]
        packets = []
        for i, chunk in enumerate(chunks):
            desc = Vp8Descriptor(
                start_of_partition=i == 0, picture_id=self.pic, tl0picidx=self.tl0, tid=0
            )
            packet = RtpPacket(
                payload_type=PT,
                sequence_number=self.seq,
                timestamp=self.ts,
                ssrc=self.ssrc,
                marker=i == len(chunks) - 1,
                payload=bytes(desc) + chunk,
            )
            packets.append(bytes(packet))
            self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + ts_step) & 0xFFFFFFFF
        self.pic = (self.pic + 1) & 0x7FFF
        self.tl0 = (self.tl0 + 1) & 0xFF
        return packets


def streams() -> list[LayerStream]:
    """Three layers with unrelated sequence, timestamp and PictureID origins."""
    return [
        LayerStream(LAYERS[0], seq=1000, ts=500_000, pic=100, tl0=7),
        LayerStream(LAYERS[1], seq=40_000, ts=9_000_000, pic=20_000, tl0=200),
        LayerStream(LAYERS[2], seq=7, ts=123_456_789, pic=5, tl0=0),
    ]


def descriptor(packet: bytes) -> Vp8Descriptor:
    return Vp8Descriptor.parse(packet[header_length(packet) :])


def vp8_data(packet: bytes) -> bytes:
    """The VP8 bitstream bytes of a packet (payload after the descriptor)."""
    payload = packet[header_length(packet) :]
    return payload[Vp8Descriptor.parse(payload).size :]


def feed(
    projection: VideoProjection, packets: Iterable[tuple[float, bytes]]
) -> list[bytes]:
    out = []
    for now, packet in packets:
        result = projection.rewrite(packet, now)
        if result is not None:
            out.append(result)
    return out


def assert_continuous(out: list[bytes]) -> None:
    """SSRC SIM[0], gapless sequence numbers, monotonic timestamps, PictureID/TL0 +1 a frame."""
    assert out
    for prev, cur in zip(out, out[1:], strict=False):
        assert peek_ssrc(cur) == LAYERS[0]
        assert peek_sequence(cur) == (peek_sequence(prev) + 1) & 0xFFFF
        ts_step = (peek_timestamp(cur) - peek_timestamp(prev)) & 0xFFFFFFFF
        assert ts_step < 0x80000000
        a, b = descriptor(prev), descriptor(cur)
        if ts_step == 0:
            assert (b.picture_id, b.tl0picidx) == (a.picture_id, a.tl0picidx)
        else:
            assert b.picture_id == (a.picture_id + 1) & 0x7FFF
            assert b.tl0picidx == (a.tl0picidx + 1) & 0xFF


# -- real VP8 from aiortc's encoder ----------------------------------------------------------


def video_frames(count: int, width: int, height: int) -> Iterable[VideoFrame]:
    for i in range(count):
        frame = VideoFrame(width, height, "yuv420p")
        for k, plane in enumerate(frame.planes):
            pattern = bytes((x * 7 + i * 13 + k * 50) & 0xFF for x in range(256))
            size = plane.buffer_size
            plane.update((pattern * (size // 256 + 1))[:size])
        frame.pts = i * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        yield frame


@pytest.fixture(scope="module")
def encoded() -> list[list[bytes]]:
    """Per layer, FRAMES encoded VP8 frames (key frames at 0 and at FORCED)."""
    if Vp8Encoder is None:
        pytest.skip("aiortc not installed")
    layers = []
    for layer, (width, height) in enumerate(SIZES):
        encoder = Vp8Encoder()
        frames = []
        for i, frame in enumerate(video_frames(FRAMES, width, height)):
            payloads, _ = encoder.encode(frame, force_keyframe=i in FORCED[layer])
            frames.append(b"".join(vp8_depayload(p) for p in payloads))
        layers.append(frames)
    return layers


def simulcast(encoded: list[list[bytes]], first: int = 1) -> list[tuple[int, float, bytes]]:
    """(frame index, now, packet) of the 3 layers, interleaved frame by frame from ``first``."""
    layer_streams = streams()
    out = []
    for f in range(FRAMES):
        for layer, stream in enumerate(layer_streams):
            for packet in stream.frame(encoded[layer][f]):
                if f >= first:
                    out.append((f, f / 30, packet))
    return out


def decode(out: list[bytes]) -> list[tuple[int, int]]:
    """Depacketize and decode a projected stream; (width, height) of each decoded frame."""
    decoder = Vp8Decoder()
    sizes = []
    frames: list[list[bytes]] = []
    for packet in out:
        if frames and peek_timestamp(frames[-1][0]) == peek_timestamp(packet):
            frames[-1].append(packet)
        else:
            frames.append([packet])
    for packets in frames:
        data = b"".join(vp8_depayload(p[header_length(p) :]) for p in packets)
        for picture in decoder.decode(JitterFrame(data, peek_timestamp(packets[0]))):
            sizes.append((picture.width, picture.height))
    return sizes


@needs_aiortc
def test_encoder_keyframes_where_forced(encoded: list[list[bytes]]) -> None:
    for layer, frames in enumerate(encoded):
        keys = {i for i, data in enumerate(frames) if is_keyframe(b"\x10" + data)}
        assert keys == {0} | FORCED[layer]
        assert frame_dimensions(b"\x10" + frames[0]) == SIZES[layer]


# -- (1) single layer ------------------------------------------------------------------------


def test_single_layer_passes_through() -> None:
    source = SourceDescription("video", (LAYERS[0],))
    projection = VideoProjection(source)
    assert projection.set_target(0)
    stream = LayerStream(LAYERS[0], seq=65_530, ts=0xFFFFF000)
    packets = [p for i in range(10) for p in stream.frame(synthetic_frame(i == 0, 700))]
    out = feed(projection, ((i / 100, p) for i, p in enumerate(packets)))
    assert out == packets  # SSRC is already SIM[0]: byte for byte the same
    assert projection.current_layer == 0 and not projection.keyframe_needed


def test_nothing_before_first_keyframe() -> None:
    projection = VideoProjection(SOURCE)
    projection.set_target(0)
    stream = LayerStream(LAYERS[0])
    assert feed(projection, ((0.0, p) for p in stream.frame(synthetic_frame(False)))) == []
    assert projection.current_layer == -1
    out = feed(projection, ((0.1, p) for p in stream.frame(synthetic_frame(True))))
    assert len(out) == 1 and projection.current_layer == 0


# -- (2)(3) switching with real VP8 ----------------------------------------------------------


@needs_aiortc
def test_target_top_layer_starts_at_its_keyframe(encoded: list[list[bytes]]) -> None:
    packets = simulcast(encoded)
    projection = VideoProjection(SOURCE)
    assert projection.set_target(2)
    out = feed(projection, ((now, p) for _, now, p in packets))
    expected = [p for f, _, p in packets if peek_ssrc(p) == LAYERS[2] and f >= 4]
    assert [vp8_data(p) for p in out] == [vp8_data(p) for p in expected]
    assert_continuous(out)
    assert [peek_sequence(p) for p in out] == [peek_sequence(p) for p in expected]  # identity
    assert projection.current_layer == 2
    assert decode(out) == [SIZES[2]] * (FRAMES - 4)


@needs_aiortc
def test_switch_down_and_up_at_keyframes(encoded: list[list[bytes]]) -> None:
    packets = simulcast(encoded)
    projection = VideoProjection(SOURCE)
    projection.set_target(2)
    out = []
    for f, now, packet in packets:
        if f == 8 and projection.target_layer == 2:
            assert projection.set_target(0)  # key frame of layer 0 comes at frame 12
            assert projection.keyframe_ssrc == LAYERS[0]
        if f == 14 and projection.target_layer == 0:
            assert projection.set_target(1)  # and of layer 1 at frame 18
        result = projection.rewrite(packet, now)
        if result is not None:
            out.append(result)
    assert_continuous(out)
    sources = [(f, peek_ssrc(p)) for f, _, p in packets]
    expected = [p for (f, ssrc), (_, _, p) in zip(sources, packets, strict=True)
                if (ssrc == LAYERS[2] and 4 <= f < 12) or (ssrc == LAYERS[0] and 12 <= f <= 18)
                or (ssrc == LAYERS[1] and f >= 18)]  # layer 0 comes before layer 1 in frame 18
    assert [vp8_data(p) for p in out] == [vp8_data(p) for p in expected]
    assert projection.current_layer == 1 and projection.switches == 3
    assert decode(out) == [SIZES[2]] * 8 + [SIZES[0]] * 7 + [SIZES[1]] * (FRAMES - 18)
    # The timestamp advances by the wall-clock time since the last frame at each switch: a
    # frame interval at frame 12 (layer 0 first), 1 tick at frame 18 (same capture time).
    steps = [(peek_timestamp(b) - peek_timestamp(a)) & 0xFFFFFFFF
             for a, b in zip(out, out[1:], strict=False)]
    assert set(steps) == {0, 1, 3000} and steps.count(1) == 1


# -- (4) upstream loss -----------------------------------------------------------------------


def test_upstream_loss_keeps_gaps_and_maps_back() -> None:
    layer_streams = streams()
    projection = VideoProjection(SOURCE)
    projection.set_target(1)
    packets = []
    for f in range(12):
        for layer, stream in enumerate(layer_streams):
            key = f == 0 or (layer == 0 and f == 6)
            packets += [(f / 30, p) for p in stream.frame(synthetic_frame(key, 700))]
    lost = {40_001, 40_005, 1000 + 3 * 6 + 1}  # two in layer 1, one in layer 0 after a switch
    sent = []
    for now, packet in packets:
        if now == 5 / 30 and projection.target_layer == 1:
            projection.set_target(0)
        if peek_sequence(packet) in lost:
            continue
        result = projection.rewrite(packet, now)
        if result is not None:
            sent.append((packet, result))
    out_seqs = [peek_sequence(r) for _, r in sent]
    first = out_seqs[0]
    missing = sorted(set(range(first, out_seqs[-1] + 1)) - set(out_seqs))
    assert len(missing) == 3
    assert [projection.original_sequence(s) for s in missing] == [
        (LAYERS[1], 40_001), (LAYERS[1], 40_005), (LAYERS[0], 1019)]
    for packet, result in sent:
        assert projection.original_sequence(peek_sequence(result)) == (
            peek_ssrc(packet), peek_sequence(packet))
    # A late (retransmitted) packet fills its gap; a duplicate is dropped.
    late = next(p for _, p in packets if peek_ssrc(p) == LAYERS[0] and peek_sequence(p) == 1019)
    filled = projection.rewrite(late, 1.0)
    assert filled is not None and peek_sequence(filled) == missing[2]
    assert projection.rewrite(late, 1.0) is None
    # The old layer's late packet is not forwarded, but can be re-projected for a NACK.
    old = next(p for _, p in packets if peek_sequence(p) == 40_005)
    assert projection.rewrite(old, 1.0) is None
    again = projection.rewrite_retransmission(old)
    assert again is not None and peek_sequence(again) == missing[1]
    assert peek_ssrc(again) == LAYERS[0]
    by_seq = {peek_sequence(r): r for _, r in sent}
    before, after = by_seq[missing[1] - 1], by_seq[missing[1] + 1]
    assert descriptor(again).picture_id == descriptor(before).picture_id
    assert peek_timestamp(again) in (peek_timestamp(before), peek_timestamp(after))
    # Resent exactly as sent the first time.
    for packet, result in sent[-5:]:
        assert projection.rewrite_retransmission(packet) == result
    assert projection.original_sequence((out_seqs[-1] + 1) & 0xFFFF) is None
    assert projection.original_sequence((out_seqs[-1] - HISTORY) & 0xFFFF) is None


# -- (5) set_target ----------------------------------------------------------------------------


def test_set_target_says_when_a_keyframe_is_needed() -> None:
    projection = VideoProjection(SOURCE)
    assert projection.current_layer == -1
    assert projection.set_target(2)
    assert projection.set_target(2)  # still waiting (callers throttle)
    assert projection.keyframe_ssrc == LAYERS[2]
    layer2 = LayerStream(LAYERS[2])
    feed(projection, ((0.0, p) for p in layer2.frame(synthetic_frame(True))))
    assert projection.current_layer == 2
    assert not projection.set_target(2)
    assert projection.keyframe_ssrc is None
    assert projection.set_target(1)
    assert not projection.set_target(2)  # back to what is flowing: nothing to wait for
    assert not projection.set_target(-1)  # pause
    assert projection.current_layer == -1
    assert feed(projection, ((0.1, p) for p in layer2.frame(synthetic_frame(False)))) == []
    assert projection.set_target(2)  # resuming needs a key frame
    with pytest.raises(ValueError):
        projection.set_target(3)


def test_pause_and_resume_continue_the_stream() -> None:
    projection = VideoProjection(SOURCE)
    projection.set_target(0)
    layer0 = LayerStream(LAYERS[0])
    out = feed(projection, ((f / 30, p) for f in range(3)
                            for p in layer0.frame(synthetic_frame(f == 0, 500))))
    projection.set_target(-1)
    assert feed(projection, ((f / 30, p) for f in range(3, 6)
                             for p in layer0.frame(synthetic_frame(False, 500)))) == []
    projection.set_target(0)
    out += feed(projection, ((f / 30, p) for f in range(6, 9)
                             for p in layer0.frame(synthetic_frame(f == 7, 500))))
    assert_continuous(out)
    assert len(out) == 5 * 2
    gap = (peek_timestamp(out[6]) - peek_timestamp(out[5])) & 0xFFFFFFFF
    assert gap == 5 * 3000  # wall clock from frame 2 to frame 7


# -- (6) wraparound --------------------------------------------------------------------------


def test_sequence_timestamp_picture_id_wraparound() -> None:
    low = LayerStream(LAYERS[0], seq=65_500, ts=0xFFFFFFFF - 20_000, pic=0x7FFF - 30, tl0=250)
    high = LayerStream(LAYERS[1], seq=65_534, ts=17, pic=0x7FF0, tl0=255)
    projection = VideoProjection(SOURCE)
    projection.set_target(0)
    out = []
    for f in range(80):
        if f == 20:
            projection.set_target(1)
        if f == 50:
            projection.set_target(0)
        for stream, key in ((low, f in (0, 50)), (high, f in (0, 20))):
            for packet in stream.frame(synthetic_frame(key, 650)):
                result = projection.rewrite(packet, f / 30)
                if result is not None:
                    out.append(result)
    assert_continuous(out)
    assert len(out) == 81 * 3  # both layers' packets in frame 20, where layer 1 goes second
    seqs = [peek_sequence(p) for p in out]
    assert seqs[0] == 65_500 and 0 in seqs
    pics = [descriptor(p).picture_id for p in out]
    assert 0x7FFF in pics and 0 in pics
    assert projection.switches == 3


def test_seven_bit_picture_id_wraps_in_seven_bits() -> None:
    projection = VideoProjection(SOURCE)
    projection.set_target(0)
    out = []
    for f in range(200):
        desc = Vp8Descriptor(start_of_partition=True, picture_id=(f + 90) & 0x7F,
                             long_picture_id=False)
        packet = bytes(RtpPacket(payload_type=PT, sequence_number=f, timestamp=f * 3000,
                                 ssrc=LAYERS[0], marker=True,
                                 payload=bytes(desc) + synthetic_frame(f == 0)))
        out += feed(projection, [(f / 30, packet)])
    assert [descriptor(p).picture_id for p in out] == [(f + 90) & 0x7F for f in range(200)]


# -- (7) property: random interleavings, losses and targets ---------------------------------


@st.composite
def scenarios(draw: st.DrawFn) -> list[tuple[str, int, bool, bool]]:
    """Events: ("packet", layer, keyframe, lost) or ("target", layer, _, _)."""
    events = []
    for _ in range(draw(st.integers(1, 250))):
        if draw(st.integers(0, 9)) == 0:
            events.append(("target", draw(st.integers(-1, 2)), False, False))
        else:
            layer = draw(st.integers(0, 2))
            events.append(("packet", layer, draw(st.integers(0, 5)) == 0,
                           draw(st.integers(0, 7)) == 0))
    return events


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.integers(0, 0xFFFF), st.integers(0, 0x7FFF), st.integers(0, 2))
def test_random_switching_keeps_output_sane(
    events: list[tuple[str, int, bool, bool]], seq0: int, pic0: int, codec: int
) -> None:
    projection = VideoProjection(SOURCE, ("VP8", "H264", "other")[codec])
    projection.set_target(2)
    layer_streams = [
        LayerStream(LAYERS[i], seq=(seq0 + 20_000 * i) & 0xFFFF, ts=seq0 * 1000 * (i + 1),
                    pic=(pic0 + 9000 * i) & 0x7FFF, tl0=pic0 & 0xFF, mtu=40)
        for i in range(3)
    ]
    out: list[tuple[bytes, bytes]] = []
    now = 0.0
    for kind, layer, key, lost in events:
        now += 0.002
        if kind == "target":
            projection.set_target(layer)
            continue
        for packet in layer_streams[layer].frame(synthetic_frame(key, 70), ts_step=300):
            if lost:
                continue
            result = projection.rewrite(packet, now)
            if result is not None:
                out.append((packet, result))
    previous = None
    for packet, result in out:
        assert peek_ssrc(result) == LAYERS[0]
        assert len(result) == len(packet) and vp8_data(result) == vp8_data(packet)
        seq, ts = peek_sequence(result), peek_timestamp(result)
        if previous is not None:
            assert 0 < (seq - previous[0]) & 0xFFFF < 0x8000
            assert (ts - previous[1]) & 0xFFFFFFFF < 0x80000000
        previous = seq, ts
    for packet, result in out[-HISTORY:]:
        assert projection.original_sequence(peek_sequence(result)) == (
            peek_ssrc(packet), peek_sequence(packet))
    if codec == 0 and out:
        assert_vp8_monotonic([r for _, r in out])


def assert_vp8_monotonic(out: list[bytes]) -> None:
    for a, b in zip(out, out[1:], strict=False):
        step = (descriptor(b).picture_id - descriptor(a).picture_id) & 0x7FFF
        assert step < 0x4000


# -- other codecs ----------------------------------------------------------------------------


def h264_packet(ssrc: int, seq: int, ts: int, payload: bytes, marker: bool = True) -> bytes:
    return bytes(RtpPacket(payload_type=102, sequence_number=seq, timestamp=ts, ssrc=ssrc,
                           marker=marker, payload=payload))


def test_h264_switches_at_idr() -> None:
    projection = VideoProjection(SOURCE, "H264")
    projection.set_target(1)
    sps_pps = b"\x18" + b"\x00\x03\x67\x42\x00" + b"\x00\x02\x68\xce"  # STAP-A: SPS, PPS
    idr_start = b"\x7c\x85" + bytes(50)  # FU-A start of an IDR slice
    idr_end = b"\x7c\x45" + bytes(50)
    delta = b"\x41" + bytes(50)
    assert projection.rewrite(h264_packet(LAYERS[1], 10, 0, delta), 0.0) is None
    assert projection.rewrite(h264_packet(LAYERS[0], 70, 0, sps_pps, False), 0.0) is None
    out = [projection.rewrite(h264_packet(LAYERS[1], 11, 3000, sps_pps, False), 0.03),
           projection.rewrite(h264_packet(LAYERS[1], 12, 3000, idr_start, False), 0.03),
           projection.rewrite(h264_packet(LAYERS[1], 13, 3000, idr_end), 0.03)]
    assert [peek_sequence(p) for p in out] == [11, 12, 13]
    assert all(peek_ssrc(p) == LAYERS[0] for p in out)
    projection.set_target(0)
    assert projection.rewrite(h264_packet(LAYERS[0], 71, 90, delta), 0.06) is None
    switched = projection.rewrite(h264_packet(LAYERS[0], 72, 3090, idr_start), 0.07)
    assert switched is not None and peek_sequence(switched) == 14
    assert peek_timestamp(switched) == 3000 + round(0.04 * 90_000)
    assert switched[12:] == idr_start


def test_other_codec_switches_at_frame_start() -> None:
    projection = VideoProjection(SOURCE, "AV1")
    assert projection.codec == "other"
    projection.set_target(0)
    a = [h264_packet(LAYERS[0], 500 + i, 3000 * (i // 2), b"x", marker=i % 2 == 1)
         for i in range(6)]
    b = [h264_packet(LAYERS[1], 900 + i, 7000 + 3000 * (i // 2), b"y", marker=i % 2 == 1)
         for i in range(6)]
    out = [projection.rewrite(a[0], 0.0), projection.rewrite(a[1], 0.0)]
    projection.set_target(1)
    assert projection.rewrite(b[1], 0.01) is None  # mid-frame: not a switch point
    out += [projection.rewrite(a[2], 0.033), projection.rewrite(b[2], 0.034),
            projection.rewrite(a[3], 0.035), projection.rewrite(b[3], 0.035)]
    assert out[4] is None and [peek_sequence(p) for p in out if p] == [500, 501, 502, 503, 504]


# -- RTCP SR ---------------------------------------------------------------------------------


def test_sender_report_of_forwarded_layer_is_projected() -> None:
    projection = VideoProjection(SOURCE)
    projection.set_target(1)
    layer1 = LayerStream(LAYERS[1], ts=1_000_000)
    out = feed(projection, ((0.0, p) for p in layer1.frame(synthetic_frame(True, 500))))

    def sr(ssrc: int, rtp_ts: int) -> bytes:
        body = struct.pack("!IQIII", ssrc, 0x1234_5678_9ABC_DEF0, rtp_ts, 99, 9999)
        block = bytes(24)
        return struct.pack("!BBH", 0x81, 200, (len(body) + 24) // 4) + body + block

    assert projection.rewrite_sender_report(sr(LAYERS[0], 5)) is None
    assert projection.rewrite_sender_report(b"\x80\xc9\x00\x01" + bytes(24)) is None
    projected = projection.rewrite_sender_report(sr(LAYERS[1], 1_000_000 + 1500))
    assert projected is not None and len(projected) == 28
    v, pt, length, ssrc, ntp, rtp_ts, packets, octets = struct.unpack("!BBHIQIII", projected)
    assert (v, pt, length, ssrc, ntp) == (0x80, 200, 6, LAYERS[0], 0x1234_5678_9ABC_DEF0)
    assert rtp_ts == peek_timestamp(out[0]) + 1500
    assert packets == len(out) and octets == sum(len(p) - 12 for p in out)


def test_unknown_ssrc_and_runt_packets_are_dropped() -> None:
    projection = VideoProjection(SOURCE)
    projection.set_target(0)
    assert projection.rewrite(b"\x80\x60\x00\x01", 0.0) is None
    stranger = LayerStream(0x44444444)
    assert feed(projection, ((0.0, p) for p in stranger.frame(synthetic_frame(True)))) == []


def test_sender_restart_resyncs_at_keyframe() -> None:
    projection = VideoProjection(SOURCE)
    projection.set_target(0)
    layer0 = LayerStream(LAYERS[0], seq=100)
    out = feed(projection, ((f / 30, p) for f in range(3)
                            for p in layer0.frame(synthetic_frame(f == 0, 500))))
    layer0.seq, layer0.ts, layer0.pic = 40_000, 77, 3  # restarted: everything new
    assert feed(projection, [(0.1, p) for p in layer0.frame(synthetic_frame(False, 500))]) == []
    out += feed(projection, [(0.2, p) for p in layer0.frame(synthetic_frame(True, 500))])
    assert_continuous(out)
    assert len(out) == 4 * 2 and projection.switches == 2
    assert projection.original_sequence(peek_sequence(out[-1])) == (LAYERS[0], 40_003)
