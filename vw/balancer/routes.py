"""The route table: which kind of backend a request target goes to, by path prefix
(sans-IO).

=================================  =========================================================
``/about/health``                  the balancer itself
``/xmpp-websocket``, ``/http-bind``  the room's shard (``?room=``)
``/colibri-ws/{bridge-id}/...``    that bridge
a portal prefix (``/api/``...)     the portal
``/static/``, ``/libs/``           a shard (the same for every room: the assets are alike)
anything else, ``/ROOM``           the room's shard (``?room=``, else the last segment)
=================================  =========================================================
"""

from __future__ import annotations

import re
from typing import NamedTuple

from vw.balancer.rooms import MAX_ROOM, RoomError, check_name, path_segments, query_room

HEALTH, SHARD, BRIDGE, PORTAL = "health", "shard", "bridge", "portal"
_ROOM_ENDPOINTS = frozenset(["xmpp-websocket", "http-bind"])
_ASSETS = frozenset(["static", "libs"])
#: Request targets whose routes are remembered (a route depends on the target alone), and
#: the longest one remembered.
ROUTES_KEPT = 4096
LONGEST_KEPT = 256


class Route(NamedTuple):
    kind: str
    #: The room (SHARD; "" when there is none) or the bridge id (BRIDGE).
    key: str = ""


class RouteTable:
    def __init__(self, portal_prefixes: list[str]) -> None:
        self.portal_prefixes = tuple(prefix.encode() for prefix in portal_prefixes)
        self._known: dict[bytes, Route] = {}
        endpoints = [endpoint.encode() for endpoint in sorted(_ROOM_ENDPOINTS)
                     if not f"/{endpoint}".encode().startswith(self.portal_prefixes)]
        #: The usual target, routed without decoding: a room endpoint with only a plain
        #: ``room`` parameter (no escapes, no dot names). None if portal prefixes take them all.
        self._plain = re.compile(rb"/(?:%s)\?room=([\w~-][\w.~-]{0,%d})"
                                 % (b"|".join(endpoints), MAX_ROOM - 1)) if endpoints else None

    def route(self, target: bytes) -> Route:
        """The route for an origin-form ``target``; RoomError if it is refused."""
        route = self._known.get(target)
        if route is None:
            route = self._route(target)
            if len(target) <= LONGEST_KEPT:
                if len(self._known) >= ROUTES_KEPT:
                    self._known.clear()
                self._known[target] = route
        return route

    def _route(self, target: bytes) -> Route:
        plain = None if self._plain is None else self._plain.fullmatch(target)
        if plain is not None:
            return Route(SHARD, plain[1].decode("ascii").lower())
        path, _, query = target.partition(b"?")
        segments = path_segments(path)
        room = query_room(query) if query else None
        first = segments[0]
        if path == b"/about/health":
            return Route(HEALTH)
        if first == "colibri-ws" and len(segments) > 2:
            if not segments[1]:
                raise RoomError("colibri-ws without a bridge id")
            return Route(BRIDGE, segments[1])
        if path.startswith(self.portal_prefixes):
            return Route(PORTAL)
        if room is not None:
            return Route(SHARD, room)
        if first in _ROOM_ENDPOINTS or (first in _ASSETS and len(segments) > 1):
            return Route(SHARD)
        return Route(SHARD, check_name(segments[-1]))
