"""RTCP packets, transport-cc feedback, reception statistics and RTT (vw.rtp.rtcp)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vw.rtp.rtcp import (
    App,
    Bye,
    Fir,
    Nack,
    PayloadFeedback,
    Pli,
    ReceiverReport,
    ReceptionStatistics,
    Remb,
    ReportBlock,
    RtpFeedback,
    SdesChunk,
    SenderReport,
    SourceDescription,
    TransportFeedback,
    UnknownRtcp,
    compact_ntp,
    ntp_from_seconds,
    ntp_to_seconds,
    pack_compound,
    parse_compound,
    round_trip_time,
)

try:
    from aiortc import rtp as artp
except ImportError:  # pragma: no cover - aiortc is the reference peer, optional
    artp = None

needs_aiortc = pytest.mark.skipif(artp is None, reason="aiortc (reference peer) not installed")


# --- interop with aiortc --------------------------------------------------------------------


def a_block(**kw):
    values = dict(
        ssrc=0x11,
        fraction_lost=3,
        packets_lost=-2,
        highest_sequence=70000,
        jitter=12,
        lsr=9,
        dlsr=65536,
    )
    values.update(kw)
    return artp.RtcpReceiverInfo(**values)


@needs_aiortc
def test_sender_report_matches_aiortc() -> None:
    info = artp.RtcpSenderInfo(
        ntp_timestamp=0xE1A2B3C4_80000000, rtp_timestamp=123456, packet_count=10, octet_count=9000
    )
    data = bytes(
        artp.RtcpSrPacket(ssrc=0xCAFE, sender_info=info, reports=[a_block(), a_block(ssrc=0x22)])
    )
    (sr,) = parse_compound(data)
    assert sr == SenderReport(
        ssrc=0xCAFE,
        ntp_timestamp=0xE1A2B3C4_80000000,
        rtp_timestamp=123456,
        packet_count=10,
        octet_count=9000,
        reports=[
            ReportBlock(0x11, 3, -2, 70000, 12, 9, 65536),
            ReportBlock(0x22, 3, -2, 70000, 12, 9, 65536),
        ],
    )
    assert bytes(sr) == data
    assert SenderReport.parse(data) == sr


@needs_aiortc
def test_receiver_report_matches_aiortc() -> None:
    blocks = [a_block(packets_lost=(1 << 23) - 1), a_block(packets_lost=-(1 << 23))]
    data = bytes(artp.RtcpRrPacket(ssrc=1, reports=blocks))
    rr = ReceiverReport.parse(data)
    assert [b.cumulative_lost for b in rr.reports] == [(1 << 23) - 1, -(1 << 23)]
    assert bytes(rr) == data
    empty = bytes(artp.RtcpRrPacket(ssrc=5))
    assert ReceiverReport.parse(empty) == ReceiverReport(5) and bytes(ReceiverReport(5)) == empty
    back = artp.RtcpPacket.parse(bytes(rr))[0]
    assert back.reports[1].packets_lost == -(1 << 23)


@needs_aiortc
def test_sdes_bye_match_aiortc() -> None:
    for cname in (b"abcd", b"{6f0b9c51-cname}", b"x" * 255):
        chunk = artp.RtcpSourceInfo(ssrc=0x1234, items=[(1, cname)])
        data = bytes(artp.RtcpSdesPacket(chunks=[chunk]))
        sdes = SourceDescription.parse(data)
        assert sdes.chunks == [SdesChunk(0x1234, [(1, cname)])]
        assert sdes.chunks[0].cname == cname.decode()
        assert artp.RtcpPacket.parse(bytes(sdes))[0].chunks[0].items == [(1, cname)]
    data = bytes(artp.RtcpByePacket(sources=[1, 2, 0xFFFFFFFF]))
    assert Bye.parse(data) == Bye([1, 2, 0xFFFFFFFF]) and bytes(Bye([1, 2, 0xFFFFFFFF])) == data


@needs_aiortc
def test_feedback_matches_aiortc() -> None:
    lost = [65530, 65531, 65535, 1, 2, 40, 41, 56]
    data = bytes(artp.RtcpRtpfbPacket(fmt=1, ssrc=1, media_ssrc=2, lost=[1, 2, 5, 17, 18, 40]))
    assert Nack.parse(data) == Nack(1, 2, [1, 2, 5, 17, 18, 40])
    assert bytes(Nack(1, 2, [1, 2, 5, 17, 18, 40])) == data
    # sequence numbers wrap: 65530 + 1..16 covers up to 10
    nack = Nack.parse(bytes(Nack(1, 2, lost)))
    assert nack.lost == lost
    assert len(bytes(Nack(1, 2, lost))) == 12 + 4 * 2

    pli = bytes(artp.RtcpPsfbPacket(fmt=1, ssrc=7, media_ssrc=8))
    assert Pli.parse(pli) == Pli(7, 8) and bytes(Pli(7, 8)) == pli

    fci = struct.pack("!IB3x", 0xAAAA, 3) + struct.pack("!IB3x", 0xBBBB, 255)
    fir = bytes(artp.RtcpPsfbPacket(fmt=4, ssrc=7, media_ssrc=0, fci=fci))
    assert Fir.parse(fir) == Fir(7, [(0xAAAA, 3), (0xBBBB, 255)])
    assert bytes(Fir(7, [(0xAAAA, 3), (0xBBBB, 255)])) == fir

    for bitrate in (0, 1, 0x3FFFF, 0x40000, 1_234_567, 2_500_000_000, 0x3FFFF << 40):
        fci = artp.pack_remb_fci(bitrate, [0x10, 0x20])
        data = bytes(artp.RtcpPsfbPacket(fmt=15, ssrc=3, media_ssrc=0, fci=fci))
        remb = Remb.parse(data)
        assert remb.bitrate == artp.unpack_remb_fci(fci)[0] and remb.ssrcs == [0x10, 0x20]
        assert bytes(Remb(3, bitrate, [0x10, 0x20])) == data
        assert remb.bitrate <= bitrate < remb.bitrate * (1 + 2**-17) + 1


@needs_aiortc
def test_compound_from_aiortc() -> None:
    info = artp.RtcpSenderInfo(ntp_timestamp=1, rtp_timestamp=2, packet_count=3, octet_count=4)
    parts = [
        bytes(artp.RtcpSrPacket(ssrc=1, sender_info=info)),
        bytes(artp.RtcpSdesPacket(chunks=[artp.RtcpSourceInfo(ssrc=1, items=[(1, b"cname6")])])),
        bytes(artp.RtcpPsfbPacket(fmt=15, ssrc=1, media_ssrc=0, fci=artp.pack_remb_fci(9000, [5]))),
    ]
    packets = parse_compound(b"".join(parts))
    assert [type(p) for p in packets] == [SenderReport, SourceDescription, Remb]
    assert packets[1].chunks[0].cname == "cname6"
    assert pack_compound(packets) == b"".join(parts)


# --- packets by hand ------------------------------------------------------------------------


def test_bye_reason_app_and_unknown() -> None:
    bye = Bye([0x01020304], b"going away")
    data = bytes(bye)
    assert data == bytes.fromhex("81cb0004 01020304 0a") + b"going away" + b"\x00"
    assert Bye.parse(data) == bye
    app = App(subtype=5, ssrc=9, name=b"TEST", data=b"\x01\x02\x03\x04")
    data = bytes(app)
    assert data == bytes.fromhex("85cc0003 00000009") + b"TEST" + b"\x01\x02\x03\x04"
    assert App.parse(data) == app
    xr = struct.pack("!BBH", 0x80, 207, 2) + bytes(8)
    assert parse_compound(xr) == [UnknownRtcp(207, 0, bytes(8))]
    assert bytes(UnknownRtcp(207, 0, bytes(8))) == xr
    tmmbr = bytes(RtpFeedback(3, 1, 2, b"\x00\x00\x00\x05\x12\x34\x56\x78"))
    assert parse_compound(tmmbr) == [RtpFeedback(3, 1, 2, b"\x00\x00\x00\x05\x12\x34\x56\x78")]
    # PSFB fmt 15 that is not REMB stays raw
    afb = bytes(PayloadFeedback(15, 1, 2, b"ABCD"))
    assert parse_compound(afb) == [PayloadFeedback(15, 1, 2, b"ABCD")]


def test_sdes_layout_and_multiple_chunks() -> None:
    sdes = SourceDescription(
        [SdesChunk(1, [(1, b"abc")]), SdesChunk(2, [(1, b"a"), (2, b"name")]), SdesChunk(3)]
    )
    data = bytes(sdes)
    # chunk 1: ssrc + 01 03 'abc' + 3 nulls; chunk 2: ssrc + 01 01 'a' + 02 04 'name' + 3 nulls;
    # chunk 3: ssrc + 4 nulls
    assert data == bytes.fromhex(
        "83ca0009 00000001 0103616263000000 00000002 010161 02046e616d65 000000 00000003 00000000"
    )
    assert SourceDescription.parse(data) == sdes
    assert sdes.chunks[2].cname is None


def test_padding_and_wrong_kind() -> None:
    padded = struct.pack("!BBH", 0xA0 | 1, 206, 3) + struct.pack("!II", 1, 2) + b"\x00\x00\x00\x04"
    assert parse_compound(padded) == [Pli(1, 2)]
    with pytest.raises(ValueError, match="is a Pli, not a Nack"):
        Nack.parse(padded)
    with pytest.raises(ValueError, match="expected one RTCP packet, found 2"):
        Pli.parse(padded + padded)
    with pytest.raises(ValueError, match="found 0"):
        Pli.parse(b"")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\xc9\x00", "fewer than 4"),
        (b"\x40\xc9\x00\x00", "version is 1"),
        (b"\x80\xc9\x00\x02\x00\x00\x00\x01", "claims 12 bytes, only 8 left"),
        (b"\xa0\xc9\x00\x00", "padding length 0 is invalid for 0"),
        (b"\xa0\xc9\x00\x01\x00\x00\x00\x05", "padding length 5"),
        (b"\x81\xc9\x00\x01\x00\x00\x00\x01", "RR with 1 blocks needs 28 bytes, has 4"),
        (b"\x80\xc8\x00\x01\x00\x00\x00\x01", "SR with 0 blocks needs 24 bytes"),
        (b"\x81\xca\x00\x01\x00\x00\x00\x01", "no terminating null item"),
        (b"\x81\xca\x00\x02\x00\x00\x00\x01\x01\x09ab", "SDES item 1 is truncated"),
        (b"\x82\xca\x00\x02\x00\x00\x00\x01" + bytes(4), "truncated in its SSRC"),
        (b"\x82\xcb\x00\x01\x00\x00\x00\x01", "BYE with 2 sources"),
        (b"\x81\xcb\x00\x02\x00\x00\x00\x01\x09abc", "BYE reason is truncated"),
        (b"\x80\xcc\x00\x01\x00\x00\x00\x01", "APP is 4 bytes"),
        (b"\x81\xcd\x00\x01\x00\x00\x00\x01", "feedback message is 4 bytes"),
        (b"\xa1\xcd\x00\x03" + bytes(8) + b"\x00\x01\x00\x02", "NACK FCI is 2 bytes"),
        (b"\x84\xce\x00\x03" + bytes(8) + b"\x00\x01\x02\x03", "FIR FCI is 4 bytes"),
        (b"\x8f\xce\x00\x03" + bytes(8) + b"REMB", "REMB FCI is 4 bytes"),
        (b"\x8f\xce\x00\x04" + bytes(8) + b"REMB\x02\x00\x00\x00", "REMB with 2 SSRCs"),
        (b"\x8f\xcd\x00\x03" + bytes(12), "transport-cc feedback FCI is 4 bytes"),
    ],
)
def test_parse_errors(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_compound(data)


@pytest.mark.parametrize(
    "packet",
    [
        ReportBlock(1, fraction_lost=256),
        ReportBlock(1, cumulative_lost=1 << 23),
        ReportBlock(1 << 32),
        SenderReport(1, ntp_timestamp=1 << 64),
        SenderReport(1, extension=b"abc"),
        ReceiverReport(1, [ReportBlock(1)] * 32),
        SourceDescription([SdesChunk(1, [(0, b"x")])]),
        SourceDescription([SdesChunk(1, [(1, bytes(256))])]),
        Bye([1 << 32]),
        Bye([1], bytes(256)),
        App(32, 1, b"NAME"),
        App(1, 1, b"NAM"),
        Nack(1, 2, [65536]),
        Nack(1 << 32, 2, [1]),
        Fir(1, [(1, 256)]),
        Remb(1, -1),
        Remb(1, 1 << 82),
        Remb(1, 5, [0] * 256),
        TransportFeedback(1, 2, 0, 1 << 24, 0, [(0, 0)]),
        TransportFeedback(1, 2, 0, 0, 256, [(0, 0)]),
        TransportFeedback(1, 2, 0, 0, 0, [(0, 0), (1, 8192 * 1000)]),
        UnknownRtcp(256, 0),
        RtpFeedback(32, 1, 2),
    ],
)
def test_serialize_errors(packet) -> None:
    with pytest.raises(ValueError):
        bytes(packet)


# --- transport-wide congestion control feedback ---------------------------------------------


def test_tcc_one_bit_vector_example() -> None:
    """The draft's one-bit status vector example (0x9F1C) in a whole feedback packet."""
    ref = 16 * 64000
    ticks = [4, 8, 0, 255, 1, 2, 3, 4]
    times, t = [], ref
    for d in ticks:
        t += d * 250
        times.append(t)
    received = [101, 102, 103, 104, 105, 109, 110, 111]
    arrival = dict(zip(received, times, strict=True))
    packets = [(seq, arrival.get(seq)) for seq in range(100, 114)]
    data = (
        bytes.fromhex("afcd0007 01020304 05060708")
        + bytes.fromhex("0064 000e 000010 07")  # base 100, 14 statuses, ref 16, fb count 7
        + bytes.fromhex("9f1c")
        + bytes(ticks)
        + b"\x00\x02"  # padding, P bit set
    )
    fb = TransportFeedback.parse(data)
    assert fb == TransportFeedback(0x01020304, 0x05060708, 100, 16, 7, packets)
    assert fb.received == list(zip(received, times, strict=True))
    assert bytes(fb) == data
    assert bytes(TransportFeedback.build(0x01020304, 0x05060708, 7, packets)) == data


