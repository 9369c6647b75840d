"""Configuration: defaults, typed sections, and one-line errors with exit status 2."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vw.config import Config, ConfigError, load

EXAMPLE = Path(__file__).parent.parent / "etc" / "vw.toml.example"


def test_no_file_means_embedded_defaults() -> None:
    config = load(None)
    assert config.general.domain == "localhost"
    assert config.general.bind == "127.0.0.1"
    assert config.conference_domain == "conference.localhost"
    assert config.internal_muc_domain == "internal.auth.localhost"
    assert config.xmpp.c2s_port == 5222


def test_the_example_file_loads_and_documents_every_key() -> None:
    config = load(str(EXAMPLE))
    assert isinstance(config, Config)
    text = EXAMPLE.read_text()

    def keys(section: object) -> list[str]:
        found = []
        for field in dataclasses.fields(section):
            value = getattr(section, field.name)
            found += keys(value) if dataclasses.is_dataclass(value) else [field.name]
        return found

    for section in (config.general, config.tls, config.xmpp, config.bridge):
        for key in keys(section):
            assert re.search(rf"\n(# )?{key} =|\.{key}\]", text), key


@pytest.mark.parametrize("content, message", [
    ("[general]\ndomian = 'x'\n", "general.domian: unknown key"),
    ("[xmpp]\nc2s_port = 'many'\n", "xmpp.c2s_port: must be an integer"),
    ("[xmpp]\nrequire_starttls = 1\n", "xmpp.require_starttls: must be a boolean"),
    ("[xmpp.token]\nalgorithm = 'none'\n", "xmpp.token.algorithm"),
    ("[xmpp]\nanonymous_domains = 'x'\n", "xmpp.anonymous_domains: must be an array"),
    ("[general\n", "invalid TOML"),
    ("[surprise]\n", "surprise: unknown key"),
    ("[turn]\nrelay_address = 'turn.example'\n", "turn.relay_address: 'turn.example' is not an IP"),
    ("[turn]\nrelay_address_ipv6 = '192.0.2.1'\n", "relay_address_ipv6: '192.0.2.1' is not an IPv"),
    ("[turn]\nexternal_address = '2001:db8::1'\n", "external_address: '2001:db8::1' is not an IPv"),
])
def test_errors_name_file_key_and_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "vw.toml"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load(str(path))
    assert str(caught.value).startswith(str(path))
    assert message in str(caught.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load("/nonexistent/vw.toml")


def test_twistd_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "vw.toml"
    path.write_text("[xmpp]\nc2s_port = true\n")
    twistd = Path(sys.executable).parent / "twistd"
    result = subprocess.run([twistd, "--nodaemon", "--pidfile=", "vw-xmpp", "--config", str(path)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"vw: {path}: xmpp.c2s_port: must be an integer, not True"]
    assert "Traceback" not in result.stdout + result.stderr


TURN_WILDCARD = ("general.bind: '0.0.0.0' is a wildcard: set turn.relay_address to the address "
                 "relays are opened on (and turn.external_address to the one clients reach it "
                 "at through a one-to-one NAT)")
BRIDGE_WILDCARD = ("general.bind: '0.0.0.0' is a wildcard: list the addresses clients reach the "
                   "bridge at in bridge.local_addresses")


@pytest.mark.parametrize("plugin, problem", [
    ("vw-turn", TURN_WILDCARD), ("vw-bridge", BRIDGE_WILDCARD), ("vw", BRIDGE_WILDCARD)])
def test_addresses_clients_are_told_cannot_be_wildcards(tmp_path: Path, plugin: str,
                                                        problem: str) -> None:
    """Relays or candidates on 0.0.0.0 would be announced as 0.0.0.0: vw-turn, vw-bridge and
    the all-in-one refuse to start with one line; the other plugins may bind wildcards."""
    path = tmp_path / "vw.toml"
    path.write_text("[general]\nbind = '0.0.0.0'\n")
    twistd = Path(sys.executable).parent / "twistd"
    result = subprocess.run([twistd, "--nodaemon", "--pidfile=", plugin, "--config", str(path)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"vw: {path}: {problem}"]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("relay_address", ["192.0.2.1", "2001:db8::1", "0.0.0.0"])
def test_turn_addresses_load(tmp_path: Path, relay_address: str) -> None:
    path = tmp_path / "vw.toml"
    path.write_text(f"[turn]\nrelay_address = '{relay_address}'\n"
                    "relay_address_ipv6 = '2001:db8::2'\nexternal_address = '203.0.113.1'\n")
    turn = load(str(path)).turn
    assert (turn.relay_address, turn.relay_address_ipv6, turn.external_address) == (
        relay_address, "2001:db8::2", "203.0.113.1")


@pytest.mark.parametrize("section", ["xmpp", "turn"])
def test_trusted_proxies_are_networks(tmp_path: Path, section: str) -> None:
    path = tmp_path / "vw.toml"
    path.write_text(f"[{section}]\ntrusted_proxies = ['10.0.0.0/8', '::1']\n")
    assert getattr(load(str(path)), section).trusted_proxies == ["10.0.0.0/8", "::1"]
    path.write_text(f"[{section}]\ntrusted_proxies = ['10.0.0.0/33']\n")
    with pytest.raises(ConfigError, match=f"{section}.trusted_proxies: '10.0.0.0/33' is not"):
        load(str(path))


def test_a_whole_number_is_taken_for_a_float(tmp_path: Path) -> None:
    path = tmp_path / "vw.toml"
    path.write_text("[turn]\namplification_limit = 2\n[balancer]\nconnection_rate = 100\n")
    config = load(str(path))
    assert config.turn.amplification_limit == 2.0
    assert isinstance(config.turn.amplification_limit, float)
    assert config.balancer.connection_rate == 100.0
    for value in ("true", "nan", "inf"):
        path.write_text(f"[turn]\namplification_limit = {value}\n")
        with pytest.raises(ConfigError, match="amplification_limit: must be a finite number"):
            load(str(path))


@pytest.mark.parametrize("unit", sorted((EXAMPLE.parent / "systemd").glob("*.service")),
                         ids=lambda path: path.name)
def test_systemd_units_do_not_restart_on_a_configuration_error(unit: Path) -> None:
    """twistd exits 2 on a configuration error (above); systemd must not retry it forever."""
    lines = unit.read_text().splitlines()
    assert "Restart=on-failure" in lines and "RestartPreventExitStatus=2" in lines
