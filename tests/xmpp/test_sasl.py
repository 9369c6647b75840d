"""Tests for vw.xmpp.sasl: RFC test vectors, round trips, failures and fuzzing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vw.xmpp.sasl import (
    DEFAULT_ITERATIONS,
    MAX_MESSAGE_SIZE,
    MECHANISMS_BY_STRENGTH,
    SALT_LENGTH,
    SASL_CONDITIONS,
    AnonymousMechanism,
    Challenge,
    Failure,
    ScramCredentials,
    ServerMechanism,
    Success,
    create_mechanism,
    derive_credentials,
    saslprep,
)

# -- helpers -------------------------------------------------------------------------------


@dataclass
class DictStore:
    """A CredentialStore backed by a dict keyed by (username, hash_name)."""

    creds: dict[tuple[str, str], ScramCredentials] = field(default_factory=dict)
    lookups: list[tuple[str, str]] = field(default_factory=list)

    def add(self, username: str, password: str, *, hashes: tuple[str, ...] = ("sha256", "sha1"),
            iterations: int = 64) -> DictStore:
        for hash_name in hashes:
            self.creds[username, hash_name] = derive_credentials(
                password, hash_name, iterations=iterations
            )
        return self

    def scram_credentials(self, username: str, hash_name: str) -> ScramCredentials | None:
        self.lookups.append((username, hash_name))
        return self.creds.get((username, hash_name))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def escape(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


class ScramClient:
    """An independent SCRAM client (RFC 5802) computing proofs with hashlib/hmac."""

    def __init__(self, hash_name: str, username: str, password: str, *,
                 nonce: str = "clientNONCE123", gs2_header: str = "n,,") -> None:
        self.hash_name = hash_name
        self.password = password
        self.gs2_header = gs2_header
        self.bare = f"n={escape(username)},r={nonce}"
        self.nonce = nonce
        self.server_signature = b""

    def first(self) -> bytes:
        return (self.gs2_header + self.bare).encode()

    def final(self, server_first: bytes) -> bytes:
        attrs = dict(part.split("=", 1) for part in server_first.decode().split(","))
        assert attrs["r"].startswith(self.nonce)
        salted = hashlib.pbkdf2_hmac(
            self.hash_name, self.password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"])
        )
        client_key = hmac.new(salted, b"Client Key", self.hash_name).digest()
        stored_key = hashlib.new(self.hash_name, client_key).digest()
        without_proof = f"c={b64(self.gs2_header.encode())},r={attrs['r']}"
        auth_message = f"{self.bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, self.hash_name).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.new(salted, b"Server Key", self.hash_name).digest()
        self.server_signature = hmac.new(server_key, auth_message, self.hash_name).digest()
        return f"{without_proof},p={b64(proof)}".encode()


SCRAM = [("SCRAM-SHA-256", "sha256"), ("SCRAM-SHA-1", "sha1")]


def scram_exchange(mech: ServerMechanism, client: ScramClient) -> object:
    challenge = mech.start(client.first())
    assert isinstance(challenge, Challenge), challenge
    return mech.respond(client.final(challenge.data))


# -- RFC test vectors ----------------------------------------------------------------------


def test_rfc5802_scram_sha1_vector() -> None:
    creds = derive_credentials(
        "pencil", "sha1", salt=base64.b64decode("QSXCR+Q6sek8bf92"), iterations=4096
    )
    store = DictStore({("user", "sha1"): creds})
    mech = create_mechanism("SCRAM-SHA-1", store, nonce=lambda: "3rfcNHYJY1ZVvWVs7j")
    assert mech.name == "SCRAM-SHA-1"
    assert mech.start(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL") == Challenge(
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
    )
    final = (
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
    )
    assert mech.respond(final) == Success("user", b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")


def test_non_canonical_base64_proof_is_rejected() -> None:
    creds = derive_credentials(
        "pencil", "sha1", salt=base64.b64decode("QSXCR+Q6sek8bf92"), iterations=4096
    )
    mech = create_mechanism(
        "SCRAM-SHA-1", DictStore({("user", "sha1"): creds}), nonce=lambda: "3rfcNHYJY1ZVvWVs7j"
    )
    assert isinstance(mech.start(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"), Challenge)
    final = (  # "...Tt=" decodes to the same bytes as the correct "...Ts="
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Tt="
    )
    assert mech.respond(final) == Failure("malformed-request", "non-canonical base64")


def test_rfc7677_scram_sha256_vector() -> None:
    creds = derive_credentials(
        "pencil", "sha256", salt=base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), iterations=4096
    )
    store = DictStore({("user", "sha256"): creds})
    mech = create_mechanism(
        "SCRAM-SHA-256", store, nonce=lambda: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    )
    assert mech.start(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO") == Challenge(
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    final = (
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert mech.respond(final) == Success(
        "user", b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    )


# -- SCRAM round trips ---------------------------------------------------------------------


@pytest.mark.parametrize(("mech_name", "hash_name"), SCRAM)
def test_scram_round_trip(mech_name: str, hash_name: str) -> None:
    store = DictStore().add("alice", "s3cret pässword")
    client = ScramClient(hash_name, "alice", "s3cret pässword")
    result = scram_exchange(create_mechanism(mech_name, store), client)
    assert result == Success("alice", b"v=" + base64.b64encode(client.server_signature))
    assert store.lookups == [("alice", hash_name)]


@pytest.mark.parametrize(("mech_name", "hash_name"), SCRAM)
def test_scram_without_initial_response(mech_name: str, hash_name: str) -> None:
    store = DictStore().add("alice", "pw")
    mech = create_mechanism(mech_name, store)
    assert mech.start(None) == Challenge(b"")
    client = ScramClient(hash_name, "alice", "pw")
    challenge = mech.respond(client.first())
    assert isinstance(challenge, Challenge)
    assert mech.respond(client.final(challenge.data)) == Success(
        "alice", b"v=" + base64.b64encode(client.server_signature)
    )


def test_scram_escaped_and_unicode_usernames() -> None:
    store = DictStore().add("a,b=c", "pw").add("ünïcode", "pw")
    for raw, prepared in [("a,b=c", "a,b=c"), ("ÜNÏCODE", "ünïcode")]:
        client = ScramClient("sha256", raw, "pw")
        result = scram_exchange(create_mechanism("SCRAM-SHA-256", store), client)
        assert isinstance(result, Success) and result.username == prepared


def test_scram_y_flag_accepted() -> None:
    store = DictStore().add("alice", "pw")
    client = ScramClient("sha256", "alice", "pw", gs2_header="y,,")
    assert isinstance(scram_exchange(create_mechanism("SCRAM-SHA-256", store), client), Success)


@pytest.mark.parametrize("authzid", ["alice", "alice@example.com", "ALICE@Example.COM"])
def test_scram_matching_authzid(authzid: str) -> None:
    store = DictStore().add("alice", "pw")
    client = ScramClient("sha256", "alice", "pw", gs2_header=f"n,a={escape(authzid)},")
    mech = create_mechanism("SCRAM-SHA-256", store, domain="example.com")
    assert isinstance(scram_exchange(mech, client), Success)


@pytest.mark.parametrize(
    "authzid", ["bob", "bob@example.com", "alice@other.org", "alice@example.com/res", "alice@"]
)
def test_scram_foreign_authzid(authzid: str) -> None:
    store = DictStore().add("alice", "pw").add("bob", "pw")
    client = ScramClient("sha256", "alice", "pw", gs2_header=f"n,a={escape(authzid)},")
    mech = create_mechanism("SCRAM-SHA-256", store, domain="example.com")
    assert scram_exchange(mech, client) == Failure("invalid-authzid")


def test_scram_wrong_authzid_with_wrong_password_is_not_authorized() -> None:
    store = DictStore().add("alice", "pw")
    client = ScramClient("sha256", "alice", "nope", gs2_header="n,a=bob,")
    assert scram_exchange(create_mechanism("SCRAM-SHA-256", store), client) == Failure(
        "not-authorized"
    )


@pytest.mark.parametrize(("mech_name", "hash_name"), SCRAM)
def test_scram_wrong_password(mech_name: str, hash_name: str) -> None:
    store = DictStore().add("alice", "right")
    client = ScramClient(hash_name, "alice", "wrong")
    assert scram_exchange(create_mechanism(mech_name, store), client) == Failure(
        "not-authorized"
    )


SERVER_FIRST = re.compile(rb"r=clientNONCE123([!-+\--~]+),s=([A-Za-z0-9+/=]+),i=(\d+)")


def server_first_shape(store: DictStore, username: str) -> tuple[int, int, bytes]:
    mech = create_mechanism("SCRAM-SHA-256", store)
    challenge = mech.start(ScramClient("sha256", username, "x").first())
    assert isinstance(challenge, Challenge)
    match = SERVER_FIRST.fullmatch(challenge.data)
    assert match, challenge.data
    salt = base64.b64decode(match[2])
    return len(match[1]), int(match[3]), salt


def test_scram_unknown_user_is_indistinguishable_until_proof() -> None:
    store = DictStore().add("alice", "pw", iterations=DEFAULT_ITERATIONS)
    nonce_len, iterations, salt = server_first_shape(store, "alice")
    ghost = server_first_shape(store, "ghost")
    assert (ghost[0], ghost[1], len(ghost[2])) == (nonce_len, iterations, len(salt))
    assert len(salt) == SALT_LENGTH
    # The fake salt is stable per user (so repeated probes don't reveal it) and per-user.
    assert server_first_shape(store, "ghost")[2] == ghost[2]
    assert server_first_shape(store, "phantom")[2] != ghost[2]
    client = ScramClient("sha256", "ghost", "x")
    assert scram_exchange(create_mechanism("SCRAM-SHA-256", store), client) == Failure(
        "not-authorized"
    )


def test_scram_user_without_credentials_for_that_hash_fails() -> None:
    store = DictStore().add("alice", "pw", hashes=("sha256",))
    client = ScramClient("sha1", "alice", "pw")
    assert scram_exchange(create_mechanism("SCRAM-SHA-1", store), client) == Failure(
        "not-authorized"
    )


def test_scram_unusable_stored_credentials() -> None:
    good = derive_credentials("pw", "sha1", iterations=16)
    store = DictStore({("alice", "sha256"): good})  # sha1 keys filed under sha256
    result = create_mechanism("SCRAM-SHA-256", store).start(b"n,,n=alice,r=abc")
    assert result == Failure("temporary-auth-failure", "stored credentials are unusable")


# -- SCRAM malformed input -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "condition"),
    [
        (b"", "malformed-request"),
        (b"n", "malformed-request"),
        (b"n,", "malformed-request"),
        (b"n,,", "malformed-request"),
        (b"p=tls-unique,,n=alice,r=abc", "malformed-request"),
        (b"x,,n=alice,r=abc", "malformed-request"),
        (b"n,b=bob,n=alice,r=abc", "malformed-request"),
        (b"n,,m=ext,n=alice,r=abc", "malformed-request"),
        (b"n,,r=abc,n=alice", "malformed-request"),
        (b"n,,n=alice", "malformed-request"),
        (b"n,,n=alice,r=", "malformed-request"),
        (b"n,,n=alice,r=a\x7fb", "malformed-request"),
        (b"n,,n=,r=abc", "malformed-request"),
        (b"n,,n=al=2Xice,r=abc", "malformed-request"),
        (b"n,,n=al=ice,r=abc", "malformed-request"),
        (b"n,a=al=ice,n=alice,r=abc", "malformed-request"),
        (b"n,,n=alice,r=abc,1=x", "malformed-request"),
        (b"n,,n=alice,r=abc,", "malformed-request"),
        (b"n,,n=al\x00ice,r=abc", "malformed-request"),
        (b"n,,n=\xff\xfe,r=abc", "malformed-request"),
        (b"n,,n=" + b"a" * MAX_MESSAGE_SIZE + b",r=abc", "malformed-request"),
        (b"n,,n=al@ice,r=abc", "not-authorized"),
        (b"n,,n=al ice,r=abc", "not-authorized"),
        (b"n,,n=\xc2\xad,r=abc", "not-authorized"),
    ],
)
def test_scram_malformed_client_first(message: bytes, condition: str) -> None:
    mech = create_mechanism("SCRAM-SHA-256", DictStore().add("alice", "pw"))
    result = mech.start(message)
    assert isinstance(result, Failure) and result.condition == condition, result
    assert isinstance(mech.respond(b"n,,n=alice,r=abc"), Failure)


def test_scram_extensions_after_nonce_are_ignored() -> None:
    store = DictStore().add("alice", "pw")
    mech = create_mechanism("SCRAM-SHA-256", store)
    assert isinstance(mech.start(b"n,,n=alice,r=abc,x=whatever"), Challenge)


def started(store: DictStore | None = None) -> tuple[ServerMechanism, ScramClient, bytes]:
    """A SCRAM-SHA-256 exchange after server-first, plus a valid client-final."""
    store = store or DictStore().add("alice", "pw")
    mech = create_mechanism("SCRAM-SHA-256", store, nonce=lambda: "SERVER")
    client = ScramClient("sha256", "alice", "pw")
    challenge = mech.start(client.first())
    assert isinstance(challenge, Challenge)
    return mech, client, client.final(challenge.data)


def replace_attr(message: bytes, name: bytes, value: bytes) -> bytes:
    parts = [name + b"=" + value if p.startswith(name + b"=") else p for p in message.split(b",")]
    return b",".join(parts)


@pytest.mark.parametrize(
    ("mutate", "condition"),
    [
        (lambda m: replace_attr(m, b"c", b"bi!ws"), "malformed-request"),
        (lambda m: replace_attr(m, b"c", b"biw"), "malformed-request"),
        (lambda m: replace_attr(m, b"p", b"%%%"), "malformed-request"),
        (lambda m: replace_attr(m, b"p", "é".encode()), "malformed-request"),
        (lambda m: replace_attr(m, b"c", b"eSws"), "not-authorized"),  # "y,," != "n,,"
        (lambda m: replace_attr(m, b"c", b""), "not-authorized"),
        (lambda m: replace_attr(m, b"r", b"clientNONCE123SERVEX"), "not-authorized"),
        (lambda m: replace_attr(m, b"r", b"otherSERVER"), "not-authorized"),
        (lambda m: replace_attr(m, b"r", b"clientNONCE123"), "not-authorized"),
        (lambda m: replace_attr(m, b"p", b"AAAA"), "not-authorized"),
        (lambda m: replace_attr(m, b"p", b""), "not-authorized"),
        (lambda m: m.split(b",p=")[0], "malformed-request"),
        (lambda m: m.replace(b"c=", b"x=", 1), "malformed-request"),
        (lambda m: m.replace(b",p=", b",m=x,p="), "malformed-request"),
        (lambda m: m.replace(b",p=", b",c=biws,p="), "malformed-request"),
        (lambda m: m + b",p=AAAA", "malformed-request"),
        (lambda m: m + b"\xff", "malformed-request"),
        (lambda m: m + b"\x00", "malformed-request"),
        (lambda m: b"", "malformed-request"),
        (lambda m: m + b"A" * MAX_MESSAGE_SIZE, "malformed-request"),
    ],
)
def test_scram_malformed_client_final(mutate: object, condition: str) -> None:
    mech, _, final = started()
    result = mech.respond(mutate(final))  # type: ignore[operator]
    assert isinstance(result, Failure) and result.condition == condition, result
    assert mech.respond(final) == Failure("malformed-request", "no exchange in progress")


def test_scram_final_extensions_are_covered_by_the_proof() -> None:
    mech, _, final = started()
    assert mech.respond(final.replace(b",p=", b",x=1,p=")) == Failure("not-authorized")


def test_scram_steps_after_completion_fail() -> None:
    mech, client, final = started()
    assert isinstance(mech.respond(final), Success)
    assert mech.respond(final) == Failure("malformed-request", "no exchange in progress")
    assert mech.start(client.first()) == Failure("malformed-request", "exchange already started")


def test_respond_before_start_fails() -> None:
    mech = create_mechanism("SCRAM-SHA-256", DictStore())
    assert mech.respond(b"n,,n=alice,r=abc") == Failure(
        "malformed-request", "no exchange in progress"
    )


def test_invalid_injected_nonce_is_a_programming_error() -> None:
    mech = create_mechanism("SCRAM-SHA-1", DictStore(), nonce=lambda: "has,comma")
    with pytest.raises(ValueError):
        mech.start(b"n,,n=alice,r=abc")


def test_default_nonces_are_fresh() -> None:
    store = DictStore().add("alice", "pw")
    seen = set()
    for _ in range(5):
        challenge = create_mechanism("SCRAM-SHA-256", store).start(b"n,,n=alice,r=abc")
        assert isinstance(challenge, Challenge)
        seen.add(challenge.data.split(b",")[0])
    assert len(seen) == 5


# -- PLAIN ---------------------------------------------------------------------------------


def plain(store: DictStore, message: bytes, *, domain: str | None = None) -> object:
    return create_mechanism("PLAIN", store, domain=domain).start(message)


def test_plain_success_uses_sha256_credentials() -> None:
    store = DictStore().add("alice", "pw")
    assert plain(store, b"\x00alice\x00pw") == Success("alice", b"")
    assert store.lookups == [("alice", "sha256")]


def test_plain_falls_back_to_sha1_credentials() -> None:
    store = DictStore().add("alice", "pw", hashes=("sha1",))
    assert plain(store, b"\x00ALICE\x00pw") == Success("alice", b"")
    assert store.lookups == [("alice", "sha256"), ("alice", "sha1")]


def test_plain_with_rfc_vector_credentials() -> None:
    creds = derive_credentials(
        "pencil", "sha1", salt=base64.b64decode("QSXCR+Q6sek8bf92"), iterations=4096
    )
    store = DictStore({("user", "sha1"): creds})
    assert plain(store, b"\x00user\x00pencil") == Success("user", b"")
    assert plain(store, b"\x00user\x00Pencil") == Failure("not-authorized")


@pytest.mark.parametrize(
    "message",
    [b"\x00alice\x00wrong", b"\x00ghost\x00pw", b"\x00alice\x00pw\x07", b"\x00al@ice\x00pw"],
)
def test_plain_failure(message: bytes) -> None:
    assert plain(DictStore().add("alice", "pw"), message) == Failure(
        "not-authorized", "invalid username" if b"@" in message else ""
    )


def test_plain_password_is_saslprepped() -> None:
    store = DictStore().add("alice", "I\u00adX")  # soft hyphen is mapped to nothing
    assert plain(store, b"\x00alice\x00IX") == Success("alice", b"")
    assert plain(store, "\x00alice\x00\u2168".encode()) == Success("alice", b"")  # NFKC


@pytest.mark.parametrize("authzid", [b"alice", b"alice@example.com", b"Alice@EXAMPLE.com"])
def test_plain_matching_authzid(authzid: bytes) -> None:
    store = DictStore().add("alice", "pw")
    assert plain(store, authzid + b"\x00alice\x00pw", domain="example.com") == Success(
        "alice", b""
    )


@pytest.mark.parametrize("authzid", [b"bob", b"bob@example.com", b"alice@else.org", b"a/b"])
def test_plain_authzid_mismatch(authzid: bytes) -> None:
    store = DictStore().add("alice", "pw").add("bob", "pw")
    assert plain(store, authzid + b"\x00alice\x00pw", domain="example.com") == Failure(
        "invalid-authzid"
    )


def test_plain_authzid_mismatch_with_wrong_password_is_not_authorized() -> None:
    store = DictStore().add("alice", "pw")
    assert plain(store, b"bob\x00alice\x00nope") == Failure("not-authorized")


@pytest.mark.parametrize(
    "message",
    [b"", b"alice", b"alice\x00pw", b"\x00\x00pw", b"\x00alice\x00", b"a\x00b\x00c\x00d",
     b"\x00alice\x00\xff", b"\x00alice\x00" + b"p" * MAX_MESSAGE_SIZE],
)
def test_plain_malformed(message: bytes) -> None:
    result = plain(DictStore().add("alice", "pw"), message)
    assert isinstance(result, Failure) and result.condition == "malformed-request", result


def test_plain_without_initial_response() -> None:
    mech = create_mechanism("PLAIN", DictStore().add("alice", "pw"))
    assert mech.start(None) == Challenge(b"")
    assert mech.respond(b"\x00alice\x00pw") == Success("alice", b"")
    assert isinstance(mech.respond(b"\x00alice\x00pw"), Failure)


# -- ANONYMOUS -----------------------------------------------------------------------------


def test_anonymous() -> None:
    mech = create_mechanism("ANONYMOUS", DictStore())
    assert mech.start(None) == Success(None, b"")
    assert mech.respond(b"") == Failure("malformed-request", "no exchange in progress")


@pytest.mark.parametrize("trace", ["", "sirhc", "someone@example.org", "ü" * 255])
def test_anonymous_with_trace(trace: str) -> None:
    mech = create_mechanism("ANONYMOUS", DictStore())
    assert isinstance(mech, AnonymousMechanism)
    assert mech.start(trace.encode()) == Success(None, b"")
    assert mech.trace == trace


@pytest.mark.parametrize("trace", [b"\xff", b"a\x00b", b"x" * 256])
def test_anonymous_bad_trace(trace: bytes) -> None:
    result = create_mechanism("ANONYMOUS", DictStore()).start(trace)
    assert isinstance(result, Failure) and result.condition == "malformed-request"


# -- credentials, SASLprep, factory --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("I\u00adX", "IX"), ("user", "user"), ("USER", "USER"), ("\u00aa", "a"),
     ("\u2168", "IX"), ("a\u00a0b", "a b"), ("\u0627\u0628", "\u0627\u0628")],
)
def test_saslprep_rfc4013_examples(text: str, expected: str) -> None:
    assert saslprep(text) == expected


@pytest.mark.parametrize(
    "text", ["\u0007", "\u0627\u0031", "\u0627a\u0628", "a\ufffdb", "\U000e0001"]
)
def test_saslprep_prohibited(text: str) -> None:
    with pytest.raises(ValueError):
        saslprep(text)


def test_saslprep_unassigned() -> None:
    with pytest.raises(ValueError):
        saslprep("\u0221")
    assert saslprep("\u0221", allow_unassigned=True) == "\u0221"


@pytest.mark.parametrize(("hash_name", "size"), [("sha1", 20), ("sha256", 32)])
def test_derive_credentials(hash_name: str, size: int) -> None:
    creds = derive_credentials("pw", hash_name)
    assert creds.hash_name == hash_name and creds.iterations == DEFAULT_ITERATIONS
    assert len(creds.salt) == SALT_LENGTH
    assert len(creds.stored_key) == len(creds.server_key) == size
    assert derive_credentials("pw", hash_name).salt != creds.salt
    same = derive_credentials("pw", hash_name, salt=creds.salt)
    assert same == creds


@pytest.mark.parametrize(
    "kwargs",
    [{"hash_name": "md5"}, {"salt": b""}, {"iterations": 0}, {"password": "bad\u0007"}],
)
def test_derive_credentials_rejects(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"password": "pw", "hash_name": "sha256", **kwargs}
    with pytest.raises(ValueError):
        derive_credentials(**args)  # type: ignore[arg-type]


def test_create_mechanism() -> None:
    for name in MECHANISMS_BY_STRENGTH:
        assert create_mechanism(name, DictStore()).name == name
    for name in ["SCRAM-SHA-256-PLUS", "DIGEST-MD5", "plain", ""]:
        with pytest.raises(KeyError):
            create_mechanism(name, DictStore())


def test_module_is_sans_io() -> None:
    code = (
        "import sys, vw.xmpp.sasl; "
        "sys.exit(any(m.startswith('twisted.internet') for m in sys.modules))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- fuzzing -------------------------------------------------------------------------------

FUZZ_STORE = (
    DictStore()
    .add("alice", "pw", iterations=2)
    .add("a,b=c", "pw", iterations=2)
    .add("bob", "pw", hashes=("sha1",), iterations=2)
)
SCRAM_ALPHABET = "nyrpcmasi=,2CD3bwAXZ+/_-\x00é@ alice"
scram_text = st.text(alphabet=SCRAM_ALPHABET, max_size=60).map(str.encode)
messages = st.one_of(st.binary(max_size=300), scram_text)


def check_step(step: object) -> None:
    assert isinstance(step, Challenge | Success | Failure), step
    if isinstance(step, Failure):
        assert step.condition in SASL_CONDITIONS
    if isinstance(step, Success) and step.username is not None:
        assert step.username in {"alice", "a,b=c", "bob"}


fuzz_settings = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@fuzz_settings
@given(
    name=st.sampled_from(MECHANISMS_BY_STRENGTH),
    initial=st.one_of(st.none(), messages),
    responses=st.lists(messages, max_size=4),
)
def test_fuzz_arbitrary_bytes(name: str, initial: bytes | None, responses: list[bytes]) -> None:
    mech = create_mechanism(name, FUZZ_STORE)
    check_step(mech.start(initial))
    for response in responses:
        check_step(mech.respond(response))


@fuzz_settings
@given(
    mech_name=st.sampled_from([name for name, _ in SCRAM]),
    user=st.sampled_from(["alice", "a,b=c", "bob", "ghost"]),
    final=st.one_of(st.binary(max_size=200), scram_text),
    junk=st.text(max_size=30),
)
def test_fuzz_scram_client_final(mech_name: str, user: str, final: bytes, junk: str) -> None:
    mech = create_mechanism(mech_name, FUZZ_STORE)
    challenge = mech.start(f"n,,n={escape(user)},r=abc{junk.replace(',', '')}".encode())
    check_step(challenge)
    if isinstance(challenge, Challenge):
        check_step(mech.respond(final))
        check_step(mech.respond(final))


@fuzz_settings
@given(
    mech_name=st.sampled_from([name for name, _ in SCRAM]),
    cut=st.integers(min_value=0, max_value=200),
    insert=st.binary(max_size=8),
)
def test_fuzz_scram_mutated_final(mech_name: str, cut: int, insert: bytes) -> None:
    hash_name = dict(SCRAM)[mech_name]
    mech = create_mechanism(mech_name, FUZZ_STORE)
    client = ScramClient(hash_name, "alice", "pw")
    challenge = mech.start(client.first())
    assert isinstance(challenge, Challenge)
    final = client.final(challenge.data)
    mutated = final[:cut] + insert + final[cut + len(insert):]
    step = mech.respond(mutated)
    check_step(step)
    if mutated == final:
        assert isinstance(step, Success)
    else:
        assert isinstance(step, Failure)


@fuzz_settings
@given(
    authzid=st.binary(max_size=20),
    authcid=st.binary(max_size=20),
    password=st.binary(max_size=20),
)
def test_fuzz_plain_fields(authzid: bytes, authcid: bytes, password: bytes) -> None:
    step = create_mechanism("PLAIN", FUZZ_STORE).start(b"\x00".join([authzid, authcid, password]))
    check_step(step)
