"""The peer address policy: default denied ranges, embedded IPv4, allow/deny overrides."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vw.turn.peers import DEFAULT_DENIED, Network, PeerPolicy

DENIED_SAMPLES = [
    "0.0.0.0", "0.255.255.255", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254",
    "127.0.0.1", "127.255.255.255", "169.254.0.1", "169.254.169.254", "172.16.0.1",
    "172.31.255.255", "192.0.0.1", "192.0.0.255", "192.0.2.1", "192.88.99.1", "192.168.0.1",
    "192.168.255.255", "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9",
    "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    "::", "::1", "fc00::1", "fd12:3456::1", "fe80::1", "febf::1", "fe80::1%eth0", "ff02::1",
    "ff0e::fb", "64:ff9b::808:808", "100::1", "2001:db8::1", "2001:db8:ffff::1",
]
PERMITTED_SAMPLES = [
    "8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0",
    "192.0.1.1", "192.167.255.255", "192.169.0.0", "198.17.255.255", "198.20.0.0",
    "223.255.255.255", "11.0.0.1", "2606:4700:4700::1111", "2a00:1450::1", "100:0:0:1::1",
    "2001:db9::1", "fbff::1", "2001:4860:4860::8888",
]


@pytest.fixture
def policy() -> PeerPolicy:
    return PeerPolicy()


@pytest.mark.parametrize("address", DENIED_SAMPLES)
def test_default_denied(policy: PeerPolicy, address: str) -> None:
    assert not policy.permitted(address)


@pytest.mark.parametrize("address", PERMITTED_SAMPLES)
def test_public_permitted(policy: PeerPolicy, address: str) -> None:
    assert policy.permitted(address)


@pytest.mark.parametrize("network", DEFAULT_DENIED, ids=str)
def test_every_default_range_edges(policy: PeerPolicy, network: Network) -> None:
    assert not policy.permitted(str(network.network_address))
    assert not policy.permitted(str(network.broadcast_address))


@pytest.mark.parametrize("address", [a for a in DENIED_SAMPLES if "." in a])
def test_embedded_ipv4_judged_as_ipv4(policy: PeerPolicy, address: str) -> None:
    value = int(ipaddress.IPv4Address(address))
    sixtofour = f"2002:{value >> 16:x}:{value & 0xFFFF:x}::1"
    for form in (f"::ffff:{address}", f"::ffff:0:{address}", sixtofour):
        assert not policy.permitted(form), form
    if value > 1:
        assert not policy.permitted(f"::{address}")


def test_embedded_public_ipv4_permitted(policy: PeerPolicy) -> None:
    for form in ("::ffff:8.8.8.8", "::8.8.8.8", "::ffff:0:8.8.8.8", "2002:808:808::1"):
        assert policy.permitted(form), form


def test_allow_overrides_defaults() -> None:
    policy = PeerPolicy(allow=["127.0.0.1/32", "fd00::/8"])
    assert policy.permitted("127.0.0.1")
    assert policy.permitted("::ffff:127.0.0.1")
    assert not policy.permitted("127.0.0.2")
    assert not policy.permitted("::1")
    assert policy.permitted("fd00::5")
    assert not policy.permitted("fc00::5")


def test_deny_overrides_allow() -> None:
    policy = PeerPolicy(allow=["10.0.0.0/8"], deny=["10.1.0.0/16", "8.8.8.0/24", "2606::/16"])
    assert policy.permitted("10.2.3.4")
    assert not policy.permitted("10.1.2.3")
    assert not policy.permitted("::ffff:10.1.2.3")
    assert not policy.permitted("8.8.8.8")
    assert not policy.permitted("2606:4700::1")
    assert policy.permitted("8.8.4.4")


@pytest.mark.parametrize("address", ["", "localhost", "1.2.3", "256.0.0.1", "010.0.0.1",
                                     "1.2.3.4/32", "::g", "1:2:3:4:5:6:7:8:9", " 1.2.3.4"])
def test_malformed_address(policy: PeerPolicy, address: str) -> None:
    with pytest.raises(ValueError, match="bad peer address"):
        policy.permitted(address)


@pytest.mark.parametrize("cidr", ["10.0.0.1/8", "10.0.0.0/33", "nope", "::/129", ""])
def test_malformed_range(cidr: str) -> None:
    with pytest.raises(ValueError, match="bad peer address range"):
        PeerPolicy(allow=[cidr])
    with pytest.raises(ValueError, match="bad peer address range"):
        PeerPolicy(deny=[cidr])


ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
policies = st.sampled_from([
    PeerPolicy(),
    PeerPolicy(allow=["127.0.0.1/32", "10.0.0.0/8"]),
    PeerPolicy(allow=["0.0.0.0/0"], deny=["8.0.0.0/8", "192.168.1.0/24"]),
])


@settings(max_examples=500, deadline=None)
@given(policies, st.one_of(ipv4, ipv6))
def test_valid_addresses_never_raise(policy: PeerPolicy, address: str) -> None:
    assert policy.permitted(address) in (True, False)


@settings(max_examples=500, deadline=None)
@given(policies, ipv4)
def test_mapped_and_plain_agree(policy: PeerPolicy, address: str) -> None:
    plain = policy.permitted(address)
    assert policy.permitted(f"::ffff:{address}") == plain
    assert policy.permitted(str(ipaddress.IPv6Address(f"::ffff:{address}"))) == plain
    assert policy.permitted(f"::ffff:0:{address}") == plain
