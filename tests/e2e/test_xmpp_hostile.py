"""Hostile input over TCP: each attack gets its stream or stanza error; others keep working."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import XMPPServerProcess
from tests.e2e.rawxmpp import HEADER, RawClient

BILLION_LAUGHS = (
    "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
    + "".join(f"<!ENTITY lol{i} '{'&lol{};'.format(i - 1 if i > 1 else '') * 10}'>"
              for i in range(1, 10))
    + "]>" + HEADER.format(host="localhost") + "<message><body>&lol9;</body></message>"
)
EXTERNAL_ENTITY = (
    "<?xml version='1.0'?><!DOCTYPE m [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
    + HEADER.format(host="localhost") + "<message><body>&xxe;</body></message>"
)


@pytest.fixture(scope="module")
def accounts(xmpp_server: XMPPServerProcess) -> XMPPServerProcess:
    xmpp_server.add_account("witness@localhost", "witness-pw")
    xmpp_server.add_account("mallory@localhost", "mallory-pw")
    return xmpp_server


@pytest.fixture
def witness(accounts: XMPPServerProcess) -> Iterator[RawClient]:
    """A well-behaved session that must keep working through every attack."""
    client = RawClient(accounts.c2s_port)
    client.login_plain("witness", "witness-pw", accounts.ca)
    yield client
    ping(client)
    client.close()


def ping(client: RawClient) -> None:
    client.send("<iq type='get' id='wping' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert "type='result'" in client.read_until(r"id='wping'[^>]*>|id='wping'")


def stream_error(client: RawClient, condition: str) -> None:
    text = client.read_until(r"</stream:stream>")
    assert re.search(rf"<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'",
                     text), text
    assert client.closed()


def attack(server: XMPPServerProcess, payload: bytes | str, condition: str) -> None:
    client = RawClient(server.c2s_port)
    with contextlib.suppress(OSError):
        client.send(payload)
    stream_error(client, condition)
    client.close()


def test_not_well_formed(accounts: XMPPServerProcess, witness: RawClient) -> None:
    attack(accounts, HEADER.format(host="localhost") + "<message><body>x</mess>",
           "not-well-formed")


def test_billion_laughs_refused(accounts: XMPPServerProcess, witness: RawClient) -> None:
    attack(accounts, BILLION_LAUGHS, "restricted-xml")


def test_external_entity_refused(accounts: XMPPServerProcess, witness: RawClient) -> None:
    attack(accounts, EXTERNAL_ENTITY, "restricted-xml")


def test_undeclared_entity_is_not_well_formed(accounts: XMPPServerProcess,
                                              witness: RawClient) -> None:
    attack(accounts, HEADER.format(host="localhost") + "<message><body>&xxe;</body></message>",
           "not-well-formed")


def test_ten_megabyte_stanza(accounts: XMPPServerProcess, witness: RawClient) -> None:
    client = RawClient(accounts.c2s_port)
    client.open()
    with contextlib.suppress(OSError):
        client.send("<message><body>")
        chunk = b"x" * 65536
        for _ in range(160):
            client.send(chunk)
    stream_error(client, "policy-violation")


def test_deep_nesting(accounts: XMPPServerProcess, witness: RawClient) -> None:
    attack(accounts, HEADER.format(host="localhost") + "<a>" * 10000, "policy-violation")


def test_stanza_before_authentication(accounts: XMPPServerProcess, witness: RawClient) -> None:
    attack(accounts, HEADER.format(host="localhost")
           + "<message to='witness@localhost'><body>hi</body></message>", "not-authorized")


def test_unknown_host(accounts: XMPPServerProcess, witness: RawClient) -> None:
    attack(accounts, HEADER.format(host="elsewhere.example"), "host-unknown")


def test_wrong_sasl_response(accounts: XMPPServerProcess, witness: RawClient) -> None:
    client = RawClient(accounts.c2s_port)
    client.open()
    client.starttls(accounts.ca)
    client.open()
    for _ in range(3):
        client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                    "AG1hbGxvcnkAd3Jvbmc=</auth>")  # \0mallory\0wrong
        text = client.read_until("</failure>")
        assert "<not-authorized/>" in text
    stream_error(client, "policy-violation")


def test_plain_refused_before_starttls(accounts: XMPPServerProcess, witness: RawClient) -> None:
    client = RawClient(accounts.c2s_port)
    features = client.open()
    assert "<required/>" in features and "PLAIN" not in features
    client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                "AG1hbGxvcnkAbWFsbG9yeS1wdw==</auth>")
    assert "<encryption-required/>" in client.read_until("</failure>")
    client.close()


def test_spoofed_from(accounts: XMPPServerProcess, witness: RawClient) -> None:
    client = RawClient(accounts.c2s_port)
    client.login_plain("mallory", "mallory-pw", accounts.ca)
    client.send("<message from='witness@localhost/raw' to='witness@localhost'>"
                "<body>trust me</body></message>")
    stream_error(client, "invalid-from")


def test_bad_recipient_gets_stanza_error(accounts: XMPPServerProcess, witness: RawClient) -> None:
    witness.send("<message to='@@bad@@' id='m1'><body>x</body></message>")
    text = witness.read_until("</message>")
    assert "type='error'" in text and "jid-malformed" in text


def test_stanza_flood_is_throttled(accounts: XMPPServerProcess, witness: RawClient) -> None:
    client = RawClient(accounts.c2s_port)
    jid = client.login_plain("mallory", "mallory-pw", accounts.ca, resource="flood")
    flood = "".join(f"<message to='{jid}' type='chat'><body>{'f' * 200} {i}</body></message>"
                    for i in range(5000)).encode()
    client.sock.settimeout(30)
    client.send(flood)  # about 1.3 MB: more than the burst the rate limit allows
    ping(witness)  # the witness is served while the flood is throttled
    client.send("<iq type='get' id='done' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    text = client.read_until(r"id='done'", timeout=60)
    assert text.count("<message") >= 4999  # the flooder is slowed, not dropped
    client.close()
