"""TLS material: a generated self-signed CA and server certificate, and pyOpenSSL contexts."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from service_identity import VerificationError
from service_identity.pyopenssl import verify_hostname
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from vw.config import Config

#: ECDHE with AEAD ciphers only, for TLS 1.2 (TLS 1.3 suites are always modern).
MODERN_CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    b"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


@dataclass(frozen=True)
class TLSMaterial:
    certificate: Path
    key: Path
    #: The CA that signed a generated certificate, for clients to trust; None if configured.
    ca: Path | None


def _names_for(config: Config) -> list[str]:
    domain = config.general.domain
    # A wildcard needs two labels after it (service-identity refuses "*.localhost").
    wildcard = [f"*.{domain}"] if "." in domain else []
    names = [domain, *wildcard, config.conference_domain, config.focus_domain,
             config.auth_domain, config.internal_muc_domain, "localhost", "127.0.0.1", "::1"]
    names += config.tls.extra_names
    return list(dict.fromkeys(names))


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def _generate(directory: Path, names: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vw local CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                       critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    plain = serialization.NoEncryption()
    _write_private(directory / "ca.key", ca_key.private_bytes(pem, pkcs8, plain))
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    _write_private(directory / "server.key", key.private_bytes(pem, pkcs8, plain))
    (directory / "server.pem").write_bytes(cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    (directory / "names").write_text("\n".join(names))


def ensure_material(config: Config) -> TLSMaterial:
    """Return configured PEM files, or generate (once) a CA and a server certificate."""
    if config.tls.certificate:
        return TLSMaterial(Path(config.tls.certificate), Path(config.tls.key), None)
    directory = config.state_dir / "tls"
    names = _names_for(config)
    recorded = directory / "names"
    if not (recorded.exists() and recorded.read_text().split("\n") == names
            and (directory / "server.pem").exists()):
        _generate(directory, names)
    return TLSMaterial(directory / "server.pem", directory / "server.key", directory / "ca.pem")


def _base_context(method: int) -> SSL.Context:
    context = SSL.Context(method)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    context.set_cipher_list(MODERN_CIPHERS)
    # Idle connections give their read and write buffers back (about 34 KiB each).
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    return context


def server_context(material: TLSMaterial) -> SSL.Context:
    """A pyOpenSSL server context with the material's certificate chain."""
    context = _base_context(SSL.TLS_SERVER_METHOD)
    context.use_certificate_chain_file(str(material.certificate))
    context.use_privatekey_file(str(material.key))
    context.check_privatekey()
    return context


def client_context(ca: Path | None = None) -> SSL.Context:
    """A pyOpenSSL client context that verifies the peer against ``ca`` or the system store."""
    context = _base_context(SSL.TLS_CLIENT_METHOD)
    context.set_verify(SSL.VERIFY_PEER, lambda conn, cert, errno, depth, ok: bool(ok))
    if ca is None:
        context.set_default_verify_paths()
    else:
        context.load_verify_locations(str(ca))
    return context


def peer_matches(connection: SSL.Connection, hostname: str) -> bool:
    """True when the TLS peer's certificate names ``hostname`` (service-identity rules)."""
    try:
        verify_hostname(connection, hostname)
    except VerificationError:
        return False
    return True



@implementer(IOpenSSLServerConnectionCreator)
class PreparedContextFactory:
    """Hands Twisted's ``startTLS`` and ``listenSSL`` an already-built server context."""

    def __init__(self, context: SSL.Context) -> None:
        self._context = context

    def serverConnectionForTLS(self, tls_protocol: object) -> SSL.Connection:
        return SSL.Connection(self._context, None)
