"""RFC 5769 test vectors and RFC 8489 Appendix B.1, parsed, checked and rebuilt."""

from __future__ import annotations

import hashlib

import pytest

from tests.stun.vectors import (
    LONG_TERM_NONCE,
    LONG_TERM_PASSWORD,
    LONG_TERM_REALM,
    LONG_TERM_TRANSACTION_ID,
    LONG_TERM_USERNAME,
    RFC8489_B1,
    RFC8489_B1_NONCE,
    RFC8489_B1_PUBLISHED,
    SAMPLE_IPV4_RESPONSE,
    SAMPLE_IPV6_RESPONSE,
    SAMPLE_LONG_TERM_REQUEST,
    SAMPLE_PASSWORD,
    SAMPLE_REQUEST,
    SAMPLE_TRANSACTION_ID,
)
from vw.stun import (
    Fingerprint,
    IceControlled,
    Message,
    MessageClass,
    MessageIntegrity,
    MessageIntegritySha256,
    Method,
    Nonce,
    PasswordAlgorithm,
    Priority,
    Realm,
    Software,
    TruncatedError,
    Userhash,
    Username,
    XorMappedAddress,
    check_fingerprint,
    check_integrity,
    long_term_key,
    short_term_key,
    userhash,
)

SHORT_KEY = short_term_key(SAMPLE_PASSWORD)
LONG_KEY = long_term_key(LONG_TERM_USERNAME, LONG_TERM_REALM, LONG_TERM_PASSWORD)


def without_padding_bytes(data: bytes) -> bytes:
    """The vector with the attribute padding zeroed, as Message.bytes() writes it."""
    out = bytearray(data)
    pos = 20
    while pos < len(out):
        length = int.from_bytes(out[pos + 2 : pos + 4], "big")
        end = pos + 4 + length
        padded = pos + 4 + ((length + 3) & ~3)
        out[end:padded] = bytes(padded - end)
        pos = padded
    return bytes(out)


def test_sample_request() -> None:
    message = Message.parse(SAMPLE_REQUEST)
    assert message.method is Method.BINDING
    assert message.message_class is MessageClass.REQUEST
    assert message.transaction_id == SAMPLE_TRANSACTION_ID
    assert message.attributes[:4] == [
        Software("STUN test client"),
        Priority(0x6E0001FF),
        IceControlled(0x932FF9B151263B36),
        Username("evtj:h6vY"),
    ]
    assert isinstance(message.attributes[4], MessageIntegrity)
    assert message.attributes[5] == Fingerprint(0xE57A3BCF)
    assert check_integrity(SAMPLE_REQUEST, SHORT_KEY)
    assert check_integrity(message, SHORT_KEY)
    assert check_fingerprint(SAMPLE_REQUEST)
    assert not check_integrity(SAMPLE_REQUEST, short_term_key("wrong"))
    assert not check_integrity(SAMPLE_REQUEST, SHORT_KEY, sha256=True)
    assert message.get(Username) == Username("evtj:h6vY")
    assert message.unknown_comprehension_required() == []


def test_sample_request_rebuilt() -> None:
    # The vector pads with spaces, which its MESSAGE-INTEGRITY covers; rebuilt with zero padding
    # the message differs only there, in MESSAGE-INTEGRITY and FINGERPRINT.
    message = Message.parse(SAMPLE_REQUEST)
    rebuilt = message.bytes(SHORT_KEY, fingerprint=True)
    assert len(rebuilt) == len(SAMPLE_REQUEST)
    assert rebuilt[:-32] == without_padding_bytes(SAMPLE_REQUEST)[:-32]
    assert check_integrity(rebuilt, SHORT_KEY)
    assert check_fingerprint(rebuilt)
    assert Message.parse(rebuilt).attributes[:4] == message.attributes[:4]


