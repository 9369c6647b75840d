"""vw-turn sums up what it refused in one log line a minute, rather than a line each."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.logger import formatEvent, globalLogPublisher

from tests.turn.test_leases import KEY, REALM, USER, Turn
from vw.stun import (
    TRANSPORT_UDP,
    ErrorCode,
    Message,
    MessageClass,
    Method,
    Nonce,
    Realm,
    RequestedTransport,
    Username,
    XorPeerAddress,
)
from vw.turn.service import REFUSALS_LOGGED_EVERY


@pytest.mark.parametrize("compiled", [True, False])
def test_refusals_are_logged_once_a_minute_by_reason(tmp_path: Path, compiled: bool) -> None:
    lines: list[str] = []

    def observe(event: dict) -> None:
        text = formatEvent(event)
        if text.startswith("refused in the last"):
            lines.append(text)

    globalLogPublisher.addObserver(observe)
    turn = Turn(tmp_path, compiled)
    try:
        challenge = Message(Method.ALLOCATE, MessageClass.REQUEST,
                            attributes=[RequestedTransport(TRANSPORT_UDP)]).bytes()
        for datagram in (challenge, challenge, b"\x00\x01" + bytes(30)):
            turn.client.sendto(datagram, turn.server)
            turn.pump()
        turn.client.settimeout(0.2)
        with pytest.raises(TimeoutError):
            while True:
                turn.client.recv(2000)  # the two 401s; nothing for the malformed one
        turn.client.settimeout(2)
        nonce = turn.service.core.auth.nonces.issue(turn.clock.seconds())
        signed = Message(Method.CREATE_PERMISSION, MessageClass.REQUEST, attributes=[
            XorPeerAddress("127.0.0.1", 9), Username(USER), Realm(REALM), Nonce(nonce)])
        turn.client.sendto(signed.bytes(KEY), turn.server)
        turn.pump()
        assert Message.parse(turn.client.recv(2000)).get(ErrorCode).code == 437  # no allocation
        turn.clock.advance(REFUSALS_LOGGED_EVERY)
        assert lines == [f"refused in the last {REFUSALS_LOGGED_EVERY:.0f} s: "
                         "401 x2, 437 x1, malformed x1"]
        turn.clock.advance(REFUSALS_LOGGED_EVERY)  # nothing new: no line
        assert len(lines) == 1
    finally:
        globalLogPublisher.removeObserver(observe)
        turn.close()
