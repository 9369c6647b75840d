"""Room extraction and the route table: one room whatever its spelling, hostile names
refused."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vw.balancer.rooms import MAX_ROOM, RoomError
from vw.balancer.routes import BRIDGE, HEALTH, PORTAL, SHARD, Route, RouteTable

fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TABLE = RouteTable(["/api/", "/signin"])


@pytest.mark.parametrize("target", [
    b"/MyRoom", b"/myroom", b"/tenant/myroom", b"/%4Dy%52oom", b"/myroom?lang=en",
    b"/xmpp-websocket?room=myroom", b"/xmpp-websocket?token=x&room=MYROOM",
    b"/http-bind?room=my%72oom", b"/anything?room=MyRoom",
])
def test_every_spelling_of_a_room_routes_alike(target: bytes) -> None:
    assert TABLE.route(target) == Route(SHARD, "myroom")


def test_unicode_rooms_are_lowercased() -> None:
    assert TABLE.route("/Ärger".encode()) == Route(SHARD, "ärger")
    assert TABLE.route(b"/%C3%84rger") == Route(SHARD, "ärger")
    assert TABLE.route(b"/xmpp-websocket?room=a+b") == Route(SHARD, "a b")


@pytest.mark.parametrize("target, route", [
    (b"/about/health", Route(HEALTH)),
    (b"/colibri-ws/jvb-1/conf/endpoint?pwd=x", Route(BRIDGE, "jvb-1")),
    (b"/api/v1/meetings", Route(PORTAL)),
    (b"/signin", Route(PORTAL)),
    (b"/", Route(SHARD, "")),
    (b"/static/app.js", Route(SHARD, "")),
    (b"/libs/x/y.js", Route(SHARD, "")),
    (b"/xmpp-websocket", Route(SHARD, "")),
    (b"/static", Route(SHARD, "static")),
])
def test_route_table(target: bytes, route: Route) -> None:
    assert TABLE.route(target) == route


@pytest.mark.parametrize("target", [
    b"/a%2Fb", b"/a%2fb", b"/xmpp-websocket?room=a%2Fb", b"/../etc/passwd", b"/a/./b",
    b"/%2e%2e/x", b"/x/%2E%2E", b"/a%00b", b"/xmpp-websocket?room=a%00", b"/a%5Cb",
    b"/" + b"a" * (MAX_ROOM + 1), b"/xmpp-websocket?room=" + b"b" * 300, b"/a%zz",
    b"/a%2", b"/%ff%fe", b"/xmpp-websocket?room=a&room=b", b"/colibri-ws//x",
    b"/xmpp-websocket?room=..", b"/a%0d%0ab",
])
def test_hostile_targets_are_refused(target: bytes) -> None:
    with pytest.raises(RoomError):
        TABLE.route(target)


def test_the_longest_room_is_accepted() -> None:
    assert TABLE.route(b"/" + b"A" * MAX_ROOM) == Route(SHARD, "a" * MAX_ROOM)
    room = b"/http-bind?room=" + b"B" * MAX_ROOM
    assert TABLE.route(room) == Route(SHARD, "b" * MAX_ROOM)
    with pytest.raises(RoomError):
        TABLE.route(room + b"b")


def test_a_portal_prefix_wins_over_a_room_endpoint() -> None:
    assert RouteTable(["/http-bind"]).route(b"/http-bind?room=a") == Route(PORTAL)
    assert RouteTable(["/http-bind"]).route(b"/xmpp-websocket?room=A") == Route(SHARD, "a")
    assert RouteTable(["/"]).route(b"/xmpp-websocket?room=a") == Route(PORTAL)
    assert RouteTable(["/"]).route(b"/?room=a") == Route(PORTAL)


@fuzz
@given(st.binary(max_size=80).map(lambda b: b"/" + b))
def test_random_targets_route_or_are_refused(target: bytes) -> None:
    try:
        route = TABLE.route(target)
    except RoomError:
        return
    assert route.kind in (HEALTH, SHARD, BRIDGE, PORTAL)
    assert "/" not in route.key and "\x00" not in route.key and len(route.key) <= MAX_ROOM
    assert route.key == route.key.lower() or route.kind == BRIDGE


@fuzz
@given(st.text(max_size=40))
def test_any_room_name_quoted_comes_back_lowercased(name: str) -> None:
    from urllib.parse import quote

    try:
        route = TABLE.route(b"/xmpp-websocket?room=" + quote(name, safe="").encode())
    except RoomError:
        assert any(c in name for c in "/\\\x00") or name in (".", "..") or any(
            ord(c) < 32 or ord(c) == 127 for c in name)
        return
    assert route == Route(SHARD, name.lower())


def test_routes_of_short_targets_are_remembered_within_a_bound() -> None:
    from vw.balancer import routes

    table = RouteTable([])
    long_target = b"/xmpp-websocket?room=a&pad=" + b"x" * routes.LONGEST_KEPT
    assert table.route(long_target) == table.route(long_target) == Route(SHARD, "a")
    assert long_target not in table._known
    for number in range(routes.ROUTES_KEPT + 10):
        assert table.route(b"/room%d" % number) == Route(SHARD, f"room{number}")
        assert len(table._known) <= routes.ROUTES_KEPT
    with pytest.raises(RoomError):
        table.route(b"/xmpp-websocket?room=a&room=b")
    with pytest.raises(RoomError):  # a refusal is not remembered as a route
        table.route(b"/xmpp-websocket?room=a&room=b")
