"""STUN attributes as small frozen dataclasses.

Each class has a class-level ``type`` (its attribute type), ``decode(value, transaction_id)``
building it from the attribute's value bytes (no header, no padding) and ``encode(transaction_id)``
giving those bytes back. The transaction id is only used by the XOR-address attributes.

Decoding is strict: a wrong length or an out-of-range field raises :class:`AttributeFormatError`
(answered with 400). Values a server must answer with another code are kept as they are: an
unknown REQUESTED-ADDRESS-FAMILY (440) or REQUESTED-TRANSPORT (442) parses.
Attributes this package does not know become :class:`RawAttribute`.

Text attributes are :class:`str` (UTF-8 on the wire). Nothing here applies SASLprep/OpaqueString:
callers compare and hash the strings as received.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from vw.stun.constants import (
    ERROR_REASONS,
    FAMILY_IPV4,
    FAMILY_IPV6,
    MAGIC_COOKIE,
    MAGIC_COOKIE_BYTES,
    PASSWORD_ALGORITHM_MD5,
    PASSWORD_ALGORITHM_SHA256,
    AttributeType,
)
from vw.stun.errors import AttributeFormatError

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_ADDRESS_HEAD = struct.Struct("!xBH")  # reserved, family, port
_COOKIE_HIGH = MAGIC_COOKIE >> 16

#: Longest USERNAME value (RFC 5389 §15.3; RFC 8489 lowers it to 508 bytes for senders).
MAX_USERNAME_BYTES = 513
#: Longest REALM, NONCE, SOFTWARE and reason phrase: fewer than 128 characters, which RFC 8489
#: says "can be as long as 763 bytes when decoding" (only the byte count is checked).
MAX_TEXT_BYTES = 763


class Attribute:
    """Base of every attribute."""

    __slots__ = ()

    #: The attribute type on the wire.
    type: ClassVar[int]

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        """Build the attribute from its value bytes; raise :class:`AttributeFormatError`."""
        raise NotImplementedError

    def encode(self, transaction_id: bytes) -> bytes:
        """The attribute's value bytes (unpadded)."""
        raise NotImplementedError


def _fail(cls: type[Attribute], reason: str) -> AttributeFormatError:
    return AttributeFormatError(cls.type, reason)


def _expect_length(cls: type[Attribute], value: bytes, length: int) -> None:
    if len(value) != length:
        raise _fail(cls, f"value is {len(value)} bytes, not {length}")


