"""XEP-0215 external service discovery: which TURN services vw-xmpp offers, on which ports,
with coturn REST credentials; [xmpp.turn] transports narrows the offer."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.words.xish.domish import Element

from tests.xmpp.helpers import Client, make_server
from vw.config import ConfigError, TurnServiceConfig, load

SECRET = "extdisco-test-secret"


def services(tmp_path: Path, request: str = "<services xmlns='urn:xmpp:extdisco:2'/>",
             **turn: object) -> list[Element]:
    """The ``<service>`` elements answered to ``request`` at time 1000."""
    clock = Clock()
    clock.advance(1000)
    server = make_server(tmp_path, clock, turn=TurnServiceConfig(secret=SECRET, **turn))
    client = Client(server)
    client.login_anonymous()
    (result,) = client.send(f"<iq type='get' id='t' to='localhost'>{request}</iq>")
    assert result["type"] == "result", result.toXml()
    return list(result.firstChildElement().elements())


def offered(elements: list[Element]) -> list[tuple[str, str, str, str]]:
    return [(s["type"], s["host"], s["port"], s["transport"]) for s in elements]


def test_every_transport_by_default_with_ports_and_host_from_config(tmp_path: Path) -> None:
    elements = services(tmp_path, host="turn.example", port=3479, tls_port=5350)
    assert offered(elements) == [("stun", "turn.example", "3479", "udp"),
                                 ("turn", "turn.example", "3479", "udp"),
                                 ("turn", "turn.example", "3479", "tcp"),
                                 ("turns", "turn.example", "5350", "tcp")]
    stun, *turns = elements
    assert not stun.hasAttribute("username") and not stun.hasAttribute("password")
    for service in turns:
        username = service["username"]
        assert username.split(":")[0] == str(1000 + 86400)
        digest = hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()
        assert service["password"] == base64.b64encode(digest).decode()
        assert service["restricted"] == "1"
        assert service["expires"] == "1970-01-02T00:16:40Z"


@pytest.mark.parametrize("transports, expected", [
    (["tcp"], [("turn", "3479", "tcp")]),
    (["tls"], [("turns", "5350", "tcp")]),
    (["udp"], [("stun", "3479", "udp"), ("turn", "3479", "udp")]),
    (["tls", "tcp"], [("turn", "3479", "tcp"), ("turns", "5350", "tcp")]),
    ([], []),
])
def test_transports_narrow_the_offer(tmp_path: Path, transports: list[str],
                                     expected: list[tuple[str, str, str]]) -> None:
    elements = services(tmp_path, port=3479, tls_port=5350, transports=transports)
    assert [(kind, port, transport) for kind, _, port, transport in offered(elements)] == expected
    assert all(s["host"] == "localhost" for s in elements)  # the domain when host is empty


def test_extdisco_1_and_a_type_filter(tmp_path: Path) -> None:
    elements = services(tmp_path, "<services xmlns='urn:xmpp:extdisco:1' type='turns'/>",
                        tls_port=5350)
    assert offered(elements) == [("turns", "localhost", "5350", "tcp")]
    assert services(tmp_path, "<services xmlns='urn:xmpp:extdisco:2' type='stun'/>",
                    transports=["tcp", "tls"]) == []


def test_transports_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "vw.toml"
    path.write_text('[xmpp.turn]\ntransports = ["tls"]\n')
    assert load(str(path)).xmpp.turn.transports == ["tls"]
    assert load(None).xmpp.turn.transports == ["udp", "tcp", "tls"]
    path.write_text('[xmpp.turn]\ntransports = ["tcp", "dtls"]\n')
    with pytest.raises(ConfigError, match=r"xmpp\.turn\.transports: must list only udp, tcp, "
                                          r"tls, not 'dtls'"):
        load(str(path))
