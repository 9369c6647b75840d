"""The focus's HTTP port: Jicofo's conference-request/v1 and the stats, through twisted.web."""

from __future__ import annotations

import dataclasses
import io
import json

from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from tests.focus.test_conference import ROOM, FakeLink, own_presence
from vw.config import Config
from vw.focus.focus import Focus
from vw.focus.service import ConferenceRequestResource
from vw.xmpp.errors import StanzaError


def post(resource: ConferenceRequestResource, body: bytes) -> DummyRequest:
    request = DummyRequest([b""])
    request.method = b"POST"
    request.content = io.BytesIO(body)
    result = resource.render(request)
    if isinstance(result, bytes):
        request.write(result)
        request.finish()
    return request


def make_focus(**focus: object) -> tuple[Focus, FakeLink]:
    link = FakeLink()
    config = Config()
    config = dataclasses.replace(config, focus=dataclasses.replace(config.focus, **focus))
    return Focus(config, link, Clock().seconds), link


def test_conference_request_answers_once_the_focus_owns_the_room() -> None:
    focus, link = make_focus()
    request = post(ConferenceRequestResource(focus), json.dumps({"room": ROOM}).encode())
    assert not request.finished  # waiting for the focus to be in the room
    assert link.sent[-1]["to"] == f"{ROOM}/focus"
    focus.stanza_received(own_presence())
    assert request.finished
    answer = json.loads(b"".join(request.written))
    assert answer["ready"] is True and answer["focusJid"] == "focus@auth.localhost"
    assert focus.stats()["conferences"] == 1


def test_conference_request_refuses_bad_input() -> None:
    focus, _ = make_focus()
    resource = ConferenceRequestResource(focus)
    for body in (b"not json", b"{}", b'{"room": 7}', b"x" * 20000):
        request = post(resource, body)
        assert request.responseCode == 400, body[:20]
    request = post(resource, json.dumps({"room": "r@conference.example.org"}).encode())
    assert request.responseCode == 400
    assert focus.stats()["conferences"] == 0


def test_guests_wait_for_an_authenticated_host() -> None:
    focus, _ = make_focus(require_authenticated_host=True)
    try:
        focus.request_conference(ROOM, "guest123@localhost/x")
        raise AssertionError("a guest started the room")
    except StanzaError as error:
        assert error.condition == "not-authorized"
    focus.request_conference(ROOM, "host@auth.localhost/x")  # not a guest domain
    focus.request_conference(ROOM, "guest123@localhost/x")  # the room has started
    request = post(ConferenceRequestResource(make_focus(require_authenticated_host=True)[0]),
                   json.dumps({"room": ROOM}).encode())
    assert request.responseCode is None  # HTTP requests carry no guest identity: allowed
