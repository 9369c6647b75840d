"""RTP packets (RFC 3550) with RFC 8285 header extensions, RTX (RFC 4588) and hot-path helpers.

:class:`RtpPacket` is the full parse/serialize form. The forwarding path should not need it: the
``peek_*`` functions read one field from the raw bytes and :func:`rewrite_header` /
:func:`rewrite_header_into` replace SSRC, sequence number and timestamp without touching the
rest. :func:`is_rtcp` demultiplexes RTP from RTCP on one transport (RFC 5761 §4).

Every malformed input raises :class:`ValueError` with a message saying what is wrong.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = [
    "RTP_HEADER_LENGTH",
    "ONE_BYTE_PROFILE",
    "TWO_BYTE_PROFILE",
    "RtpPacket",
    "pack_extensions",
    "parse_extensions",
    "is_rtcp",
    "header_length",
    "peek_payload_type",
    "peek_marker",
    "peek_sequence",
    "peek_timestamp",
    "peek_ssrc",
    "rewrite_header",
    "rewrite_header_into",
    "unwrap_rtx",
    "wrap_rtx",
]

RTP_HEADER_LENGTH = 12
#: RFC 8285 one-byte header form ("defined by profile" value 0xBEDE).
ONE_BYTE_PROFILE = 0xBEDE
#: RFC 8285 two-byte header form: 0x100 followed by 4 "appbits" (0x1000-0x100F).
TWO_BYTE_PROFILE = 0x1000

_P = TypeVar("_P", "RtpPacket", bytes)

_FIXED = struct.Struct("!BBHII")
_SEQ_TS_SSRC = struct.Struct("!HII")
_PT_SEQ_TS_SSRC = struct.Struct("!BHII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_HH = struct.Struct("!HH")


def _is_two_byte(profile: int) -> bool:
    return profile & 0xFFF0 == TWO_BYTE_PROFILE


def walk_extensions(profile: int, data: bytes, start: int,
                    end: int) -> Iterator[tuple[int, int, int]]:
    """(id, value offset, value length) of each element of an RFC 8285 extension block
    ``data[start:end]``; ValueError when an element overruns the block.

    Padding bytes (0) are skipped; in the one-byte form ID 15 ends the block (RFC 8285 §4.2).
    """
    pos = start
    if profile == ONE_BYTE_PROFILE:
        while pos < end:
            b = data[pos]
            if b == 0:
                pos += 1
                continue
            ext_id = b >> 4
            if ext_id == 15:
                return
            length = (b & 0x0F) + 1
            pos += 1
            if pos + length > end:
                raise ValueError(f"RTP one-byte header extension {ext_id} is truncated")
            yield ext_id, pos, length
            pos += length
    elif _is_two_byte(profile):
        while pos < end:
            ext_id = data[pos]
            if ext_id == 0:
                pos += 1
                continue
            if pos + 2 > end:
                raise ValueError(f"RTP two-byte header extension {ext_id} has no length byte")
            length = data[pos + 1]
            pos += 2
            if pos + length > end:
                raise ValueError(f"RTP two-byte header extension {ext_id} is truncated")
            yield ext_id, pos, length
            pos += length
    else:
        raise ValueError(f"RTP header extension profile {profile:#06x} is not RFC 8285")


def parse_extensions(profile: int, block: bytes) -> dict[int, bytes]:
    """Parse an RFC 8285 extension block (without its 4-byte profile/length word) into {id: value}.

    If an ID repeats, the first element wins (as :func:`vw.rtp.extensions.find_extension`).
    """
    extensions: dict[int, bytes] = {}
    for ext_id, pos, length in walk_extensions(profile, block, 0, len(block)):
        if ext_id not in extensions:
            extensions[ext_id] = bytes(block[pos : pos + length])
    return extensions


def _fits_one_byte(extensions: dict[int, bytes]) -> bool:
    for ext_id, value in extensions.items():
        if not 1 <= ext_id <= 14 or not 1 <= len(value) <= 16:
            return False
    return True


def pack_extensions(extensions: dict[int, bytes], profile: int | None = None) -> tuple[int, bytes]:
    """Serialize {id: value} into (profile, block padded to 4 bytes).

    The one-byte form is used when every extension fits it (ID 1-14, 1-16 bytes) and ``profile``
    does not ask for the two-byte form; otherwise the two-byte form (ID 1-255, 0-255 bytes).
    """
    if profile is not None and _is_two_byte(profile):
        one_byte = False
    elif profile is None or profile == ONE_BYTE_PROFILE:
        one_byte = _fits_one_byte(extensions)
        profile = ONE_BYTE_PROFILE if one_byte else TWO_BYTE_PROFILE
    else:
        raise ValueError(f"RTP header extension profile {profile:#06x} is not RFC 8285")
    parts: list[bytes] = []
    if one_byte:
        for ext_id, value in extensions.items():
            parts.append(bytes(((ext_id << 4) | (len(value) - 1),)))
            parts.append(value)
    else:
        for ext_id, value in extensions.items():
            if not 1 <= ext_id <= 255:
                raise ValueError(f"RTP header extension ID {ext_id} is not in 1-255")
            if len(value) > 255:
                raise ValueError(f"RTP header extension {ext_id} is longer than 255 bytes")
            parts.append(bytes((ext_id, len(value))))
            parts.append(value)
    block = b"".join(parts)
    block += b"\x00" * (-len(block) % 4)
    return profile, block


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet.

    ``extensions`` holds RFC 8285 elements by local ID. ``extension_profile`` is the profile seen
    on parse (None: no extension header); on serialize None/0xBEDE mean "one-byte form if it fits"
    and 0x100X forces the two-byte form. Other profiles (RFC 3550 generic extensions) keep their
    raw block in ``extension_data``. ``padding_size`` counts the padding bytes including the final
    count byte; padding is written as zeros.
    """

    payload_type: int = 0
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    marker: bool = False
    csrcs: list[int] = field(default_factory=list)
    extensions: dict[int, bytes] = field(default_factory=dict)
    payload: bytes = b""
    padding_size: int = 0
    extension_profile: int | None = None
    extension_data: bytes = b""

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP packet; raises ValueError if it is malformed."""
        n = len(data)
        if n < RTP_HEADER_LENGTH:
            raise ValueError(f"RTP packet is {n} bytes, shorter than the 12-byte header")
        b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data)
        if b0 >> 6 != 2:
            raise ValueError(f"RTP version is {b0 >> 6}, not 2")
        cc = b0 & 0x0F
        pos = RTP_HEADER_LENGTH + 4 * cc
        if n < pos:
            raise ValueError(f"RTP packet is truncated in its {cc} CSRCs")
        csrcs = list(struct.unpack_from(f"!{cc}I", data, RTP_HEADER_LENGTH)) if cc else []
        extensions: dict[int, bytes] = {}
        profile: int | None = None
        ext_data = b""
        if b0 & 0x10:
            if n < pos + 4:
                raise ValueError("RTP packet is truncated in its extension header")
            profile, words = _HH.unpack_from(data, pos)
            pos += 4
            end = pos + 4 * words
            if n < end:
                raise ValueError(
                    f"RTP header extension of {4 * words} bytes is truncated at {n - pos}"
                )
            if profile == ONE_BYTE_PROFILE or _is_two_byte(profile):
                extensions = parse_extensions(profile, data[pos:end])
            else:
                ext_data = bytes(data[pos:end])
            pos = end
        padding = 0
        end = n
        if b0 & 0x20:
            if n == pos:
                raise ValueError("RTP padding bit is set but there is no padding")
            padding = data[-1]
            if padding == 0 or padding > n - pos:
                raise ValueError(
                    f"RTP padding length {padding} is invalid for {n - pos} bytes after header"
                )
            end = n - padding
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            marker=bool(b1 & 0x80),
            csrcs=csrcs,
            extensions=extensions,
            payload=bytes(data[pos:end]),
            padding_size=padding,
            extension_profile=profile,
            extension_data=ext_data,
        )

    def __bytes__(self) -> bytes:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"RTP payload type {self.payload_type} is not in 0-127")
        if len(self.csrcs) > 15:
            raise ValueError(f"RTP packet has {len(self.csrcs)} CSRCs, more than 15")
        if not 0 <= self.padding_size <= 255:
            raise ValueError(f"RTP padding size {self.padding_size} is not in 0-255")
        _check_u16("RTP sequence number", self.sequence_number)
        _check_u32("RTP timestamp", self.timestamp)
        _check_u32("RTP SSRC", self.ssrc)
        parts = [b""]
        profile = self.extension_profile
        has_ext = False
        if self.extensions:
            profile, block = pack_extensions(self.extensions, profile)
            has_ext = True
        elif profile is not None:
            _check_u16("RTP header extension profile", profile)
            rfc8285 = profile == ONE_BYTE_PROFILE or _is_two_byte(profile)
            block = b"" if rfc8285 else self.extension_data
            if len(block) % 4:
                raise ValueError("RTP generic header extension data is not a multiple of 4")
            has_ext = True
        b0 = 0x80 | (0x20 if self.padding_size else 0) | (0x10 if has_ext else 0)
        parts[0] = _FIXED.pack(
            b0 | len(self.csrcs),
            (0x80 if self.marker else 0) | self.payload_type,
            self.sequence_number,
            self.timestamp,
            self.ssrc,
        )
        for csrc in self.csrcs:
            _check_u32("RTP CSRC", csrc)
            parts.append(_U32.pack(csrc))
        if has_ext:
            parts.append(_HH.pack(profile, len(block) // 4))
            parts.append(block)
        parts.append(self.payload)
        if self.padding_size:
            parts.append(bytes(self.padding_size - 1) + bytes((self.padding_size,)))
        return b"".join(parts)


def _check_u16(what: str, value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{what} {value} is not a 16-bit unsigned value")


def _check_u32(what: str, value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{what} {value} is not a 32-bit unsigned value")


# --- hot-path helpers -----------------------------------------------------------------------


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 §4 demultiplexing: True if the second byte is an RTCP packet type (192-223)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def header_length(data: bytes) -> int:
    """Length of the RTP header including CSRCs and header extension: the payload's offset."""
    n = len(data)
    if n < RTP_HEADER_LENGTH:
        raise ValueError(f"RTP packet is {n} bytes, shorter than the 12-byte header")
    b0 = data[0]
    pos = RTP_HEADER_LENGTH + ((b0 & 0x0F) << 2)
    if b0 & 0x10:
        if n < pos + 4:
            raise ValueError("RTP packet is truncated in its extension header")
        pos += 4 + ((data[pos + 2] << 8 | data[pos + 3]) << 2)
    if n < pos:
        raise ValueError(f"RTP header of {pos} bytes is truncated at {n}")
    return pos


