"""TURN long-term credentials (RFC 8489 §9.2, RFC 8656 §7.2): users, REST secrets, nonces.

Two kinds of user share one realm: static users with a password, and coturn's
``use-auth-secret`` TURN REST API users, named ``"<expiry unix time>:<user>"`` (or just
``"<expiry>"``) with password base64(HMAC-SHA1(secret, username)), as
:func:`vw.xmpp.features.turn_credentials` mints them. Nonces are stateless: they carry their
issue time and an HMAC under a server secret.

A server authenticating a request::

    result = authenticator.verify(request, datagram, now)
    if not result.ok:
        send(request.error_response(result.code, *result.attributes).bytes())
    else:
        ...  # answer, signing with result.key (and result.sha256)
"""

from __future__ import annotations

import base64
import hmac
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, NamedTuple

from vw.stun import (
    MAX_USERNAME_BYTES,
    Attribute,
    Message,
    MessageIntegrity,
    MessageIntegritySha256,
    Nonce,
    Realm,
    Username,
    check_integrity,
    long_term_key,
)

DEFAULT_NONCE_LIFETIME = 600.0
#: REST keys and nonces remembered once worked out: an allocation's requests (Allocate,
#: Refresh, CreatePermission, ChannelBind) carry the same username and nonce.
REMEMBERED = 4096

_NONCE = re.compile(r"([0-9a-f]{1,16})-([0-9a-f]{16})")
_EXPIRY = re.compile(r"[0-9]{1,20}")


def rest_password(secret: str, username: str) -> str:
    """The TURN REST API password of ``username``: base64(HMAC-SHA1(secret, username))."""
    digest = hmac.digest(secret.encode(), username.encode(), "sha1")
    return base64.b64encode(digest).decode()


@lru_cache(REMEMBERED)
def _rest_key(secret: str, realm: str, username: str) -> bytes:
    """The long-term key of a TURN REST user."""
    return long_term_key(username, realm, rest_password(secret, username))


@lru_cache(64)
def _nonce_mac(secret: bytes, issued: str) -> str:
    return hmac.digest(secret, issued.encode(), "sha256").hex()[:16]


@lru_cache(REMEMBERED)
def _nonce_issued(secret: bytes, nonce: str) -> int | None:
    """When a nonce signed under ``secret`` was issued; None if it is not such a nonce."""
    match = _NONCE.fullmatch(nonce)
    if match is None:
        return None
    issued, mac = match.groups()
    if not hmac.compare_digest(mac.encode(), _nonce_mac(secret, issued).encode()):
        return None
    return int(issued, 16)


@dataclass(frozen=True)
class Nonces:
    """Stateless nonces: ``"<issue time, hex>-<HMAC-SHA256 of it, 16 hex digits>"``, short so
    that a challenge fits the amplification limit.

    A nonce is good for ``lifetime`` seconds after the whole second it was issued in (up to a
    second less than ``lifetime``), then stale (the server answers
    438 with a fresh one). Nonces signed under another secret, or from the future, are invalid.
    """

    secret: bytes
    lifetime: float = DEFAULT_NONCE_LIFETIME

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("nonce secret is empty")
        if not self.lifetime > 0:
            raise ValueError(f"nonce lifetime {self.lifetime!r} is not positive")

    def issue(self, now: float) -> str:
        """A fresh nonce issued at ``now``."""
        if not 0 <= now < 2**64:
            raise ValueError(f"nonce issue time {now!r} is not in 0..2**64")
        issued = f"{int(now):x}"
        return f"{issued}-{_nonce_mac(self.secret, issued)}"

    @staticmethod
    def issue_span(now: float) -> tuple[float, float]:
        """When :meth:`issue` gives the nonce it gives at ``now``: from the start of that
        second to the next."""
        second = math.floor(now)
        return float(second), float(second + 1)

    def check(self, nonce: str, now: float) -> Literal["ok", "stale", "invalid"]:
        """Whether a nonce is ours and still fresh at ``now``."""
        issued = _nonce_issued(self.secret, nonce)
        if issued is None:
            return "invalid"
        age = now - issued
        if age < 0:
            return "invalid"
        return "ok" if age <= self.lifetime else "stale"


