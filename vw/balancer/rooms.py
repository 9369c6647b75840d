"""The room a request is for: the ``room`` query parameter, or the last path segment of a
meeting page; lowercased and percent-decoded, with anything that could mean another path
refused (sans-IO)."""

from __future__ import annotations

import re

#: Longest room name, in characters.
MAX_ROOM = 255
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
#: Characters no room name contains: separators and controls.
_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")


class RoomError(ValueError):
    """A room name or path that is refused (HTTP 400)."""


def percent_decode(value: bytes, plus: bool = False) -> str:
    """``value`` with %XX escapes (and, in a query, "+") decoded, as UTF-8."""
    if b"%" not in value and not (plus and b"+" in value):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise RoomError("not UTF-8") from None
    if _BAD_ESCAPE.search(value):
        raise RoomError("malformed percent escape")
    if plus:
        value = value.replace(b"+", b" ")
    decoded = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), value)
    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise RoomError("not UTF-8") from None


def check_name(name: str) -> str:
    """``name`` lowercased, if it is a possible room (or empty)."""
    if len(name) > MAX_ROOM:
        raise RoomError("room name too long")
    if name in (".", "..") or _FORBIDDEN.search(name):
        raise RoomError("room name with a separator, a dot segment or a control character")
    return name.lower()


def query_room(query: bytes) -> str | None:
    """The ``room`` parameter of ``query``; None if absent. Given twice, it is refused: the
    balancer and the backend must not read different ones."""
    found = None
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        if key != b"room" and percent_decode(key, plus=True) != "room":
            continue
        if found is not None:
            raise RoomError("room given twice")
        found = check_name(percent_decode(value, plus=True))
    return found


def path_segments(path: bytes) -> list[str]:
    """The decoded segments of ``path``; dot segments and escaped separators are refused."""
    if b"%" in path:
        segments = [percent_decode(segment) for segment in path.split(b"/")[1:]]
    else:  # "/" cannot be part of a UTF-8 sequence: decode once, then split
        segments = percent_decode(path).split("/")[1:]
    for segment in segments:
        if segment in (".", "..") or _FORBIDDEN.search(segment):
            raise RoomError("dot segment, escaped separator or control character in the path")
    return segments
