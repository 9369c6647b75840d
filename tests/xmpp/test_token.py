"""Tests for vw.xmpp.token (Jitsi-compatible JWT verification)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from vw.config import TokenConfig
from vw.xmpp.token import MAX_TOKEN_LENGTH, TokenIdentity, TokenRejected, TokenVerifier

NOW = 1_700_000_000.0
DOMAIN = "meet.example.org"
SECRET = "a-long-enough-shared-secret-for-hs256!!"
APP_ID = "myapp"
KID = "myapp/key-1"


def clock() -> float:
    return NOW


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": APP_ID,
        "aud": APP_ID,
        "sub": DOMAIN,
        "room": "*",
        "exp": int(NOW) + 3600,
        "context": {"user": {"id": "u1", "name": "Alice", "email": "a@example.org"}},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs_token(payload: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def hand_token(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """Build a JWS by hand (HMAC-SHA256 with *key*, or an empty signature)."""
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
    sig = b""
    if key is not None:
        sig = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


@pytest.fixture
def hs_verifier() -> TokenVerifier:
    return TokenVerifier(TokenConfig(app_secret=SECRET, app_id=APP_ID), now=clock)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture
def key_dir(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Path:
    name = hashlib.sha256(KID.encode()).hexdigest() + ".pem"
    (tmp_path / name).write_bytes(public_pem(rsa_key))
    return tmp_path


@pytest.fixture
def rs_verifier(key_dir: Path) -> TokenVerifier:
    config = TokenConfig(app_id=APP_ID, algorithm="RS256", public_key_dir=str(key_dir))
    return TokenVerifier(config, now=clock)


def rs_token(key: Any, payload: dict[str, Any], kid: str | None = KID) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, key, algorithm="RS256", headers=headers)


def rejected(verifier: TokenVerifier, token: str, domain: str = DOMAIN) -> str:
    with pytest.raises(TokenRejected) as info:
        verifier.verify(token, domain)
    return str(info.value)


# -- enabled ------------------------------------------------------------------------


def test_enabled() -> None:
    assert not TokenVerifier(TokenConfig(), now=clock).enabled
    assert TokenVerifier(TokenConfig(app_secret="x"), now=clock).enabled
    assert TokenVerifier(TokenConfig(algorithm="RS256", public_key_dir="/k"), now=clock).enabled


def test_disabled_rejects() -> None:
    verifier = TokenVerifier(TokenConfig(), now=clock)
    assert "disabled" in rejected(verifier, hs_token(claims()))


# -- valid tokens -------------------------------------------------------------------


def test_valid_hs256(hs_verifier: TokenVerifier) -> None:
    identity = hs_verifier.verify(hs_token(claims(room="MyRoom")), DOMAIN)
    assert isinstance(identity, TokenIdentity)
    assert identity.subject == DOMAIN
    assert identity.room == "MyRoom"
    assert identity.user == {"id": "u1", "name": "Alice", "email": "a@example.org"}
    assert identity.moderator is False
    assert identity.claims["iss"] == APP_ID


def test_valid_hs256_short_secret_no_warning() -> None:
    verifier = TokenVerifier(TokenConfig(app_secret="short", app_id=APP_ID), now=clock)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        token = hand_token({"alg": "HS256", "typ": "JWT"}, claims(), b"short")
        assert verifier.verify(token, DOMAIN).room == "*"


def test_valid_rs256(rs_verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    identity = rs_verifier.verify(rs_token(rsa_key, claims(room="r1")), DOMAIN)
    assert identity.room == "r1"
    # second verification is served from the key cache
    assert rs_verifier.verify(rs_token(rsa_key, claims(room="r2")), DOMAIN).room == "r2"


def test_rs256_key_cached(
    rs_verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey, key_dir: Path
) -> None:
    rs_verifier.verify(rs_token(rsa_key, claims()), DOMAIN)
    for pem in key_dir.iterdir():
        pem.unlink()
    assert rs_verifier.verify(rs_token(rsa_key, claims()), DOMAIN).subject == DOMAIN


def test_sub_wildcard_and_case(hs_verifier: TokenVerifier) -> None:
    assert hs_verifier.verify(hs_token(claims(sub="*")), DOMAIN).subject == "*"
    assert hs_verifier.verify(hs_token(claims(sub="MEET.Example.ORG")), DOMAIN)


def test_leeway() -> None:
    config = TokenConfig(app_secret=SECRET, app_id=APP_ID)
    verifier = TokenVerifier(config, now=clock, leeway=30)
    assert verifier.verify(hs_token(claims(exp=int(NOW) - 10)), DOMAIN)
    assert verifier.verify(hs_token(claims(nbf=int(NOW) + 10)), DOMAIN)
    assert "expired" in rejected(verifier, hs_token(claims(exp=int(NOW) - 31)))


# -- time claims --------------------------------------------------------------------


def test_expired(hs_verifier: TokenVerifier) -> None:
    assert "expired" in rejected(hs_verifier, hs_token(claims(exp=int(NOW) - 1)))
    assert "expired" in rejected(hs_verifier, hs_token(claims(exp=int(NOW))))


def test_exp_uses_injected_clock() -> None:
    # exp far in the past relative to the real clock, but in the future for the fake one
    config = TokenConfig(app_secret=SECRET, app_id=APP_ID)
    verifier = TokenVerifier(config, now=lambda: 1000.0)
    assert verifier.verify(hs_token(claims(exp=2000)), DOMAIN)


def test_exp_missing_or_bad(hs_verifier: TokenVerifier) -> None:
    assert "'exp'" in rejected(hs_verifier, hs_token(claims(exp=None)))
    assert "'exp'" in rejected(hs_verifier, hs_token(claims(exp="soon")))
    assert "'exp'" in rejected(hs_verifier, hs_token(claims(exp=True)))
    assert "'exp'" in rejected(hs_verifier, hs_token(claims(exp=10**400)))


def test_not_yet_valid(hs_verifier: TokenVerifier) -> None:
    assert "not yet valid" in rejected(hs_verifier, hs_token(claims(nbf=int(NOW) + 60)))
    assert hs_verifier.verify(hs_token(claims(nbf=int(NOW))), DOMAIN)


# -- signature / algorithm ----------------------------------------------------------


def test_bad_signature(hs_verifier: TokenVerifier) -> None:
    forged = hs_token(claims(), secret="another-secret-of-sufficient-length!!")
    assert "signature" in rejected(hs_verifier, forged)


def test_tampered_payload(hs_verifier: TokenVerifier) -> None:
    head, _, sig = hs_token(claims(room="a")).split(".")
    body = b64url(json.dumps(claims(room="*")).encode())
    assert "signature" in rejected(hs_verifier, f"{head}.{body}.{sig}")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none(hs_verifier: TokenVerifier, alg: str) -> None:
    token = hand_token({"alg": alg, "typ": "JWT"}, claims(), None)
    assert "algorithm" in rejected(hs_verifier, token)


def test_alg_missing(hs_verifier: TokenVerifier) -> None:
    token = hand_token({"typ": "JWT"}, claims(), SECRET.encode())
    assert "algorithm" in rejected(hs_verifier, token)


def test_hs384_rejected(hs_verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(), SECRET * 2, algorithm="HS384")
    assert "algorithm" in rejected(hs_verifier, token)


def test_rs256_token_rejected_when_hs256_configured(
    hs_verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    assert "algorithm" in rejected(hs_verifier, rs_token(rsa_key, claims()))


def test_hs256_token_rejected_when_rs256_configured(rs_verifier: TokenVerifier) -> None:
    assert "algorithm" in rejected(rs_verifier, hs_token(claims()))


def test_rs256_to_hs256_confusion(rs_verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = hand_token({"alg": "HS256", "typ": "JWT", "kid": KID}, claims(), public_pem(rsa_key))
    assert "algorithm" in rejected(rs_verifier, token)


def test_rs256_wrong_key(rs_verifier: TokenVerifier) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert "signature" in rejected(rs_verifier, rs_token(other, claims()))


def test_rs256_kid_missing(rs_verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    assert "'kid'" in rejected(rs_verifier, rs_token(rsa_key, claims(), kid=None))


def test_rs256_unknown_kid(rs_verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    token = rs_token(rsa_key, claims(), kid="myapp/other")
    assert "public key" in rejected(rs_verifier, token)


@pytest.mark.parametrize(
    "kid", ["../etc/passwd", "a/../b", "/abs", "..", "a\\b", "a\x00b", "k" * 300, "", "a//b"]
)
def test_rs256_unsafe_kid(rs_verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey, kid: str) -> None:
    assert "'kid'" in rejected(rs_verifier, rs_token(rsa_key, claims(), kid=kid))


def test_rs256_non_string_kid(rs_verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey) -> None:
    signing_input = (
        b64url(json.dumps({"alg": "RS256", "kid": 7}).encode())
        + "."
        + b64url(json.dumps(claims()).encode())
    )
    rejected(rs_verifier, signing_input + "." + b64url(b"x" * 256))


def test_rs256_non_rsa_key_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    ec_pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = ec_pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / (hashlib.sha256(KID.encode()).hexdigest() + ".pem")).write_bytes(pem)
    config = TokenConfig(app_id=APP_ID, algorithm="RS256", public_key_dir=str(tmp_path))
    verifier = TokenVerifier(config, now=clock)
    assert "public key" in rejected(verifier, rs_token(rsa_key, claims()))


def test_rs256_garbage_key_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    (tmp_path / (hashlib.sha256(KID.encode()).hexdigest() + ".pem")).write_bytes(b"junk")
    config = TokenConfig(app_id=APP_ID, algorithm="RS256", public_key_dir=str(tmp_path))
    verifier = TokenVerifier(config, now=clock)
    assert "public key" in rejected(verifier, rs_token(rsa_key, claims()))


# -- iss / aud / sub / room ---------------------------------------------------------


def test_wrong_iss(hs_verifier: TokenVerifier) -> None:
    assert "'iss'" in rejected(hs_verifier, hs_token(claims(iss="other")))
    assert "'iss'" in rejected(hs_verifier, hs_token(claims(iss=None)))


def test_iss_not_checked_without_app_id() -> None:
    verifier = TokenVerifier(TokenConfig(app_secret=SECRET), now=clock)
    assert verifier.verify(hs_token(claims(iss="anything", aud="*")), DOMAIN)


def test_aud_default_accepts_app_id_and_star(hs_verifier: TokenVerifier) -> None:
    assert hs_verifier.verify(hs_token(claims(aud=APP_ID)), DOMAIN)
    assert hs_verifier.verify(hs_token(claims(aud="*")), DOMAIN)
    assert hs_verifier.verify(hs_token(claims(aud=["x", APP_ID])), DOMAIN)


def test_wrong_aud(hs_verifier: TokenVerifier) -> None:
    assert "'aud'" in rejected(hs_verifier, hs_token(claims(aud="jitsi")))
    assert "'aud'" in rejected(hs_verifier, hs_token(claims(aud=None)))
    assert "'aud'" in rejected(hs_verifier, hs_token(claims(aud=[])))
    assert "'aud'" in rejected(hs_verifier, hs_token(claims(aud=5)))


def test_configured_audiences() -> None:
    config = TokenConfig(app_secret=SECRET, app_id=APP_ID, audiences=["jitsi", "meet"])
    verifier = TokenVerifier(config, now=clock)
    assert verifier.verify(hs_token(claims(aud="meet")), DOMAIN)
    assert "'aud'" in rejected(verifier, hs_token(claims(aud=APP_ID)))
    wildcard = TokenConfig(app_secret=SECRET, app_id=APP_ID, audiences=["*"])
    assert TokenVerifier(wildcard, now=clock).verify(hs_token(claims(aud="any")), DOMAIN)


def test_wrong_sub(hs_verifier: TokenVerifier) -> None:
    assert "'sub'" in rejected(hs_verifier, hs_token(claims(sub="evil.example.org")))
    assert "'sub'" in rejected(hs_verifier, hs_token(claims(sub=None)))
    assert "'sub'" in rejected(hs_verifier, hs_token(claims(sub=["*"])))


def test_missing_room(hs_verifier: TokenVerifier) -> None:
    assert "'room'" in rejected(hs_verifier, hs_token(claims(room=None)))
    assert "'room'" in rejected(hs_verifier, hs_token(claims(room="")))
    assert "'room'" in rejected(hs_verifier, hs_token(claims(room=["a"])))


def test_bad_context(hs_verifier: TokenVerifier) -> None:
    assert "'context'" in rejected(hs_verifier, hs_token(claims(context="x")))
    assert "'context.user'" in rejected(hs_verifier, hs_token(claims(context={"user": [1]})))
    identity = hs_verifier.verify(hs_token(claims(context=None)), DOMAIN)
    assert identity.user == {} and identity.moderator is False


def test_the_meetings_participant_limit(hs_verifier: TokenVerifier) -> None:
    def limit(room: object) -> int:
        return hs_verifier.verify(hs_token(claims(context={"room": room})), DOMAIN
                                  ).max_participants

    assert limit({"max_participants": 12}) == 12
    assert limit({}) == limit(None) == 0
    assert hs_verifier.verify(hs_token(claims()), DOMAIN).max_participants == 0
    for bad in (-1, 10001, "12", 1.5, True, None):
        assert "'context.room.max_participants'" in rejected(
            hs_verifier, hs_token(claims(context={"room": {"max_participants": bad}})))
    assert "'context.room'" in rejected(hs_verifier, hs_token(claims(context={"room": 3})))


def test_user_keeps_only_string_fields(hs_verifier: TokenVerifier) -> None:
    user = {"id": 5, "name": "Bob", "avatar": "https://x/a.png", "email": None, "extra": "x"}
    identity = hs_verifier.verify(hs_token(claims(context={"user": user})), DOMAIN)
    assert identity.user == {"name": "Bob", "avatar": "https://x/a.png"}


# -- moderator ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "top", "expected"),
    [
        ({"moderator": True}, None, True),
        ({"moderator": "true"}, None, True),
        ({"moderator": False}, None, False),
        ({"moderator": "false"}, None, False),
        ({"moderator": 1}, None, False),
        ({"affiliation": "owner"}, None, True),
        ({"affiliation": "moderator"}, None, True),
        ({"affiliation": "member"}, None, False),
        ({}, True, True),
        ({}, False, False),
        ({}, None, False),
    ],
)
def test_moderator(
    hs_verifier: TokenVerifier, user: dict[str, Any], top: bool | None, expected: bool
) -> None:
    token = hs_token(claims(context={"user": user}, moderator=top))
    assert hs_verifier.verify(token, DOMAIN).moderator is expected


# -- room_allowed -------------------------------------------------------------------


def test_room_allowed(hs_verifier: TokenVerifier) -> None:
    star = hs_verifier.verify(hs_token(claims(room="*")), DOMAIN)
    assert hs_verifier.room_allowed(star, "anything")
    named = hs_verifier.verify(hs_token(claims(room="MyRoom")), DOMAIN)
    assert hs_verifier.room_allowed(named, "myroom")
    assert hs_verifier.room_allowed(named, "MyRoom")
    assert not hs_verifier.room_allowed(named, "otherroom")
    assert not hs_verifier.room_allowed(named, "[tenant]myroom")
    assert not hs_verifier.room_allowed(named, "myroom2")


# -- malformed input ----------------------------------------------------------------


def test_oversized_token(hs_verifier: TokenVerifier) -> None:
    token = hs_token(claims(pad="x" * MAX_TOKEN_LENGTH))
    assert len(token) > MAX_TOKEN_LENGTH
    assert "too large" in rejected(hs_verifier, token)


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c.d", "....", "é.é.é", "eyJhbGciOiJIUzI1NiJ9..", "!!.!!.!!"],
)
def test_malformed(hs_verifier: TokenVerifier, token: str) -> None:
    rejected(hs_verifier, token)


def test_payload_not_object(hs_verifier: TokenVerifier) -> None:
    header = b64url(json.dumps({"alg": "HS256"}).encode())
    for body in (b"[1, 2]", b"not json", b"\xff\xfe", b'{"exp": NaN}'):
        signing_input = header + "." + b64url(body)
        sig = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
        assert "payload" in rejected(hs_verifier, signing_input + "." + b64url(sig))


def test_non_string_token(hs_verifier: TokenVerifier) -> None:
    rejected(hs_verifier, b"abc.def.ghi")  # type: ignore[arg-type]
    rejected(hs_verifier, None)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=MAX_TOKEN_LENGTH + 16))
def test_fuzz_text(token: str) -> None:
    verifier = TokenVerifier(TokenConfig(app_secret=SECRET, app_id=APP_ID), now=clock)
    with pytest.raises(TokenRejected):
        verifier.verify(token, DOMAIN)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="ABCDEFabcdef0123456789-_=.", max_size=64), min_size=3))
def test_fuzz_segments(parts: list[str]) -> None:
    verifier = TokenVerifier(TokenConfig(app_secret=SECRET, app_id=APP_ID), now=clock)
    with pytest.raises(TokenRejected):
        verifier.verify(".".join(parts), DOMAIN)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_rs256(token: str) -> None:
    config = TokenConfig(app_id=APP_ID, algorithm="RS256", public_key_dir="/nonexistent")
    with pytest.raises(TokenRejected):
        TokenVerifier(config, now=clock).verify(token, DOMAIN)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "crit", "b64", "x"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12), st.just([])),
    ),
    st.dictionaries(
        st.sampled_from(["exp", "nbf", "iss", "aud", "sub", "room", "context", "moderator"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(allow_nan=False),
            st.text(max_size=12),
            st.lists(st.text(max_size=4), max_size=2),
            st.dictionaries(st.just("user"), st.dictionaries(st.text(max_size=4), st.text())),
        ),
    ),
)
def test_fuzz_signed_structures(header: dict[str, Any], payload: dict[str, Any]) -> None:
    """Correctly signed but arbitrary structures never raise anything but TokenRejected."""
    verifier = TokenVerifier(TokenConfig(app_secret=SECRET, app_id=APP_ID), now=clock)
    token = hand_token(header, payload, SECRET.encode())
    try:
        identity = verifier.verify(token, DOMAIN)
    except TokenRejected:
        return
    assert isinstance(identity.room, str)
