"""A bound client session: one full JID, its presence, and XEP-0198 delivery state."""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish.domish import Element

from vw.xmpp.serializer import Serialized, serialize
from vw.xmpp.token import TokenIdentity

SM_NS = "urn:xmpp:sm:3"
#: Ask the client for an ack after this many unacknowledged stanzas.
ACK_REQUEST_EVERY = 5
#: A resumable session holding more unacknowledged stanzas than this is ended.
MAX_UNACKED = 10000


class StanzaSink(Protocol):
    """Where a session writes: the connection currently attached to it."""

    def send_stanza(self, element: Element) -> None: ...


@dataclass
class Session:
    """A resource bound to a connection (or, while awaiting resumption, to none)."""

    jid: JID
    sink: StanzaSink | None
    anonymous: bool = False
    token: TokenIdentity | None = None
    #: True once initial presence was sent (RFC 6121 "available resource").
    available: bool = False
    priority: int = 0
    presence: Element | None = None
    #: Full JIDs that received directed presence and must get our unavailable presence.
    directed: set[str] = field(default_factory=set)
    interested: bool = False  # requested the roster (RFC 6121 "interested resource")
    # XEP-0198 state
    sm_enabled: bool = False
    sm_id: str = ""
    handled_inbound: int = 0
    acked_outbound: int = 0
    unacked: deque[Element] = field(default_factory=deque)
    on_overflow: Callable[[Session], None] | None = None

    @property
    def full(self) -> str:
        return self.jid.full()

    @property
    def bare(self) -> str:
        return self.jid.userhost()

    def deliver(self, element: Element) -> None:
        """Send ``element`` now, or keep it for a resumed connection."""
        if self.sm_enabled:
            # The element may be reused by its sender for the next recipient: keep a
            # frozen serialisation of what this session was sent.
            self.unacked.append(Serialized(serialize(element)))
            if len(self.unacked) > MAX_UNACKED and self.on_overflow is not None:
                self.on_overflow(self)
                return
        if self.sink is not None:
            self.sink.send_stanza(element)
            if self.sm_enabled and len(self.unacked) % ACK_REQUEST_EVERY == 0:
                self.sink.send_stanza(Element((SM_NS, "r")))

    def enable_sm(self) -> str:
        self.sm_enabled = True
        self.sm_id = secrets.token_urlsafe(18)
        return self.sm_id

    def ack(self, handled: int) -> bool:
        """Record the client's ``<a h/>``; False when ``h`` is impossible."""
        dropped = (handled - self.acked_outbound) % (1 << 32)
        if dropped > len(self.unacked):
            return False
        for _ in range(dropped):
            self.unacked.popleft()
        self.acked_outbound = handled
        return True

    def count_inbound(self) -> None:
        if self.sm_enabled:
            self.handled_inbound = (self.handled_inbound + 1) % (1 << 32)

    def resume(self, sink: StanzaSink, handled: int) -> bool:
        """Attach a new connection and resend what it has not acknowledged."""
        if not self.ack(handled):
            return False
        self.sink = sink
        for element in list(self.unacked):
            sink.send_stanza(element)
        return True

