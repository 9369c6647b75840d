"""Loss repair on the bridge: NACKs answered from the bridge's cache, upstream loss asked for.

Every video packet a sender sends is kept in one :class:`RetransmissionCache` by its own SSRC
and sequence number. A receiver's NACK names packets as that receiver saw them; a
:class:`ReceiverView` maps them back to what the sender sent (a simulcast projection rewrites
numbers; other sources are forwarded as they are). Cached packets go back to the receiver
through its :class:`NackResponder` (as RTX on the source's FID partner when the receiver
negotiated RTX); packets the bridge never got are asked from their sender with a NACK of its
own, and resent to everyone waiting for them when the sender's retransmission arrives.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from vw.bridge.retransmission import NackResponder, RetransmissionCache
from vw.rtp.rtcp import Nack

#: Seconds before the bridge asks a sender again for the same packet.
ASK_INTERVAL = 0.1
#: Packets the bridge waits for at most (the oldest are forgotten first).
MAX_WAITING = 4096


class ReceiverView(Protocol):
    """How one receiver sees one source's packets."""

    def original_sequence(self, out_seq: int) -> tuple[int, int] | None:
        """(sender SSRC, sender sequence number) behind what the receiver calls ``out_seq``."""

    def rewrite_retransmission(self, packet: bytes) -> bytes | None:
        """A cached packet of the sender as the receiver would have got it."""


class ForwardedAsIs:
    """A source forwarded unchanged: the receiver sees the sender's SSRC and numbers."""

    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc

    def original_sequence(self, out_seq: int) -> tuple[int, int]:
        return self.ssrc, out_seq

    def rewrite_retransmission(self, packet: bytes) -> bytes:
        return packet


class Repair:
    """The loss repair of one conference."""

    def __init__(self) -> None:
        self.cache = RetransmissionCache()
        self.responders: dict[str, NackResponder] = {}
        #: (sender SSRC, sequence) -> {receiver: (SSRC, sequence) as it sees them}
        self._waiting: OrderedDict[tuple[int, int], dict[str, tuple[int, int]]] = OrderedDict()
        self._asked: dict[tuple[int, int], float] = {}
        self.asked_upstream = 0
        self.recovered_upstream = 0

    def answer(self, receiver: str, nack: Nack, view: ReceiverView,
               rtx: tuple[int, dict[int, int]] | None, rtt: float | None,
               now: float) -> tuple[list[bytes], dict[int, list[int]]]:
        """The retransmissions for ``receiver``'s NACK, and the sequence numbers to ask each
        sender SSRC for. ``rtx`` is (RTX SSRC, original -> RTX payload types) when the
        receiver negotiated RTX for this source; ``rtt`` its round trip time, if known."""
        responder = self.responders.get(receiver)
        if responder is None:
            responder = self.responders[receiver] = NackResponder()
        responder.rtt = rtt
        if rtx is None:
            responder.remove_rtx(nack.media_ssrc)
        else:
            responder.set_rtx(nack.media_ssrc, rtx[0], rtx[1])
        missing: dict[int, list[int]] = {}

        def resolve(ssrc: int, seq: int) -> bytes | None:
            origin = view.original_sequence(seq)
            if origin is None:
                return None
            cached = self.cache.lookup(origin[0], origin[1], now)
            if cached is None:
                if self._wait(origin, receiver, (ssrc, seq), now):
                    missing.setdefault(origin[0], []).append(origin[1])
                return None
            return view.rewrite_retransmission(cached)

        return responder.handle_nack(nack, resolve, now), missing

    def _wait(self, origin: tuple[int, int], receiver: str, seen_as: tuple[int, int],
              now: float) -> bool:
        """Remember that ``receiver`` waits for ``origin``; True when the sender is to be asked."""
        waiting = self._waiting.get(origin)
        if waiting is None:
            waiting = self._waiting[origin] = {}
            while len(self._waiting) > MAX_WAITING:
                self._asked.pop(self._waiting.popitem(last=False)[0], None)
        waiting[receiver] = seen_as
        asked = self._asked.get(origin)
        if asked is not None and 0 <= now - asked < ASK_INTERVAL:
            return False
        self._asked[origin] = now
        self.asked_upstream += 1
        return True

    def recovered(self, ssrc: int, seq: int, packet: bytes,
                  now: float) -> list[tuple[str, Nack]]:
        """Keep a packet its sender retransmitted; the NACKs it now answers, by receiver."""
        self.cache.store(ssrc, seq, packet, now)
        self._asked.pop((ssrc, seq), None)
        waiting = self._waiting.pop((ssrc, seq), None)
        if not waiting:
            return []
        self.recovered_upstream += 1
        return [(receiver, Nack(0, media_ssrc, [out_seq]))
                for receiver, (media_ssrc, out_seq) in waiting.items()]

    def remove_receiver(self, receiver: str) -> None:
        self.responders.pop(receiver, None)

    def forget(self, ssrc: int) -> None:
        self.cache.forget(ssrc)