def _short(n: int) -> ValueError:
    return ValueError(f"RTP packet is {n} bytes, shorter than the 12-byte header")


def peek_payload_type(data: bytes) -> int:
    """The payload type (7 bits) of a raw RTP packet."""
    if len(data) < RTP_HEADER_LENGTH:
        raise _short(len(data))
    return data[1] & 0x7F


def peek_marker(data: bytes) -> bool:
    """The marker bit of a raw RTP packet."""
    if len(data) < RTP_HEADER_LENGTH:
        raise _short(len(data))
    return data[1] >= 0x80


def peek_sequence(data: bytes) -> int:
    """The sequence number of a raw RTP packet."""
    if len(data) < RTP_HEADER_LENGTH:
        raise _short(len(data))
    return data[2] << 8 | data[3]


def peek_timestamp(data: bytes) -> int:
    """The timestamp of a raw RTP packet."""
    if len(data) < RTP_HEADER_LENGTH:
        raise _short(len(data))
    return _U32.unpack_from(data, 4)[0]


def peek_ssrc(data: bytes) -> int:
    """The SSRC of a raw RTP packet."""
    if len(data) < RTP_HEADER_LENGTH:
        raise _short(len(data))
    return _U32.unpack_from(data, 8)[0]


def rewrite_header_into(
    buf: bytearray,
    ssrc: int,
    sequence: int,
    timestamp: int,
    payload_type: int | None = None,
) -> None:
    """Overwrite SSRC, sequence number, timestamp (and optionally payload type) in place."""
    if len(buf) < RTP_HEADER_LENGTH:
        raise _short(len(buf))
    try:
        if payload_type is None:
            _SEQ_TS_SSRC.pack_into(buf, 2, sequence, timestamp, ssrc)
        else:
            if not 0 <= payload_type <= 127:
                raise struct.error(f"payload type {payload_type} is not in 0-127")
            _PT_SEQ_TS_SSRC.pack_into(
                buf, 1, (buf[1] & 0x80) | payload_type, sequence, timestamp, ssrc
            )
    except struct.error as e:
        raise ValueError(f"RTP header field out of range: {e}") from None


