"""Sans-IO SASL server mechanisms for XMPP (RFC 6120 §6).

Supported: SCRAM-SHA-256 (RFC 7677), SCRAM-SHA-1 (RFC 5802), PLAIN (RFC 4616) and
ANONYMOUS (RFC 4505).  Channel binding (the ``-PLUS`` variants) is not offered.

The XML layer base64-decodes ``<auth/>`` and ``<response/>`` payloads and feeds the raw
bytes to a mechanism object made by :func:`create_mechanism`; every call returns a
:class:`Challenge`, :class:`Success` or :class:`Failure` and never raises on bad input.
Passwords are never stored: the account database keeps :class:`ScramCredentials`, and
PLAIN is checked by re-deriving the SCRAM ``StoredKey`` from the offered password.

Normalisation: passwords go through SASLprep (RFC 4013, implemented here with the
stdlib ``stringprep`` tables and Unicode 3.2 NFKC); usernames through XMPP nodeprep
(RFC 6122), after undoing SCRAM's ``=2C``/``=3D`` escaping.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from twisted.words.protocols.jabber.xmpp_stringprep import nameprep, nodeprep

__all__ = [
    "DEFAULT_ITERATIONS",
    "MAX_MESSAGE_SIZE",
    "MECHANISMS_BY_STRENGTH",
    "SALT_LENGTH",
    "SASL_CONDITIONS",
    "AnonymousMechanism",
    "Challenge",
    "CredentialStore",
    "Failure",
    "PlainMechanism",
    "ScramCredentials",
    "ScramMechanism",
    "ServerMechanism",
    "Step",
    "Success",
    "create_mechanism",
    "derive_credentials",
    "saslprep",
]

#: Mechanism names, strongest first (the order to advertise them in).
MECHANISMS_BY_STRENGTH: tuple[str, ...] = ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "ANONYMOUS")
#: Largest client message (after base64 decoding) a mechanism accepts, in bytes.
MAX_MESSAGE_SIZE = 4096
#: Default PBKDF2 iteration count; also used for the fake credentials of unknown users.
DEFAULT_ITERATIONS = 4096
#: Length of generated salts (and of the fake salts of unknown users), in bytes.
SALT_LENGTH = 16
#: SASL failure conditions defined by RFC 6120 §6.5.
SASL_CONDITIONS = frozenset({
    "aborted", "account-disabled", "credentials-expired", "encryption-required",
    "incorrect-encoding", "invalid-authzid", "invalid-mechanism", "malformed-request",
    "mechanism-too-weak", "not-authorized", "temporary-auth-failure",
})

_HASHES = {"sha1": 20, "sha256": 32}  # hash name -> digest size
_SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-1": "sha1"}
_MAX_NODE_BYTES = 1023  # RFC 6122 §2.2 localpart limit
_MAX_TRACE_CHARS = 255  # RFC 4505 §3
#: Per-process key from which unknown users' fake salts are derived.
_FAKE_SALT_KEY = secrets.token_bytes(32)

_SASLNAME = re.compile(r"(?:[^=,\x00]|=2C|=3D)+")
_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
_ESCAPE = re.compile(r"=2C|=3D")


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """Send ``<challenge/>`` with this data and wait for a ``<response/>``."""

    data: bytes


@dataclass(frozen=True)
class Success:
    """Authentication succeeded; ``data`` goes into ``<success/>`` (may be empty)."""

    username: str | None  # nodeprepped localpart; None for ANONYMOUS
    data: bytes


@dataclass(frozen=True)
class Failure:
    """Authentication failed with an RFC 6120 §6.5 condition (e.g. "not-authorized")."""

    condition: str
    text: str = ""


Step: TypeAlias = Challenge | Success | Failure


# -- credentials ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScramCredentials:
    """What the account database stores for one user and hash (never the password)."""

    hash_name: str  # "sha1" or "sha256"
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


class CredentialStore(Protocol):
    """Looks up stored SCRAM credentials by nodeprepped username.

    Exceptions it raises are not caught by the mechanisms; they propagate to the caller.
    """

    def scram_credentials(self, username: str, hash_name: str) -> ScramCredentials | None:
        """Return the user's credentials for ``hash_name``, or None if there are none."""
        ...


