"""RTP header extension values, and reading/writing one extension in a raw packet.

Values: RFC 6464 audio level, abs-send-time (6.18 fixed point seconds) and the transport-wide
sequence number (draft-holmer-rmcat-transport-wide-cc-extensions-01). Packet helpers work on the
raw bytes of an RTP packet (either RFC 8285 form) without a full parse: the bridge terminates
transport-cc per leg, so it rewrites the transport-wide sequence number of every packet it sends
with :func:`set_extension` (in place when the element is already there with the same length).
"""

from __future__ import annotations

from collections.abc import Container

from .rtp import (
    ONE_BYTE_PROFILE,
    RTP_HEADER_LENGTH,
    TWO_BYTE_PROFILE,
    pack_extensions,
    parse_extensions,
    walk_extensions,
)

__all__ = [
    "AUDIO_LEVEL_URI",
    "ABS_SEND_TIME_URI",
    "TRANSPORT_CC_URI",
    "MID_URI",
    "RID_URI",
    "REPAIRED_RID_URI",
    "TOFFSET_URI",
    "parse_audio_level",
    "pack_audio_level",
    "parse_abs_send_time",
    "pack_abs_send_time",
    "abs_send_time_from_seconds",
    "abs_send_time_to_seconds",
    "parse_transport_cc",
    "pack_transport_cc",
    "find_extension",
    "get_extension",
    "get_audio_level",
    "get_transport_cc",
    "set_extension",
    "set_extension_into",
    "strip_extensions",
]

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
TOFFSET_URI = "urn:ietf:params:rtp-hdrext:toffset"


# --- values ---------------------------------------------------------------------------------


def parse_audio_level(value: bytes) -> tuple[bool, int]:
    """RFC 6464: (voice activity flag, level in -dBov 0-127; 127 is silence)."""
    if not value:
        raise ValueError("audio level extension is empty")
    b = value[0]
    return b >= 0x80, b & 0x7F


def pack_audio_level(voice: bool, level: int) -> bytes:
    """RFC 6464 one-byte value; ``level`` is -dBov, 0 (loudest) to 127 (silence)."""
    if not 0 <= level <= 127:
        raise ValueError(f"audio level {level} is not in 0-127")
    return bytes(((0x80 if voice else 0) | level,))


def parse_abs_send_time(value: bytes) -> int:
    """The raw 24-bit abs-send-time (seconds in 6.18 fixed point, wrapping every 64 s)."""
    if len(value) != 3:
        raise ValueError(f"abs-send-time extension is {len(value)} bytes, not 3")
    return int.from_bytes(value, "big")


def pack_abs_send_time(value: int) -> bytes:
    """The 3-byte abs-send-time extension value for a raw 24-bit time."""
    if not 0 <= value <= 0xFFFFFF:
        raise ValueError(f"abs-send-time {value} is not a 24-bit value")
    return value.to_bytes(3, "big")


def abs_send_time_from_seconds(seconds: float) -> int:
    """Seconds to the 24-bit 6.18 fixed point abs-send-time (modulo 64 s)."""
    return round(seconds * (1 << 18)) & 0xFFFFFF


def abs_send_time_to_seconds(value: int) -> float:
    """A 24-bit abs-send-time to seconds in [0, 64)."""
    return (value & 0xFFFFFF) / (1 << 18)


def parse_transport_cc(value: bytes) -> int:
    """The transport-wide sequence number (the first 2 bytes; v2 may carry 2 more)."""
    if len(value) < 2:
        raise ValueError(f"transport-cc extension is {len(value)} bytes, fewer than 2")
    return value[0] << 8 | value[1]


def pack_transport_cc(sequence: int) -> bytes:
    """The 2-byte transport-wide sequence number extension value."""
    if not 0 <= sequence <= 0xFFFF:
        raise ValueError(f"transport-cc sequence number {sequence} is not 16-bit")
    return bytes((sequence >> 8, sequence & 0xFF))


# --- raw packet access ----------------------------------------------------------------------


def _block(data: bytes) -> tuple[int, int, int, int] | None:
    """(profile, offset of the profile word, block start, block end), or None if no extension."""
    n = len(data)
    if n < RTP_HEADER_LENGTH:
        raise ValueError(f"RTP packet is {n} bytes, shorter than the 12-byte header")
    b0 = data[0]
    if not b0 & 0x10:
        return None
    pos = RTP_HEADER_LENGTH + ((b0 & 0x0F) << 2)
    if n < pos + 4:
        raise ValueError("RTP packet is truncated in its extension header")
    start = pos + 4
    end = start + ((data[pos + 2] << 8 | data[pos + 3]) << 2)
    if n < end:
        raise ValueError(f"RTP header extension of {end - start} bytes is truncated")
    return data[pos] << 8 | data[pos + 1], pos, start, end


