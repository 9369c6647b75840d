"""focus.DOMAIN served by the focus account: forwarded IQs, answers from the domain."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import jwt

from tests.xmpp.helpers import TOKEN_SECRET, Client, header, make_server


def test_without_the_focus_online_a_request_is_service_unavailable(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    guest = Client(server)
    guest.login_anonymous()
    (reply,) = guest.send("<iq type='set' id='c1' to='focus.localhost'><conference "
                          "xmlns='http://jitsi.org/protocol/focus' room='r@conference.localhost'/>"
                          "</iq>")
    assert reply["type"] == "error" and reply.error.firstChildElement().name == \
        "service-unavailable"


def test_requests_reach_the_focus_and_answers_come_from_the_domain(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    server.accounts.set_password("auth.localhost", "focus", "focus-password")
    focus = Client(server)
    focus.stream.stream_opened(header("auth.localhost"))
    focus.transport.take()
    plain = base64.b64encode(b"\0focus\0focus-password").decode()
    (success,) = focus.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                            f"mechanism='PLAIN'>{plain}</auth>")
    assert success.name == "success"
    focus.stream.stream_opened(header("auth.localhost"))
    focus.transport.take()
    focus.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
               "<resource>focus</resource></bind></iq>")
    guest = Client(server)
    guest_jid = guest.login_anonymous()
    assert guest.send("<iq type='get' id='q1' to='focus.localhost'><query "
                      "xmlns='urn:example'/></iq>") == []
    (forwarded,) = focus.transport.take()
    assert forwarded["from"] == guest_jid
    assert forwarded["to"] == "focus@auth.localhost/focus"
    focus.send(f"<iq type='result' id='q1' to='{guest_jid}'/>")
    (answer,) = guest.transport.take()
    assert answer["from"] == "focus.localhost" and answer["id"] == "q1"
    focus.send(f"<iq type='result' id='q1' to='{guest_jid}'/>")  # not asked again: its own JID
    (again,) = guest.transport.take()
    assert again["from"] == "focus@auth.localhost/focus"


def test_a_token_limits_the_rooms_its_holder_may_ask_the_focus_for(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    now = int(time.time())
    value = jwt.encode({"iss": "app", "aud": "app", "sub": "localhost", "room": "alpha",
                        "exp": now + 600}, TOKEN_SECRET, algorithm="HS256")
    guest = Client(server, token=value)
    guest.login_anonymous()
    (refused,) = guest.send("<iq type='set' id='c2' to='focus.localhost'><conference "
                            "xmlns='http://jitsi.org/protocol/focus' "
                            "room='beta@conference.localhost'/></iq>")
    assert refused.error.firstChildElement().name == "not-allowed"
    assert refused.error.children[-1].name == "reservation-error"
    (allowed,) = guest.send("<iq type='set' id='c3' to='focus.localhost'><conference "
                            "xmlns='http://jitsi.org/protocol/focus' "
                            "room='alpha@conference.localhost'/></iq>")
    assert allowed.error.firstChildElement().name == "service-unavailable"  # no focus here
