"""SRTP/SRTCP contexts over libsrtp: round trips, replay protection, forgery."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vw.rtp.srtp import (
    AEAD_AES_128_GCM,
    AES128_CM_SHA1_80,
    PROFILES,
    SrtpAuthenticationError,
    SrtpContext,
    SrtpError,
    SrtpProfile,
    SrtpReplayError,
    get_profile,
)

PAYLOAD = bytes(range(256)) * 4 + bytes(76)  # 1,100 bytes


def rtp(seq: int, ssrc: int = 0x11223344, payload: bytes = PAYLOAD, pt: int = 96) -> bytes:
    """A minimal RTP packet: version 2, no CSRC, no extension."""
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, seq * 3000, ssrc) + payload


def rtcp_sr(ssrc: int = 0x11223344, packets: int = 1) -> bytes:
    """An RTCP sender report with no report blocks (28 bytes)."""
    return struct.pack("!BBHIQIII", 0x80, 200, 6, ssrc, 0x0123456789ABCDEF, 1234, packets, 99)


def pair(profile: SrtpProfile) -> tuple[SrtpContext, SrtpContext]:
    """Two contexts for the two ends of one association."""
    a_keys = os.urandom(profile.key_salt_length)
    b_keys = os.urandom(profile.key_salt_length)
    return SrtpContext(profile, a_keys, b_keys), SrtpContext(profile, b_keys, a_keys)


@pytest.fixture(params=PROFILES, ids=lambda p: p.name)
def profile(request: pytest.FixtureRequest) -> SrtpProfile:
    return request.param


def test_profiles() -> None:
    assert (AES128_CM_SHA1_80.key_length, AES128_CM_SHA1_80.salt_length) == (16, 14)
    assert (AEAD_AES_128_GCM.key_length, AEAD_AES_128_GCM.salt_length) == (16, 12)
    assert get_profile("SRTP_AEAD_AES_128_GCM") is AEAD_AES_128_GCM
    assert get_profile(AES128_CM_SHA1_80) is AES128_CM_SHA1_80
    with pytest.raises(ValueError, match="unsupported SRTP profile"):
        get_profile("SRTP_NULL_HMAC_SHA1_80")


def test_rtp_round_trip(profile: SrtpProfile) -> None:
    a, b = pair(profile)
    for seq in range(10):
        packet = rtp(seq)
        protected = a.protect(packet)
        assert protected != packet
        assert protected[:12] == packet[:12]  # the header stays in the clear
        overhead = 10 if profile is AES128_CM_SHA1_80 else 16  # HMAC-SHA1-80 tag / GCM tag
        assert len(protected) == len(packet) + overhead
        assert b.unprotect(protected) == packet
    # and the other way
    assert a.unprotect(b.protect(rtp(7, ssrc=5))) == rtp(7, ssrc=5)


def test_any_ssrc_both_directions(profile: SrtpProfile) -> None:
    """One context protects every outbound SSRC and unprotects every inbound one."""
    a, b = pair(profile)
    for ssrc in (1, 0xDEADBEEF, 0xFFFFFFFF, 42):
        for seq in (100, 101):
            assert b.unprotect(a.protect(rtp(seq, ssrc))) == rtp(seq, ssrc)
            assert a.unprotect(b.protect(rtp(seq, ssrc))) == rtp(seq, ssrc)


def test_rtcp_round_trip(profile: SrtpProfile) -> None:
    a, b = pair(profile)
    for n in range(5):
        packet = rtcp_sr(packets=n)
        protected = a.protect_rtcp(packet)
        assert protected[:8] == packet[:8]
        assert b.unprotect_rtcp(protected) == packet
    assert a.unprotect_rtcp(b.protect_rtcp(rtcp_sr(9))) == rtcp_sr(9)


def test_replayed_rtp_rejected(profile: SrtpProfile) -> None:
    a, b = pair(profile)
    first = a.protect(rtp(1))
    b.unprotect(first)
    with pytest.raises(SrtpReplayError) as info:
        b.unprotect(first)
    assert isinstance(info.value, SrtpError) and isinstance(info.value, ValueError)
    assert "replay" in info.value.reason
    # later packets and reordering within the window are still fine
    third, second = a.protect(rtp(3)), a.protect(rtp(2))
    assert b.unprotect(third) == rtp(3)
    assert b.unprotect(second) == rtp(2)
    with pytest.raises(SrtpReplayError):
        b.unprotect(second)


def test_packet_older_than_window_rejected(profile: SrtpProfile) -> None:
    a, b = pair(profile)
    old = a.protect(rtp(1))
    b.unprotect(a.protect(rtp(0)))
    for seq in range(2, 1100, 100):
        b.unprotect(a.protect(rtp(seq)))
    b.unprotect(a.protect(rtp(1100)))
    with pytest.raises(SrtpReplayError, match="too old"):
        b.unprotect(old)


def test_resending_same_index_allowed_outbound(profile: SrtpProfile) -> None:
    """A bridge re-protects cached packets for NACKs; the receiver drops true duplicates."""
    a, b = pair(profile)
    first = a.protect(rtp(5))
    again = a.protect(rtp(5))
    assert again == first
    assert b.unprotect(first) == rtp(5)
    with pytest.raises(SrtpReplayError):
        b.unprotect(again)


def test_resending_an_index_far_behind_the_newest(profile: SrtpProfile) -> None:
    """A NACK can ask for a packet hundreds of indices back (video at 500 packets a second,
    an RTT of 300 ms): libsrtp refuses to protect an index older than the outbound window,
    so that window must be as deep as the inbound one."""
    a, b = pair(profile)
    for seq in range(1, 1001):
        b.unprotect(a.protect(rtp(seq)))
    lost = 1000 - 900
    assert a.protect(rtp(lost)) == a.protect(rtp(lost))


def test_replayed_rtcp_rejected(profile: SrtpProfile) -> None:
    a, b = pair(profile)
    protected = a.protect_rtcp(rtcp_sr())
    b.unprotect_rtcp(protected)
    with pytest.raises(SrtpReplayError):
        b.unprotect_rtcp(protected)


@pytest.mark.parametrize("where", ["tag", "payload", "header"])
def test_tampered_rtp_rejected(profile: SrtpProfile, where: str) -> None:
    a, b = pair(profile)
    protected = bytearray(a.protect(rtp(1)))
    index = {"tag": len(protected) - 1, "payload": 500, "header": 4}[where]
    protected[index] ^= 0x01
    with pytest.raises(SrtpAuthenticationError) as info:
        b.unprotect(bytes(protected))
    assert info.value.reason == "authentication failure"
    # the forgery did not advance the replay window: the genuine packet still passes
    assert b.unprotect(a.protect(rtp(1))) == rtp(1)


def test_tampered_rtcp_rejected(profile: SrtpProfile) -> None:
    a, b = pair(profile)
    protected = bytearray(a.protect_rtcp(rtcp_sr()))
    protected[-1] ^= 0x80
    with pytest.raises(SrtpAuthenticationError):
        b.unprotect_rtcp(bytes(protected))


def test_wrong_key_rejected(profile: SrtpProfile) -> None:
    a, _ = pair(profile)
    _, stranger = pair(profile)
    with pytest.raises(SrtpAuthenticationError):
        stranger.unprotect(a.protect(rtp(1)))
    with pytest.raises(SrtpAuthenticationError):
        stranger.unprotect_rtcp(a.protect_rtcp(rtcp_sr()))


def test_malformed_packets(profile: SrtpProfile) -> None:
    a, b = pair(profile)
    for junk in (b"", b"\x80", b"\x80\x60\x00\x01"):
        with pytest.raises(SrtpError):
            b.unprotect(junk)
        with pytest.raises(SrtpError):
            b.unprotect_rtcp(junk)
    with pytest.raises(SrtpError):
        a.protect(b"\x80\x60")
    with pytest.raises(SrtpError, match="too long"):
        a.protect(rtp(1, payload=bytes(1500)))


def test_key_lengths_checked(profile: SrtpProfile) -> None:
    good = bytes(profile.key_salt_length)
    with pytest.raises(ValueError, match="local key"):
        SrtpContext(profile, good[:-1], good)
    with pytest.raises(ValueError, match="remote key"):
        SrtpContext(profile, good, good + b"\x00")
    SrtpContext(profile.name, good, good)


def test_remove_ssrc(profile: SrtpProfile) -> None:
    a, b = pair(profile)
    a.remove_ssrc(1234)  # unknown: nothing happens
    b.unprotect(a.protect(rtp(1, ssrc=1234)))
    a.remove_ssrc(1234)
    b.remove_ssrc(1234)
    assert b.unprotect(a.protect(rtp(2, ssrc=1234))) == rtp(2, ssrc=1234)


@settings(max_examples=150, deadline=None)
@given(
    profile=st.sampled_from(PROFILES),
    payload=st.binary(max_size=1200),
    seq=st.integers(0, 0xFFFF),
    flip=st.integers(0, 10_000),
    bit=st.integers(0, 7),
)
def test_any_single_bit_flip_rejected(
    profile: SrtpProfile, payload: bytes, seq: int, flip: int, bit: int
) -> None:
    a, b = pair(profile)
    packet = rtp(seq, payload=payload)
    protected = a.protect(packet)
    forged = bytearray(protected)
    forged[flip % len(forged)] ^= 1 << bit
    with pytest.raises(SrtpError):
        b.unprotect(bytes(forged))
    assert b.unprotect(protected) == packet
