"""Where relays are opened and what clients are told: turn.relay_address (or general.bind),
turn.relay_address_ipv6 and turn.external_address, and reflexive addresses of dual-stack
sockets."""

from __future__ import annotations

import pytest

from tests.turn.test_allocations import CLIENT, allocate, answer, error, make_core
from vw.common.networks import reflexive
from vw.config import Config, ConfigError, GeneralConfig, TurnConfig
from vw.stun import (
    FAMILY_IPV4,
    FAMILY_IPV6,
    Message,
    MessageClass,
    Method,
    XorMappedAddress,
    XorRelayedAddress,
)
from vw.turn.allocations import StreamClient
from vw.turn.service import relay_hosts


def config(bind: str = "127.0.0.1", **turn: str) -> Config:
    return Config(general=GeneralConfig(bind=bind), turn=TurnConfig(**turn))


@pytest.mark.parametrize("bind, turn, hosts", [
    ("127.0.0.1", {}, {FAMILY_IPV4: "127.0.0.1"}),
    ("0.0.0.0", {"relay_address": "192.0.2.7"}, {FAMILY_IPV4: "192.0.2.7"}),
    ("0.0.0.0", {"external_address": "203.0.113.5"}, {FAMILY_IPV4: "0.0.0.0"}),
    ("10.0.0.5", {"external_address": "203.0.113.5"}, {FAMILY_IPV4: "10.0.0.5"}),
    ("::1", {}, {FAMILY_IPV6: "::1"}),
    ("192.0.2.7", {"relay_address_ipv6": "2001:db8::7"},
     {FAMILY_IPV4: "192.0.2.7", FAMILY_IPV6: "2001:db8::7"}),
])
def test_relays_open_on_the_configured_address(bind: str, turn: dict[str, str],
                                               hosts: dict[int, str]) -> None:
    assert relay_hosts(config(bind, **turn)) == hosts


@pytest.mark.parametrize("bind, turn, message", [
    ("0.0.0.0", {}, "general.bind: '0.0.0.0' is a wildcard: set turn.relay_address"),
    ("::", {}, "general.bind: '::' is a wildcard"),
    ("::", {"external_address": "203.0.113.5"}, "general.bind: '::' is a wildcard"),
    ("127.0.0.1", {"relay_address": "0.0.0.0"}, "turn.relay_address: '0.0.0.0' is a wildcard"),
    ("localhost", {}, "general.bind: 'localhost' is not an IP address"),
    ("::1", {"external_address": "203.0.113.5"}, "turn.external_address: must be the public"),
    ("0.0.0.0", {"external_address": "0.0.0.0"}, "turn.external_address: must be the public"),
    ("127.0.0.1", {"relay_address_ipv6": "::"}, "turn.relay_address_ipv6: '::' is a wildcard"),
])
def test_an_address_clients_cannot_be_told_is_refused(bind: str, turn: dict[str, str],
                                                      message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        relay_hosts(config(bind, **turn))


def test_a_relay_behind_a_one_to_one_nat_is_announced_with_the_public_address() -> None:
    core = make_core(relay_announced={"192.0.2.1": "203.0.113.5"})
    reply = allocate(core)
    assert error(reply) is None
    relayed = reply.get(XorRelayedAddress)
    assert relayed is not None and relayed.host == "203.0.113.5"
    assert core.allocations[CLIENT].relay == ("192.0.2.1", relayed.port)  # where it is opened


@pytest.mark.parametrize("client, named", [
    (("::ffff:198.51.100.7", 40000, 0, 0), ("198.51.100.7", 40000)),
    (StreamClient("::ffff:198.51.100.7", 40000, ("::", 3478)), ("198.51.100.7", 40000)),
    (("2001:db8::9", 40000, 0, 0), ("2001:db8::9", 40000)),
    (("198.51.100.7", 40000), ("198.51.100.7", 40000)),
])
def test_an_ipv4_client_of_a_dual_stack_socket_is_named_by_its_ipv4_address(
        client: tuple, named: tuple[str, int]) -> None:
    assert reflexive(client) == named
    core = make_core()
    binding = Message(Method.BINDING, MessageClass.REQUEST).bytes()
    reply = answer(core.client_datagram(binding, client, 1_700_000_000.0), client,
                   fingerprint=False)
    assert reply.get(XorMappedAddress) == XorMappedAddress(*named)
