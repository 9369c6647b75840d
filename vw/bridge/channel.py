"""The bridge channel (colibri-ws): Jitsi's JSON messages between an endpoint and the bridge.

Sans-IO: text frames in, decoded messages out; messages in, text frames out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

#: Largest bridge-channel frame accepted, in bytes.
MAX_FRAME = 65536


class ChannelMessageError(ValueError):
    """A frame that is not a bridge-channel message."""


@dataclass(frozen=True)
class VideoConstraints:
    max_height: int


@dataclass(frozen=True)
class ReceiverVideoConstraints:
    last_n: int = -1
    selected_endpoints: tuple[str, ...] = ()
    on_stage_endpoints: tuple[str, ...] = ()
    default_constraints: VideoConstraints | None = None
    constraints: dict[str, VideoConstraints] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointMessage:
    """An opaque message from one endpoint to another ("" = to everyone else)."""

    to: str
    payload: Any


@dataclass(frozen=True)
class EndpointStats:
    body: dict[str, Any]


@dataclass(frozen=True)
class VideoTypeMessage:
    video_type: str


@dataclass(frozen=True)
class LastNChanged:
    """Legacy LastNChangedEvent."""

    last_n: int


@dataclass(frozen=True)
class Unhandled:
    """A well-formed message of a class the bridge does not act on."""

    colibri_class: str


ChannelMessage = (ReceiverVideoConstraints | EndpointMessage | EndpointStats | VideoTypeMessage
                  | LastNChanged | Unhandled)


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ChannelMessageError(f"{name} must be an integer")
    return value


def _names(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ChannelMessageError(f"{name} must be a list of endpoint ids")
    return tuple(value)


def _constraints(value: Any, name: str) -> VideoConstraints:
    if not isinstance(value, dict):
        raise ChannelMessageError(f"{name} must be an object")
    return VideoConstraints(_int(value.get("maxHeight", -1), f"{name}.maxHeight"))


def parse_message(frame: str) -> ChannelMessage:
    """Decode one text frame from an endpoint."""
    if len(frame) > MAX_FRAME:
        raise ChannelMessageError("frame too large")
    try:
        body = json.loads(frame)
    except (ValueError, RecursionError) as e:
        raise ChannelMessageError(f"not JSON: {e.__class__.__name__}") from None
    if not isinstance(body, dict) or not isinstance(body.get("colibriClass"), str):
        raise ChannelMessageError("a JSON object with a colibriClass is required")
    kind = body["colibriClass"]
    if kind == "ReceiverVideoConstraints":
        constraints = body.get("constraints") or {}
        if not isinstance(constraints, dict):
            raise ChannelMessageError("constraints must be an object")
        default = body.get("defaultConstraints")
        return ReceiverVideoConstraints(
            last_n=_int(body.get("lastN", -1), "lastN"),
            selected_endpoints=_names(body.get("selectedEndpoints"), "selectedEndpoints"),
            on_stage_endpoints=_names(body.get("onStageEndpoints"), "onStageEndpoints"),
            default_constraints=(_constraints(default, "defaultConstraints")
                                 if default is not None else None),
            constraints={str(k): _constraints(v, f"constraints.{k}")
                         for k, v in constraints.items()})
    if kind == "EndpointMessage":
        to = body.get("to", "")
        if not isinstance(to, str):
            raise ChannelMessageError("to must be a string")
        return EndpointMessage(to, body.get("msgPayload"))
    if kind == "EndpointStats":
        return EndpointStats({k: v for k, v in body.items() if k not in ("colibriClass", "from")})
    if kind == "VideoTypeMessage":
        video_type = body.get("videoType")
        if not isinstance(video_type, str):
            raise ChannelMessageError("videoType must be a string")
        return VideoTypeMessage(video_type)
    if kind == "LastNChangedEvent":
        return LastNChanged(_int(body.get("lastN", -1), "lastN"))
    return Unhandled(kind)


def _frame(colibri_class: str, **fields: Any) -> str:
    return json.dumps({"colibriClass": colibri_class, **fields}, separators=(",", ":"))


def server_hello(version: str) -> str:
    return _frame("ServerHello", version=version)


def dominant_speaker(endpoint: str, previous: list[str]) -> str:
    return _frame("DominantSpeakerEndpointChangeEvent", dominantSpeakerEndpoint=endpoint,
                  previousSpeakers=previous)


def last_n_endpoints(endpoints: list[str]) -> str:
    return _frame("LastNEndpointsChangeEvent", lastNEndpoints=endpoints)


def forwarded_source_names(sources: list[str]) -> str:
    return _frame("ForwardedSources", forwardedSources=sources)


def relayed_message(sender: str, message: EndpointMessage) -> str:
    return _frame("EndpointMessage", to=message.to, msgPayload=message.payload, **{"from": sender})


def relayed_stats(sender: str, stats: EndpointStats) -> str:
    return _frame("EndpointStats", **stats.body, **{"from": sender})