@pytest.mark.parametrize(
    ("vector", "host"),
    [
        (SAMPLE_IPV4_RESPONSE, "192.0.2.1"),
        (SAMPLE_IPV6_RESPONSE, "2001:db8:1234:5678:11:2233:4455:6677"),
    ],
)
def test_sample_responses(vector: bytes, host: str) -> None:
    message = Message.parse(vector)
    assert message.method is Method.BINDING
    assert message.message_class is MessageClass.SUCCESS
    assert message.transaction_id == SAMPLE_TRANSACTION_ID
    assert message.get(Software) == Software("test vector")
    assert message.get(XorMappedAddress) == XorMappedAddress(host, 32853)
    assert check_integrity(vector, SHORT_KEY)
    assert check_fingerprint(vector)

    rebuilt = Message(
        Method.BINDING,
        MessageClass.SUCCESS,
        SAMPLE_TRANSACTION_ID,
        [Software("test vector"), XorMappedAddress(host, 32853)],
    ).bytes(SHORT_KEY, fingerprint=True)
    assert rebuilt[:-32] == without_padding_bytes(vector)[:-32]
    assert check_integrity(rebuilt, SHORT_KEY)
    assert check_fingerprint(rebuilt)


def test_sample_long_term_request() -> None:
    message = Message.parse(SAMPLE_LONG_TERM_REQUEST)
    assert message.transaction_id == LONG_TERM_TRANSACTION_ID
    assert message.attributes[:3] == [
        Username(LONG_TERM_USERNAME),
        Nonce(LONG_TERM_NONCE),
        Realm(LONG_TERM_REALM),
    ]
    assert (
        LONG_KEY
        == hashlib.md5(
            "\u30de\u30c8\u30ea\u30c3\u30af\u30b9:example.org:TheMatrIX".encode()
        ).digest()
    )
    assert check_integrity(SAMPLE_LONG_TERM_REQUEST, LONG_KEY)
    assert not check_integrity(
        SAMPLE_LONG_TERM_REQUEST, long_term_key(LONG_TERM_USERNAME, LONG_TERM_REALM, "TheMatrix")
    )
    assert not check_fingerprint(SAMPLE_LONG_TERM_REQUEST)  # it has none

    # No padding bytes other than zeros here: the rebuilt message is the vector, byte for byte.
    assert message.bytes() == SAMPLE_LONG_TERM_REQUEST
    rebuilt = Message(
        Method.BINDING, MessageClass.REQUEST, LONG_TERM_TRANSACTION_ID, message.attributes[:3]
    )
    assert rebuilt.bytes(LONG_KEY) == SAMPLE_LONG_TERM_REQUEST


def test_rfc8489_b1_sha256_request() -> None:
    key = long_term_key(LONG_TERM_USERNAME, LONG_TERM_REALM, LONG_TERM_PASSWORD, "sha256")
    message = Message.parse(RFC8489_B1)
    assert message.attributes[:4] == [
        Userhash(userhash(LONG_TERM_USERNAME, LONG_TERM_REALM)),
        Nonce(RFC8489_B1_NONCE),
        Realm(LONG_TERM_REALM),
        PasswordAlgorithm(PasswordAlgorithm.SHA256),
    ]
    assert isinstance(message.attributes[4], MessageIntegritySha256)
    assert check_integrity(RFC8489_B1, key)
    assert check_integrity(RFC8489_B1, key, sha256=True)
    assert not check_integrity(RFC8489_B1, key, sha256=False)  # no MESSAGE-INTEGRITY
    assert not check_integrity(RFC8489_B1, LONG_KEY)  # the MD5 key
    assert message.bytes() == RFC8489_B1
    rebuilt = Message(
        Method.BINDING, MessageClass.REQUEST, LONG_TERM_TRANSACTION_ID, message.attributes[:4]
    )
    assert rebuilt.bytes(key, sha256=True) == RFC8489_B1


def test_rfc8489_b1_as_published_is_refused() -> None:
    with pytest.raises(TruncatedError):
        Message.parse(RFC8489_B1_PUBLISHED)
    assert not check_integrity(
        RFC8489_B1_PUBLISHED,
        long_term_key(LONG_TERM_USERNAME, LONG_TERM_REALM, LONG_TERM_PASSWORD, "sha256"),
    )


def test_long_term_key_definition() -> None:
    # MD5("user:realm:pass"), as `printf 'user:realm:pass' | md5sum` gives it.
    assert long_term_key("user", "realm", "pass").hex() == "8493fbc53ba582fb4c044c456bdc40eb"
    assert long_term_key("user", "realm", "pass", 1) == long_term_key("user", "realm", "pass")
    assert len(long_term_key("user", "realm", "pass", "SHA256")) == 32
    with pytest.raises(ValueError):
        long_term_key("user", "realm", "pass", "sha1")