def _check_int(cls: type[Attribute], name: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise _fail(cls, f"{name} {value} out of range 0..{maximum}")


def _decode_text(cls: type[Attribute], value: bytes, limit: int) -> str:
    if len(value) > limit:
        raise _fail(cls, f"value is {len(value)} bytes, more than {limit}")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(cls, "value is not UTF-8") from None


def _encode_text(cls: type[Attribute], text: str, limit: int) -> bytes:
    data = text.encode("utf-8")
    if len(data) > limit:
        raise _fail(cls, f"value is {len(data)} bytes, more than {limit}")
    return data


# --- addresses (RFC 8489 §14.1, §14.2; RFC 8656 §18.3, §18.5) --------------------------------


def _pack_host(cls: type[Attribute], host: str) -> tuple[int, bytes]:
    try:
        return FAMILY_IPV4, socket.inet_pton(socket.AF_INET, host)
    except OSError:
        pass
    try:
        return FAMILY_IPV6, socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        raise _fail(cls, f"{host!r} is not an IPv4 or IPv6 address") from None


def _unpack_address(cls: type[Attribute], value: bytes) -> tuple[int, int, bytes]:
    """Family, port and raw address bytes of an address attribute value."""
    if len(value) < 4:
        raise _fail(cls, f"value is {len(value)} bytes, too short for an address")
    family, port = _ADDRESS_HEAD.unpack_from(value)
    if family == FAMILY_IPV4:
        _expect_length(cls, value, 8)
    elif family == FAMILY_IPV6:
        _expect_length(cls, value, 20)
    else:
        raise _fail(cls, f"unknown address family 0x{family:02x}")
    return family, port, value[4:]


def _xor(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    return (int.from_bytes(data, "big") ^ int.from_bytes(mask[:n], "big")).to_bytes(n, "big")


@dataclass(frozen=True, slots=True)
class _Address(Attribute):
    """An IP address and port, in the clear."""

    host: str
    port: int

    def __post_init__(self) -> None:
        _check_int(type(self), "port", self.port, 0xFFFF)

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``, as a socket address."""
        return (self.host, self.port)

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        family, port, raw = _unpack_address(cls, value)
        af = socket.AF_INET if family == FAMILY_IPV4 else socket.AF_INET6
        return cls(socket.inet_ntop(af, raw), port)

    def encode(self, transaction_id: bytes) -> bytes:
        family, raw = _pack_host(type(self), self.host)
        return _ADDRESS_HEAD.pack(family, self.port) + raw


@dataclass(frozen=True, slots=True)
class _XorAddress(_Address):
    """An address XORed with the magic cookie (and the transaction id, for IPv6)."""

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        family, port, raw = _unpack_address(cls, value)
        raw = _xor(raw, MAGIC_COOKIE_BYTES + transaction_id)
        af = socket.AF_INET if family == FAMILY_IPV4 else socket.AF_INET6
        return cls(socket.inet_ntop(af, raw), port ^ _COOKIE_HIGH)

    def encode(self, transaction_id: bytes) -> bytes:
        family, raw = _pack_host(type(self), self.host)
        raw = _xor(raw, MAGIC_COOKIE_BYTES + transaction_id)
        return _ADDRESS_HEAD.pack(family, self.port ^ _COOKIE_HIGH) + raw


@dataclass(frozen=True, slots=True)
class MappedAddress(_Address):
    """MAPPED-ADDRESS (RFC 8489 §14.1): the reflexive address, for RFC 3489 clients."""

    type: ClassVar[int] = AttributeType.MAPPED_ADDRESS


@dataclass(frozen=True, slots=True)
class AlternateServer(_Address):
    """ALTERNATE-SERVER (RFC 8489 §14.15): where to retry after a 300 (Try Alternate)."""

    type: ClassVar[int] = AttributeType.ALTERNATE_SERVER


@dataclass(frozen=True, slots=True)
class XorMappedAddress(_XorAddress):
    """XOR-MAPPED-ADDRESS (RFC 8489 §14.2): the reflexive transport address."""

    type: ClassVar[int] = AttributeType.XOR_MAPPED_ADDRESS


@dataclass(frozen=True, slots=True)
class XorPeerAddress(_XorAddress):
    """XOR-PEER-ADDRESS (RFC 8656 §18.3): a peer's address, as the TURN server sees it."""

    type: ClassVar[int] = AttributeType.XOR_PEER_ADDRESS


@dataclass(frozen=True, slots=True)
class XorRelayedAddress(_XorAddress):
    """XOR-RELAYED-ADDRESS (RFC 8656 §18.5): the relayed transport address allocated."""

    type: ClassVar[int] = AttributeType.XOR_RELAYED_ADDRESS


# --- text ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Text(Attribute):
    value: str

    max_bytes: ClassVar[int] = MAX_TEXT_BYTES

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        return cls(_decode_text(cls, value, cls.max_bytes))

    def encode(self, transaction_id: bytes) -> bytes:
        return _encode_text(type(self), self.value, self.max_bytes)


@dataclass(frozen=True, slots=True)
class Username(_Text):
    """USERNAME (RFC 8489 §14.3); for ICE ``"<receiver ufrag>:<sender ufrag>"``."""

    type: ClassVar[int] = AttributeType.USERNAME
    max_bytes: ClassVar[int] = MAX_USERNAME_BYTES


@dataclass(frozen=True, slots=True)
class Realm(_Text):
    """REALM (RFC 8489 §14.9)."""

    type: ClassVar[int] = AttributeType.REALM


@dataclass(frozen=True, slots=True)
class Nonce(_Text):
    """NONCE (RFC 8489 §14.10)."""

    type: ClassVar[int] = AttributeType.NONCE


@dataclass(frozen=True, slots=True)
class Software(_Text):
    """SOFTWARE (RFC 8489 §14.14)."""

    type: ClassVar[int] = AttributeType.SOFTWARE


# --- opaque bytes ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Bytes(Attribute):
    value: bytes

    #: Required value length, or None for any.
    length: ClassVar[int | None] = None

    def __post_init__(self) -> None:
        if self.length is not None and len(self.value) != self.length:
            raise _fail(type(self), f"value is {len(self.value)} bytes, not {self.length}")

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        return cls(value)

    def encode(self, transaction_id: bytes) -> bytes:
        return self.value


@dataclass(frozen=True, slots=True)
class Data(_Bytes):
    """DATA (RFC 8656 §18.4): the application data of a Send or Data indication."""

    type: ClassVar[int] = AttributeType.DATA


@dataclass(frozen=True, slots=True)
class Userhash(_Bytes):
    """USERHASH (RFC 8489 §14.4): SHA-256 of ``"username:realm"``; see ``vw.stun.userhash``."""

    type: ClassVar[int] = AttributeType.USERHASH
    length: ClassVar[int | None] = 32


@dataclass(frozen=True, slots=True)
class ReservationToken(_Bytes):
    """RESERVATION-TOKEN (RFC 8656 §18.9): names a port reserved with EVEN-PORT."""

    type: ClassVar[int] = AttributeType.RESERVATION_TOKEN
    length: ClassVar[int | None] = 8


@dataclass(frozen=True, slots=True)
class MessageIntegrity(_Bytes):
    """MESSAGE-INTEGRITY (RFC 8489 §14.5): HMAC-SHA1 of the message before it."""

    type: ClassVar[int] = AttributeType.MESSAGE_INTEGRITY
    length: ClassVar[int | None] = 20


@dataclass(frozen=True, slots=True)
class MessageIntegritySha256(_Bytes):
    """MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6): HMAC-SHA256, possibly truncated to 16..32."""

    type: ClassVar[int] = AttributeType.MESSAGE_INTEGRITY_SHA256

    def __post_init__(self) -> None:
        n = len(self.value)
        if n < 16 or n > 32 or n % 4:
            raise _fail(type(self), f"value is {n} bytes, not a multiple of 4 in 16..32")


# --- empty (flags) ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Flag(Attribute):
    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        _expect_length(cls, value, 0)
        return cls()

    def encode(self, transaction_id: bytes) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class UseCandidate(_Flag):
    """USE-CANDIDATE (RFC 8445 §7.1.2): the controlling agent nominates this pair."""

    type: ClassVar[int] = AttributeType.USE_CANDIDATE


@dataclass(frozen=True, slots=True)
class DontFragment(_Flag):
    """DONT-FRAGMENT (RFC 8656 §18.7): set DF on the relayed UDP datagram."""

    type: ClassVar[int] = AttributeType.DONT_FRAGMENT


# --- integers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Uint32(Attribute):
    value: int

    def __post_init__(self) -> None:
        _check_int(type(self), "value", self.value, 0xFFFFFFFF)

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        _expect_length(cls, value, 4)
        return cls(_U32.unpack(value)[0])

    def encode(self, transaction_id: bytes) -> bytes:
        return _U32.pack(self.value)


@dataclass(frozen=True, slots=True)
class _Uint64(Attribute):
    value: int

    def __post_init__(self) -> None:
        _check_int(type(self), "value", self.value, 0xFFFFFFFFFFFFFFFF)

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        _expect_length(cls, value, 8)
        return cls(_U64.unpack(value)[0])

    def encode(self, transaction_id: bytes) -> bytes:
        return _U64.pack(self.value)


@dataclass(frozen=True, slots=True)
class Priority(_Uint32):
    """PRIORITY (RFC 8445 §7.1.1): the peer-reflexive candidate's priority."""

    type: ClassVar[int] = AttributeType.PRIORITY


@dataclass(frozen=True, slots=True)
class Lifetime(_Uint32):
    """LIFETIME (RFC 8656 §18.2): seconds until an allocation expires."""

    type: ClassVar[int] = AttributeType.LIFETIME


@dataclass(frozen=True, slots=True)
class ConnectionId(_Uint32):
    """CONNECTION-ID (RFC 6062 §6.2.1): names a TCP connection to a peer."""

    type: ClassVar[int] = AttributeType.CONNECTION_ID


@dataclass(frozen=True, slots=True)
class Fingerprint(_Uint32):
    """FINGERPRINT (RFC 8489 §14.7): CRC-32 of the message before it, XOR 0x5354554E."""

    type: ClassVar[int] = AttributeType.FINGERPRINT


@dataclass(frozen=True, slots=True)
class IceControlled(_Uint64):
    """ICE-CONTROLLED (RFC 8445 §7.1.3): the sender is controlled; value is its tie-breaker."""

    type: ClassVar[int] = AttributeType.ICE_CONTROLLED


@dataclass(frozen=True, slots=True)
class IceControlling(_Uint64):
    """ICE-CONTROLLING (RFC 8445 §7.1.3): the sender is controlling; value is its tie-breaker."""

    type: ClassVar[int] = AttributeType.ICE_CONTROLLING


# --- structured --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelNumber(Attribute):
    """CHANNEL-NUMBER (RFC 8656 §18.1). Any 16-bit number parses: ChannelBind checks the range."""

    type: ClassVar[int] = AttributeType.CHANNEL_NUMBER

    value: int

    def __post_init__(self) -> None:
        _check_int(type(self), "channel", self.value, 0xFFFF)

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        _expect_length(cls, value, 4)
        return cls(_U16.unpack_from(value)[0])

    def encode(self, transaction_id: bytes) -> bytes:
        return _U16.pack(self.value) + b"\x00\x00"


@dataclass(frozen=True, slots=True)
class _FamilyByte(Attribute):
    family: int

    def __post_init__(self) -> None:
        _check_int(type(self), "family", self.family, 0xFF)

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        _expect_length(cls, value, 4)
        return cls(value[0])

    def encode(self, transaction_id: bytes) -> bytes:
        return bytes((self.family, 0, 0, 0))


@dataclass(frozen=True, slots=True)
class RequestedAddressFamily(_FamilyByte):
    """REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.8): 0x01 IPv4, 0x02 IPv6 (others: answer 440)."""

    type: ClassVar[int] = AttributeType.REQUESTED_ADDRESS_FAMILY


@dataclass(frozen=True, slots=True)
class AdditionalAddressFamily(_FamilyByte):
    """ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.12): also allocate IPv6 (0x02)."""

    type: ClassVar[int] = AttributeType.ADDITIONAL_ADDRESS_FAMILY


@dataclass(frozen=True, slots=True)
class RequestedTransport(Attribute):
    """REQUESTED-TRANSPORT (RFC 8656 §18.11): 17 (UDP) or, per RFC 6062, 6 (TCP)."""

    type: ClassVar[int] = AttributeType.REQUESTED_TRANSPORT

    protocol: int

    def __post_init__(self) -> None:
        _check_int(type(self), "protocol", self.protocol, 0xFF)

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        _expect_length(cls, value, 4)
        return cls(value[0])

    def encode(self, transaction_id: bytes) -> bytes:
        return bytes((self.protocol, 0, 0, 0))


@dataclass(frozen=True, slots=True)
class EvenPort(Attribute):
    """EVEN-PORT (RFC 8656 §18.6): allocate an even port; ``reserve`` the next one too."""

    type: ClassVar[int] = AttributeType.EVEN_PORT

    reserve: bool = False

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        _expect_length(cls, value, 1)
        return cls(bool(value[0] & 0x80))

    def encode(self, transaction_id: bytes) -> bytes:
        return b"\x80" if self.reserve else b"\x00"


def _check_error_code(cls: type[Attribute], code: int) -> None:
    if not 300 <= code <= 699:
        raise _fail(cls, f"error code {code} out of range 300..699")


def _decode_error(cls: type[Attribute], value: bytes) -> tuple[int, str]:
    """Code and reason of an ERROR-CODE-shaped value (after its first 2 bytes)."""
    if len(value) < 4:
        raise _fail(cls, f"value is {len(value)} bytes, fewer than 4")
    error_class = value[2] & 0x07
    number = value[3]
    if not 3 <= error_class <= 6 or number > 99:
        raise _fail(cls, f"bad error class {error_class} / number {number}")
    return error_class * 100 + number, _decode_text(cls, value[4:], MAX_TEXT_BYTES)


@dataclass(frozen=True, slots=True)
class ErrorCode(Attribute):
    """ERROR-CODE (RFC 8489 §14.8): a code in 300..699 and a reason phrase."""

    type: ClassVar[int] = AttributeType.ERROR_CODE

    code: int
    reason: str = ""

    def __post_init__(self) -> None:
        _check_error_code(type(self), self.code)

    @classmethod
    def from_code(cls, code: int) -> Self:
        """The error with its standard reason phrase (empty for codes without one)."""
        return cls(code, ERROR_REASONS.get(code, ""))

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        return cls(*_decode_error(cls, value))

    def encode(self, transaction_id: bytes) -> bytes:
        reason = _encode_text(type(self), self.reason, MAX_TEXT_BYTES)
        return bytes((0, 0, self.code // 100, self.code % 100)) + reason


@dataclass(frozen=True, slots=True)
class AddressErrorCode(Attribute):
    """ADDRESS-ERROR-CODE (RFC 8656 §18.13): why one address family was not allocated."""

    type: ClassVar[int] = AttributeType.ADDRESS_ERROR_CODE

    family: int
    code: int
    reason: str = ""

    def __post_init__(self) -> None:
        _check_int(type(self), "family", self.family, 0xFF)
        _check_error_code(type(self), self.code)

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        code, reason = _decode_error(cls, value)
        return cls(value[0], code, reason)

    def encode(self, transaction_id: bytes) -> bytes:
        reason = _encode_text(type(self), self.reason, MAX_TEXT_BYTES)
        return bytes((self.family, 0, self.code // 100, self.code % 100)) + reason


@dataclass(frozen=True, slots=True)
class UnknownAttributes(Attribute):
    """UNKNOWN-ATTRIBUTES (RFC 8489 §14.13): the types that earned a 420."""

    type: ClassVar[int] = AttributeType.UNKNOWN_ATTRIBUTES

    types: tuple[int, ...]

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        if len(value) % 2:
            raise _fail(cls, f"value is {len(value)} bytes, an odd number")
        return cls(struct.unpack(f"!{len(value) // 2}H", value))

    def encode(self, transaction_id: bytes) -> bytes:
        for t in self.types:
            _check_int(type(self), "type", t, 0xFFFF)
        return struct.pack(f"!{len(self.types)}H", *self.types)


@dataclass(frozen=True, slots=True)
class PasswordAlgorithm(Attribute):
    """PASSWORD-ALGORITHM (RFC 8489 §14.12): 0x0001 MD5 or 0x0002 SHA-256, and parameters."""

    type: ClassVar[int] = AttributeType.PASSWORD_ALGORITHM

    MD5: ClassVar[int] = PASSWORD_ALGORITHM_MD5
    SHA256: ClassVar[int] = PASSWORD_ALGORITHM_SHA256

    algorithm: int
    parameters: bytes = b""

    def __post_init__(self) -> None:
        _check_int(type(self), "algorithm", self.algorithm, 0xFFFF)
        _check_int(type(self), "parameters length", len(self.parameters), 0xFFFF)

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        algorithms = _decode_algorithms(cls, value)
        if len(algorithms) != 1:
            raise _fail(cls, "value is not exactly one algorithm")
        return cls(algorithms[0].algorithm, algorithms[0].parameters)

    def encode(self, transaction_id: bytes) -> bytes:
        return _encode_algorithm(self)


def _decode_algorithms(cls: type[Attribute], value: bytes) -> list[PasswordAlgorithm]:
    result = []
    pos, end = 0, len(value)
    while pos < end:
        if pos + 4 > end:
            raise _fail(cls, "truncated algorithm entry")
        algorithm, length = struct.unpack_from("!HH", value, pos)
        pos += 4
        if pos + length > end:
            raise _fail(cls, "algorithm parameters run past the value")
        result.append(PasswordAlgorithm(algorithm, value[pos : pos + length]))
        # Parameters are padded to 4 bytes; the last entry's padding is the attribute's.
        pos = min(pos + ((length + 3) & ~3), end)
    return result


def _encode_algorithm(entry: PasswordAlgorithm) -> bytes:
    n = len(entry.parameters)
    return struct.pack("!HH", entry.algorithm, n) + entry.parameters + bytes(-n & 3)


@dataclass(frozen=True, slots=True)
class PasswordAlgorithms(Attribute):
    """PASSWORD-ALGORITHMS (RFC 8489 §14.11): the algorithms a server offers, preferred first."""

    type: ClassVar[int] = AttributeType.PASSWORD_ALGORITHMS

    algorithms: tuple[PasswordAlgorithm, ...]

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        return cls(tuple(_decode_algorithms(cls, value)))

    def encode(self, transaction_id: bytes) -> bytes:
        return b"".join(_encode_algorithm(entry) for entry in self.algorithms)


@dataclass(frozen=True, slots=True)
class Icmp(Attribute):
    """ICMP (RFC 8656 §18.14): an ICMP error on the relayed path (7-bit type, 9-bit code)."""

    type: ClassVar[int] = AttributeType.ICMP

    icmp_type: int
    icmp_code: int
    error_data: int = 0

    def __post_init__(self) -> None:
        _check_int(type(self), "ICMP type", self.icmp_type, 0x7F)
        _check_int(type(self), "ICMP code", self.icmp_code, 0x1FF)
        _check_int(type(self), "error data", self.error_data, 0xFFFFFFFF)

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        _expect_length(cls, value, 8)
        type_code, data = struct.unpack_from("!2xHI", value)
        return cls(type_code >> 9, type_code & 0x1FF, data)

    def encode(self, transaction_id: bytes) -> bytes:
        return struct.pack("!2xHI", self.icmp_type << 9 | self.icmp_code, self.error_data)


@dataclass(frozen=True, slots=True)
class RawAttribute(Attribute):
    """An attribute this package does not parse, kept as its type and value bytes."""

    type: int  # type: ignore[misc]  # an instance field here, a class constant elsewhere
    value: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.type <= 0xFFFF:
            raise ValueError(f"attribute type {self.type} out of range 0..0xffff")

    @classmethod
    def decode(cls, value: bytes, transaction_id: bytes) -> Self:
        raise TypeError("RawAttribute has no fixed type: build it with RawAttribute(type, value)")

    def encode(self, transaction_id: bytes) -> bytes:
        return self.value


#: The attribute classes by type, for the parser.
ATTRIBUTE_CLASSES: dict[int, type[Attribute]] = {
    cls.type: cls
    for cls in (
        MappedAddress,
        Username,
        MessageIntegrity,
        ErrorCode,
        UnknownAttributes,
        ChannelNumber,
        Lifetime,
        XorPeerAddress,
        Data,
        Realm,
        Nonce,
        XorRelayedAddress,
        RequestedAddressFamily,
        EvenPort,
        RequestedTransport,
        DontFragment,
        MessageIntegritySha256,
        PasswordAlgorithm,
        Userhash,
        XorMappedAddress,
        ReservationToken,
        Priority,
        UseCandidate,
        ConnectionId,
        AdditionalAddressFamily,
        AddressErrorCode,
        PasswordAlgorithms,
        Icmp,
        Software,
        AlternateServer,
        Fingerprint,
        IceControlled,
        IceControlling,
    )
}
