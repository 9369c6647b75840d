"""The client stream core, driven in memory: negotiation, routing, tokens, XEP-0198."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from twisted.internet.task import Clock

from tests.xmpp.helpers import TOKEN_SECRET, Client, header, make_server
from vw.xmpp.errors import StreamError


def token(**claims: object) -> str:
    now = int(time.time())
    payload = {"iss": "app", "aud": "app", "sub": "localhost", "room": "*", "exp": now + 600,
               **claims}
    return jwt.encode(payload, TOKEN_SECRET, algorithm="HS256")


def test_features_before_and_after_authentication(tmp_path: Path) -> None:
    client = Client(make_server(tmp_path))
    client.stream.stream_opened(header())
    (features,) = client.transport.take()
    mechanisms = [str(m) for m in features.mechanisms.elements()]
    assert mechanisms == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "ANONYMOUS"]
    client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
    assert client.transport.resets == 1
    client.stream.stream_opened(header())
    (features,) = client.transport.take()
    assert {c.name for c in features.elements()} == {"bind", "session", "sm"}


def test_unknown_host_and_version(tmp_path: Path) -> None:
    client = Client(make_server(tmp_path))
    client.stream.stream_opened(header("other.example"))
    assert isinstance(client.transport.closed, StreamError)
    assert client.transport.closed.condition == "host-unknown"


def test_anonymous_jid_has_node_and_resource(tmp_path: Path) -> None:
    jid = Client(make_server(tmp_path)).login_anonymous()
    node, rest = jid.split("@")
    host, resource = rest.split("/")
    assert len(node) == 32 and host == "localhost" and resource


def test_messages_between_two_sessions(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    alice, bob = Client(server), Client(server)
    alice_jid = alice.login_anonymous()
    bob_jid = bob.login_anonymous()
    bob.send("<presence/>")
    alice.send(f"<message to='{bob_jid}' type='chat'><body>hi</body></message>")
    (message,) = bob.transport.take()
    assert message["from"] == alice_jid and str(message.body) == "hi"


def test_spoofed_from_is_a_stream_error(tmp_path: Path) -> None:
    client = Client(make_server(tmp_path))
    client.login_anonymous()
    client.send("<message from='someone@localhost/x' to='localhost'/>")
    assert client.transport.closed.condition == "invalid-from"


def test_ping_disco_and_unknown_iq(tmp_path: Path) -> None:
    client = Client(make_server(tmp_path))
    jid = client.login_anonymous()
    (pong,) = client.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert (pong["type"], pong["to"], pong["from"]) == ("result", jid, "localhost")
    (error,) = client.send("<iq type='get' id='u' to='localhost'><x xmlns='urn:unknown'/></iq>")
    assert error["type"] == "error"
    assert error.error.firstChildElement().name == "service-unavailable"


def test_extdisco_gives_coturn_style_credentials(tmp_path: Path) -> None:
    import base64
    import hashlib
    import hmac

    server = make_server(tmp_path)
    client = Client(server)
    client.login_anonymous()
    (result,) = client.send("<iq type='get' id='t' to='localhost'>"
                            "<services xmlns='urn:xmpp:extdisco:2'/></iq>")
    services = list(result.services.elements())
    kinds = {(s["type"], s["transport"]) for s in services}
    assert {("stun", "udp"), ("turn", "udp"), ("turn", "tcp"), ("turns", "tcp")} <= kinds
    turn = next(s for s in services if s["type"] == "turn")
    secret = (tmp_path / "var" / "turn-secret").read_text().strip()
    expected = hmac.new(secret.encode(), turn["username"].encode(), hashlib.sha1).digest()
    assert base64.b64decode(turn["password"]) == expected
    expiry = int(turn["username"].split(":")[0])
    assert expiry == 86400  # the fake clock starts at 0


@pytest.mark.parametrize("bad, reason", [
    ({"exp": 1}, "expired"),
    ({"room": None}, "room"),
    ({"iss": "other"}, "iss"),
])
def test_bad_tokens_fail_sasl_with_not_allowed(tmp_path: Path, bad: dict, reason: str) -> None:
    claims = {k: v for k, v in bad.items() if v is not None}
    if bad.get("room", "") is None:
        now = int(time.time())
        value = jwt.encode({"iss": "app", "aud": "app", "sub": "localhost", "exp": now + 60},
                           TOKEN_SECRET, algorithm="HS256")
    else:
        value = token(**claims)
    server = make_server(tmp_path, clock=Clock())
    server.clock.advance(time.time())
    client = Client(server, token=value)
    client.stream.stream_opened(header())
    client.transport.take()
    (failure,) = client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                             "mechanism='ANONYMOUS'/>")
    assert failure.name == "failure"
    assert failure.firstChildElement().name == "not-allowed"
    assert reason in str(failure.text)


def _resumable(server, client: Client) -> str:
    (enabled,) = client.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    assert enabled.name == "enabled" and enabled["resume"] == "true"
    return enabled["id"]


def test_resumption_replays_unacknowledged_stanzas(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    alice, bob = Client(server), Client(server)
    alice_jid = alice.login_anonymous()
    bob.login_anonymous()
    sm_id = _resumable(server, alice)
    bob.send(f"<message to='{alice_jid}' type='chat'><body>one</body></message>")
    (first,) = alice.transport.take()
    alice.send("<a xmlns='urn:xmpp:sm:3' h='1'/>")
    alice.stream.connection_lost()
    bob.send(f"<message to='{alice_jid}' type='chat'><body>two</body></message>")
    again = Client(server)
    again.stream.stream_opened(header())
    again.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
    again.stream.stream_opened(header())
    again.transport.take()
    sent = again.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{sm_id}' h='1'/>")
    assert sent[0].name == "resumed"
    replayed = "".join(m.toXml() for m in sent[1:])
    assert "<body>two</body>" in replayed and "<body>one</body>" not in replayed
    assert again.stream.session.full == alice_jid


def test_unresumed_session_ends_after_the_timeout(tmp_path: Path) -> None:
    clock = Clock()
    server = make_server(tmp_path, clock=clock, resume_timeout=30)
    alice = Client(server)
    jid = alice.login_anonymous()
    _resumable(server, alice)
    alice.stream.connection_lost()
    assert server.router.session_for(jid) is not None
    clock.advance(31)
    assert server.router.session_for(jid) is None


def test_impossible_ack_is_a_stream_error(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    alice = Client(server)
    alice.login_anonymous()
    _resumable(server, alice)
    alice.send("<a xmlns='urn:xmpp:sm:3' h='5'/>")
    assert alice.transport.closed.condition == "undefined-condition"


def test_token_user_appears_as_identity_and_spoofs_are_removed(tmp_path: Path) -> None:
    server = make_server(tmp_path, clock=Clock())
    server.clock.advance(time.time())
    host = Client(server, token=token(context={"user": {"name": "Ada", "id": "42"}}))
    host.login_anonymous()
    guest = Client(server)
    guest.login_anonymous()
    guest.send("<presence to='r@conference.localhost/guest'>"
               "<x xmlns='http://jabber.org/protocol/muc'/>"
               "<identity><user><name>Fake</name></user></identity></presence>")
    sent = host.send("<presence to='r@conference.localhost/ada'>"
                     "<x xmlns='http://jabber.org/protocol/muc'/></presence>")
    guest_view = [p for p in sent if p.getAttribute("from") == "r@conference.localhost/guest"]
    assert guest_view and not list(guest_view[0].elements(None, "identity"))
    (seen,) = [p for p in guest.transport.take()
               if p.getAttribute("from") == "r@conference.localhost/ada"]
    user = next(seen.elements("jabber:client", "identity")).user
    assert {child.name: str(child) for child in user.elements()} == {"id": "42", "name": "Ada"}


def test_the_tokens_participant_limit_keeps_the_room_to_its_size(tmp_path: Path) -> None:
    server = make_server(tmp_path, clock=Clock())
    server.clock.advance(time.time())
    limited = token(room="r", context={"room": {"max_participants": 1}})
    first, second = Client(server, token=limited), Client(server, token=limited)
    for client in (first, second):
        client.login_anonymous()
    join = ("<presence to='r@conference.localhost/{}'>"
            "<x xmlns='http://jabber.org/protocol/muc'/></presence>")
    assert first.send(join.format("one"))[0].getAttribute("type") is None
    (refused,) = second.send(join.format("two"))
    assert refused.getAttribute("type") == "error"
    assert refused.error.firstChildElement().name == "service-unavailable"


def test_a_token_asking_for_a_lobby_sends_guests_to_knock(tmp_path: Path) -> None:
    server = make_server(tmp_path, clock=Clock())
    server.clock.advance(time.time())
    room = {"room": {"lobby": True}}
    host = Client(server, token=token(room="r", context={**room, "user": {"moderator": True}}))
    guest = Client(server, token=token(room="r", context=room))
    for client in (host, guest):
        client.login_anonymous()
    (info,) = guest.send("<iq type='get' id='d' to='localhost'>"
                         "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    assert ("component", "lobbyrooms", "lobby.localhost") in {
        (i["category"], i["type"], i.getAttribute("name")) for i in info.query.elements()
        if i.name == "identity"}
    join = ("<presence to='{}/{}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    host.send(join.format("r@conference.localhost", "host"))
    (refused,) = guest.send(join.format("r@conference.localhost", "guest"))
    assert refused.error.firstChildElement().name == "registration-required"
    lobby = next(refused.elements("http://jitsi.org/jitmeet", "lobbyroom"))
    assert str(lobby) == "r@lobby.localhost"
    knocked = guest.send(join.format("r@lobby.localhost", "k1"))
    assert knocked[0].getAttribute("type") is None


def test_version(tmp_path: Path) -> None:
    client = Client(make_server(tmp_path))
    client.login_anonymous()
    (result,) = client.send("<iq type='get' id='v' to='localhost'>"
                            "<query xmlns='jabber:iq:version'/></iq>")
    assert str(next(result.query.elements("jabber:iq:version", "name"))) == "vw"


def test_bare_jid_messages_go_to_the_highest_priority(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    server.accounts.set_credentials("localhost", "pat", [])
    low, high, sender = Client(server), Client(server), Client(server)
    for client, priority in ((low, 1), (high, 5)):
        client.login_anonymous()
        session = client.stream.session
        server.router.unbind(session)
        session.jid = session.jid.__class__(f"pat@localhost/{priority}")
        server.router.bind(session)
        client.send(f"<presence><priority>{priority}</priority></presence>")
    sender.login_anonymous()
    low.transport.take()
    high.transport.take()
    sender.send("<message to='pat@localhost' type='chat'><body>hi</body></message>")
    assert [m.name for m in high.transport.take()] == ["message"]
    assert low.transport.take() == []
