"""STUN framing shared by the parser and the integrity checks: header, attribute walk, digests."""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

from vw.stun.constants import (
    FINGERPRINT_XOR,
    HEADER_LENGTH,
    MAGIC_COOKIE,
    AttributeType,
)
from vw.stun.errors import AttributeOverrunError, HeaderError, TruncatedError

HEADER = struct.Struct("!HHI12s")  # type, length, cookie, transaction id
ATTRIBUTE_HEADER = struct.Struct("!HH")
U16 = struct.Struct("!H")
U32 = struct.Struct("!I")

MI = AttributeType.MESSAGE_INTEGRITY.value
MI_SHA256 = AttributeType.MESSAGE_INTEGRITY_SHA256.value
FINGERPRINT = AttributeType.FINGERPRINT.value

#: HMAC's block size for SHA-1 and SHA-256, and its pads (RFC 2104) as translation tables.
HMAC_BLOCK = 64
_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))


def encode_type(method: int, message_class: int) -> int:
    """The 14-bit message type: method bits M0-M11 interleaved with class bits C0, C1."""
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((message_class & 0b01) << 4)
        | ((message_class & 0b10) << 7)
    )


def decode_type(message_type: int) -> tuple[int, int]:
    """``(method, class)`` of a message type."""
    t = message_type
    method = (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2)
    return method, ((t >> 4) & 0b01) | ((t >> 7) & 0b10)


def check_header(data: bytes) -> tuple[int, bytes]:
    """Validate the header of a whole datagram; return its message type and transaction id."""
    size = len(data)
    if size < HEADER_LENGTH:
        raise TruncatedError(f"{size} bytes, shorter than the {HEADER_LENGTH}-byte STUN header")
    message_type, length, cookie, transaction_id = HEADER.unpack_from(data)
    if message_type & 0xC000:
        raise HeaderError("the first two bits of a STUN message must be zero")
    if cookie != MAGIC_COOKIE:
        raise HeaderError(f"bad magic cookie 0x{cookie:08x}")
    if length & 3:
        raise HeaderError(f"message length {length} is not a multiple of 4")
    if HEADER_LENGTH + length > size:
        raise TruncatedError(f"message length {length} but only {size - HEADER_LENGTH} bytes")
    if HEADER_LENGTH + length < size:
        raise HeaderError(f"message length {length} but {size - HEADER_LENGTH} bytes follow")
    return message_type, transaction_id


def walk(data: bytes) -> Iterator[tuple[int, int, int]]:
    """``(type, offset, length)`` of each attribute; ``offset`` is where its value starts.

    ``data`` must have passed :func:`check_header` (its length is a multiple of 4).
    """
    size = len(data)
    pos = HEADER_LENGTH
    while pos < size:
        attr_type, length = ATTRIBUTE_HEADER.unpack_from(data, pos)
        pos += 4
        if pos + length > size:
            raise AttributeOverrunError(
                attr_type, f"length {length} runs past the end of the message"
            )
        yield attr_type, pos, length
        pos += (length + 3) & ~3


def effective(types: Sequence[int]) -> Iterator[int]:
    """Indexes of the attributes a receiver heeds (RFC 8489 §14.5, §14.6).

    Everything up to the first MESSAGE-INTEGRITY(-SHA256). After MESSAGE-INTEGRITY only a
    MESSAGE-INTEGRITY-SHA256 and FINGERPRINT; after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT.
    """
    state = 0  # 0: no integrity yet; 1: after MESSAGE-INTEGRITY; 2: after the SHA-256 one
    for index, attr_type in enumerate(types):
        if state == 0:
            yield index
            if attr_type == MI:
                state = 1
            elif attr_type == MI_SHA256:
                state = 2
        elif attr_type == FINGERPRINT or (state == 1 and attr_type == MI_SHA256):
            yield index
            if attr_type == MI_SHA256:
                state = 2


def integrity_digest(data: bytes, offset: int, length: int, key: bytes, sha256: bool) -> bytes:
    """HMAC of ``data[:offset - 4]`` (the message before an integrity attribute of ``length``
    value bytes whose value starts at ``offset``) with the header length counting up to the end
    of that attribute (RFC 8489 §14.5)."""
    start = offset - 4
    covered = b"".join((data[:2], U16.pack(start - HEADER_LENGTH + 4 + length), data[4:start]))
    return keyed_hmac(key, covered, sha256)


def keyed_hmac(key: bytes | bytearray | memoryview, data: bytes, sha256: bool) -> bytes:
    """HMAC-SHA1 (or HMAC-SHA256) of ``data`` under ``key``, from hash states that have taken
    in the padded key already: a client's key signs and checks every message it exchanges."""
    inner, outer = _keyed_hashes(bytes(key), sha256)
    inner = inner.copy()
    inner.update(data)
    outer = outer.copy()
    outer.update(inner.digest())
    return outer.digest()


@lru_cache(1024)
def _keyed_hashes(key: bytes, sha256: bool) -> tuple[Any, Any]:
    """HMAC's inner and outer hashes for ``key`` (RFC 2104 §2), each fed its padded key."""
    new = hashlib.sha256 if sha256 else hashlib.sha1
    if len(key) > HMAC_BLOCK:
        key = new(key).digest()
    key = key.ljust(HMAC_BLOCK, b"\0")
    return new(key.translate(_INNER_PAD)), new(key.translate(_OUTER_PAD))


def fingerprint_value(data: bytes, offset: int) -> int:
    """FINGERPRINT's value for a FINGERPRINT attribute whose value starts at ``offset``.

    The header length must already count up to the end of the attribute (it does for a message
    whose last attribute is FINGERPRINT, and in :meth:`Message.bytes`).
    """
    return zlib.crc32(data[: offset - 4]) ^ FINGERPRINT_XOR
