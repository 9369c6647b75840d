"""Bridge-channel (colibri-ws) messages as lib-jitsi-meet sends and reads them."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vw.bridge.channel import (
    ChannelMessageError,
    EndpointMessage,
    EndpointStats,
    ReceiverVideoConstraints,
    Unhandled,
    VideoConstraints,
    VideoTypeMessage,
    dominant_speaker,
    parse_message,
    relayed_message,
    server_hello,
)


def test_receiver_video_constraints_as_ljm_sends_them() -> None:
    frame = ('{"colibriClass":"ReceiverVideoConstraints","lastN":-1,"selectedEndpoints":[],'
             '"onStageEndpoints":["b0b0b0b0"],"defaultConstraints":{"maxHeight":180},'
             '"constraints":{"b0b0b0b0":{"maxHeight":720}}}')
    assert parse_message(frame) == ReceiverVideoConstraints(
        last_n=-1, selected_endpoints=(), on_stage_endpoints=("b0b0b0b0",),
        default_constraints=VideoConstraints(180), constraints={"b0b0b0b0": VideoConstraints(720)})


def test_other_client_messages() -> None:
    assert parse_message('{"colibriClass":"VideoTypeMessage","videoType":"desktop"}') == \
        VideoTypeMessage("desktop")
    assert parse_message('{"colibriClass":"EndpointMessage","to":"","msgPayload":{"a":1}}') == \
        EndpointMessage("", {"a": 1})
    stats = parse_message('{"colibriClass":"EndpointStats","from":"spoof","bitrate":5}')
    assert stats == EndpointStats({"bitrate": 5})
    assert parse_message('{"colibriClass":"Novel"}') == Unhandled("Novel")


@pytest.mark.parametrize("frame", ["", "[]", "{}", '{"colibriClass":5}', "x" * 70000,
                                   "[" * 60000,
                                   '{"colibriClass":"ReceiverVideoConstraints","lastN":"2"}',
                                   '{"colibriClass":"EndpointMessage","to":7}'])
def test_malformed_frames(frame: str) -> None:
    with pytest.raises(ChannelMessageError):
        parse_message(frame)


def test_server_messages() -> None:
    assert json.loads(server_hello("1.0")) == {"colibriClass": "ServerHello", "version": "1.0"}
    assert json.loads(dominant_speaker("a", ["b"]))["dominantSpeakerEndpoint"] == "a"
    relayed = json.loads(relayed_message("a", EndpointMessage("", {"x": 1})))
    assert relayed == {"colibriClass": "EndpointMessage", "from": "a", "to": "",
                       "msgPayload": {"x": 1}}


@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_channel_errors(frame: str) -> None:
    try:
        parse_message(frame)
    except ChannelMessageError:
        pass
