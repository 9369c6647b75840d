"""GET /about/rooms/NAME: whether this shard hosts a room, for the balancer's drain."""

from __future__ import annotations

import json

from twisted.internet.address import IPv4Address
from twisted.web.test.requesthelper import DummyRequest

from tests.xmpp.test_muc import Harness
from vw.xmpp.roomquery import RoomQueryResource


def ask(query: RoomQueryResource, name: bytes, source: str = "127.0.0.1") -> tuple[int, dict]:
    request = DummyRequest([name])
    request.client = IPv4Address("TCP", source, 50000)
    body = query.getChild(name, request).render_GET(request)
    return request.responseCode or 200, json.loads(body)


def test_a_room_with_occupants_is_here_and_others_are_not() -> None:
    harness = Harness()
    harness.join("alice", "alice@example.com/a")
    query = RoomQueryResource(harness.muc, ["127.0.0.0/8", "10.0.0.0/8"])
    assert ask(query, b"room") == (200, {"room": "room", "occupants": 1})
    assert ask(query, b"ROOM", "10.1.2.3")[0] == 200
    assert ask(query, b"elsewhere")[0] == 404
    assert ask(query, b"\xff\xfe")[0] == 404


def test_only_the_configured_addresses_may_ask() -> None:
    harness = Harness()
    harness.join("alice", "alice@example.com/a")
    query = RoomQueryResource(harness.muc, ["127.0.0.0/8"])
    assert ask(query, b"room", "192.0.2.7")[0] == 403
