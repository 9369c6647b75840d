"""PROXY protocol v1 and v2: parsing, building, and refusing what does not fit."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vw.common.proxyproto import (
    V1_MAX,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    build_v1,
    build_v2,
    parse,
    starts_like_proxy,
)

fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
port = st.integers(0, 65535)


def test_v1_tcp4_and_what_follows() -> None:
    data = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n"
    header = parse(data)
    assert header == ProxyHeader(1, ("192.0.2.1", 56324), ("198.51.100.2", 443), 45)
    assert data[header.length:].startswith(b"GET ")


def test_v1_tcp6_and_unknown() -> None:
    header = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n")
    assert header is not None and header.source == ("2001:db8::1", 1)
    unknown = parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n")
    assert unknown is not None and unknown.source is None


@pytest.mark.parametrize("partial", [b"P", b"PROXY", b"PROXY TCP4 1.2.3.4", b"\r\n\r\n",
                                     V2_SIGNATURE, V2_SIGNATURE + b"\x21\x11\x00\x0c1234"])
def test_partial_headers_need_more(partial: bytes) -> None:
    assert parse(partial) is None


@pytest.mark.parametrize("line", [
    b"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n",        # a field missing
    b"PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n",         # two spaces
    b"PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n",           # IPv6 under TCP4
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1 65536\r\n",      # port out of range
    b"PROXY TCP4 192.0.2.1 198.51.100.2 01 2\r\n",         # leading zero
    b"PROXY TCP4 192.0.2.1 198.51.100.2 -1 2\r\n",
    b"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n",            # bare LF
    b"PROXY TCP4 host.example 198.51.100.2 1 2\r\n",
    b"GET / HTTP/1.1\r\n",
])
def test_v1_malformed_is_refused(line: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse(line)


def test_v1_line_over_107_bytes_is_refused_without_waiting_for_its_end() -> None:
    longest = b"PROXY UNKNOWN " + b"x" * (V1_MAX - 16) + b"\r\n"
    assert len(longest) == V1_MAX and parse(longest) is not None
    with pytest.raises(ProxyProtocolError):
        parse(b"PROXY UNKNOWN " + b"x" * (V1_MAX - 14))


def v2(version_command: int, family: int, body: bytes, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return V2_SIGNATURE + struct.pack("!BBH", version_command, family, size) + body


def test_v2_ipv4_with_tlvs_skipped() -> None:
    addresses = bytes([192, 0, 2, 1, 198, 51, 100, 2]) + struct.pack("!HH", 40000, 443)
    tlvs = b"\x01\x00\x02h2" + b"\x04\x00\x00"
    data = v2(0x21, 0x11, addresses + tlvs) + b"GET"
    header = parse(data)
    assert header == ProxyHeader(2, ("192.0.2.1", 40000), ("198.51.100.2", 443),
                                 len(data) - 3)


def test_v2_local_has_no_addresses() -> None:
    header = parse(v2(0x20, 0x00, b""))
    assert header is not None and header.source is None and header.length == 16


@pytest.mark.parametrize("data", [
    v2(0x21, 0x11, bytes(8)),                    # shorter than the IPv4 addresses
    v2(0x21, 0x21, bytes(12)),                   # shorter than the IPv6 addresses
    v2(0x11, 0x11, bytes(12)),                   # version 1 in binary
    v2(0x22, 0x11, bytes(12)),                   # command 2
    v2(0x21, 0x41, bytes(12)),                   # family 4
    v2(0x21, 0x11, bytes(12) + b"\x01\x00\x05ab"),  # TLV longer than the header
    v2(0x21, 0x11, bytes(12) + b"\x01\x00"),     # TLV truncated
])
def test_v2_wrong_lengths_and_values_are_refused(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse(data)


def test_v2_waits_for_its_declared_length() -> None:
    assert parse(v2(0x21, 0x11, bytes(12), length=20) + bytes(4)) is None


@given(ipv4, ipv4, port, port)
def test_build_and_parse_agree_v4(src: str, dst: str, sport: int, dport: int) -> None:
    for build in (build_v1, build_v2):
        data = build((src, sport), (dst, dport))
        header = parse(data + b"rest")
        assert header is not None and header.length == len(data)
        assert header.source == (src, sport) and header.destination == (dst, dport)


@given(ipv6, ipv6, port, port)
def test_build_and_parse_agree_v6(src: str, dst: str, sport: int, dport: int) -> None:
    for build in (build_v1, build_v2):
        header = parse(build((src, sport), (dst, dport)))
        assert header is not None and header.source == (src, sport)
        assert len(build_v1((src, sport), (dst, dport))) <= V1_MAX


def test_mixed_families_build_unknown_headers() -> None:
    assert parse(build_v1(("192.0.2.1", 1), ("::1", 2))).source is None
    assert parse(build_v2(("192.0.2.1", 1), ("::1", 2))).source is None
    assert parse(build_v2(None, None)).source is None


def test_starts_like_proxy() -> None:
    assert starts_like_proxy(b"PRO") and starts_like_proxy(b"PROXY TCP4")
    assert starts_like_proxy(b"\r\n\r\n\x00") and starts_like_proxy(V2_SIGNATURE + b"!")
    assert not starts_like_proxy(b"GET /") and not starts_like_proxy(b"PROXI")


def parse_or_refuse(data: bytes) -> None:
    try:
        header = parse(data)
    except ProxyProtocolError:
        return
    assert header is None or header.length <= len(data)
    if header is not None and header.version == 1:
        assert header.length <= V1_MAX


@fuzz
@given(st.binary(max_size=200))
def test_random_bytes_parse_or_are_refused(data: bytes) -> None:
    parse_or_refuse(data)


@fuzz
@given(st.sampled_from([b"PROXY ", V2_SIGNATURE]), st.binary(max_size=120))
def test_random_bytes_after_a_signature(prefix: bytes, rest: bytes) -> None:
    parse_or_refuse(prefix + rest)
