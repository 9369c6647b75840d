"""Message integrity and fingerprint checks (RFC 8489 §9, §14.5-§14.7) and credential keys."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from vw.stun import wire
from vw.stun.constants import PASSWORD_ALGORITHM_MD5, PASSWORD_ALGORITHM_SHA256
from vw.stun.errors import StunError
from vw.stun.message import Message

_ALGORITHMS: dict[str | int, Callable[[bytes], Any]] = {
    "md5": hashlib.md5,
    "sha256": hashlib.sha256,
    "sha-256": hashlib.sha256,
    PASSWORD_ALGORITHM_MD5: hashlib.md5,
    PASSWORD_ALGORITHM_SHA256: hashlib.sha256,
}


def _raw_and_layout(
    message: bytes | bytearray | memoryview | Message,
) -> tuple[bytes, list[tuple[int, int, int]]] | None:
    """A message's bytes and its attributes' (type, offset, length), walked once for a parsed
    :class:`Message`; None if it is malformed."""
    if isinstance(message, Message):
        if message.layout is not None and message.layout[0] is message.raw:
            return message.layout
        data = message.raw if message.raw is not None else message.bytes()
    else:
        data = bytes(message)
    try:
        wire.check_header(data)
        return data, list(wire.walk(data))
    except StunError:
        return None


def check_integrity(
    message: bytes | bytearray | memoryview | Message,
    key: bytes,
    *,
    sha256: bool | None = None,
) -> bool:
    """Whether a message's MESSAGE-INTEGRITY(-SHA256) is right for ``key`` (RFC 8489 §14.5).

    The HMAC covers the message up to the integrity attribute, with the header length counting
    up to its end; what follows (FINGERPRINT, attributes a receiver ignores) is not covered.
    ``sha256``: None checks MESSAGE-INTEGRITY-SHA256 if the message has one, else
    MESSAGE-INTEGRITY; True or False requires that one. A message passed as a :class:`Message`
    is checked on the bytes it was parsed from. Malformed input is False, never an exception.
    Compared in constant time.
    """
    parsed = _raw_and_layout(message)
    if parsed is None:
        return False
    data, attributes = parsed
    found: dict[int, tuple[int, int]] = {}
    for index in wire.effective([t for t, _, _ in attributes]):
        attr_type, offset, length = attributes[index]
        if attr_type in (wire.MI, wire.MI_SHA256):
            found.setdefault(attr_type, (offset, length))
    if sha256 is None:
        sha256 = wire.MI_SHA256 in found
    attr_type = wire.MI_SHA256 if sha256 else wire.MI
    if attr_type not in found:
        return False
    offset, length = found[attr_type]
    if sha256:
        if length < 16 or length > 32 or length % 4:
            return False
    elif length != 20:
        return False
    expected = wire.integrity_digest(data, offset, length, key, sha256)[:length]
    return hmac.compare_digest(expected, data[offset : offset + length])


def check_fingerprint(message: bytes | bytearray | memoryview | Message) -> bool:
    """Whether a message ends with a FINGERPRINT attribute, and its CRC-32 is right."""
    parsed = _raw_and_layout(message)
    if parsed is None:
        return False
    data, attributes = parsed
    if not attributes:
        return False
    attr_type, offset, length = attributes[-1]
    if attr_type != wire.FINGERPRINT or length != 4:
        return False
    return wire.U32.unpack_from(data, offset)[0] == wire.fingerprint_value(data, offset)


def long_term_key(username: str, realm: str, password: str, algorithm: str | int = "md5") -> bytes:
    """The long-term credential key (RFC 8489 §9.2.2): MD5 or SHA-256 of
    ``"username:realm:password"``. ``algorithm`` is ``"md5"``/``"sha256"`` or a
    PASSWORD-ALGORITHM value. The strings are used as given: apply OpaqueString (or, for
    RFC 5389 peers, SASLprep) to the password beforehand if needed."""
    try:
        hash_function = _ALGORITHMS[algorithm.lower() if isinstance(algorithm, str) else algorithm]
    except KeyError:
        raise ValueError(f"unknown password algorithm {algorithm!r}") from None
    return hash_function(f"{username}:{realm}:{password}".encode()).digest()


def short_term_key(password: str) -> bytes:
    """The short-term credential key (RFC 8489 §9.1.1): the password itself, UTF-8 encoded.

    ICE passwords are ASCII, so no OpaqueString processing applies.
    """
    return password.encode("utf-8")


def userhash(username: str, realm: str) -> bytes:
    """USERHASH's value (RFC 8489 §14.4): SHA-256 of ``"username:realm"``."""
    return hashlib.sha256(f"{username}:{realm}".encode()).digest()
