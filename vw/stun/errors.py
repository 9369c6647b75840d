"""Errors raised for malformed STUN, TURN and ChannelData input.

Every one is a :class:`StunError`, itself a :class:`ValueError`. ``code`` is the STUN error code
(RFC 8489 §14.8) a server answers a malformed request with: 400 (Bad Request) for all of them.
(An unknown comprehension-required attribute is not a parse error: see
:meth:`vw.stun.Message.unknown_comprehension_required`, answered with 420.)
"""

from __future__ import annotations

from vw.stun.constants import AttributeType


class StunError(ValueError):
    """Malformed STUN/TURN input."""

    #: The error code a server answers with (RFC 8489 §14.8).
    code: int = 400


class TruncatedError(StunError):
    """Fewer bytes than a header needs, or than a length field announces."""


class HeaderError(StunError):
    """A bad STUN header: leading bits, magic cookie, or message length."""


class AttributeFormatError(StunError):
    """An attribute that does not parse: wrong length, bad value, limits exceeded."""

    def __init__(self, attr_type: int, reason: str) -> None:
        self.attr_type = attr_type
        super().__init__(f"{attribute_name(attr_type)}: {reason}")


class AttributeOverrunError(AttributeFormatError):
    """An attribute whose length runs past the end of the message."""


class ChannelDataError(StunError):
    """A ChannelData message (RFC 8656 §12.4) with a bad channel number or length."""


class StreamError(StunError):
    """A TCP/TLS byte stream that does not split into STUN messages and ChannelData frames."""


def attribute_name(attr_type: int) -> str:
    """``USERNAME`` for 0x0006, ``0xc057`` for an attribute this package does not know."""
    try:
        return AttributeType(attr_type).name.replace("_", "-")
    except ValueError:
        return f"0x{attr_type:04x}"
