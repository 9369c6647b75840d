"""The retransmission cache and NACK responder: eviction, lookups, RTX wrapping, limits."""

from __future__ import annotations

import pytest

from vw.bridge.retransmission import NackResponder, RetransmissionCache
from vw.rtp.rtcp import Nack
from vw.rtp.rtp import RtpPacket, unwrap_rtx

SSRC = 0x11223344
RTX_SSRC = 0x55667788


def rtp(seq: int, ssrc: int = SSRC, pt: int = 100, payload: bytes = b"payload") -> bytes:
    return bytes(RtpPacket(payload_type=pt, sequence_number=seq, timestamp=90000 + seq,
                           ssrc=ssrc, marker=seq % 2 == 0, extensions={3: b"\x01\x02"},
                           payload=payload))


def cache_with(seqs: range, now: float = 10.0) -> RetransmissionCache:
    cache = RetransmissionCache()
    for seq in seqs:
        cache.store(SSRC, seq & 0xFFFF, rtp(seq & 0xFFFF), now)
    return cache


# -- cache ---------------------------------------------------------------------------------


def test_cache_stores_and_looks_up_per_ssrc() -> None:
    cache = RetransmissionCache()
    cache.store(SSRC, 5, rtp(5), 1.0)
    cache.store(7, 5, rtp(5, ssrc=7), 1.0)
    assert cache.lookup(SSRC, 5, 1.5) == rtp(5)
    assert cache.lookup(7, 5, 1.5) == rtp(5, ssrc=7)
    assert cache.lookup(SSRC, 6, 1.5) is None
    assert cache.lookup(8, 5, 1.5) is None
    assert cache.stored(SSRC, 1.5) == cache.stored(7, 1.5) == 1


def test_cache_copies_mutable_buffers() -> None:
    cache = RetransmissionCache()
    buf = bytearray(rtp(1))
    cache.store(SSRC, 1, buf, 0.0)
    buf[12:] = bytes(len(buf) - 12)
    assert cache.lookup(SSRC, 1, 0.0) == rtp(1)


def test_cache_evicts_by_count() -> None:
    cache = RetransmissionCache(max_packets=1024)
    for seq in range(65000, 65000 + 1500):  # wraps the 16-bit sequence
        cache.store(SSRC, seq & 0xFFFF, rtp(seq & 0xFFFF), 0.0)
    assert cache.stored(SSRC, 0.0) == 1024
    assert cache.lookup(SSRC, (65000 + 475) & 0xFFFF, 0.0) is None
    assert cache.lookup(SSRC, (65000 + 476) & 0xFFFF, 0.0) is not None
    assert cache.lookup(SSRC, (65000 + 1499) & 0xFFFF, 0.0) is not None
    # the limit is per SSRC
    cache.store(9, 1, rtp(1, ssrc=9), 0.0)
    assert cache.stored(9, 0.0) == 1 and cache.stored(SSRC, 0.0) == 1024


def test_cache_evicts_by_age() -> None:
    cache = RetransmissionCache(max_age=1.0)
    cache.store(SSRC, 1, rtp(1), 0.0)
    cache.store(SSRC, 2, rtp(2), 0.5)
    assert cache.lookup(SSRC, 1, 1.0) == rtp(1)
    assert cache.lookup(SSRC, 1, 1.01) is None
    assert cache.lookup(SSRC, 2, 1.01) == rtp(2)
    cache.store(SSRC, 3, rtp(3), 1.6)
    assert cache.stored(SSRC, 1.6) == 1


def test_cache_sweeps_idle_ssrcs() -> None:
    cache = RetransmissionCache(max_age=1.0)
    cache.store(7, 1, rtp(1, ssrc=7), 0.0)
    cache.store(SSRC, 1, rtp(1), 0.5)
    cache.store(SSRC, 2, rtp(2), 2.0)
    assert cache.ssrcs() == [SSRC]
    cache.forget(SSRC)
    assert cache.ssrcs() == []


def test_cache_replaces_a_stored_sequence() -> None:
    cache = RetransmissionCache(max_packets=4)
    cache.store(SSRC, 1, rtp(1), 0.0)
    cache.store(SSRC, 2, rtp(2), 0.0)
    cache.store(SSRC, 1, rtp(1, payload=b"again"), 0.1)
    assert cache.lookup(SSRC, 1, 0.1) == rtp(1, payload=b"again")
    cache.store(SSRC, 6, rtp(6), 0.1)  # four later: takes 2's slot
    assert cache.lookup(SSRC, 2, 0.1) is None
    assert cache.lookup(SSRC, 6, 0.1) == rtp(6)


def test_cache_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        RetransmissionCache(max_packets=0)
    with pytest.raises(ValueError):
        RetransmissionCache(max_age=0)


# -- NACK responder ------------------------------------------------------------------------


def test_nack_resends_cached_packets_and_skips_uncached() -> None:
    cache = cache_with(range(100, 110))
    responder = NackResponder()
    nack = Nack(1, SSRC, [99, 101, 105, 200])
    out = responder.handle_nack(nack, lambda s, q: cache.lookup(s, q, 10.1), 10.1)
    assert out == [rtp(101), rtp(105)]
    assert responder.stats.requested == 4
    assert responder.stats.resent == 2
    assert responder.stats.missing == 2
    assert responder.stats.resent_bytes == len(rtp(101)) + len(rtp(105))