class AuthResult(NamedTuple):
    """What :meth:`Authenticator.verify` decided (a tuple: one is made per request).

    ``code`` None: authenticated as ``username``; sign the response with ``key``, as
    MESSAGE-INTEGRITY-SHA256 if ``sha256`` (the request used it), else MESSAGE-INTEGRITY.
    Otherwise answer an error response with ``code`` and ``attributes`` (REALM and a fresh
    NONCE for 401 and 438), without integrity.
    """

    code: int | None = None
    username: str | None = None
    key: bytes | None = None
    sha256: bool = False
    attributes: tuple[Attribute, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code is None


@dataclass(frozen=True)
class Authenticator:
    """Long-term credentials of one realm: REST ``secrets`` (any of them, the first being the
    current one, for rotation) and static ``users`` (username to password)."""

    realm: str
    secrets: Sequence[str]
    users: Mapping[str, str]
    nonces: Nonces

    def __post_init__(self) -> None:
        if not self.realm:
            raise ValueError("realm is empty")
        if len(self.realm) >= 128:
            raise ValueError(f"realm is {len(self.realm)} characters, not under 128")
        if not all(self.secrets):
            raise ValueError("a TURN REST secret is empty")

    def keys_for(self, username: str, now: float) -> list[bytes]:
        """The keys ``username`` may be using at ``now``, one per REST secret (or the static
        user's); empty for unknown, expired, malformed or over-long usernames."""
        try:
            size = len(username.encode())
        except UnicodeEncodeError:
            return []
        if size > MAX_USERNAME_BYTES:
            return []
        password = self.users.get(username)
        if password is not None:
            return [long_term_key(username, self.realm, password)]
        expiry = username.split(":", 1)[0]
        if not _EXPIRY.fullmatch(expiry) or int(expiry) < now:
            return []
        return [_rest_key(secret, self.realm, username) for secret in self.secrets]

    def key_for(self, username: str, now: float) -> bytes | None:
        """The key of a static user, or of a REST user under the current secret; None for
        unknown, expired, malformed or over-long usernames."""
        keys = self.keys_for(username, now)
        return keys[0] if keys else None

    def challenge(self, code: int, now: float) -> AuthResult:
        """An error answer carrying REALM and a fresh NONCE (a 401 or a 438)."""
        return AuthResult(code, attributes=(Realm(self.realm), Nonce(self.nonces.issue(now))))

    def verify(self, message: Message, raw: bytes, now: float) -> AuthResult:
        """Authenticate a request (RFC 8489 §9.2.4); ``raw`` is the datagram it was parsed from.

        No MESSAGE-INTEGRITY(-SHA256): 401 challenge. Integrity without USERNAME, REALM or
        NONCE: 400. Unknown, expired or malformed user, or integrity wrong under every key:
        401 challenge. Right integrity but a stale or foreign nonce: 438 with a fresh nonce.
        """
        sha256 = message.get(MessageIntegritySha256) is not None
        if not sha256 and message.get(MessageIntegrity) is None:
            return self.challenge(401, now)
        username, realm, nonce = message.get(Username), message.get(Realm), message.get(Nonce)
        if username is None or realm is None or nonce is None:
            return AuthResult(400)
        signed = message if message.raw is raw else raw  # a parsed message: walked once
        for key in self.keys_for(username.value, now):
            if check_integrity(signed, key):
                break
        else:
            return self.challenge(401, now)
        if self.nonces.check(nonce.value, now) != "ok":
            return self.challenge(438, now)
        return AuthResult(username=username.value, key=key, sha256=sha256)
