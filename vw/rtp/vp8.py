"""VP8 RTP payload descriptor (RFC 7741 §4.2), keyframe detection and descriptor rewriting.

A bridge switching simulcast layers rewrites PictureID and TL0PICIDX so that the receiver sees
one continuous stream; :func:`rewrite_descriptor` does it without changing the descriptor's
length (the PictureID keeps its 7- or 15-bit width), so RTP payload offsets stay put.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Vp8Descriptor",
    "is_keyframe",
    "frame_dimensions",
    "rewrite_descriptor",
    "rewrite_descriptor_into",
]

_START_CODE = b"\x9d\x01\x2a"


@dataclass(slots=True)
class Vp8Descriptor:
    """The VP8 payload descriptor. ``size`` of the serialized form is its length in bytes.

    ``long_picture_id`` is the M bit (15-bit PictureID). ``tid`` and ``layer_sync`` (Y) are
    present when T is set, ``keyidx`` when K is set. ``extended`` keeps an X byte even when no
    I/L/T/K field is present.
    """

    start_of_partition: bool = False
    partition_id: int = 0
    non_reference: bool = False
    picture_id: int | None = None
    long_picture_id: bool = True
    tl0picidx: int | None = None
    tid: int | None = None
    layer_sync: bool = False
    keyidx: int | None = None
    extended: bool = False

    @classmethod
    def parse(cls, payload: bytes) -> Vp8Descriptor:
        """Parse the descriptor at the start of a VP8 RTP payload."""
        n = len(payload)
        if n < 1:
            raise ValueError("VP8 payload is empty")
        b0 = payload[0]
        desc = cls(
            start_of_partition=bool(b0 & 0x10),
            partition_id=b0 & 0x07,
            non_reference=bool(b0 & 0x20),
        )
        if not b0 & 0x80:
            return desc
        desc.extended = True
        if n < 2:
            raise ValueError("VP8 descriptor is truncated in its extension byte")
        x = payload[1]
        pos = 2
        if x & 0x80:
            if n <= pos:
                raise ValueError("VP8 descriptor is truncated in its PictureID")
            if payload[pos] & 0x80:
                if n < pos + 2:
                    raise ValueError("VP8 descriptor is truncated in its 15-bit PictureID")
                desc.picture_id = (payload[pos] & 0x7F) << 8 | payload[pos + 1]
                pos += 2
            else:
                desc.picture_id = payload[pos]
                desc.long_picture_id = False
                pos += 1
        if x & 0x40:
            if n <= pos:
                raise ValueError("VP8 descriptor is truncated in its TL0PICIDX")
            desc.tl0picidx = payload[pos]
            pos += 1
        if x & 0x30:
            if n <= pos:
                raise ValueError("VP8 descriptor is truncated in its TID/KEYIDX byte")
            tk = payload[pos]
            if x & 0x20:
                desc.tid = tk >> 6
                desc.layer_sync = bool(tk & 0x20)
            if x & 0x10:
                desc.keyidx = tk & 0x1F
        return desc

    @property
    def size(self) -> int:
        """The serialized length: the offset of the VP8 payload header."""
        if not (self.extended or self._has_extensions()):
            return 1
        size = 2
        if self.picture_id is not None:
            size += 2 if self.long_picture_id else 1
        if self.tl0picidx is not None:
            size += 1
        if self.tid is not None or self.keyidx is not None:
            size += 1
        return size

    def _has_extensions(self) -> bool:
        return (
            self.picture_id is not None
            or self.tl0picidx is not None
            or self.tid is not None
            or self.keyidx is not None
        )

    def __bytes__(self) -> bytes:
        if not 0 <= self.partition_id <= 7:
            raise ValueError(f"VP8 partition ID {self.partition_id} is not in 0-7")
        b0 = (
            (0x20 if self.non_reference else 0)
            | (0x10 if self.start_of_partition else 0)
            | self.partition_id
        )
        if not (self.extended or self._has_extensions()):
            return bytes((b0,))
        out = bytearray((b0 | 0x80, 0))
        if self.picture_id is not None:
            out[1] |= 0x80
            if self.long_picture_id:
                _check(self.picture_id, 15, "PictureID")
                out += bytes((0x80 | self.picture_id >> 8, self.picture_id & 0xFF))
            else:
                _check(self.picture_id, 7, "PictureID")
                out.append(self.picture_id)
        if self.tl0picidx is not None:
            _check(self.tl0picidx, 8, "TL0PICIDX")
            out[1] |= 0x40
            out.append(self.tl0picidx)
        if self.tid is not None or self.keyidx is not None:
            tk = 0
            if self.tid is not None:
                _check(self.tid, 2, "TID")
                out[1] |= 0x20
                tk |= self.tid << 6 | (0x20 if self.layer_sync else 0)
            if self.keyidx is not None:
                _check(self.keyidx, 5, "KEYIDX")
                out[1] |= 0x10
                tk |= self.keyidx
            out.append(tk)
        return bytes(out)


def _check(value: int, bits: int, what: str) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"VP8 {what} {value} does not fit {bits} bits")


def _descriptor_size(payload: bytes) -> int:
    """Length of the descriptor at the start of ``payload``, checking it is all there."""
    n = len(payload)
    if n < 1:
        raise ValueError("VP8 payload is empty")
    if not payload[0] & 0x80:
        return 1
    if n < 2:
        raise ValueError("VP8 descriptor is truncated in its extension byte")
    x = payload[1]
    pos = 2
    if x & 0x80:
        if n <= pos:
            raise ValueError("VP8 descriptor is truncated in its PictureID")
        pos += 2 if payload[pos] & 0x80 else 1
    if x & 0x40:
        pos += 1
    if x & 0x30:
        pos += 1
    if n < pos:
        raise ValueError(f"VP8 descriptor of {pos} bytes is truncated at {n}")
    return pos


def is_keyframe(payload: bytes) -> bool:
    """True if this payload starts a VP8 key frame.

    Start of partition 0 (S=1, PID=0) and the frame tag's inverse key frame bit P is 0; when
    the bytes are there, the key frame start code 9d 01 2a must follow the 3-byte frame tag.
    """
    if not payload:
        raise ValueError("VP8 payload is empty")
    b0 = payload[0]
    if b0 & 0x17 != 0x10:
        return False
    pos = _descriptor_size(payload)
    if len(payload) <= pos or payload[pos] & 0x01:
        return False
    code = payload[pos + 3 : pos + 6]
    return _START_CODE.startswith(code)


def frame_dimensions(payload: bytes) -> tuple[int, int] | None:
    """(width, height) from the key frame header in this payload, or None if it has none.

    The 2-bit scaling fields are ignored (they ask the renderer to upscale).
    """
    if not is_keyframe(payload):
        return None
    pos = _descriptor_size(payload) + 3
    header = payload[pos : pos + 7]
    if len(header) < 7 or header[:3] != _START_CODE:
        return None
    width = (header[3] | header[4] << 8) & 0x3FFF
    height = (header[5] | header[6] << 8) & 0x3FFF
    return width, height


def rewrite_descriptor_into(
    buf: bytearray,
    offset: int = 0,
    picture_id: int | None = None,
    tl0picidx: int | None = None,
) -> None:
    """In place, set PictureID (wrapped to its existing 7/15-bit width) and/or TL0PICIDX.

    ``offset`` is where the descriptor starts (an RTP packet's header length). Raises
    ValueError if the descriptor lacks a field being set (adding one would change its length).
    """
    n = len(buf)
    if n <= offset:
        raise ValueError("VP8 payload is empty")
    has_x = buf[offset] & 0x80
    x = buf[offset + 1] if has_x and n > offset + 1 else 0
    if has_x and n <= offset + 1:
        raise ValueError("VP8 descriptor is truncated in its extension byte")
    pos = offset + 2
    if x & 0x80:
        if n <= pos:
            raise ValueError("VP8 descriptor is truncated in its PictureID")
        if buf[pos] & 0x80:
            if n < pos + 2:
                raise ValueError("VP8 descriptor is truncated in its 15-bit PictureID")
            if picture_id is not None:
                picture_id &= 0x7FFF
                buf[pos] = 0x80 | picture_id >> 8
                buf[pos + 1] = picture_id & 0xFF
            pos += 2
        else:
            if picture_id is not None:
                buf[pos] = picture_id & 0x7F
            pos += 1
    elif picture_id is not None:
        raise ValueError("VP8 descriptor has no PictureID to rewrite")
    if x & 0x40:
        if n <= pos:
            raise ValueError("VP8 descriptor is truncated in its TL0PICIDX")
        if tl0picidx is not None:
            buf[pos] = tl0picidx & 0xFF
    elif tl0picidx is not None:
        raise ValueError("VP8 descriptor has no TL0PICIDX to rewrite")


def rewrite_descriptor(
    payload: bytes, picture_id: int | None = None, tl0picidx: int | None = None
) -> bytes:
    """A copy of a VP8 payload with PictureID and/or TL0PICIDX replaced, same length.

    PictureID wraps to the width already used (7 or 15 bits), TL0PICIDX to 8 bits.
    """
    buf = bytearray(payload)
    rewrite_descriptor_into(buf, 0, picture_id, tl0picidx)
    return bytes(buf)
