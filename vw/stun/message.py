"""STUN messages (RFC 8489 §5, §6): parse a datagram, build one with integrity and fingerprint."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from vw.stun import wire
from vw.stun.attributes import (
    ATTRIBUTE_CLASSES,
    Attribute,
    ErrorCode,
    RawAttribute,
)
from vw.stun.constants import (
    ERROR_REASONS,
    HEADER_LENGTH,
    MAGIC_COOKIE,
    MAGIC_COOKIE_BYTES,
    TRANSACTION_ID_LENGTH,
    MessageClass,
    Method,
    is_comprehension_required,
)

A = TypeVar("A", bound=Attribute)

_METHODS: dict[int, Method] = {m.value: m for m in Method}
_CLASSES: tuple[MessageClass, ...] = tuple(MessageClass)
_INTEGRITY_TYPES = (wire.MI, wire.MI_SHA256)
_TRAILER_TYPES = (wire.MI, wire.MI_SHA256, wire.FINGERPRINT)


def new_transaction_id() -> bytes:
    """A random 96-bit transaction id."""
    return os.urandom(TRANSACTION_ID_LENGTH)


def is_stun(data: bytes) -> bool:
    """Whether a datagram looks like STUN (RFC 7983: first byte 0..3, then the magic cookie).

    A quick demultiplexing test, not a validation: :meth:`Message.parse` may still refuse it.
    """
    return len(data) >= HEADER_LENGTH and data[0] < 4 and data[4:8] == MAGIC_COOKIE_BYTES


@dataclass
class Message:
    """A STUN message: class, method, transaction id and attributes in wire order.

    Parsed messages keep every attribute, including MESSAGE-INTEGRITY, FINGERPRINT and those a
    receiver must ignore after MESSAGE-INTEGRITY; :meth:`get` skips the latter. ``raw`` is the
    datagram a message was parsed from (what :func:`vw.stun.check_integrity` checks).
    """

    method: int
    message_class: MessageClass
    transaction_id: bytes = field(default_factory=new_transaction_id)
    attributes: list[Attribute] = field(default_factory=list)
    raw: bytes | None = field(default=None, compare=False, repr=False)
    #: (attributes, their count, the heeded ones): computed once per attribute list.
    _heeded: tuple[list[Attribute], int, list[Attribute]] | None = field(
        default=None, init=False, compare=False, repr=False)
    #: The bytes parsed and the (type, value offset, length) of each attribute in them, as
    #: :func:`wire.walk` gives: good while ``raw`` is those bytes.
    layout: tuple[bytes, list[tuple[int, int, int]]] | None = field(
        default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.method <= 0xFFF:
            raise ValueError(f"method {self.method} out of range 0..0xfff")
        if len(self.transaction_id) != TRANSACTION_ID_LENGTH:
            raise ValueError(f"transaction id is {len(self.transaction_id)} bytes, not 12")

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> Message:
        """Parse one STUN message, which must fill ``data`` exactly.

        Raises a :class:`~vw.stun.StunError` subclass: :class:`TruncatedError`,
        :class:`HeaderError`, :class:`AttributeOverrunError` or :class:`AttributeFormatError`.
        Unknown attributes become :class:`RawAttribute` (see
        :meth:`unknown_comprehension_required`).
        """
        if type(data) is not bytes:
            data = bytes(data)
        message_type, transaction_id = wire.check_header(data)
        classes = ATTRIBUTE_CLASSES
        attributes: list[Attribute] = []
        layout = list(wire.walk(data))
        for attr_type, offset, length in layout:
            value = data[offset : offset + length]
            decoder = classes.get(attr_type)
            if decoder is None:
                attributes.append(RawAttribute(attr_type, value))
            else:
                attributes.append(decoder.decode(value, transaction_id))
        method, message_class = wire.decode_type(message_type)
        message = cls(
            _METHODS.get(method, method),
            _CLASSES[message_class],
            transaction_id,
            attributes,
            data,
        )
        message.layout = (data, layout)
        return message

    # --- reading -------------------------------------------------------------------------

    def get(self, kind: type[A]) -> A | None:
        """The first attribute of a class a receiver heeds (see :meth:`effective_attributes`)."""
        for attribute in self.effective_attributes():
            if isinstance(attribute, kind):
                return attribute  # type: ignore[return-value]
        return None

    def get_all(self, kind: type[A]) -> list[A]:
        """Every heeded attribute of a class (TURN repeats XOR-PEER-ADDRESS, for one)."""
        return [a for a in self.effective_attributes() if isinstance(a, kind)]

    def effective_attributes(self) -> list[Attribute]:
        """The attributes a receiver heeds: those before MESSAGE-INTEGRITY(-SHA256), the
        integrity attributes themselves and FINGERPRINT (RFC 8489 §14.5, §14.6). Worked out
        once for a list of attributes (a server asks for many of one request's)."""
        attributes = self.attributes
        heeded = self._heeded
        if heeded is None or heeded[0] is not attributes or heeded[1] != len(attributes):
            chosen = [attributes[i] for i in wire.effective([a.type for a in attributes])]
            self._heeded = heeded = (attributes, len(attributes), chosen)
        return heeded[2]

    @property
    def attributes_before_integrity(self) -> list[Attribute]:
        """The attributes before the first MESSAGE-INTEGRITY(-SHA256): those it protects."""
        for index, attribute in enumerate(self.attributes):
            if attribute.type in _INTEGRITY_TYPES:
                return self.attributes[:index]
        return list(self.attributes)

    def unknown_comprehension_required(self) -> list[int]:
        """Heeded attribute types in 0x0000-0x7FFF that were not understood, in order and
        without repeats: a server answers a request carrying any with 420 (RFC 8489 §6.3.1)."""
        types: list[int] = []
        for attribute in self.effective_attributes():
            attr_type = attribute.type
            if (
                isinstance(attribute, RawAttribute)
                and is_comprehension_required(attr_type)
                and attr_type not in types
            ):
                types.append(attr_type)
        return types

    # --- answering -----------------------------------------------------------------------

    def success_response(self, *attributes: Attribute) -> Message:
        """A success response to this request: same method and transaction id."""
        return Message(self.method, MessageClass.SUCCESS, self.transaction_id, list(attributes))

    def error_response(
        self, code: int, *attributes: Attribute, reason: str | None = None
    ) -> Message:
        """An error response: ERROR-CODE (with the standard reason by default) then
        ``attributes`` (UNKNOWN-ATTRIBUTES for a 420, REALM and NONCE for a 401...)."""
        error = ErrorCode(code, ERROR_REASONS.get(code, "") if reason is None else reason)
        return Message(self.method, MessageClass.ERROR, self.transaction_id, [error, *attributes])

    # --- writing -------------------------------------------------------------------------

    def __bytes__(self) -> bytes:
        return self.bytes()

    def bytes(
        self,
        integrity_key: bytes | None = None,
        *,
        sha256: bool = False,
        fingerprint: bool = False,
    ) -> bytes:
        """Serialize; with ``integrity_key``, append MESSAGE-INTEGRITY (or, with ``sha256``,
        MESSAGE-INTEGRITY-SHA256); with ``fingerprint``, append FINGERPRINT last.

        When adding integrity, any MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT already in
        :attr:`attributes` are left out; when adding only a fingerprint, any FINGERPRINT is.
        Without arguments the attributes are written as they are (a parsed message comes out as
        it came in, but for padding bytes, which are written as zeros).
        """
        attributes: Iterable[Attribute] = self.attributes
        if integrity_key is not None:
            attributes = [a for a in attributes if a.type not in _TRAILER_TYPES]
        elif fingerprint:
            attributes = [a for a in attributes if a.type != wire.FINGERPRINT]
        transaction_id = self.transaction_id
        body = bytearray()
        for attribute in attributes:
            _append(body, attribute.type, attribute.encode(transaction_id))
        message_type = wire.encode_type(self.method, self.message_class)
        data = bytearray(wire.HEADER.pack(message_type, 0, MAGIC_COOKIE, transaction_id))
        data += body
        if integrity_key is not None:
            attr_type, length = (wire.MI_SHA256, 32) if sha256 else (wire.MI, 20)
            offset = len(data) + 4
            mac = wire.integrity_digest(data, offset, length, integrity_key, sha256)
            _append(data, attr_type, mac)
        if fingerprint:
            offset = len(data) + 4
            _set_length(data, offset + 4)
            _append(data, wire.FINGERPRINT, wire.U32.pack(wire.fingerprint_value(data, offset)))
        _set_length(data, len(data))
        return bytes(data)


def _append(data: bytearray, attr_type: int, value: bytes) -> None:
    length = len(value)
    if length > 0xFFFF:
        raise ValueError(f"attribute 0x{attr_type:04x} value is {length} bytes, over 65535")
    data += wire.ATTRIBUTE_HEADER.pack(attr_type, length)
    data += value
    data += bytes(-length & 3)


def _set_length(data: bytearray, end: int) -> None:
    """Set the header length for a message ending at ``end``."""
    length = end - HEADER_LENGTH
    if length > 0xFFFF:
        raise ValueError(f"message body is {length} bytes, over 65535")
    wire.U16.pack_into(data, 2, length)
