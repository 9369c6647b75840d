"""Full ICE in the controlling role for one bridge endpoint on the shared UDP port (sans-IO).

Jitsi clients are offered full ICE (no ice-lite marker exists in their Jingle), so
as Jitsi Videobridge the bridge is the controlling agent: it answers the client's
checks, sends triggered checks back with USE-CANDIDATE (aggressive nomination),
selects the first pair that succeeds, follows the client to a new address after a
fresh valid check, and keeps consent (RFC 7675) with a check every few seconds.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from vw.common.networks import reflexive
from vw.stun import (
    IceControlled,
    IceControlling,
    Message,
    MessageClass,
    Method,
    Priority,
    UseCandidate,
    Username,
    XorMappedAddress,
    check_integrity,
    short_term_key,
)

Address = tuple[str, int]
#: Seconds between consent checks on the selected pair.
CONSENT_INTERVAL = 5.0
#: Without a consent response for this long the endpoint is dropped (RFC 7675).
CONSENT_TIMEOUT = 30.0
#: Seconds between retries of a check that got no answer.
CHECK_RETRY = 0.5
#: Checks to one address before giving up on it.
MAX_CHECKS = 20
#: Priority the bridge puts in its checks (peer-reflexive type preference).
CHECK_PRIORITY = 1853824767


def random_ufrag() -> str:
    return secrets.token_hex(4)


def random_pwd() -> str:
    return secrets.token_urlsafe(18)


@dataclass
class _Pair:
    address: Address
    checks_sent: int = 0
    next_check: float = 0.0
    succeeded: bool = False


@dataclass
class IceAgent:
    """ICE state of one endpoint: credentials, candidate pairs, the selected address."""

    local_ufrag: str = field(default_factory=random_ufrag)
    local_pwd: str = field(default_factory=random_pwd)
    remote_ufrag: str = ""
    remote_pwd: str = ""
    tie_breaker: int = field(default_factory=lambda: secrets.randbits(64))
    controlling: bool = True
    selected: Address | None = None
    last_consent: float | None = None
    #: Called when the selected address changes (the transport re-keys its demux table).
    on_selected: Callable[[Address | None, Address], None] | None = None
    _pairs: dict[Address, _Pair] = field(default_factory=dict)
    _pending: dict[bytes, Address] = field(default_factory=dict)
    _next_consent: float = 0.0

    def set_remote(self, ufrag: str, pwd: str) -> None:
        self.remote_ufrag = ufrag
        self.remote_pwd = pwd

    def add_remote_candidate(self, address: Address, now: float) -> None:
        """A candidate from signaling (transport-info, Colibri2)."""
        self._pairs.setdefault(address, _Pair(address, next_check=now))

    # -- incoming STUN ----------------------------------------------------------------

    def request_received(self, message: Message, raw: bytes, address: Address,
                         now: float) -> list[tuple[bytes, Address]]:
        """A Binding request whose USERNAME starts with our ufrag: answer and trigger a check."""
        local_key = short_term_key(self.local_pwd)
        if message.method != Method.BINDING or not check_integrity(raw, local_key):
            return []
        username = message.get(Username)
        if username is None or not username.value.startswith(self.local_ufrag + ":"):
            return []
        controlling = message.get(IceControlling)
        if controlling is not None and self.controlling:
            if self.tie_breaker >= controlling.value:
                reply = message.error_response(487)
                return [(reply.bytes(local_key, fingerprint=True), address)]
            self.controlling = False
        answer = message.success_response(XorMappedAddress(*reflexive(address)))
        out = [(answer.bytes(local_key, fingerprint=True), address)]
        if not self.controlling and message.get(UseCandidate) is not None:
            self._select(address, now)
        pair = self._pairs.setdefault(address, _Pair(address))
        if not pair.succeeded or address != self.selected:
            pair.next_check = now
            out += self.poll(now)
        return out

    def awaits(self, transaction_id: bytes) -> bool:
        return transaction_id in self._pending

    def response_received(self, message: Message, raw: bytes, address: Address,
                          now: float) -> bool:
        """A response to one of our checks; True when it was ours and valid."""
        expected = self._pending.pop(message.transaction_id, None)
        if expected is None or expected != address:
            return False
        if not check_integrity(raw, short_term_key(self.remote_pwd)):
            return False
        if message.message_class != MessageClass.SUCCESS:
            return True
        pair = self._pairs.setdefault(address, _Pair(address))
        pair.succeeded = True
        self.last_consent = now
        if self.controlling and (self.selected is None or self.selected != address):
            self._select(address, now)
        return True

    def _select(self, address: Address, now: float) -> None:
        previous = self.selected
        self.selected = address
        self.last_consent = now if self.last_consent is None else self.last_consent
        self._next_consent = now + CONSENT_INTERVAL
        if self.on_selected is not None and previous != address:
            self.on_selected(previous, address)

    # -- our checks -------------------------------------------------------------------

    def poll(self, now: float) -> list[tuple[bytes, Address]]:
        """Checks due now: to unconfirmed candidates, and consent on the selected pair."""
        if not self.remote_pwd:
            return []
        out = []
        for pair in self._pairs.values():
            if pair.succeeded or pair.checks_sent >= MAX_CHECKS or pair.next_check > now:
                continue
            pair.checks_sent += 1
            pair.next_check = now + CHECK_RETRY
            out.append((self._check(pair.address, nominate=True), pair.address))
        if self.selected is not None and now >= self._next_consent:
            self._next_consent = now + CONSENT_INTERVAL
            out.append((self._check(self.selected, nominate=True), self.selected))
        return out

    def consent_expired(self, now: float) -> bool:
        return self.last_consent is not None and now - self.last_consent > CONSENT_TIMEOUT

    def _check(self, address: Address, nominate: bool) -> bytes:
        transaction_id = secrets.token_bytes(12)
        self._pending[transaction_id] = address
        if len(self._pending) > 64:
            self._pending.pop(next(iter(self._pending)))
        attributes = [Username(f"{self.remote_ufrag}:{self.local_ufrag}"),
                      Priority(CHECK_PRIORITY)]
        if self.controlling:
            attributes.append(IceControlling(self.tie_breaker))
            if nominate:
                attributes.append(UseCandidate())
        else:
            attributes.append(IceControlled(self.tie_breaker))
        request = Message(Method.BINDING, MessageClass.REQUEST, transaction_id, attributes)
        return request.bytes(short_term_key(self.remote_pwd), fingerprint=True)