def rewrite_header(
    data: bytes,
    ssrc: int,
    sequence: int,
    timestamp: int,
    payload_type: int | None = None,
) -> bytes:
    """A copy of ``data`` with SSRC, sequence number, timestamp (and optionally PT) replaced."""
    buf = bytearray(data)
    rewrite_header_into(buf, ssrc, sequence, timestamp, payload_type)
    return bytes(buf)


# --- RTX (RFC 4588) -------------------------------------------------------------------------


def unwrap_rtx(packet: _P, original_pt: int) -> tuple[int, _P]:
    """Recover (original sequence number, original packet) from an RTX packet.

    Works on an :class:`RtpPacket` or raw bytes and returns the same kind. The result carries
    ``original_pt`` and the OSN as its sequence number; SSRC is left as the RTX SSRC for the
    caller to map back to the media SSRC (``rewrite_header`` or ``dataclasses.replace``).
    Padding-only RTX packets (used for bandwidth probing) have no OSN and raise ValueError.
    """
    if not 0 <= original_pt <= 127:
        raise ValueError(f"RTP payload type {original_pt} is not in 0-127")
    if isinstance(packet, RtpPacket):
        if len(packet.payload) < 2:
            raise ValueError("RTX packet has no original sequence number")
        osn = packet.payload[0] << 8 | packet.payload[1]
        out = RtpPacket(
            payload_type=original_pt,
            sequence_number=osn,
            timestamp=packet.timestamp,
            ssrc=packet.ssrc,
            marker=packet.marker,
            csrcs=list(packet.csrcs),
            extensions=dict(packet.extensions),
            payload=packet.payload[2:],
            padding_size=packet.padding_size,
            extension_profile=packet.extension_profile,
            extension_data=packet.extension_data,
        )
        return osn, out
    data = packet
    pos = header_length(data)
    end = len(data)
    if data[0] & 0x20:
        end -= data[-1]
    if end - pos < 2:
        raise ValueError("RTX packet has no original sequence number")
    osn = data[pos] << 8 | data[pos + 1]
    buf = bytearray(data[:pos])
    buf[1] = (buf[1] & 0x80) | original_pt
    buf[2] = osn >> 8
    buf[3] = osn & 0xFF
    buf += memoryview(data)[pos + 2 :]
    return osn, bytes(buf)


