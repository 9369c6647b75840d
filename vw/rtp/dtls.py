"""DTLS-SRTP (RFC 5763, RFC 5764) for the bridge: a sans-IO DTLS 1.2 session over memory BIOs.

Datagrams come in through :meth:`DtlsSession.datagram_received`; every method returns the
datagrams to send back to the same ICE-validated address. Time comes in as ``now``; the caller
arms one timer at :meth:`DtlsSession.timeout` and calls :meth:`DtlsSession.handle_timeout` then.

Choices worth knowing:

* The peer is authenticated by the fingerprint of its certificate, signaled out of band. It is
  checked inside OpenSSL's certificate verification, so a mismatch aborts the handshake on the
  spot (the peer receives a fatal alert, OpenSSL's ``unknown_ca``) and no key is ever exported.
  It is checked again once the handshake ends.
* No cookie exchange (HelloVerifyRequest): the bridge only hands a session datagrams from an
  address that ICE has already validated with a STUN check carrying the signaled credentials, so
  the amplification and spoofing a cookie defends against cannot happen here.
* OpenSSL's retransmission timer runs on its own wall clock, so ``now`` should advance as real
  time does (a reactor's ``seconds()``). :meth:`timeout` is ``now`` plus what OpenSSL says is
  left; if :meth:`handle_timeout` is called before OpenSSL's timer has run out, nothing is resent
  and :meth:`timeout` is re-armed with the remainder.
* Garbage: a datagram that is not a sequence of whole DTLS records (RFC 7983 demultiplexing has
  already sent it here) is dropped and counted in ``ignored_datagrams``; records OpenSSL drops
  itself (bad MAC, unknown epoch, replays) are dropped silently too. Well-formed records that
  OpenSSL finds fatal (a handshake message that does not parse, an alert) fail the session.
* A peer's close_notify makes the session "closed"; a fatal alert or error makes it "failed"
  (as RTCDtlsTransport does).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from cryptography import x509
from OpenSSL import SSL

from vw.rtp.certificate import (
    FINGERPRINT_HASHES,
    DtlsCertificate,
    Role,
    certificate_fingerprint,
)
from vw.rtp.srtp import PROFILES_BY_NAME, SrtpContext, SrtpProfile

log = logging.getLogger(__name__)

State = Literal["new", "connecting", "connected", "failed", "closed"]

#: Largest datagram sent by default: fits any path WebRTC runs over (as browsers assume).
DEFAULT_MTU = 1200

#: The RFC 5764 §4.2 exporter label.
EXPORTER_LABEL = b"EXTRACTOR-dtls_srtp"

_RECORD_HEADER = 13
# change_cipher_spec, alert, handshake, application_data
_CONTENT_TYPES = frozenset((20, 21, 22, 23))
_READ_SIZE = 65536


class DtlsError(RuntimeError):
    """A session used out of order (keys before the handshake, data before connecting)."""


@dataclass(frozen=True)
class SrtpKeys:
    """The SRTP master keys and salts of one association, oriented for this side."""

    profile: SrtpProfile
    local_key: bytes
    local_salt: bytes
    remote_key: bytes
    remote_salt: bytes

    @property
    def local(self) -> bytes:
        """This side's master key + salt (libsrtp's order): what it protects with."""
        return self.local_key + self.local_salt

    @property
    def remote(self) -> bytes:
        """The peer's master key + salt: what this side unprotects with."""
        return self.remote_key + self.remote_salt

    def context(self, **kwargs: int) -> SrtpContext:
        """A fresh SRTP context for these keys (keyword arguments go to SrtpContext)."""
        return SrtpContext(self.profile, self.local, self.remote, **kwargs)


def split_srtp_keying_material(material: bytes, profile: SrtpProfile, role: Role) -> SrtpKeys:
    """Split exported keying material (RFC 5764 §4.2) into this side's and the peer's keys.

    The layout is client_write_key, server_write_key, client_write_salt, server_write_salt;
    the client protects with the client keys.
    """
    k, s = profile.key_length, profile.salt_length
    if len(material) != 2 * (k + s):
        raise ValueError(f"{profile.name} needs {2 * (k + s)} bytes of keying material")
    client_key, server_key = material[:k], material[k : 2 * k]
    client_salt, server_salt = material[2 * k : 2 * k + s], material[2 * k + s :]
    if role == "client":
        return SrtpKeys(profile, client_key, client_salt, server_key, server_salt)
    return SrtpKeys(profile, server_key, server_salt, client_key, client_salt)


def role_for_remote_setup(remote_setup: str) -> Role:
    """Our DTLS role given the peer's SDP ``a=setup`` (RFC 4145, RFC 5763 §5).

    ``active`` (it connects) makes us the server, ``passive`` the client; for ``actpass`` we
    answer ``active``, as an answerer should, and are the client.
    """
    setup = remote_setup.strip().lower()
    if setup == "active":
        return "server"
    if setup in ("passive", "actpass"):
        return "client"
    raise ValueError(f"no DTLS role for setup {remote_setup!r}")