def test_tcc_run_length_example_large_and_negative_deltas() -> None:
    """The draft's run-length example (221 x not received, 0x00DD), then large/negative deltas.

    The 221-packet run wraps the sequence number; the last three statuses (large, small,
    large-negative) go into a two-bit status vector, 10 01 10 + 4 unused symbols (0xE600).
    """
    ref = 0x123456
    t0 = ref * 64000 + 1000 * 250
    packets = [((65530 + i) & 0xFFFF, None) for i in range(221)]
    packets += [(215, t0), (216, t0 + 2500), (217, t0 + 500)]
    data = (
        bytes.fromhex("afcd0007 00000001 00000002")
        + bytes.fromhex("fffa 00e0 123456 ff")  # base 65530, 224 statuses, fb count 255
        + bytes.fromhex("00dd e600")
        + bytes.fromhex("03e8 0a fff8")  # +1000, +10, -8 (x 250 µs)
        + b"\x00\x00\x03"
    )
    fb = TransportFeedback.parse(data)
    assert fb.base_sequence == 65530 and fb.reference_time == ref and fb.feedback_count == 255
    assert fb.packets == packets
    assert bytes(fb) == data


def test_tcc_run_length_received_and_two_bit_vector_parse() -> None:
    # run of 2 large deltas, run of 4 small deltas (both symbols as run-length chunks)
    data = (
        bytes.fromhex("8fcd0007 00000001 00000002")
        + bytes.fromhex("0174 0006 000001 00")
        + bytes.fromhex("4002 2004")
        + bytes.fromhex("1ffe fc18 d0 00 d0 00")
    )
    fb = TransportFeedback.parse(data)
    base = 64000
    expected = [base + 8190 * 250, base + 8190 * 250 - 1000 * 250]
    expected += [expected[-1] + 208 * 250, expected[-1] + 208 * 250]
    expected += [expected[-1] + 208 * 250, expected[-1] + 208 * 250]
    assert fb.packets == list(zip(range(372, 378), expected, strict=True))
    # our encoder picks other chunks but the content survives
    assert TransportFeedback.parse(bytes(fb)) == fb


