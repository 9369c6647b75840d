"""JWT verification compatible with Jitsi's Prosody token authentication.

Mirrors the checks of jitsi-meet's ``mod_auth_token`` / ``token/util.lib.lua``:
the token is signed with a shared secret (HS256) or an RSA key looked up by the
header ``kid`` under ``sha256(kid).hexdigest() + ".pem"`` (the ASAP key server
layout), must carry ``iss``, ``aud`` and ``room`` claims, and binds the
``context.user`` details to the session.  Unlike Jitsi, ``exp`` is mandatory and
``sub`` must name this domain (or "*").
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.warnings import InsecureKeyLengthWarning

from vw.config import TokenConfig

__all__ = ["MAX_TOKEN_LENGTH", "TokenIdentity", "TokenRejected", "TokenVerifier"]

#: Tokens longer than this (in characters) are rejected before any parsing.
MAX_TOKEN_LENGTH = 8 * 1024
#: Largest PEM file read from the public key directory.
_MAX_PEM_SIZE = 64 * 1024
#: How many RS256 public keys are kept in memory (Jitsi's default cache size).
_KEY_CACHE_SIZE = 128
#: Algorithms this verifier can be configured with.
SUPPORTED_ALGORITHMS = ("HS256", "RS256")
#: Jitsi ASAP key ids look like "issuer/key-name"; keep them to a safe alphabet.
_KID_RE = re.compile(r"[A-Za-z0-9._:@+=/-]{1,255}")
#: User details copied from ``context.user``.
_USER_FIELDS = ("id", "name", "email", "avatar")
_MODERATOR_AFFILIATIONS = ("owner", "moderator")
#: The largest ``context.room.max_participants`` accepted.
MAX_PARTICIPANTS_LIMIT = 10000


class TokenRejected(Exception):
    """The token is not acceptable; ``str(exc)`` is a short reason for SASL ``<text>``."""


@dataclass(frozen=True)
class TokenIdentity:
    """What a verified token says about its bearer."""

    subject: str
    room: str
    user: dict[str, str] = field(default_factory=dict)
    moderator: bool = False
    claims: dict[str, Any] = field(default_factory=dict)
    #: The meeting's participant limit (``context.room.max_participants``); 0: none.
    max_participants: int = 0
    #: Whether the meeting has a lobby (``context.room.lobby``).
    lobby: bool = False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite JSON number {name}")


def _number(claims: dict[str, Any], name: str) -> float | None:
    """Return claim *name* as a finite float, None when absent; reject other types."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenRejected(f"'{name}' claim must be a number")
    try:
        number = float(value)
    except OverflowError:
        raise TokenRejected(f"'{name}' claim out of range") from None
    if not math.isfinite(number):
        raise TokenRejected(f"'{name}' claim out of range")
    return number


def _is_true(value: Any) -> bool:
    """Jitsi treats both JSON true and the string "true" as set."""
    return value is True or value == "true"


