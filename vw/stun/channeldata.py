"""TURN ChannelData messages (RFC 8656 §12.4) and splitting a TCP/TLS stream into frames.

Over UDP each datagram is one STUN message or one ChannelData message, padding optional. Over
TCP and TLS (RFC 8656 §12.5, RFC 6062 control connections) they follow one another on the
stream; ChannelData is then padded to a multiple of 4 bytes, and :func:`parse_stream` splits
the stream at their length fields.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vw.stun.constants import (
    CHANNEL_MAX,
    CHANNEL_MAX_RFC5766,
    CHANNEL_MIN,
    HEADER_LENGTH,
    MAGIC_COOKIE_BYTES,
    MAX_MESSAGE_SIZE,
)
from vw.stun.errors import ChannelDataError, StreamError, TruncatedError
from vw.stun.message import Message

_HEADER = struct.Struct("!HH")  # channel number, length
CHANNEL_DATA_HEADER_LENGTH = 4

#: Largest ChannelData message: header, 65535 bytes of data, padding.
MAX_CHANNEL_DATA_SIZE = CHANNEL_DATA_HEADER_LENGTH + 0xFFFF + 1

#: Largest frame :func:`parse_stream` accepts by default: anything the length fields can say.
MAX_FRAME_SIZE = max(MAX_MESSAGE_SIZE, MAX_CHANNEL_DATA_SIZE)


def is_channel_number(channel: int, last: int = CHANNEL_MAX) -> bool:
    """Whether a number is a valid TURN channel: 0x4000-0x4FFF (RFC 8656 §12), or up to
    ``last`` (0x7FFF under RFC 5766)."""
    return CHANNEL_MIN <= channel <= last


def _check_frame_channel(channel: int) -> None:
    if not is_channel_number(channel, CHANNEL_MAX_RFC5766):
        raise ChannelDataError(f"channel number 0x{channel:04x} not in 0x4000-0x7fff")


def is_channel_data(data: bytes) -> bool:
    """Whether a datagram on a TURN port is ChannelData (first two bits 01, RFC 5766 §11)."""
    return len(data) >= CHANNEL_DATA_HEADER_LENGTH and 0x40 <= data[0] < 0x80


@dataclass(slots=True)
class ChannelData:
    """Application data on a TURN channel: 4-byte header (channel, length) and the data.

    The frame carries any number 0x4000-0x7FFF; which ones a server binds is its policy."""

    channel: int
    data: bytes

    def __post_init__(self) -> None:
        _check_frame_channel(self.channel)
        if len(self.data) > 0xFFFF:
            raise ChannelDataError(f"{len(self.data)} bytes of data, over 65535")

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> ChannelData:
        """Parse one ChannelData message filling ``data``, padded to 4 bytes or not.

        Raises :class:`TruncatedError` if ``data`` is shorter than the header or the length it
        gives, :class:`ChannelDataError` for a bad channel number or trailing bytes.
        """
        size = len(data)
        if size < CHANNEL_DATA_HEADER_LENGTH:
            raise TruncatedError(f"{size} bytes, shorter than the 4-byte ChannelData header")
        channel, length = _HEADER.unpack_from(data)
        end = CHANNEL_DATA_HEADER_LENGTH + length
        _check_frame_channel(channel)
        if size < end:
            raise TruncatedError(f"ChannelData length {length} but only {size - 4} bytes")
        if size > (end + 3) & ~3:
            raise ChannelDataError(f"ChannelData length {length} but {size - 4} bytes follow")
        return cls(channel, bytes(data[CHANNEL_DATA_HEADER_LENGTH:end]))

    def __bytes__(self) -> bytes:
        return self.bytes()

    def bytes(self, pad: bool = False) -> bytes:
        """Serialize; ``pad`` to a multiple of 4 bytes, as TCP and TLS require."""
        length = len(self.data)
        padding = bytes(-length & 3) if pad else b""
        return _HEADER.pack(self.channel, length) + self.data + padding


def parse_stream(
    buffer: bytes | bytearray | memoryview, max_size: int = MAX_FRAME_SIZE
) -> tuple[list[Message | ChannelData], bytes]:
    """Split a TCP/TLS byte stream into STUN messages and ChannelData frames.

    Returns the frames parsed and the bytes left over, an incomplete frame to prepend to the
    next read. Raises :class:`StreamError` for a frame that is neither (first two bits ``1x``)
    or is announced longer than ``max_size`` bytes (ChannelData counted with its padding), and
    the errors of :meth:`Message.parse` and :meth:`ChannelData.parse`: the stream cannot be
    resynchronized after any of them, so the connection should be closed.
    """
    data = buffer if type(buffer) is bytes else bytes(buffer)
    frames: list[Message | ChannelData] = []
    size = len(data)
    pos = 0
    while size - pos >= CHANNEL_DATA_HEADER_LENGTH:
        first = data[pos]
        length = (data[pos + 2] << 8) | data[pos + 3]
        if first < 0x40:
            # STUN: fail on a bad cookie or length now rather than after up to 64 KiB.
            if size - pos >= 8 and data[pos + 4 : pos + 8] != MAGIC_COOKIE_BYTES:
                raise StreamError("STUN message on the stream without the magic cookie")
            if length & 3:
                raise StreamError(f"STUN message length {length} is not a multiple of 4")
            total = HEADER_LENGTH + length
        elif first < 0x80:
            total = CHANNEL_DATA_HEADER_LENGTH + ((length + 3) & ~3)
        else:
            raise StreamError(f"first byte 0x{first:02x} is neither STUN nor ChannelData")
        if total > max_size:
            raise StreamError(f"{total}-byte frame, over the {max_size}-byte limit")
        if size - pos < total:
            break
        frame = data[pos : pos + total]
        frames.append(Message.parse(frame) if first < 0x40 else ChannelData.parse(frame))
        pos += total
    return frames, data[pos:]
