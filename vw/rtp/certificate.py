"""The bridge's DTLS certificate: a self-signed ECDSA P-256 certificate, known by its fingerprint.

WebRTC peers do not check certificates against a CA: each side signals the hash of its own
certificate (SDP ``a=fingerprint``, or the ``fingerprint`` element of Jingle/Colibri), and the
other side compares the certificate it receives in the DTLS handshake with it (RFC 8122, RFC 8827).
One certificate per bridge process is enough (Jitsi Videobridge does the same); its OpenSSL
contexts are built once per role and shared by every session.
"""

from __future__ import annotations

import datetime
import os
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from vw.rtp.srtp import PROFILES

Role = Literal["client", "server"]

#: Hash functions accepted in a signaled fingerprint (RFC 8122 §5), by their SDP names.
FINGERPRINT_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha-1": hashes.SHA1,
    "sha-224": hashes.SHA224,
    "sha-256": hashes.SHA256,
    "sha-384": hashes.SHA384,
    "sha-512": hashes.SHA512,
}

#: DTLS 1.2 only (DTLS1_2_VERSION; pyOpenSSL names no DTLS version constants).
DTLS1_2_VERSION = 0xFEFD

#: ECDHE with AEAD ciphers. ECDSA suites are the ones usable with our certificate; the RSA ones
#: only matter when we are the client and the peer's certificate is RSA.
CIPHERS = b":".join(
    [
        b"ECDHE-ECDSA-AES128-GCM-SHA256",
        b"ECDHE-ECDSA-AES256-GCM-SHA384",
        b"ECDHE-ECDSA-CHACHA20-POLY1305",
        b"ECDHE-RSA-AES128-GCM-SHA256",
        b"ECDHE-RSA-AES256-GCM-SHA384",
        b"ECDHE-RSA-CHACHA20-POLY1305",
    ]
)

#: The use_srtp extension's profile list (RFC 5764 §4.1.1), most preferred first.
USE_SRTP = b":".join(p.name.encode() for p in PROFILES)


def certificate_fingerprint(certificate: x509.Certificate, algorithm: str = "sha-256") -> str:
    """A certificate's fingerprint as SDP writes it: colon-separated uppercase hex."""
    try:
        hash_cls = FINGERPRINT_HASHES[algorithm.lower()]
    except KeyError:
        raise ValueError(f"unsupported fingerprint algorithm {algorithm!r}") from None
    return certificate.fingerprint(hash_cls()).hex(":").upper()


def _accept_any(*_args: object) -> bool:
    # The chain is not checked against any CA: the peer is authenticated by fingerprint.
    return True


class DtlsCertificate:
    """A private key and its self-signed certificate, with cached OpenSSL contexts."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self.key = key
        self.certificate = certificate
        self._contexts: dict[str, SSL.Context] = {}

    @classmethod
    def generate(
        cls,
        *,
        lifetime: datetime.timedelta = datetime.timedelta(days=30),
        now: datetime.datetime | None = None,
    ) -> DtlsCertificate:
        """A new ECDSA P-256 key and a certificate with a random CN, valid from a day ago."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, os.urandom(16).hex())])
        start = now or datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start - datetime.timedelta(days=1))
            .not_valid_after(start + lifetime)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @property
    def fingerprint(self) -> str:
        """The SHA-256 fingerprint, e.g. ``"AB:CD:…"`` (algorithm ``"sha-256"``)."""
        return certificate_fingerprint(self.certificate, "sha-256")

    @property
    def expires(self) -> datetime.datetime:
        """When the certificate stops being valid; make a new one for new sessions before."""
        return self.certificate.not_valid_after_utc

    def create_context(self, role: Role) -> SSL.Context:
        """The OpenSSL context for sessions in one role (built once, then shared)."""
        if role not in ("client", "server"):
            raise ValueError(f"DTLS role must be 'client' or 'server', not {role!r}")
        context = self._contexts.get(role)
        if context is None:
            context = self._contexts[role] = self._build_context(role)
        return context

    def _build_context(self, role: Role) -> SSL.Context:
        method = SSL.DTLS_CLIENT_METHOD if role == "client" else SSL.DTLS_SERVER_METHOD
        context = SSL.Context(method)
        context.set_min_proto_version(DTLS1_2_VERSION)
        context.set_max_proto_version(DTLS1_2_VERSION)
        context.set_options(
            SSL.OP_NO_TICKET
            | SSL.OP_NO_RENEGOTIATION
            | SSL.OP_NO_COMPRESSION
            # Memory BIOs know no path MTU: the session sets it.
            | SSL.OP_NO_QUERY_MTU
            | SSL.OP_CIPHER_SERVER_PREFERENCE
        )
        context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        # Ask for (and insist on) the peer's certificate, accept it whoever signed it.
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _accept_any)
        context.use_certificate(self.certificate)
        context.use_privatekey(self.key)
        context.check_privatekey()
        context.set_cipher_list(CIPHERS)
        context.set_tlsext_use_srtp(USE_SRTP)
        return context