class TokenVerifier:
    """Verifies Jitsi-style JWTs against a :class:`TokenConfig`."""

    def __init__(self, config: TokenConfig, now: Callable[[], float], leeway: float = 0) -> None:
        self._config = config
        self._now = now
        self._leeway = float(leeway)
        self._jws = jwt.PyJWS()
        self._keys: OrderedDict[str, RSAPublicKey] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """True when token authentication is configured at all."""
        return bool(self._config.app_secret or self._config.public_key_dir)

    # -- verification ---------------------------------------------------------------

    def verify(self, token: str, domain: str) -> TokenIdentity:
        """Check *token* for XMPP *domain*; raise :class:`TokenRejected` when unacceptable."""
        if not self.enabled:
            raise TokenRejected("token authentication is disabled")
        algorithm = self._config.algorithm
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise TokenRejected("unsupported token algorithm configured")
        if not isinstance(token, str):
            raise TokenRejected("malformed token")
        if not token:
            raise TokenRejected("token is empty")
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenRejected("token too large")
        if not token.isascii() or token.count(".") != 2:
            raise TokenRejected("malformed token")

        try:
            header = self._jws.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected("malformed token header") from None
        alg = header.get("alg")
        if alg != algorithm:
            raise TokenRejected(f"token algorithm must be {algorithm}")

        key: str | RSAPublicKey
        if algorithm == "HS256":
            if not self._config.app_secret:
                raise TokenRejected("no shared secret configured")
            key = self._config.app_secret
        else:
            key = self._public_key(header.get("kid"))

        try:
            with warnings.catch_warnings():
                # Jitsi deployments commonly use short secrets; that is a config concern.
                warnings.simplefilter("ignore", InsecureKeyLengthWarning)
                payload = self._jws.decode(token, key, algorithms=[algorithm])
        except jwt.InvalidSignatureError:
            raise TokenRejected("invalid token signature") from None
        except jwt.PyJWTError:
            raise TokenRejected("malformed token") from None

        try:
            claims = json.loads(payload, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise TokenRejected("malformed token payload") from None
        if not isinstance(claims, dict):
            raise TokenRejected("malformed token payload")
        return self._check_claims(claims, domain)

    def _check_claims(self, claims: dict[str, Any], domain: str) -> TokenIdentity:
        """Validate the registered and Jitsi claims of a signature-checked token."""
        now = float(self._now())
        exp = _number(claims, "exp")
        if exp is None:
            raise TokenRejected("'exp' claim is missing")
        if now >= exp + self._leeway:
            raise TokenRejected("token has expired")
        nbf = _number(claims, "nbf")
        if nbf is not None and now + self._leeway < nbf:
            raise TokenRejected("token is not yet valid")

        config = self._config
        iss = claims.get("iss")
        if config.app_id:
            if iss is None:
                raise TokenRejected("'iss' claim is missing")
            if iss != config.app_id:
                raise TokenRejected("invalid issuer ('iss' claim)")

        if "aud" not in claims:
            raise TokenRejected("'aud' claim is missing")
        if not self._audience_ok(claims["aud"]):
            raise TokenRejected("invalid audience ('aud' claim)")

        sub = claims.get("sub")
        if sub is None:
            raise TokenRejected("'sub' claim is missing")
        if not isinstance(sub, str) or (sub != "*" and sub.lower() != domain.lower()):
            raise TokenRejected("invalid domain ('sub' claim)")

        room = claims.get("room")
        if room is None or room == "":
            raise TokenRejected("'room' claim is missing")
        if not isinstance(room, str):
            raise TokenRejected("'room' claim must be a string")

        user_claim: dict[str, Any] = {}
        room_claim: dict[str, Any] = {}
        context = claims.get("context")
        if context is not None:
            if not isinstance(context, dict):
                raise TokenRejected("'context' claim must be an object")
            user_claim = context.get("user") or {}
            if not isinstance(user_claim, dict):
                raise TokenRejected("'context.user' claim must be an object")
            room_claim = context.get("room") or {}
            if not isinstance(room_claim, dict):
                raise TokenRejected("'context.room' claim must be an object")
        limit = room_claim.get("max_participants", 0)
        if (not isinstance(limit, int) or isinstance(limit, bool)
                or not 0 <= limit <= MAX_PARTICIPANTS_LIMIT):
            raise TokenRejected("'context.room.max_participants' must be a whole number "
                                f"from 0 to {MAX_PARTICIPANTS_LIMIT}")
        lobby = room_claim.get("lobby", False)
        if not isinstance(lobby, bool):
            raise TokenRejected("'context.room.lobby' must be true or false")
        user = {k: user_claim[k] for k in _USER_FIELDS if isinstance(user_claim.get(k), str)}
        moderator = (
            _is_true(user_claim.get("moderator"))
            or user_claim.get("affiliation") in _MODERATOR_AFFILIATIONS
            or _is_true(claims.get("moderator"))
        )
        return TokenIdentity(subject=sub, room=room, user=user, moderator=moderator, claims=claims,
                             max_participants=limit, lobby=lobby)

    def _audience_ok(self, aud: Any) -> bool:
        """Match ``aud`` (a string or list of strings) against the accepted audiences.

        With ``audiences`` configured, a "*" entry accepts any audience (Jitsi's
        ``asap_accepted_audiences``); otherwise the claim must equal ``app_id`` or "*".
        """
        values = [aud] if isinstance(aud, str) else aud
        if not isinstance(values, list) or not values:
            return False
        if not all(isinstance(v, str) for v in values):
            return False
        if self._config.audiences:
            if "*" in self._config.audiences:
                return True
            accepted = set(self._config.audiences)
        else:
            accepted = {"*"}
            if self._config.app_id:
                accepted.add(self._config.app_id)
        return any(v in accepted for v in values)

    # -- RS256 keys -----------------------------------------------------------------

    def _public_key(self, kid: Any) -> RSAPublicKey:
        """Load (and cache) the RSA public key named by header ``kid``."""
        if kid is None:
            raise TokenRejected("'kid' header is missing")
        if (
            not isinstance(kid, str)
            or not _KID_RE.fullmatch(kid)
            or any(part in ("", ".", "..") for part in kid.split("/"))
        ):
            raise TokenRejected("invalid 'kid' header")
        cached = self._keys.get(kid)
        if cached is not None:
            self._keys.move_to_end(kid)
            return cached
        if not self._config.public_key_dir:
            raise TokenRejected("could not obtain public key")
        name = hashlib.sha256(kid.encode("utf-8")).hexdigest() + ".pem"
        path = Path(self._config.public_key_dir) / name
        try:
            with path.open("rb") as fh:
                pem = fh.read(_MAX_PEM_SIZE + 1)
            if len(pem) > _MAX_PEM_SIZE:
                raise ValueError("PEM file too large")
            key = load_pem_public_key(pem)
        except (OSError, ValueError, TypeError):
            raise TokenRejected("could not obtain public key") from None
        if not isinstance(key, RSAPublicKey):
            raise TokenRejected("could not obtain public key")
        self._keys[kid] = key
        if len(self._keys) > _KEY_CACHE_SIZE:
            self._keys.popitem(last=False)
        return key

    # -- rooms ----------------------------------------------------------------------

    def room_allowed(self, identity: TokenIdentity, room_node: str) -> bool:
        """True if *identity* may join the MUC room whose node is *room_node*."""
        if identity.room == "*":
            return True
        return identity.room.lower() == room_node.lower()
