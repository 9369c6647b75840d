"""The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy specifies it: parsing
what a trusted proxy in front sends, and building what is sent to a backend (sans-IO)."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

#: The longest v1 line, CRLF included.
V1_MAX = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
#: Address block sizes of the v2 families: INET, INET6, UNIX.
_V2_ADDRESS_SIZES = {0x1: 12, 0x2: 36, 0x3: 216}

Address = tuple[str, int]


class ProxyProtocolError(ValueError):
    """A malformed PROXY header: the connection is closed."""


@dataclass(frozen=True)
class ProxyHeader:
    version: int
    #: The original client and the address it connected to; None for LOCAL or UNKNOWN
    #: (the proxy's own connection, such as a health check).
    source: Address | None
    destination: Address | None
    #: Bytes the header took from the start of the stream.
    length: int


def starts_like_proxy(data: bytes) -> bool:
    """Whether ``data`` (at least one byte) may be the start of a PROXY header."""
    n = min(len(data), len(V1_PREFIX))
    if data[:n] == V1_PREFIX[:n]:
        return True
    n = min(len(data), len(V2_SIGNATURE))
    return data[:n] == V2_SIGNATURE[:n]


def parse(data: bytes) -> ProxyHeader | None:
    """The PROXY header at the start of ``data``; None if more bytes are needed."""
    if data[:len(V2_SIGNATURE)] == V2_SIGNATURE:
        return _parse_v2(data)
    if len(data) < len(V2_SIGNATURE) and V2_SIGNATURE.startswith(data):
        return None
    if not data.startswith(V1_PREFIX):
        if V1_PREFIX.startswith(data):
            return None
        raise ProxyProtocolError("not a PROXY header")
    return _parse_v1(data)


def read_header(data: bytes) -> tuple[ProxyHeader | None, bytes | None]:
    """What a trusted peer's first bytes hold: ``(None, None)`` while a PROXY header is
    incomplete, ``(header, rest)`` once one is read, ``(None, data)`` when ``data`` does not
    begin with one (a peer may connect without it). ProxyProtocolError if it is malformed."""
    if not data or not starts_like_proxy(data):
        return None, data if data else None
    header = parse(data)
    if header is None:
        return None, None
    return header, data[header.length:]


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or b"\n" in data or b"\r" in data[:-1]:
            raise ProxyProtocolError("PROXY v1 line too long or not ended by CRLF")
        return None
    fields = data[:end].split(b" ")
    length = end + 2
    if fields[1:2] == [b"UNKNOWN"]:
        return ProxyHeader(1, None, None, length)
    if len(fields) != 6 or fields[1] not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError("PROXY v1 needs TCP4 or TCP6 and four addresses")
    version = 4 if fields[1] == b"TCP4" else 6
    source = _v1_address(fields[2], fields[4], version)
    destination = _v1_address(fields[3], fields[5], version)
    return ProxyHeader(1, source, destination, length)


def _v1_address(host: bytes, port: bytes, version: int) -> Address:
    try:
        address = ipaddress.ip_address(host.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyProtocolError("PROXY v1 address is not an IP address") from None
    if address.version != version:
        raise ProxyProtocolError("PROXY v1 address does not match its protocol")
    if not port.isdigit() or len(port) > 5 or (port[:1] == b"0" and port != b"0"):
        raise ProxyProtocolError("PROXY v1 port is not a number")
    number = int(port)
    if number > 65535:
        raise ProxyProtocolError("PROXY v1 port out of range")
    return str(address), number


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < 16:
        return None
    version_command, family_protocol, size = struct.unpack_from("!BBH", data, 12)
    if version_command >> 4 != 2:
        raise ProxyProtocolError("PROXY v2 with another version")
    command = version_command & 0xF
    if command > 1:
        raise ProxyProtocolError("PROXY v2 command is neither LOCAL nor PROXY")
    if len(data) < 16 + size:
        return None
    length = 16 + size
    family, protocol = family_protocol >> 4, family_protocol & 0xF
    if family > 3 or protocol > 2:
        raise ProxyProtocolError("PROXY v2 with an unknown family or protocol")
    needed = _V2_ADDRESS_SIZES.get(family, 0)
    if size < needed:
        raise ProxyProtocolError("PROXY v2 length shorter than its addresses")
    _check_tlvs(data[16 + needed:length])
    if command == 0 or family not in (0x1, 0x2) or protocol != 0x1:
        return ProxyHeader(2, None, None, length)
    if family == 0x1:
        src, dst, sport, dport = struct.unpack_from("!4s4sHH", data, 16)
    else:
        src, dst, sport, dport = struct.unpack_from("!16s16sHH", data, 16)
    return ProxyHeader(2, (str(ipaddress.ip_address(src)), sport),
                       (str(ipaddress.ip_address(dst)), dport), length)


def _check_tlvs(block: bytes) -> None:
    """TLVs are skipped, but each must fit in the header."""
    offset = 0
    while offset < len(block):
        if offset + 3 > len(block):
            raise ProxyProtocolError("PROXY v2 TLV truncated")
        (value_length,) = struct.unpack_from("!H", block, offset + 1)
        offset += 3 + value_length
        if offset > len(block):
            raise ProxyProtocolError("PROXY v2 TLV longer than the header")


def build_v1(source: Address, destination: Address) -> bytes:
    """The v1 line naming ``source`` connected to ``destination``."""
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    if src.version != dst.version:
        return b"PROXY UNKNOWN\r\n"
    family = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {source[1]} {destination[1]}\r\n".encode()


def build_v2(source: Address | None, destination: Address | None) -> bytes:
    """The v2 header: PROXY over TCP for ``source``, or LOCAL when it is None."""
    if source is None or destination is None:
        return V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x00, 0)
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    if src.version != dst.version:
        return V2_SIGNATURE + struct.pack("!BBH", 0x21, 0x00, 0)
    addresses = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    family = 0x11 if src.version == 4 else 0x21
    return V2_SIGNATURE + struct.pack("!BBH", 0x21, family, len(addresses)) + addresses