def test_tcc_encoder_choices() -> None:
    def chunks(packets):
        data = bytes(TransportFeedback.build(1, 2, 0, packets))
        fb = TransportFeedback.parse(data)
        assert fb.packets == packets
        count = struct.unpack_from("!H", data, 14)[0]
        return data[20 : 20 + 2 * ((count + 6) // 7)].hex(), count

    # 20 received with small deltas: one run-length chunk (symbol 1, length 20)
    packets = [(i, 1000 * i) for i in range(20)]
    assert chunks(packets)[0].startswith("2014")
    # alternating received / lost: one-bit vectors
    packets = [(i, 1000 * i if i % 2 == 0 else None) for i in range(28)]
    assert chunks(packets)[0][:8] == "aaaaaaaa"
    # a negative delta needs a two-bit vector
    packets = [(0, 100_000), (1, 99_000), (2, 99_250)]
    assert chunks(packets)[0][:4] == "d900"  # 11 01 10 01 + 3 unused


def test_tcc_build_reference_time_and_gaps() -> None:
    # the first packet is lost; reference time comes from the first received one
    fb = TransportFeedback.build(1, 2, 3, [(10, None), (11, 200_125), (13, 200_000)])
    assert fb.base_sequence == 10 and fb.reference_time == 200_125 // 64000
    back = TransportFeedback.parse(bytes(fb))
    # times quantized to 250 µs (rounded), sequence 12 implicitly lost
    assert back.packets == [(10, None), (11, 200_250), (12, None), (13, 200_000)]
    # arrival times beyond 24 bits of 64 ms are rebased consistently
    far = (1 << 24) * 64000 + 64000 * 5 + 1000
    fb = TransportFeedback.build(1, 2, 3, [(0, far), (1, far + 1000)])
    assert fb.reference_time == 5
    assert TransportFeedback.parse(bytes(fb)).packets == [
        (0, 64000 * 5 + 1000),
        (1, 64000 * 5 + 2000),
    ]
    with pytest.raises(ValueError, match="at least one packet"):
        TransportFeedback.build(1, 2, 3, [])


@pytest.mark.parametrize(
    ("fci", "message"),
    [
        ("0000 0002 000000 00", "truncated after 0 of 2 statuses"),
        ("0000 0002 000000 00 2002 05", "receive delta of 1 is truncated"),
        ("0000 0001 000000 00 4001 05", "receive delta of 0 is truncated"),
        ("0000 0001 000000 00 6001 0000", "reserved symbol 3"),
        ("0000 0007 000000 00 f000 0000", "reserved symbol 3"),
    ],
)
def test_tcc_errors(fci: str, message: str) -> None:
    body = bytes(8) + bytes.fromhex(fci)
    padding = -len(body) % 4
    if padding:  # RTCP padding, so that nothing is added to the FCI
        body += bytes(padding - 1) + bytes((padding,))
    data = struct.pack("!BBH", 0x8F | (0x20 if padding else 0), 205, len(body) // 4) + body
    with pytest.raises(ValueError, match=message):
        TransportFeedback.parse(data)


# --- reception statistics and RTT -----------------------------------------------------------


def test_reception_statistics_loss_reorder_wrap_jitter() -> None:
    stats = ReceptionStatistics(ssrc=0x99, clock_rate=8000)
    feed = [  # (sequence, timestamp, arrival): 65535 lost, 1 and 2 swapped, wrap at 0
        (65533, 0, 0.000),
        (65534, 160, 0.020),  # D = 160 - 160 = 0 -> J = 0
        (0, 480, 0.060),  # D = 320 - 320 = 0 -> J = 0
        (2, 800, 0.110),  # D = 400 - 320 = 80 -> J = 80/16 = 5
        (1, 640, 0.112),  # D = 16 + 160 = 176 -> J = 5 + 171/16 = 15.6875
        (3, 960, 0.120),  # D = 64 - 320 = -256 -> J = 15.6875 + 240.3125/16 = 30.70703125
    ]
    for seq, ts, arrival in feed:
        assert stats.add(seq, ts, arrival)
    assert stats.jitter == pytest.approx(30.70703125, abs=1e-6)
    assert stats.extended_highest_sequence == 65536 + 3
    assert stats.expected == 7 and stats.packets_received == 6 and stats.cumulative_lost == 1
    assert stats.fraction_lost == 256 // 7
    block = stats.report_block(now=1.0)
    assert block == ReportBlock(0x99, 36, 1, 65539, 30, 0, 0)
    # next interval: 4 lost, 5 and 6 received: 1 of 3 lost
    stats.add(5, 1280, 0.160)
    stats.add(6, 1440, 0.180)
    block = stats.report_block(now=2.0)
    assert (block.fraction_lost, block.cumulative_lost, block.highest_sequence) == (85, 2, 65542)
    # a duplicate makes the interval's loss negative (reported as 0) and cumulative lost drops
    stats.add(6, 1440, 0.181)
    block = stats.report_block(now=3.0)
    assert (block.fraction_lost, block.cumulative_lost) == (0, 1)


def test_reception_statistics_jumps_and_restart() -> None:
    stats = ReceptionStatistics(1, 90000)
    with pytest.raises(ValueError, match="no packet received"):
        stats.report_block(0.0)
    assert stats.add(100, 0, 0.0) and stats.add(101, 3000, 0.033)
    assert not stats.add(5000, 9000, 0.066)  # a jump of > 3000 is set aside ...
    assert stats.expected == 2 and stats.packets_received == 2
    assert stats.add(95, 0, 0.07)  # a late packet within the misorder window counts
    assert stats.extended_highest_sequence == 101 and stats.cumulative_lost == -1
    assert not stats.add(5000, 9000, 0.1)
    assert stats.add(5001, 12000, 0.133)  # ... unless the next one follows it: restart
    assert stats.expected == 1 and stats.packets_received == 1
    assert stats.extended_highest_sequence == 5001
    with pytest.raises(ValueError):
        ReceptionStatistics(1, 0)


def test_timestamp_wrap_does_not_spike_jitter() -> None:
    stats = ReceptionStatistics(1, 90000)
    stats.add(1, 0xFFFFFFFF - 1499, 10.0)
    stats.add(2, 1500, 10.0 + 3001 / 90000)  # timestamps wrapped; 1 tick of jitter
    assert stats.jitter == pytest.approx(1 / 16, abs=1e-6)


def test_ntp_helpers_and_rtt() -> None:
    t = 1_700_000_000.25
    ntp = ntp_from_seconds(t)
    assert ntp >> 32 == 1_700_000_000 + 2_208_988_800 and ntp & 0xFFFFFFFF == 1 << 30
    assert ntp_to_seconds(ntp) == t
    assert compact_ntp(ntp) == ((ntp >> 32) & 0xFFFF) << 16 | 0x4000
    # the remote receives our SR 50 ms after we sent it, reports 0.5 s later; back 50 ms later
    remote = ReceptionStatistics(0xAB, 48000)
    remote.add(1, 0, t)
    remote.sender_report_received(ntp, t + 0.05)
    block = remote.report_block(now=t + 0.55)
    assert block.lsr == compact_ntp(ntp) and block.dlsr == 32768
    assert round_trip_time(block, t + 0.6) == pytest.approx(0.1, abs=2 / 65536)
    assert round_trip_time(ReportBlock(1), t) is None
    assert round_trip_time(block, t + 0.5) == 0.0  # clocks disagree: clamped


# --- hypothesis -----------------------------------------------------------------------------

u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
words = st.binary(max_size=12).map(lambda b: b + bytes(-len(b) % 4))
blocks = st.builds(ReportBlock, u32, u8, st.integers(-(1 << 23), (1 << 23) - 1), u32, u32, u32, u32)


@st.composite
def tcc(draw) -> TransportFeedback:
    base = draw(u16)
    ref = draw(st.integers(0, 0xFFFFFF))
    t = ref * 64000
    packets = []
    for i in range(draw(st.integers(1, 60))):
        if draw(st.integers(0, 3)) == 0:
            packets.append(((base + i) & 0xFFFF, None))
        else:
            t += 250 * draw(st.one_of(st.integers(0, 255), st.integers(-0x8000, 0x7FFF)))
            packets.append(((base + i) & 0xFFFF, t))
    return TransportFeedback(draw(u32), draw(u32), base, ref, draw(u8), packets)


rtcp_packets = st.one_of(
    st.builds(
        SenderReport,
        u32,
        st.integers(0, 2**64 - 1),
        u32,
        u32,
        u32,
        st.lists(blocks, max_size=3),
        words,
    ),
    st.builds(ReceiverReport, u32, st.lists(blocks, max_size=3), words),
    st.builds(
        SourceDescription,
        st.lists(
            st.builds(
                SdesChunk,
                u32,
                st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=20)), max_size=3),
            ),
            max_size=4,
        ),
    ),
    st.builds(Bye, st.lists(u32, max_size=5), st.binary(max_size=20)),
    st.builds(App, st.integers(0, 31), u32, st.binary(min_size=4, max_size=4), words),
    st.builds(Nack, u32, u32, st.lists(u16, max_size=20, unique=True).map(sorted)),
    st.builds(Pli, u32, u32),
    st.builds(Fir, u32, st.lists(st.tuples(u32, u8), max_size=4), u32),
    st.builds(
        Remb,
        u32,
        st.integers(0, 0x3FFFF).flatmap(lambda m: st.integers(0, 63).map(lambda e: m << e)),
        st.lists(u32, max_size=5),
        u32,
    ),
    st.builds(RtpFeedback, st.sampled_from([2, 3, 4, 5]), u32, u32, words),
    st.builds(PayloadFeedback, st.sampled_from([2, 3, 5, 6]), u32, u32, words),
    st.builds(UnknownRtcp, st.sampled_from([195, 207, 208]), st.integers(0, 31), words),
    tcc(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(rtcp_packets, min_size=1, max_size=3))
def test_round_trip_generated(packets) -> None:
    data = pack_compound(packets)
    assert parse_compound(data) == packets
    for p in packets:
        assert type(p).parse(bytes(p)) == p


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    try:
        parse_compound(data)
    except ValueError:
        pass


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([200, 201, 202, 203, 204, 205, 206, 207]),
    st.integers(0, 31),
    st.booleans(),
    st.binary(max_size=80),
)
def test_fuzz_well_framed_bodies(packet_type: int, count: int, padded: bool, body: bytes) -> None:
    """Valid headers around arbitrary bodies reach every body parser."""
    body += bytes(-len(body) % 4)
    data = struct.pack("!BBH", 0x80 | (0x20 if padded else 0) | count, packet_type, len(body) // 4)
    try:
        parse_compound(data + body)
    except ValueError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_fuzz_transport_cc_fci(fci: bytes) -> None:
    """Arbitrary FCIs parse or raise ValueError; what parses re-encodes to the same content."""
    body = bytes(8) + fci
    body += bytes(-len(body) % 4)
    data = struct.pack("!BBH", 0x8F, 205, len(body) // 4) + body
    try:
        fb = TransportFeedback.parse(data)
    except ValueError:
        return
    assert TransportFeedback.parse(bytes(fb)).packets == fb.packets
