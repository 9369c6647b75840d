"""The bridge's host candidates: bridge.local_addresses, else general.bind, never a wildcard."""

from __future__ import annotations

import pytest

from vw.bridge.service import host_candidates
from vw.config import BridgeConfig, Config, ConfigError, GeneralConfig


def config(bind: str, **bridge: object) -> Config:
    return Config(general=GeneralConfig(bind=bind), bridge=BridgeConfig(**bridge))


@pytest.mark.parametrize("bind, bridge, addresses", [
    ("127.0.0.1", {}, ["127.0.0.1"]),
    ("0.0.0.0", {"local_addresses": ["192.0.2.4", "2001:db8::4"],
                 "websocket_base_url": "wss://meet.example/colibri-ws"},
     ["192.0.2.4", "2001:db8::4"]),
    ("meet.example", {"local_addresses": ["192.0.2.4"]}, ["192.0.2.4"]),
])
def test_candidates_are_the_addresses_clients_reach(bind: str, bridge: dict,
                                                    addresses: list[str]) -> None:
    assert host_candidates(config(bind, **bridge)) == addresses


@pytest.mark.parametrize("bind, bridge, problem", [
    ("0.0.0.0", {}, "general.bind: '0.0.0.0' is a wildcard"),
    ("::", {"websocket_base_url": "wss://x"}, "general.bind: '::' is a wildcard"),
    ("127.0.0.1", {"local_addresses": ["192.0.2.4", "::"]},
     "bridge.local_addresses: '::' is a wildcard"),
    ("127.0.0.1", {"local_addresses": ["bridge.example"]},
     "bridge.local_addresses: 'bridge.example' is not an IP address"),
    ("0.0.0.0", {"local_addresses": ["192.0.2.4"]},
     "bridge.websocket_base_url: must be set when general.bind is a wildcard"),
])
def test_a_wildcard_or_a_name_is_refused(bind: str, bridge: dict, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        host_candidates(config(bind, **bridge))