def derive_credentials(
    password: str, hash_name: str, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
) -> ScramCredentials:
    """Derive storable SCRAM credentials from a password (SASLprep'd as a stored string).

    Raises ValueError for an unknown hash, a bad salt or iteration count, or a password
    SASLprep prohibits.
    """
    if hash_name not in _HASHES:
        raise ValueError(f"unsupported hash {hash_name!r}")
    if salt is None:
        salt = secrets.token_bytes(SALT_LENGTH)
    if not salt:
        raise ValueError("salt must not be empty")
    if iterations < 1:
        raise ValueError("iterations must be positive")
    return _derive(saslprep(password), hash_name, salt, iterations)


def _derive(prepared: str, hash_name: str, salt: bytes, iterations: int) -> ScramCredentials:
    """Compute SCRAM keys (RFC 5802 §3) from an already SASLprep'd password."""
    salted = hashlib.pbkdf2_hmac(hash_name, prepared.encode("utf-8"), salt, iterations)
    client_key = _hmac(hash_name, salted, b"Client Key")
    return ScramCredentials(
        hash_name=hash_name,
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.new(hash_name, client_key).digest(),
        server_key=_hmac(hash_name, salted, b"Server Key"),
    )


def _hmac(hash_name: str, key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hash_name).digest()


def _usable(creds: ScramCredentials, hash_name: str) -> bool:
    """Whether stored credentials are well-formed for ``hash_name``."""
    size = _HASHES[hash_name]
    return (
        creds.hash_name == hash_name
        and bool(creds.salt)
        and creds.iterations >= 1
        and len(creds.stored_key) == size
        and len(creds.server_key) == size
    )


def _fake_credentials(username: str, hash_name: str) -> ScramCredentials:
    """Plausible credentials for an unknown user: deterministic salt, unguessable keys."""
    mac = hmac.new(_FAKE_SALT_KEY, f"{hash_name}\x00{username}".encode(), "sha256")
    size = _HASHES[hash_name]
    return ScramCredentials(
        hash_name=hash_name,
        salt=mac.digest()[:SALT_LENGTH],
        iterations=DEFAULT_ITERATIONS,
        stored_key=secrets.token_bytes(size),
        server_key=secrets.token_bytes(size),
    )


# -- string preparation --------------------------------------------------------------------