def wrap_rtx(packet: _P, rtx_pt: int, rtx_ssrc: int, rtx_seq: int) -> _P:
    """Build the RTX packet retransmitting ``packet`` (RFC 4588 §4): OSN prepended to payload.

    Works on an :class:`RtpPacket` or raw bytes and returns the same kind; marker, timestamp,
    CSRCs, header extensions and padding are kept.
    """
    if not 0 <= rtx_pt <= 127:
        raise ValueError(f"RTP payload type {rtx_pt} is not in 0-127")
    if isinstance(packet, RtpPacket):
        return RtpPacket(
            payload_type=rtx_pt,
            sequence_number=rtx_seq,
            timestamp=packet.timestamp,
            ssrc=rtx_ssrc,
            marker=packet.marker,
            csrcs=list(packet.csrcs),
            extensions=dict(packet.extensions),
            payload=_U16.pack(packet.sequence_number) + packet.payload,
            padding_size=packet.padding_size,
            extension_profile=packet.extension_profile,
            extension_data=packet.extension_data,
        )
    data = packet
    pos = header_length(data)
    buf = bytearray(data[:pos])
    osn = data[2:4]
    rewrite_header_into(buf, rtx_ssrc, rtx_seq, peek_timestamp(data), rtx_pt)
    buf += osn
    buf += memoryview(data)[pos:]
    return bytes(buf)
