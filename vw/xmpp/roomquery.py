"""``GET /about/rooms/NAME``: whether this shard hosts a conference room now.

The balancer asks a draining shard this about a room it has not seen, so that every
balancer instance keeps that room's participants together on the shard that has it. The
answer is 200 with the occupant count, or 404; only the configured addresses (loopback by
default) may ask, since room names are how guests find meetings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from twisted.web.resource import Resource
from twisted.web.server import Request

from vw.common.networks import Networks
from vw.xmpp.muc import MUCService


class RoomQueryResource(Resource):
    """``/about/rooms``: one child per room name asked about."""

    def __init__(self, rooms: MUCService, allowed: Sequence[str]) -> None:
        super().__init__()
        self.rooms = rooms
        self.allowed = Networks(allowed)

    def getChild(self, path: bytes, request: Request) -> Resource:
        return RoomAnswer(self, path)

    def may_ask(self, host: str) -> bool:
        return host in self.allowed


class RoomAnswer(Resource):
    isLeaf = True

    def __init__(self, query: RoomQueryResource, name: bytes) -> None:
        super().__init__()
        self.query = query
        self.name = name

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        if not self.query.may_ask(request.getClientAddress().host):
            request.setResponseCode(403)
            return b'{"error": "not allowed from this address"}'
        try:
            node = self.name.decode("utf-8").lower()
        except UnicodeDecodeError:
            node = ""
        room = self.query.rooms.room(node) if node else None
        if room is None or not room.occupants:
            request.setResponseCode(404)
            return b'{"error": "no such room"}'
        return json.dumps({"room": node, "occupants": room.occupant_count()}).encode()
