"""SRTP and SRTCP (RFC 3711, RFC 7714) over libsrtp, through pylibsrtp.

One :class:`SrtpContext` holds the two directions of one DTLS-SRTP association: an outbound
session that protects every SSRC this side sends (``SSRC_ANY_OUTBOUND``) and an inbound session
that unprotects every SSRC the peer sends (``SSRC_ANY_INBOUND``). libsrtp creates a stream per
SSRC from that template on first use; :meth:`SrtpContext.remove_ssrc` forgets one.

RTP protect and unprotect go straight to libsrtp through pylibsrtp's C binding
(``pylibsrtp._binding``, hence the pin to pylibsrtp 1.0.x): a bridge runs them once per
packet and receiver.

Replay protection is on for inbound packets (a window of ``window_size`` indices). Outbound,
re-protecting an index already sent is allowed (``allow_repeat_tx``), since a bridge resends
cached packets with their original sequence numbers when a receiver asks for them (NACK).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pylibsrtp
from pylibsrtp import ERRORS, SRTP_MAX_TRAILER_LEN, Policy, Session
from pylibsrtp._binding import ffi, lib

srtp_protect, srtp_unprotect = lib.srtp_protect, lib.srtp_unprotect

#: The buffer one protect works in, as pylibsrtp sizes its own.
BUFFER_SIZE = 1500


@dataclass(frozen=True)
class SrtpProfile:
    """A DTLS-SRTP protection profile (RFC 5764 §4.1.2, RFC 7714 §14.2)."""

    name: str  # the name OpenSSL and use_srtp use, e.g. "SRTP_AEAD_AES_128_GCM"
    libsrtp_profile: int
    key_length: int
    salt_length: int

    @property
    def key_salt_length(self) -> int:
        return self.key_length + self.salt_length


AES128_CM_SHA1_80 = SrtpProfile(
    "SRTP_AES128_CM_SHA1_80", Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14
)
AEAD_AES_128_GCM = SrtpProfile(
    "SRTP_AEAD_AES_128_GCM", Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12
)

#: The profiles offered, most preferred first.
PROFILES: tuple[SrtpProfile, ...] = (AEAD_AES_128_GCM, AES128_CM_SHA1_80)
PROFILES_BY_NAME: dict[str, SrtpProfile] = {p.name: p for p in PROFILES}

#: Default inbound replay window, in packet indices (libsrtp accepts 64..32767).
DEFAULT_WINDOW_SIZE = 1024


class SrtpError(ValueError):
    """A packet libsrtp refused; ``reason`` is libsrtp's own words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SrtpAuthenticationError(SrtpError):
    """The packet's authentication tag did not verify (forged, corrupted or wrong key)."""


class SrtpReplayError(SrtpError):
    """The packet's index was already received, or is older than the replay window."""


def _error(exc: Exception) -> SrtpError:
    reason = str(exc)
    if reason == "authentication failure":
        return SrtpAuthenticationError(reason)
    if reason.startswith("replay check failed"):
        return SrtpReplayError(reason)
    return SrtpError(reason)


def get_profile(profile: SrtpProfile | str) -> SrtpProfile:
    """The profile itself, or the one with that name; ValueError if unsupported."""
    if isinstance(profile, SrtpProfile):
        return profile
    try:
        return PROFILES_BY_NAME[profile]
    except KeyError:
        raise ValueError(f"unsupported SRTP profile {profile!r}") from None


class SrtpContext:
    """Protects what this side sends and unprotects what the peer sends, for one association."""

    def __init__(
        self,
        profile: SrtpProfile | str,
        local_key_salt: bytes,
        remote_key_salt: bytes,
        *,
        window_size: int = DEFAULT_WINDOW_SIZE,
    ) -> None:
        self.profile = get_profile(profile)
        for what, key in (("local", local_key_salt), ("remote", remote_key_salt)):
            if len(key) != self.profile.key_salt_length:
                raise ValueError(
                    f"{what} key+salt is {len(key)} bytes, {self.profile.name} needs "
                    f"{self.profile.key_salt_length}"
                )
        tx = Policy(
            key=bytes(local_key_salt),
            ssrc_type=Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=self.profile.libsrtp_profile,
        )
        tx.allow_repeat_tx = True
        tx.window_size = window_size
        rx = Policy(
            key=bytes(remote_key_salt),
            ssrc_type=Policy.SSRC_ANY_INBOUND,
            srtp_profile=self.profile.libsrtp_profile,
        )
        rx.allow_repeat_tx = False
        rx.window_size = window_size
        try:
            self._tx = Session(tx)
            self._rx = Session(rx)
        except pylibsrtp.Error as exc:
            raise ValueError(f"libsrtp refused the policy: {exc}") from None
        # RTP protect and unprotect, the bridge's hot path, call libsrtp through pylibsrtp's C
        # binding with a buffer and a length cell of their own, sparing the allocations
        # pylibsrtp's wrapper makes on every call.
        self._tx_session = self._tx._srtp[0]
        self._rx_session = self._rx._srtp[0]
        self._cdata = ffi.new("char[]", BUFFER_SIZE)
        self._buffer = ffi.buffer(self._cdata)
        self._length = ffi.new("int *")

    def protect(self, rtp: bytes) -> bytes:
        """An RTP packet, encrypted and authenticated."""
        return self._process(rtp, srtp_protect, self._tx_session, SRTP_MAX_TRAILER_LEN)

    def unprotect(self, srtp: bytes) -> bytes:
        """The RTP packet inside an SRTP packet; SrtpError if forged, replayed or malformed."""
        return self._process(srtp, srtp_unprotect, self._rx_session, 0)

    def _process(self, packet: bytes, function: Callable[[object, object, object], int],
                 session: object, trailer: int) -> bytes:
        size = len(packet)
        if size > BUFFER_SIZE - trailer:
            raise SrtpError("packet is too long")
        buffer, length = self._buffer, self._length
        buffer[0:size] = packet
        length[0] = size
        status = function(session, self._cdata, length)
        if status:
            raise _error(pylibsrtp.Error(ERRORS[status] if 0 <= status < len(ERRORS)
                                         else f"libsrtp error {status}"))
        return buffer[0:length[0]]

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        """An RTCP compound packet, encrypted and authenticated (SRTCP index added)."""
        try:
            return self._tx.protect_rtcp(rtcp)
        except (pylibsrtp.Error, ValueError) as exc:
            raise _error(exc) from None

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        """The RTCP packet inside an SRTCP packet; SrtpError if forged, replayed or malformed."""
        try:
            return self._rx.unprotect_rtcp(srtcp)
        except (pylibsrtp.Error, ValueError) as exc:
            raise _error(exc) from None

    def remove_ssrc(self, ssrc: int, *, inbound: bool = True, outbound: bool = True) -> None:
        """Forget the stream state (rollover counter, replay window) kept for one SSRC."""
        for wanted, session in ((outbound, self._tx), (inbound, self._rx)):
            if wanted:
                try:
                    session.remove_stream(ssrc)
                except pylibsrtp.Error:
                    pass  # no stream for that SSRC yet