def test_nack_resolver_sees_the_receivers_ssrc_and_sequence() -> None:
    asked = []

    def resolve(ssrc: int, seq: int) -> bytes | None:
        asked.append((ssrc, seq))
        return None

    NackResponder().handle_nack(Nack(1, 42, [7, 8, 8]), resolve, 0.0)
    assert asked == [(42, 7), (42, 8)]


def test_nack_of_expired_packet_is_missing() -> None:
    cache = cache_with(range(10), now=0.0)
    responder = NackResponder()
    out = responder.handle_nack(Nack(1, SSRC, [3]), lambda s, q: cache.lookup(s, q, 2.0), 2.0)
    assert out == []
    assert responder.stats.missing == 1


def test_rtx_wrapping() -> None:
    cache = cache_with(range(65534, 65538))
    responder = NackResponder()
    responder.set_rtx(SSRC, RTX_SSRC, {100: 101, 102: 103}, initial_sequence=0xFFFF)
    out = responder.handle_nack(
        Nack(1, SSRC, [65535, 0, 1]), lambda s, q: cache.lookup(s, q, 10.0), 10.0
    )
    assert len(out) == 3
    for packet, osn, rtx_seq in zip(out, [65535, 0, 1], [0xFFFF, 0, 1], strict=True):
        parsed = RtpPacket.parse(packet)
        assert parsed.ssrc == RTX_SSRC
        assert parsed.payload_type == 101
        assert parsed.sequence_number == rtx_seq
        assert parsed.payload[:2] == osn.to_bytes(2, "big")
        original = RtpPacket.parse(rtp(osn))
        assert parsed.timestamp == original.timestamp
        assert parsed.marker == original.marker
        assert parsed.extensions == original.extensions
        assert parsed.payload[2:] == original.payload
        got_osn, restored = unwrap_rtx(packet, 100)
        assert got_osn == osn
        assert RtpPacket.parse(restored).payload == original.payload
    assert responder.rtx_stream(SSRC).sequence == 2
    assert responder.stats.resent_bytes == sum(map(len, out))


def test_rtx_single_payload_type_and_unmapped_payload_types() -> None:
    cache = RetransmissionCache()
    cache.store(SSRC, 1, rtp(1, pt=100), 0.0)
    cache.store(SSRC, 2, rtp(2, pt=111), 0.0)
    responder = NackResponder()
    responder.set_rtx(SSRC, RTX_SSRC, {100: 96}, initial_sequence=500)
    out = responder.handle_nack(Nack(1, SSRC, [1, 2]), lambda s, q: cache.lookup(s, q, 0.0), 0.0)
    assert RtpPacket.parse(out[0]).payload_type == 96
    assert out[1] == rtp(2, pt=111)  # no RTX payload type for 111: resent as it was
    responder.set_rtx(SSRC, RTX_SSRC, 97)  # same RTX SSRC: keeps its sequence
    out = responder.handle_nack(Nack(1, SSRC, [2]), lambda s, q: cache.lookup(s, q, 0.5), 0.5)
    parsed = RtpPacket.parse(out[0])
    assert (parsed.payload_type, parsed.sequence_number) == (97, 501)
    responder.remove_rtx(SSRC)
    out = responder.handle_nack(Nack(1, SSRC, [1]), lambda s, q: cache.lookup(s, q, 0.9), 0.9)
    assert out == [rtp(1)]
    with pytest.raises(ValueError):
        responder.set_rtx(SSRC, RTX_SSRC, 128)


def test_rtx_only_for_the_configured_ssrc() -> None:
    cache = RetransmissionCache()
    cache.store(7, 1, rtp(1, ssrc=7), 0.0)
    responder = NackResponder()
    responder.set_rtx(SSRC, RTX_SSRC, 101)
    out = responder.handle_nack(Nack(1, 7, [1]), lambda s, q: cache.lookup(s, q, 0.0), 0.0)
    assert out == [rtp(1, ssrc=7)]


def test_resend_rate_limit_follows_rtt() -> None:
    cache = cache_with(range(10), now=0.0)
    responder = NackResponder()

    def nack(now: float, seqs: list[int]) -> list[bytes]:
        return responder.handle_nack(Nack(1, SSRC, seqs), lambda s, q: cache.lookup(s, q, now), now)

    assert len(nack(0.0, [1, 2])) == 2
    assert nack(0.005, [1, 2]) == []  # 10 ms minimum without an RTT
    assert responder.stats.rate_limited == 2
    assert len(nack(0.011, [1])) == 1
    responder.rtt = 0.1
    assert nack(0.05, [1]) == []
    assert len(nack(0.05, [3])) == 1  # other packets are not held back
    assert nack(0.1, [1]) == []
    assert len(nack(0.112, [1])) == 1


def test_resend_byte_budget_per_second() -> None:
    cache = cache_with(range(100), now=0.0)
    size = len(rtp(0))
    responder = NackResponder(max_bytes_per_second=size * 5)

    def nack(now: float, seqs: list[int]) -> list[bytes]:
        return responder.handle_nack(Nack(1, SSRC, seqs), lambda s, q: cache.lookup(s, q, now), now)

    assert len(nack(0.0, list(range(8)))) == 5
    assert responder.stats.over_budget == 3
    assert nack(0.5, list(range(10, 20))) == []
    assert len(nack(1.0, list(range(10, 20)))) == 5
