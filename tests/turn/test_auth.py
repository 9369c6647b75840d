"""TURN long-term credentials: REST and static users, nonces, request verification."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vw.stun import (
    TRANSPORT_UDP,
    Message,
    MessageClass,
    Method,
    Nonce,
    Realm,
    RequestedTransport,
    Username,
    check_integrity,
    long_term_key,
)
from vw.turn.auth import Authenticator, AuthResult, Nonces, rest_password
from vw.xmpp.features import turn_credentials

NOW = 1_700_000_000.0
REALM = "example.org"


@pytest.fixture
def nonces() -> Nonces:
    return Nonces(b"nonce secret", 600)


@pytest.fixture
def auth(nonces: Nonces) -> Authenticator:
    return Authenticator(REALM, ["new secret", "old secret"], {"alice": "wonderland"}, nonces)


# --- REST and static users -------------------------------------------------------------------


def test_rest_password_is_coturn_formula() -> None:
    digest = hmac.new(b"s3cret", b"1700000600:bob", hashlib.sha1).digest()
    assert rest_password("s3cret", "1700000600:bob") == base64.b64encode(digest).decode()


def test_credentials_minted_by_xmpp_verify(auth: Authenticator) -> None:
    username, password = turn_credentials("old secret", "bob", int(NOW) + 86400)
    assert long_term_key(username, REALM, password) in auth.keys_for(username, NOW)
    username, password = turn_credentials("new secret", "bob", int(NOW) + 86400)
    assert auth.key_for(username, NOW) == long_term_key(username, REALM, password)


def test_rest_expiry_only_username(auth: Authenticator) -> None:
    username = str(int(NOW) + 60)
    key = long_term_key(username, REALM, rest_password("new secret", username))
    assert auth.key_for(username, NOW) == key


def test_rest_expired(auth: Authenticator) -> None:
    username = f"{int(NOW) - 1}:bob"
    assert auth.keys_for(username, NOW) == []
    assert auth.key_for(username, NOW) is None
    assert auth.key_for(f"{int(NOW)}:bob", NOW) is not None  # valid up to its expiry


def test_rest_wrong_secret_gives_other_keys(auth: Authenticator) -> None:
    username, password = turn_credentials("wrong secret", "bob", int(NOW) + 60)
    assert long_term_key(username, REALM, password) not in auth.keys_for(username, NOW)


def test_rotated_secrets_all_offered(auth: Authenticator) -> None:
    username = f"{int(NOW) + 60}:bob"
    assert auth.keys_for(username, NOW) == [
        long_term_key(username, REALM, rest_password(secret, username))
        for secret in ("new secret", "old secret")
    ]


@pytest.mark.parametrize("username", [
    "soon:bob", "", ":bob", "bob", "-5:bob", "+1800000000:bob", " 1800000000:bob",
    "1_800_000_000:bob", "1800000000.0:bob", "١٨٠٠٠٠٠٠٠٠:bob", "1800000000:" + "x" * 590,
    "\ud800", "1800000000:\udfff",
])
def test_malformed_or_overlong_usernames(auth: Authenticator, username: str) -> None:
    assert auth.key_for(username, NOW) is None


def test_username_length_limit(auth: Authenticator) -> None:
    prefix = f"{int(NOW) + 60}:"
    assert auth.key_for(prefix + "x" * (513 - len(prefix)), NOW) is not None
    assert auth.key_for(prefix + "x" * (514 - len(prefix)), NOW) is None
    assert auth.key_for(prefix + "é" * 252, NOW) is None  # 515 bytes


def test_static_users(auth: Authenticator) -> None:
    assert auth.keys_for("alice", NOW) == [long_term_key("alice", REALM, "wonderland")]
    assert auth.key_for("mallory", NOW) is None


def test_no_rest_secrets(nonces: Nonces) -> None:
    static = Authenticator(REALM, [], {"alice": "x"}, nonces)
    assert static.key_for(f"{int(NOW) + 60}:bob", NOW) is None
    assert static.key_for("alice", NOW) is not None


@pytest.mark.parametrize(("realm", "secrets", "error"), [
    ("", [], "realm is empty"),
    ("r" * 128, [], "realm is 128 characters"),
    (REALM, ["ok", ""], "secret is empty"),
])
def test_bad_configuration(nonces: Nonces, realm: str, secrets: list[str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Authenticator(realm, secrets, {}, nonces)


# --- nonces ----------------------------------------------------------------------------------


def test_nonce_fresh_then_stale(nonces: Nonces) -> None:
    nonce = nonces.issue(NOW)
    assert len(nonce) < 128 and not nonce.startswith("obMatJos2")
    assert nonces.check(nonce, NOW) == "ok"
    assert nonces.check(nonce, NOW + 600) == "ok"
    assert nonces.check(nonce, NOW + 601) == "stale"


def test_nonce_from_the_future_invalid(nonces: Nonces) -> None:
    assert nonces.check(nonces.issue(NOW + 10), NOW) == "invalid"


def test_nonce_other_secret_invalid(nonces: Nonces) -> None:
    assert Nonces(b"other", 600).check(nonces.issue(NOW), NOW) == "invalid"


def test_nonce_tampered_invalid(nonces: Nonces) -> None:
    nonce = nonces.issue(NOW)
    issued, mac = nonce.split("-")
    later = f"{int(issued, 16) + 1000:x}-{mac}"
    assert nonces.check(later, NOW + 1000) == "invalid"
    flipped = nonce[:-1] + ("0" if nonce[-1] != "0" else "1")
    assert nonces.check(flipped, NOW) == "invalid"
    for garbage in ("", "-", nonce + "\n", nonce.upper(), " " + nonce, "0x" + nonce):
        assert nonces.check(garbage, NOW) == "invalid"


@pytest.mark.parametrize(("secret", "lifetime", "now"), [
    (b"", 600, NOW), (b"k", 0, NOW), (b"k", float("nan"), NOW),
    (b"k", 600, -1.0), (b"k", 600, float("inf")), (b"k", 600, float("nan")),
])
def test_nonce_bad_arguments(secret: bytes, lifetime: float, now: float) -> None:
    with pytest.raises(ValueError):
        Nonces(secret, lifetime).issue(now)


# --- verifying requests ----------------------------------------------------------------------


def allocate(*attributes: object, key: bytes | None = None, sha256: bool = False) -> bytes:
    request = Message(Method.ALLOCATE, MessageClass.REQUEST,
                      attributes=[RequestedTransport(TRANSPORT_UDP), *attributes])
    return request.bytes(key, sha256=sha256, fingerprint=True)


def verify(auth: Authenticator, raw: bytes, now: float = NOW) -> AuthResult:
    return auth.verify(Message.parse(raw), raw, now)


def signed(auth: Authenticator, username: str, password: str, *, nonce: str | None = None,
           sha256: bool = False) -> bytes:
    nonce = auth.nonces.issue(NOW) if nonce is None else nonce
    key = long_term_key(username, REALM, password)
    return allocate(Username(username), Realm(REALM), Nonce(nonce), key=key, sha256=sha256)


def assert_challenge(result: AuthResult, code: int, auth: Authenticator) -> None:
    assert not result.ok and result.code == code and result.key is None
    realm, nonce = result.attributes
    assert realm == Realm(REALM)
    assert isinstance(nonce, Nonce) and auth.nonces.check(nonce.value, NOW) == "ok"


def test_unauthenticated_request_challenged(auth: Authenticator) -> None:
    assert_challenge(verify(auth, allocate()), 401, auth)


@pytest.mark.parametrize("sha256", [False, True])
def test_rest_request_accepted(auth: Authenticator, sha256: bool) -> None:
    username, password = turn_credentials("old secret", "bob", int(NOW) + 3600)
    result = verify(auth, signed(auth, username, password, sha256=sha256))
    assert result == AuthResult(username=username, key=long_term_key(username, REALM, password),
                                sha256=sha256)
    assert result.ok


def test_response_signed_with_result_key_checks(auth: Authenticator) -> None:
    username, password = turn_credentials("new secret", "bob", int(NOW) + 3600)
    raw = signed(auth, username, password)
    result = verify(auth, raw)
    request = Message.parse(raw)
    assert result.key is not None
    response = Message.parse(request.success_response().bytes(result.key))
    assert check_integrity(response, long_term_key(username, REALM, password))


def test_static_request_accepted(auth: Authenticator) -> None:
    assert verify(auth, signed(auth, "alice", "wonderland")).username == "alice"


def test_tampered_request_rejected(auth: Authenticator) -> None:
    username, password = turn_credentials("new secret", "bob", int(NOW) + 3600)
    raw = bytearray(signed(auth, username, password))
    raw[20 + 7] ^= 1  # REQUESTED-TRANSPORT's protocol
    assert_challenge(verify(auth, bytes(raw)), 401, auth)


@pytest.mark.parametrize(("username", "password"), [
    ("alice", "wrong"), ("mallory", "x"), (f"{int(NOW) - 1}:bob", None),
    (f"{int(NOW) + 60}:bob", "wrong"), ("soon:bob", None),
])
def test_bad_credentials_rejected(auth: Authenticator, username: str,
                                  password: str | None) -> None:
    password = rest_password("new secret", username) if password is None else password
    assert_challenge(verify(auth, signed(auth, username, password)), 401, auth)


def test_wrong_realm_rejected(auth: Authenticator) -> None:
    key = long_term_key("alice", "elsewhere", "wonderland")
    raw = allocate(Username("alice"), Realm("elsewhere"), Nonce(auth.nonces.issue(NOW)), key=key)
    assert_challenge(verify(auth, raw), 401, auth)


@pytest.mark.parametrize("missing", [Username, Realm, Nonce])
def test_missing_attribute_is_bad_request(auth: Authenticator, missing: type) -> None:
    attributes = [Username("alice"), Realm(REALM), Nonce(auth.nonces.issue(NOW))]
    raw = allocate(*[a for a in attributes if not isinstance(a, missing)],
                   key=long_term_key("alice", REALM, "wonderland"))
    assert verify(auth, raw) == AuthResult(400)


def test_stale_nonce(auth: Authenticator) -> None:
    raw = signed(auth, "alice", "wonderland", nonce=auth.nonces.issue(NOW - 601))
    assert_challenge(verify(auth, raw), 438, auth)


def test_foreign_nonce(auth: Authenticator) -> None:
    raw = signed(auth, "alice", "wonderland", nonce=Nonces(b"restarted", 600).issue(NOW))
    assert_challenge(verify(auth, raw), 438, auth)


# --- fuzz ------------------------------------------------------------------------------------

fuzz = settings(max_examples=300, deadline=None)


@fuzz
@given(st.text(), st.floats(allow_nan=False))
def test_key_for_fuzz(username: str, now: float) -> None:
    auth = Authenticator(REALM, ["s"], {"alice": "x"}, Nonces(b"k"))
    key = auth.key_for(username, now)
    assert key is None or len(key) == 16


@fuzz
@given(st.from_regex(r"[0-9]{1,12}(:.*)?", fullmatch=True))
def test_key_for_rest_shaped_fuzz(username: str) -> None:
    auth = Authenticator(REALM, ["s"], {}, Nonces(b"k"))
    keys = auth.keys_for(username, NOW)
    assert keys == [] or keys == [long_term_key(username, REALM, rest_password("s", username))]


@fuzz
@given(st.one_of(st.text(), st.from_regex(r"[0-9a-f]{1,16}-[0-9a-f]{16}", fullmatch=True)),
       st.floats())
def test_nonce_check_fuzz(nonce: str, now: float) -> None:
    assert Nonces(b"k").check(nonce, now) in ("ok", "stale", "invalid")
    assert Nonces(b"k").check(nonce, NOW) == "invalid"


@fuzz
@given(st.integers(0, 2**40), st.integers(0, 10_000))
def test_nonce_roundtrip_fuzz(issued: int, age: int) -> None:
    nonces = Nonces(b"k", 600)
    expected = "ok" if age <= 600 else "stale"
    assert nonces.check(nonces.issue(issued), issued + age) == expected


def test_nonce_lifetime_counts_from_the_whole_second(nonces: Nonces) -> None:
    nonce = nonces.issue(NOW + 0.9)
    assert nonces.check(nonce, NOW + 600) == "ok"
    assert nonces.check(nonce, NOW + 600.5) == "stale"