def find_extension(data: bytes, ext_id: int) -> tuple[int, int] | None:
    """(offset, length) of the value of extension ``ext_id`` in a raw RTP packet, or None."""
    blk = _block(data)
    if blk is None:
        return None
    profile, _, pos, end = blk
    if profile != ONE_BYTE_PROFILE and profile & 0xFFF0 != TWO_BYTE_PROFILE:
        return None
    for i, offset, length in walk_extensions(profile, data, pos, end):
        if i == ext_id:
            return offset, length
    return None


def get_extension(data: bytes, ext_id: int) -> bytes | None:
    """The value of extension ``ext_id`` in a raw RTP packet, or None."""
    loc = find_extension(data, ext_id)
    if loc is None:
        return None
    return bytes(data[loc[0] : loc[0] + loc[1]])


def get_audio_level(data: bytes, ext_id: int) -> tuple[bool, int] | None:
    """(voice, -dBov level) from a raw RTP packet's audio level extension, or None."""
    loc = find_extension(data, ext_id)
    if loc is None:
        return None
    b = data[loc[0]]
    return b >= 0x80, b & 0x7F


def get_transport_cc(data: bytes, ext_id: int) -> int | None:
    """The transport-wide sequence number in a raw RTP packet, or None."""
    loc = find_extension(data, ext_id)
    if loc is None:
        return None
    off, length = loc
    if length < 2:
        raise ValueError(f"transport-cc extension is {length} bytes, fewer than 2")
    return data[off] << 8 | data[off + 1]


def set_extension_into(buf: bytearray, ext_id: int, value: bytes) -> bool:
    """Overwrite extension ``ext_id`` in place if present with ``len(value)`` bytes.

    Returns False (``buf`` untouched) when it is absent or of another length.
    """
    loc = find_extension(buf, ext_id)
    if loc is None or loc[1] != len(value):
        return False
    buf[loc[0] : loc[0] + loc[1]] = value
    return True


def set_extension(data: bytes, ext_id: int, value: bytes) -> bytes:
    """A copy of a raw RTP packet with extension ``ext_id`` set to ``value``.

    Overwrites in place when the element exists with the same length; otherwise rebuilds the
    extension block (adding one if needed, moving to the two-byte form if the element needs
    it) and leaves everything else byte for byte.
    """
    loc = find_extension(data, ext_id)
    if loc is not None and loc[1] == len(value):
        buf = bytearray(data)
        buf[loc[0] : loc[0] + loc[1]] = value
        return bytes(buf)
    return _rebuild(data, lambda exts: {**exts, ext_id: bytes(value)})


def strip_extensions(data: bytes, keep: Container[int]) -> bytes:
    """A copy of a raw RTP packet without the extensions whose IDs are not in ``keep``.

    Returns ``data`` itself when nothing is removed; drops the extension header (and the X bit)
    when nothing is left.
    """
    blk = _block(data)
    if blk is None:
        return data
    profile, _, start, end = blk
    if profile != ONE_BYTE_PROFILE and profile & 0xFFF0 != TWO_BYTE_PROFILE:
        return data
    exts = parse_extensions(profile, data[start:end])
    kept = {i: v for i, v in exts.items() if i in keep}
    if len(kept) == len(exts):
        return data
    return _rebuild(data, lambda _: kept)


def _rebuild(data: bytes, change) -> bytes:
    blk = _block(data)
    b0 = data[0]
    if blk is None:
        profile = None
        head = tail = RTP_HEADER_LENGTH + ((b0 & 0x0F) << 2)
        if len(data) < head:
            raise ValueError("RTP packet is truncated in its CSRCs")
        exts: dict[int, bytes] = {}
    else:
        profile, head, start, tail = blk
        if profile != ONE_BYTE_PROFILE and profile & 0xFFF0 != TWO_BYTE_PROFILE:
            raise ValueError(
                f"RTP header extension profile {profile:#06x} is not RFC 8285; cannot edit it"
            )
        exts = parse_extensions(profile, data[start:tail])
    exts = change(exts)
    if exts:
        profile, block = pack_extensions(exts, profile)
        ext = (
            bytes((profile >> 8, profile & 0xFF, len(block) >> 10, (len(block) >> 2) & 0xFF))
            + block
        )
        first = b0 | 0x10
    else:
        ext = b""
        first = b0 & ~0x10
    return b"".join((bytes((first,)), data[1:head], ext, data[tail:]))