def setup_for_role(role: Role) -> str:
    """The ``a=setup`` value that announces a role we have settled on."""
    return {"client": "active", "server": "passive"}[role]


def split_records(datagram: bytes) -> list[bytes] | None:
    """The DTLS records in a datagram, or None if it is not exactly a sequence of records."""
    records: list[bytes] = []
    offset, size = 0, len(datagram)
    while offset < size:
        if size - offset < _RECORD_HEADER:
            return None
        if datagram[offset] not in _CONTENT_TYPES or datagram[offset + 1] != 0xFE:
            return None
        end = offset + _RECORD_HEADER + int.from_bytes(datagram[offset + 11 : offset + 13])
        if end > size:
            return None
        records.append(datagram[offset:end])
        offset = end
    return records or None


def _reason(exc: SSL.Error) -> str:
    """OpenSSL's reason strings from an exception, joined."""
    args = exc.args
    if args and isinstance(args[0], list):
        reasons = [str(item[-1]) for item in args[0] if isinstance(item, tuple) and item]
        if reasons:
            return "; ".join(reasons)
    if isinstance(exc, SSL.SysCallError) and len(args) == 2:
        return str(args[1])
    return str(exc) or type(exc).__name__


def _peer_verifier(ref: weakref.ref[DtlsSession]) -> Callable[..., bool]:
    """An OpenSSL verify callback: the leaf must match the session's signaled fingerprints."""

    def verify(connection: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
        if depth != 0:
            return True  # chain certificates (WebRTC has none) are not checked
        session = ref()
        if session is None:
            return False
        try:
            return session._check_peer_certificate(cert.to_cryptography())
        except Exception as exc:  # an exception here would be lost inside OpenSSL
            session._fingerprint_failure = f"cannot check the peer certificate: {exc}"
            return False

    return verify


class DtlsSession:
    """One DTLS-SRTP association with one peer, sans-IO."""

    def __init__(
        self,
        certificate: DtlsCertificate,
        role: Role,
        remote_fingerprints: list[tuple[str, str]],
        *,
        mtu: int = DEFAULT_MTU,
    ) -> None:
        if role not in ("client", "server"):
            raise ValueError(f"DTLS role must be 'client' or 'server', not {role!r}")
        self.certificate = certificate
        self.role: Role = role
        self.remote_fingerprints = [(a.strip().lower(), v.strip()) for a, v in remote_fingerprints]
        self.mtu = mtu
        self.state: State = "new"
        self.failure: str | None = None
        self.srtp_profile: str | None = None
        #: The peer certificate's SHA-256 fingerprint, once seen.
        self.remote_fingerprint: str | None = None
        #: Datagrams dropped because they were not DTLS records.
        self.ignored_datagrams = 0
        self._keys: SrtpKeys | None = None
        self._deadline: float | None = None
        self._fingerprint_failure: str | None = None
        self._application_data: list[bytes] = []

        self._ssl = SSL.Connection(certificate.create_context(role), None)
        self._ssl.set_verify(
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _peer_verifier(weakref.ref(self))
        )
        self._ssl.set_ciphertext_mtu(mtu)
        if role == "server":
            self._ssl.set_accept_state()
        else:
            self._ssl.set_connect_state()

    # -- public API ------------------------------------------------------------------------

    def start(self, now: float) -> list[bytes]:
        """Begin the handshake: the client's ClientHello; nothing for a server."""
        if self.state != "new":
            return []
        self.state = "connecting"
        self._handshake()
        return self._output(now)

    def datagram_received(self, data: bytes, now: float) -> list[bytes]:
        """Feed one datagram of DTLS records; returns the datagrams to send in reply."""
        if self.state == "new":
            out = self.start(now)
        elif self.state in ("failed", "closed"):
            return []
        else:
            out = []
        if split_records(data) is None:
            self.ignored_datagrams += 1
            return out
        self._ssl.bio_write(data)
        if self.state == "connecting":
            self._handshake()
        if self.state == "connected":
            self._read()
        return out + self._output(now)

    def timeout(self) -> float | None:
        """When :meth:`handle_timeout` should be called next (``now``'s clock), or None."""
        return self._deadline

    def handle_timeout(self, now: float) -> list[bytes]:
        """Let OpenSSL retransmit its last flight if its timer ran out."""
        if self.state not in ("connecting", "connected"):
            return []
        try:
            self._ssl.DTLSv1_handle_timeout()
        except SSL.Error as exc:
            self._fail(f"handshake timed out ({_reason(exc)})")
        return self._output(now)

    def srtp_keys(self) -> SrtpKeys:
        """The negotiated SRTP keys; DtlsError unless connected with a verified peer."""
        if self.state != "connected" or self._keys is None:
            raise DtlsError(f"no SRTP keys: session is {self.state}")
        return self._keys

    def send_application_data(self, data: bytes) -> list[bytes]:
        """Application data (SCTP, for data channels) as DTLS records to send."""
        if self.state != "connected":
            raise DtlsError(f"cannot send application data: session is {self.state}")
        try:
            self._ssl.send(data)
        except SSL.Error as exc:
            self._fail(f"send failed: {_reason(exc)}")
        return self._output(None)

    def receive_application_data(self) -> list[bytes]:
        """Application data received since the last call, in order."""
        data, self._application_data = self._application_data, []
        return data

    def close(self) -> list[bytes]:
        """Send close_notify (if connected) and close the session."""
        if self.state in ("failed", "closed"):
            return []
        if self.state == "connected":
            try:
                self._ssl.shutdown()
            except SSL.Error:
                pass
        self.state = "closed"
        return self._output(None)

    # -- internals -------------------------------------------------------------------------

    def _handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except SSL.WantReadError:
            return
        except SSL.ZeroReturnError:
            self._close_by_peer()
            return
        except SSL.Error as exc:
            self._fail(self._fingerprint_failure or f"handshake failed: {_reason(exc)}")
            return
        self._handshake_done()

    def _handshake_done(self) -> None:
        peer = self._ssl.get_peer_certificate(as_cryptography=True)
        if peer is None:
            self._fail("peer sent no certificate")
            return
        if not self._check_peer_certificate(peer):
            self._fail(self._fingerprint_failure or "fingerprint mismatch")
            return
        name = self._ssl.get_selected_srtp_profile().decode("ascii", "replace")
        profile = PROFILES_BY_NAME.get(name)
        if profile is None:
            self._fail(f"no SRTP profile negotiated ({name or 'none'})")
            return
        material = self._ssl.export_keying_material(
            EXPORTER_LABEL, 2 * (profile.key_length + profile.salt_length)
        )
        self._keys = split_srtp_keying_material(material, profile, self.role)
        self.srtp_profile = profile.name
        self.state = "connected"
        log.debug("DTLS %s connected, %s", self.role, profile.name)

    def _check_peer_certificate(self, cert: x509.Certificate) -> bool:
        """Whether the certificate matches a signaled fingerprint (any supported algorithm)."""
        self.remote_fingerprint = certificate_fingerprint(cert, "sha-256")
        usable = [(a, v) for a, v in self.remote_fingerprints if a in FINGERPRINT_HASHES]
        if not usable:
            self._fingerprint_failure = "no remote fingerprint with a supported algorithm"
            return False
        for algorithm, value in usable:
            if certificate_fingerprint(cert, algorithm) == value.upper():
                return True
        self._fingerprint_failure = "fingerprint mismatch"
        return False

    def _read(self) -> None:
        """Process records on a connected session: application data, alerts, retransmits."""
        while True:
            try:
                data = self._ssl.recv(_READ_SIZE)
            except SSL.WantReadError:
                return
            except SSL.ZeroReturnError:
                self._close_by_peer()
                return
            except SSL.Error as exc:
                self._fail(f"connection failed: {_reason(exc)}")
                return
            if data:
                self._application_data.append(data)

    def _close_by_peer(self) -> None:
        self.state = "closed"
        self._keys = None
        log.debug("DTLS %s closed by peer", self.role)

    def _fail(self, reason: str) -> None:
        if self.state not in ("failed", "closed"):
            self.state = "failed"
            self.failure = reason
            self._keys = None
            log.debug("DTLS %s failed: %s", self.role, reason)

    def _output(self, now: float | None) -> list[bytes]:
        """Drain what OpenSSL wrote, packed into datagrams, and re-arm the timer."""
        if self.state in ("connecting", "connected") and now is not None:
            left = self._ssl.DTLSv1_get_timeout()
            self._deadline = None if left is None else now + left
        elif self.state not in ("connecting", "connected"):
            self._deadline = None
        chunks: list[bytes] = []
        while True:
            try:
                chunks.append(self._ssl.bio_read(_READ_SIZE))
            except SSL.WantReadError:
                break
            except SSL.Error:
                break
        if not chunks:
            return []
        return self._pack(b"".join(chunks))

    def _pack(self, data: bytes) -> list[bytes]:
        """Records into datagrams of at most ``mtu`` bytes (OpenSSL keeps each record within)."""
        records = split_records(data)
        if records is None:
            return [data]
        datagrams: list[bytes] = []
        current = b""
        for record in records:
            if current and len(current) + len(record) > self.mtu:
                datagrams.append(current)
                current = b""
            current += record
        if current:
            datagrams.append(current)
        return datagrams
