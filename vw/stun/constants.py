"""STUN/TURN numbers: magic cookie, message classes and methods, attribute types, error codes."""

from __future__ import annotations

from enum import IntEnum

#: The fixed 32-bit value in every RFC 5389/8489 STUN header.
MAGIC_COOKIE = 0x2112A442
MAGIC_COOKIE_BYTES = MAGIC_COOKIE.to_bytes(4, "big")

#: XORed into FINGERPRINT's CRC-32 (RFC 8489 §14.7): "STUN" in ASCII.
FINGERPRINT_XOR = 0x5354554E

HEADER_LENGTH = 20
TRANSACTION_ID_LENGTH = 12

#: Longest STUN message: a 20-byte header and a 16-bit length.
MAX_MESSAGE_SIZE = HEADER_LENGTH + 0xFFFF

#: Address families of the address attributes and of REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.8).
FAMILY_IPV4 = 0x01
FAMILY_IPV6 = 0x02

#: REQUESTED-TRANSPORT protocol numbers (RFC 8656 §18.11, RFC 6062).
TRANSPORT_UDP = 17
TRANSPORT_TCP = 6

#: PASSWORD-ALGORITHM(S) values (RFC 8489 §18.5).
PASSWORD_ALGORITHM_MD5 = 0x0001
PASSWORD_ALGORITHM_SHA256 = 0x0002

#: Valid TURN channel numbers (RFC 8656 §12).
CHANNEL_MIN = 0x4000
CHANNEL_MAX = 0x4FFF
#: The last channel number of RFC 5766, which coturn's clients still use; a ChannelData
#: frame's first two bits (01) leave room for it.
CHANNEL_MAX_RFC5766 = 0x7FFF


class MessageClass(IntEnum):
    """The two class bits of the message type (RFC 8489 §5)."""

    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS = 0b10
    ERROR = 0b11


class Method(IntEnum):
    """STUN methods (RFC 8489 §18.2, RFC 8656 §17, RFC 6062 §6.1)."""

    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009
    CONNECT = 0x00A
    CONNECTION_BIND = 0x00B
    CONNECTION_ATTEMPT = 0x00C


class AttributeType(IntEnum):
    """Attribute types this package parses (IANA "STUN Attributes" registry)."""

    MAPPED_ADDRESS = 0x0001
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    CHANNEL_NUMBER = 0x000C
    LIFETIME = 0x000D
    XOR_PEER_ADDRESS = 0x0012
    DATA = 0x0013
    REALM = 0x0014
    NONCE = 0x0015
    XOR_RELAYED_ADDRESS = 0x0016
    REQUESTED_ADDRESS_FAMILY = 0x0017
    EVEN_PORT = 0x0018
    REQUESTED_TRANSPORT = 0x0019
    DONT_FRAGMENT = 0x001A
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    PASSWORD_ALGORITHM = 0x001D
    USERHASH = 0x001E
    XOR_MAPPED_ADDRESS = 0x0020
    RESERVATION_TOKEN = 0x0022
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    CONNECTION_ID = 0x002A
    ADDITIONAL_ADDRESS_FAMILY = 0x8000
    ADDRESS_ERROR_CODE = 0x8001
    PASSWORD_ALGORITHMS = 0x8002
    ICMP = 0x8004
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    FINGERPRINT = 0x8028
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A


def is_comprehension_required(attr_type: int) -> bool:
    """Types 0x0000-0x7FFF must be understood, or the request is answered 420 (RFC 8489 §14)."""
    return attr_type < 0x8000


#: Reason phrases for the error codes of RFC 8489 §14.8, RFC 8656 §19, RFC 6062 §6.3, RFC 8445.
ERROR_REASONS: dict[int, str] = {
    300: "Try Alternate",
    400: "Bad Request",
    401: "Unauthenticated",
    403: "Forbidden",
    405: "Mobility Forbidden",
    420: "Unknown Attribute",
    437: "Allocation Mismatch",
    438: "Stale Nonce",
    440: "Address Family not Supported",
    441: "Wrong Credentials",
    442: "Unsupported Transport Protocol",
    443: "Peer Address Family Mismatch",
    446: "Connection Already Exists",
    447: "Connection Timeout or Failure",
    486: "Allocation Quota Reached",
    487: "Role Conflict",
    500: "Server Error",
    508: "Insufficient Capacity",
}
