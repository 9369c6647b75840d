"""API access tokens: short-lived HS256 JWTs naming a user, checked against the clock."""

from __future__ import annotations

import jwt

from vw.portal.checks import whole_number
from vw.portal.records import MAX_USER_ID

ISSUER = "vw-portal"
AUDIENCE = "vw-portal-api"
#: Tokens whose signature and claims have been checked, remembered (their user and expiry)
#: so that an app's every request does not decode and verify its token again.
CHECKED_TOKENS = 4096


class InvalidToken(Exception):
    """The bearer token is malformed, forged, for something else, or expired."""


class AccessTokens:
    def __init__(self, secret: str, ttl: int) -> None:
        self._secret = secret
        self.ttl = ttl
        self._checked: dict[str, tuple[int, int]] = {}

    def issue(self, user_id: int, now: float) -> str:
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": str(user_id), "iat": int(now),
                  "exp": int(now) + self.ttl}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str, now: float) -> int:
        """The user the token names; raises InvalidToken.

        A token is the same text whenever it is sent, and its signature either holds or not:
        one that passed is remembered with its user and expiry, which is still checked.
        """
        checked = self._checked.get(token)
        if checked is not None:
            if now >= checked[1]:
                raise InvalidToken("expired")
            return checked[0]
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], audience=AUDIENCE,
                                issuer=ISSUER, options={"require": ["exp", "sub", "iat"],
                                                        "verify_exp": False,
                                                        "verify_iat": False})
        except jwt.PyJWTError as error:
            raise InvalidToken(str(error)) from None
        expires = claims["exp"]
        if isinstance(expires, bool) or not isinstance(expires, int) or now >= expires:
            raise InvalidToken("expired")
        user_id = whole_number(claims["sub"], 1, MAX_USER_ID)
        if user_id is None:
            raise InvalidToken("bad subject")
        if len(self._checked) >= CHECKED_TOKENS:
            self._checked.clear()
        self._checked[token] = (user_id, expires)
        return user_id
