"""TURN stream framing: STUN messages and padded ChannelData cut out of a TCP byte stream."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vw.turn.stream import split_frames

STUN = bytes([0x00, 0x01, 0x00, 0x04]) + bytes.fromhex("2112a442") + bytes(12) + bytes(4)
CHANNEL = bytes([0x40, 0x00, 0x00, 0x03]) + b"abc" + b"\x00"  # padded to 4


def test_frames_are_cut_and_partial_ones_kept() -> None:
    stream = STUN + CHANNEL + STUN[:10]
    frames, rest = split_frames(stream)
    assert frames == [STUN, CHANNEL] and rest == STUN[:10]
    frames, rest = split_frames(rest + STUN[10:])
    assert frames == [STUN] and rest == b""


def test_garbage_cannot_be_resynchronized() -> None:
    with pytest.raises(ValueError):
        split_frames(b"\x80\x00\x00\x00")


@given(st.binary(max_size=300))
def test_random_bytes_give_frames_or_a_value_error(data: bytes) -> None:
    try:
        frames, rest = split_frames(data)
    except ValueError:
        return
    assert b"".join(frames) + rest == data
