"""What a participant needs to join a room: a JWT for that room only, the meeting page and
WebSocket addresses, and TURN credentials in the coturn REST scheme."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import jwt

from vw.common.state import persistent_secret
from vw.config import Config
from vw.portal.records import JoinRoom
from vw.xmpp.features import turn_credentials

#: Seconds a join token is valid before its ``iat``, for clocks a little behind ours.
CLOCK_SKEW = 60


def with_join_tokens(config: Config) -> Config:
    """``config`` with an HS256 secret for join tokens: ``xmpp.token.app_secret``, or when it
    is empty one generated once under state_dir, with guests still signing in without a token
    (``allow_anonymous``). The all-in-one gives the result to vw-xmpp and vw-portal alike, so
    the XMPP server checks the portal's tokens; applying it twice changes nothing."""
    token = config.xmpp.token
    if token.app_secret:
        return config
    token = replace(token, app_secret=persistent_secret(config.state_dir, "token-secret"),
                    allow_anonymous=True)
    return replace(config, xmpp=replace(config.xmpp, token=token))


def turn_secret(config: Config) -> str:
    """The TURN REST secret, as vw-turn and vw-xmpp find it."""
    return config.xmpp.turn.secret or persistent_secret(config.state_dir, "turn-secret")


@dataclass(frozen=True)
class Participant:
    """Who joins: an account (id is its number) or a guest (id "guest-...")."""

    id: str
    name: str
    email: str = ""
    avatar: str = ""


@dataclass(frozen=True)
class TurnGrant:
    username: str
    password: str
    ttl: int
    uris: list[str]


@dataclass(frozen=True)
class JoinGrant:
    room: str
    jwt: str
    meeting_url: str
    websocket_url: str
    turn: TurnGrant

    def document(self) -> dict[str, Any]:
        """The grant as JSON: ``dataclasses.asdict`` by hand (asdict, which copies
        recursively, took a tenth of the store thread's time in a join)."""
        turn = self.turn
        return {"room": self.room, "jwt": self.jwt, "meeting_url": self.meeting_url,
                "websocket_url": self.websocket_url,
                "turn": {"username": turn.username, "password": turn.password,
                         "ttl": turn.ttl, "uris": list(turn.uris)}}


class Joins:
    """Mints join grants compatible with vw-xmpp's TokenVerifier (Prosody token auth), signed
    with ``xmpp.token.app_secret`` (see :func:`with_join_tokens`)."""

    def __init__(self, config: Config, turn_secret: str) -> None:
        if not config.xmpp.token.app_secret:
            raise ValueError("join tokens need xmpp.token.app_secret: see with_join_tokens")
        self._config = config
        self._secret = config.xmpp.token.app_secret
        self._turn_secret = turn_secret

    def token(self, room: JoinRoom, who: Participant, moderator: bool, now: float) -> str:
        """A JWT for ``room`` only: Jitsi's claims, and in ``context.room`` the meeting's
        lobby and participant limit (which vw-xmpp applies)."""
        token = self._config.xmpp.token
        audience = next((aud for aud in token.audiences if aud != "*"), token.app_id or "*")
        user = {"id": who.id, "name": who.name, "email": who.email, "avatar": who.avatar,
                "moderator": moderator}
        issued = int(now)
        claims = {"iss": token.app_id or "vw-portal", "aud": audience,
                  "sub": self._config.general.domain, "room": room.name, "iat": issued,
                  "nbf": issued - CLOCK_SKEW, "exp": issued + self._config.portal.join_token_ttl,
                  "context": {"user": user, "room": {
                      "lobby": room.lobby, "max_participants": room.max_participants}}}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def turn(self, who: Participant, now: float) -> TurnGrant:
        offer = self._config.xmpp.turn
        host = offer.host or self._config.general.domain
        username, password = turn_credentials(self._turn_secret, who.id,
                                              int(now) + offer.credential_ttl)
        uris = [f"turn:{host}:{offer.port}?transport=udp",
                f"turn:{host}:{offer.port}?transport=tcp",
                f"turns:{host}:{offer.tls_port}?transport=tcp"]
        return TurnGrant(username, password, offer.credential_ttl, uris)

    def grant(self, join: JoinRoom, who: Participant, moderator: bool, now: float
              ) -> JoinGrant:
        portal = self._config.portal
        token = self.token(join, who, moderator, now)
        room = join.name
        websocket = (portal.websocket_url
                     or f"ws://localhost:{self._config.xmpp.http_port}/xmpp-websocket")
        return JoinGrant(
            room=room, jwt=token,
            meeting_url=f"{portal.meeting_base_url.rstrip('/')}/{quote(room)}?jwt={token}",
            websocket_url=f"{websocket}?room={quote(room)}", turn=self.turn(who, now))
