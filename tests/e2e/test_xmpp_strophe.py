"""XMPP over WebSocket and BOSH with strophe.js (in Node): anonymous and token logins, MUC."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.conftest import TOKEN_APP, TOKEN_SECRET, XMPPServerProcess
from tests.e2e.strophe_client import run_scenario, run_scenario_async, strophe_available

pytestmark = pytest.mark.skipif(not strophe_available(), reason="node or node_modules missing")


def url(server: XMPPServerProcess, transport: str, room: str, token: str | None = None) -> str:
    path = "xmpp-websocket" if transport == "websocket" else "http-bind"
    scheme = "ws" if transport == "websocket" else "http"
    query = f"?room={room}" + (f"&token={token}" if token else "")
    return f"{scheme}://127.0.0.1:{server.http_port}/{path}{query}"


def scenario(server: XMPPServerProcess, transport: str, room: str, nick: str,
             token: str | None = None, **extra: object) -> dict:
    return {"url": url(server, transport, room, token), "transport": transport,
            "domain": "localhost", "muc": f"{room}@conference.localhost", "nick": nick,
            "timeout": 20, **extra}


def make_token(**claims: object) -> str:
    now = int(time.time())
    payload = {"iss": TOKEN_APP, "aud": TOKEN_APP, "sub": "localhost", "room": "*",
               "exp": now + 600, "context": {"user": {"name": "Ada", "email": "ada@example.org"}},
               **claims}
    return jwt.encode(payload, TOKEN_SECRET, algorithm="HS256")


@pytest.mark.parametrize("first, second", [("websocket", "websocket"), ("bosh", "bosh"),
                                           ("websocket", "bosh")])
def test_anonymous_clients_meet_in_a_room(xmpp_server: XMPPServerProcess, first: str,
                                          second: str) -> None:
    room = f"meet-{first}-{second}"

    async def both() -> list[dict]:
        return await asyncio.gather(*(
            run_scenario_async(scenario(xmpp_server, transport, room, nick, wait_occupants=2,
                                        message=f"hello from {nick}", expect_messages=1))
            for transport, nick in ((first, "anna"), (second, "bert"))))

    anna, bert = asyncio.run(both())
    for result, other in ((anna, "bert"), (bert, "anna")):
        assert result["connected"] and result["joined"] and result["ping_ok"], result
        assert [m["body"] for m in result["messages"] if not m["self"]] == [f"hello from {other}"]
        occupants = {o["nick"]: o for o in result["occupants"]}
        assert set(occupants) == {"anna", "bert"}
        assert all(o["jid"] and o["jid"].endswith("@localhost/" + o["jid"].split("/")[-1])
                   for o in occupants.values())
    assert anna["jid"].split("@")[1].startswith("localhost/")


@pytest.mark.parametrize("transport", ["websocket", "bosh"])
def test_token_login_shows_identity_and_moderator(xmpp_server: XMPPServerProcess,
                                                  transport: str) -> None:
    token = make_token(room="board", context={"user": {"name": "Ada", "moderator": True}})
    result = run_scenario(scenario(xmpp_server, transport, "board", "ada", token))
    assert result["connected"] and result["joined"], result
    me = next(o for o in result["occupants"] if o["self"])
    assert me["affiliation"] == "owner" and me["role"] == "moderator"


def test_token_room_claim_limits_rooms(xmpp_server: XMPPServerProcess) -> None:
    token = make_token(room="allowed")
    result = run_scenario(scenario(xmpp_server, "websocket", "forbidden", "ada", token,
                                   timeout=8))
    assert result["connected"] and not result["joined"]
    assert "not-allowed" in json.dumps(result.get("muc_error"))


def _unsigned(header: dict, claims: dict) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


def _rs256(claims: dict) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return jwt.encode(claims, pem, algorithm="RS256", headers={"kid": "attacker"})


def _claims(**changes: object) -> dict:
    now = int(time.time())
    return {"iss": TOKEN_APP, "aud": TOKEN_APP, "sub": "localhost", "room": "*",
            "exp": now + 600, **changes}


BAD_TOKENS = {
    "expired": lambda: make_token(exp=int(time.time()) - 60),
    "not yet valid": lambda: make_token(nbf=int(time.time()) + 3600),
    "forged": lambda: jwt.encode(_claims(), "another-secret-of-sufficient-length",
                                 algorithm="HS256"),
    "alg none": lambda: _unsigned({"alg": "none", "typ": "JWT"}, _claims()),
    "RS256 on an HS256 server": lambda: _rs256(_claims()),
    "another issuer": lambda: make_token(iss="someone-else"),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
@pytest.mark.parametrize("transport", ["websocket", "bosh"])
def test_bad_tokens_are_refused(xmpp_server: XMPPServerProcess, case: str,
                                transport: str) -> None:
    result = run_scenario(scenario(xmpp_server, transport, "any", "eve", BAD_TOKENS[case](),
                                   timeout=8))
    assert not result["connected"], result
    assert result["auth_failure"] == "not-allowed", result