_PROHIBITED = (
    stringprep.in_table_c12, stringprep.in_table_c21, stringprep.in_table_c22,
    stringprep.in_table_c3, stringprep.in_table_c4, stringprep.in_table_c5,
    stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def saslprep(text: str, *, allow_unassigned: bool = False) -> str:
    """Apply SASLprep (RFC 4013): map, NFKC-normalise, prohibit and check bidi.

    ``allow_unassigned`` selects "query" semantics (RFC 3454 §7). Raises ValueError.
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch
        for ch in text
        if not stringprep.in_table_b1(ch)
    )
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    for ch in prepared:
        if any(table(ch) for table in _PROHIBITED):
            raise ValueError(f"prohibited character {ch!r}")
        if not allow_unassigned and stringprep.in_table_a1(ch):
            raise ValueError(f"unassigned code point {ch!r}")
    _check_bidi(prepared)
    return prepared


def _check_bidi(text: str) -> None:
    """RFC 3454 §6: RTL strings must not mix in LTR chars and must start/end RTL."""
    if not any(stringprep.in_table_d1(ch) for ch in text):
        return
    if any(stringprep.in_table_d2(ch) for ch in text):
        raise ValueError("mixed-direction string")
    if not (stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1])):
        raise ValueError("right-to-left string must start and end with RTL characters")


def _prepare_username(name: str) -> str:
    """Nodeprep a username; raise _Abort("not-authorized") if it can't be a localpart."""
    try:
        prepared = nodeprep.prepare(name)
    except (UnicodeError, ValueError):
        raise _Abort("not-authorized", "invalid username") from None
    if not prepared or len(prepared.encode("utf-8")) > _MAX_NODE_BYTES:
        raise _Abort("not-authorized", "invalid username")
    return prepared


def _authzid_allowed(authzid: str, username: str, domain: str | None) -> bool:
    """Accept an authzid naming the user itself: "user" or bare JID "user@domain"."""
    if not authzid:
        return True
    local, at, host = authzid.partition("@")
    if "/" in authzid or "@" in host or (at and not host):
        return False
    try:
        if nodeprep.prepare(local) != username:
            return False
        if at and domain is not None:
            return nameprep.prepare(host) == nameprep.prepare(domain)
    except (UnicodeError, ValueError):
        return False
    return True


# -- mechanism machinery -------------------------------------------------------------------


class _Abort(Exception):
    """Internal: stop the exchange with a SASL failure."""

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(condition)
        self.failure = Failure(condition, text)


class ServerMechanism(Protocol):
    """One authentication attempt with one mechanism."""

    name: str

    def start(self, initial_response: bytes | None) -> Step:
        """Handle ``<auth/>``: None means no initial response, b"" an empty one."""
        ...

    def respond(self, response: bytes) -> Step:
        """Handle a ``<response/>`` to the previous Challenge."""
        ...


class _Mechanism:
    """State handling shared by all mechanisms: start once, then respond until done."""

    name: str = ""

    def __init__(self) -> None:
        self._started = False
        self._done = False

    def start(self, initial_response: bytes | None) -> Step:
        """Handle ``<auth/>``: None means no initial response, b"" an empty one."""
        if self._started:
            return self._finish(Failure("malformed-request", "exchange already started"))
        self._started = True
        if initial_response is None:
            return self._finish(self._no_initial_response())
        return self._run(initial_response)

    def respond(self, response: bytes) -> Step:
        """Handle a ``<response/>`` to the previous Challenge."""
        if not self._started or self._done:
            return self._finish(Failure("malformed-request", "no exchange in progress"))
        return self._run(response)

    def _no_initial_response(self) -> Step:
        return Challenge(b"")

    def _process(self, data: bytes) -> Step:
        raise NotImplementedError

    def _run(self, data: bytes) -> Step:
        if len(data) > MAX_MESSAGE_SIZE:
            return self._finish(Failure("malformed-request", "message too large"))
        try:
            step = self._process(data)
        except _Abort as abort:
            step = abort.failure
        return self._finish(step)

    def _finish(self, step: Step) -> Step:
        if not isinstance(step, Challenge):
            self._done = True
        return step


def _decode(data: bytes) -> str:
    """Decode UTF-8 or abort with malformed-request."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Abort("malformed-request", "message is not UTF-8") from None


# -- SCRAM ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ClientFirst:
    gs2_header: str
    authzid: str
    username: str
    nonce: str
    bare: str


@dataclass(frozen=True)
class _ClientFinal:
    channel_binding: bytes
    nonce: str
    proof: bytes
    without_proof: str


def _malformed(text: str) -> _Abort:
    return _Abort("malformed-request", text)


def _parse_attributes(text: str) -> list[tuple[str, str]]:
    """Split "a=x,b=y" into (name, value) pairs; names are single ASCII letters."""
    pairs: list[tuple[str, str]] = []
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=" or not (part[0].isascii() and part[0].isalpha()):
            raise _malformed("bad attribute")
        pairs.append((part[0], part[2:]))
    return pairs


def _unescape_saslname(value: str) -> str:
    """Undo SCRAM's =2C / =3D escaping (RFC 5802 §5.1)."""
    if not _SASLNAME.fullmatch(value):
        raise _malformed("bad saslname")
    return _ESCAPE.sub(lambda m: "," if m.group() == "=2C" else "=", value)


def _b64decode(value: str) -> bytes:
    """Strict, canonical base64 (no stray padding bits) or abort with malformed-request."""
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("bad base64") from None
    if base64.b64encode(decoded).decode("ascii") != value:
        raise _malformed("non-canonical base64")
    return decoded


def _parse_client_first(text: str) -> _ClientFirst:
    """Parse gs2-header and client-first-message-bare."""
    flag, _, rest = text.partition(",")
    if flag.startswith("p="):
        raise _malformed("channel binding is not supported")
    if flag not in ("n", "y"):
        raise _malformed("bad gs2 channel binding flag")
    authz_field, comma, bare = rest.partition(",")
    if not comma:
        raise _malformed("incomplete gs2 header")
    authzid = ""
    if authz_field:
        if not authz_field.startswith("a="):
            raise _malformed("bad authzid")
        authzid = _unescape_saslname(authz_field[2:])
    attrs = _parse_attributes(bare)
    if attrs[0][0] == "m":
        raise _malformed("mandatory extensions are not supported")
    if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r":
        raise _malformed("expected n= and r=")
    if not _NONCE.fullmatch(attrs[1][1]):
        raise _malformed("bad nonce")
    username = _prepare_username(_unescape_saslname(attrs[0][1]))
    gs2_header = text[: len(flag) + len(authz_field) + 2]
    return _ClientFirst(gs2_header, authzid, username, attrs[1][1], bare)


def _parse_client_final(text: str) -> _ClientFinal:
    """Parse client-final-message: c=, r=, [extensions,] p=."""
    attrs = _parse_attributes(text)
    names = [name for name, _ in attrs]
    if len(attrs) < 3 or names[:2] != ["c", "r"] or names[-1] != "p":
        raise _malformed("expected c=, r= and p=")
    if any(name in "crpm" for name in names[2:-1]):
        raise _malformed("unexpected attribute")
    return _ClientFinal(
        channel_binding=_b64decode(attrs[0][1]),
        nonce=attrs[1][1],
        proof=_b64decode(attrs[-1][1]),
        without_proof=text[: text.rindex(",p=")],
    )


class ScramMechanism(_Mechanism):
    """SCRAM-SHA-1 / SCRAM-SHA-256 server side, without channel binding."""

    def __init__(
        self,
        name: str,
        store: CredentialStore,
        *,
        nonce: Callable[[], str] | None = None,
        domain: str | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self._hash = _SCRAM_HASHES[name]
        self._store = store
        self._make_nonce = nonce or _default_nonce
        self._domain = domain
        self._first: _ClientFirst | None = None
        self._creds: ScramCredentials | None = None
        self._known = False
        self._nonce = ""
        self._server_first = ""

    def _process(self, data: bytes) -> Step:
        text = _decode(data)
        if "\x00" in text:
            raise _malformed("NUL in message")
        if self._first is None:
            return self._client_first(text)
        return self._client_final(text)

    def _client_first(self, text: str) -> Step:
        first = _parse_client_first(text)
        creds = self._store.scram_credentials(first.username, self._hash)
        if creds is not None and not _usable(creds, self._hash):
            raise _Abort("temporary-auth-failure", "stored credentials are unusable")
        self._known = creds is not None
        self._creds = creds or _fake_credentials(first.username, self._hash)
        server_nonce = self._make_nonce()
        if not _NONCE.fullmatch(server_nonce):
            raise ValueError(f"nonce callable returned an invalid nonce {server_nonce!r}")
        self._first = first
        self._nonce = first.nonce + server_nonce
        salt = base64.b64encode(self._creds.salt).decode("ascii")
        self._server_first = f"r={self._nonce},s={salt},i={self._creds.iterations}"
        return Challenge(self._server_first.encode("ascii"))

    def _client_final(self, text: str) -> Step:
        final = _parse_client_final(text)
        first, creds = self._first, self._creds
        assert first is not None and creds is not None
        auth_message = f"{first.bare},{self._server_first},{final.without_proof}".encode()
        signature = _hmac(self._hash, creds.stored_key, auth_message)
        proof_ok = len(final.proof) == len(signature) and hmac.compare_digest(
            hashlib.new(self._hash, _xor(final.proof, signature)).digest(), creds.stored_key
        )
        binding_ok = final.channel_binding == first.gs2_header.encode("utf-8")
        if not (proof_ok and binding_ok and final.nonce == self._nonce and self._known):
            return Failure("not-authorized")
        if not _authzid_allowed(first.authzid, first.username, self._domain):
            return Failure("invalid-authzid")
        verifier = base64.b64encode(_hmac(self._hash, creds.server_key, auth_message))
        return Success(first.username, b"v=" + verifier)


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def _default_nonce() -> str:
    return secrets.token_urlsafe(18)


# -- PLAIN ---------------------------------------------------------------------------------


class PlainMechanism(_Mechanism):
    """PLAIN (RFC 4616), checked against stored SCRAM-SHA-256 (else SHA-1) credentials."""

    name = "PLAIN"

    def __init__(self, store: CredentialStore, *, domain: str | None = None) -> None:
        super().__init__()
        self._store = store
        self._domain = domain

    def _process(self, data: bytes) -> Step:
        parts = _decode(data).split("\x00")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise _malformed("expected [authzid] NUL authcid NUL password")
        authzid, authcid, password = parts
        username = _prepare_username(authcid)
        if not self._password_ok(username, password):
            return Failure("not-authorized")
        if not _authzid_allowed(authzid, username, self._domain):
            return Failure("invalid-authzid")
        return Success(username, b"")

    def _lookup(self, username: str) -> ScramCredentials | None:
        for hash_name in ("sha256", "sha1"):
            creds = self._store.scram_credentials(username, hash_name)
            if creds is not None:
                if not _usable(creds, hash_name):
                    raise _Abort("temporary-auth-failure", "stored credentials are unusable")
                return creds
        return None

    def _password_ok(self, username: str, password: str) -> bool:
        try:
            prepared = saslprep(password, allow_unassigned=True)
        except ValueError:
            return False
        creds = self._lookup(username)
        known = creds is not None
        creds = creds or _fake_credentials(username, "sha256")  # same work for unknown users
        derived = _derive(prepared, creds.hash_name, creds.salt, creds.iterations)
        return hmac.compare_digest(derived.stored_key, creds.stored_key) and known


# -- ANONYMOUS -----------------------------------------------------------------------------


class AnonymousMechanism(_Mechanism):
    """ANONYMOUS (RFC 4505): succeeds at once; an optional trace is kept in ``trace``."""

    name = "ANONYMOUS"

    def __init__(self) -> None:
        super().__init__()
        self.trace: str | None = None

    def _no_initial_response(self) -> Step:
        # XMPP clients (e.g. Strophe.js) send an empty <auth/> and expect <success/>.
        return Success(None, b"")

    def _process(self, data: bytes) -> Step:
        trace = _decode(data)
        if len(trace) > _MAX_TRACE_CHARS or any(ord(ch) < 0x20 or ch == "\x7f" for ch in trace):
            raise _malformed("bad trace")
        self.trace = trace
        return Success(None, b"")


# -- factory -------------------------------------------------------------------------------


def create_mechanism(
    name: str,
    store: CredentialStore,
    *,
    nonce: Callable[[], str] | None = None,
    domain: str | None = None,
) -> ServerMechanism:
    """Make a mechanism for one attempt; raise KeyError for an unknown name.

    ``nonce`` returns the server's SCRAM nonce part (printable ASCII without ","); it
    defaults to 24 random URL-safe characters.  If ``domain`` is given, an authzid that is
    a JID must name that domain; otherwise only its localpart is compared.
    """
    if name in _SCRAM_HASHES:
        return ScramMechanism(name, store, nonce=nonce, domain=domain)
    if name == "PLAIN":
        return PlainMechanism(store, domain=domain)
    if name == "ANONYMOUS":
        return AnonymousMechanism()
    raise KeyError(name)
