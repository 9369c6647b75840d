"""TURN stream framing: the size of the STUN message or padded ChannelData frame that starts a
TCP byte stream."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vw.turn.stream import MAX_FRAME, frame_size

STUN = bytes([0x00, 0x01, 0x00, 0x04]) + bytes.fromhex("2112a442") + bytes(12) + bytes(4)
CHANNEL = bytes([0x40, 0x00, 0x00, 0x03]) + b"abc" + b"\x00"  # padded to 4


def test_frames_are_sized_with_padding() -> None:
    assert frame_size(STUN + CHANNEL) == len(STUN)
    assert frame_size(CHANNEL + STUN) == len(CHANNEL)
    assert frame_size(STUN[:3]) is None


@pytest.mark.parametrize("garbage", [b"\x80\x00\x00\x00", b"\xff\xff\xff\xff"])
def test_garbage_cannot_be_resynchronized(garbage: bytes) -> None:
    with pytest.raises(ValueError):
        frame_size(garbage)


@given(st.binary(max_size=300))
def test_random_bytes_give_a_size_or_a_value_error(data: bytes) -> None:
    try:
        size = frame_size(data)
    except ValueError:
        return
    assert size is None and len(data) < 4 or size is not None and 4 <= size <= MAX_FRAME
