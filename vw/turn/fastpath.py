"""Send and Data indications on the relay path without the general STUN codec.

A Send indication of the usual form (XOR-PEER-ADDRESS with an IPv4 address and DATA, in
either order, perhaps DONT-FRAGMENT, which a Send indication may carry and the server
ignores, then perhaps a FINGERPRINT that checks) is read here in a few slices; anything
else is left to :meth:`vw.stun.Message.parse`, which decides as before. Data indications to
clients of IPv4 peers are written here too; the rest by :class:`vw.stun.Message`.
"""

from __future__ import annotations

import os
import socket
import struct

from vw.stun import FAMILY_IPV4, Data, Message, MessageClass, Method, XorPeerAddress
from vw.stun.constants import HEADER_LENGTH, MAGIC_COOKIE, MAGIC_COOKIE_BYTES
from vw.stun.wire import FINGERPRINT, U32, fingerprint_value

Address = tuple[str, int]

_SEND_TYPE, _DATA_TYPE = b"\x00\x16", 0x0017
_XOR_PEER_ADDRESS, _DATA, _DONT_FRAGMENT = 0x0012, 0x0013, 0x001A
_ATTRIBUTE = struct.Struct("!HH")
_COOKIE_HIGH = MAGIC_COOKIE >> 16
#: A Data indication's header and XOR-PEER-ADDRESS (IPv4), then DATA's type and length.
_DATA_HEAD = struct.Struct("!HHI12sHHBBHIHH")
#: Data written here at most; larger data goes through the general codec (and its checks).
_FAST_DATA_MAX = 0xFFFF - 32


def parse_send(data: bytes) -> tuple[Address, bytes] | None:
    """The peer address and data of a Send indication of the usual form, or None."""
    size = len(data)
    if (
        size < HEADER_LENGTH
        or data[:2] != _SEND_TYPE
        or data[4:8] != MAGIC_COOKIE_BYTES
        or int.from_bytes(data[2:4], "big") != size - HEADER_LENGTH
        or size & 3
    ):
        return None
    peer: Address | None = None
    payload: bytes | None = None
    pos = HEADER_LENGTH
    while pos < size:
        attr_type, length = _ATTRIBUTE.unpack_from(data, pos)
        pos += 4
        end = pos + length
        if end > size:
            return None
        if attr_type == _XOR_PEER_ADDRESS and peer is None:
            if length != 8 or data[pos + 1] != FAMILY_IPV4:
                return None
            port = int.from_bytes(data[pos + 2:pos + 4], "big") ^ _COOKIE_HIGH
            raw = (int.from_bytes(data[pos + 4:end], "big") ^ MAGIC_COOKIE).to_bytes(4, "big")
            peer = (socket.inet_ntop(socket.AF_INET, raw), port)
        elif attr_type == _DATA and payload is None:
            payload = data[pos:end]
        elif attr_type == _DONT_FRAGMENT and length == 0:
            pass
        elif not (attr_type == FINGERPRINT and length == 4 and end == size
                  and U32.unpack_from(data, pos)[0] == fingerprint_value(data, pos)):
            return None
        pos = (end + 3) & ~3
    if peer is None or payload is None:
        return None
    return peer, payload


def data_indication(peer: Address, payload: bytes) -> bytes:
    """A Data indication carrying ``payload`` from ``peer``; ValueError if it cannot be
    written (too big, or a peer address that is no IP address)."""
    host, port = peer
    size = len(payload)
    if ":" in host or size > _FAST_DATA_MAX:
        attributes = [XorPeerAddress(host, port), Data(payload)]
        return Message(Method.DATA, MessageClass.INDICATION, attributes=attributes).bytes()
    try:
        raw = int.from_bytes(socket.inet_pton(socket.AF_INET, host), "big")
    except OSError:
        raise ValueError(f"{host!r} is not an IPv4 or IPv6 address") from None
    padding = -size & 3
    head = _DATA_HEAD.pack(_DATA_TYPE, 16 + size + padding, MAGIC_COOKIE, os.urandom(12),
                           _XOR_PEER_ADDRESS, 8, 0, FAMILY_IPV4, port ^ _COOKIE_HIGH,
                           raw ^ MAGIC_COOKIE, _DATA, size)
    return head + payload + bytes(padding) if padding else head + payload
