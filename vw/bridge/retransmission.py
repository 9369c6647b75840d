"""Retransmission on the bridge: a per-SSRC packet cache and a NACK responder (sans-IO).

The bridge terminates NACKs per leg like Jitsi Videobridge: every forwarded RTP packet is kept
for a short while in a :class:`RetransmissionCache`, and when a receiver NACKs a packet the
receiver's :class:`NackResponder` resends it from the cache, wrapped as RTX (RFC 4588) when an
RTX stream was negotiated for that receiver, instead of passing the NACK on to the sender.

Time is ``now`` in seconds from the caller's clock; nothing here does I/O.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from vw.rtp.rtcp import Nack
from vw.rtp.rtp import RTP_HEADER_LENGTH, peek_payload_type, wrap_rtx

__all__ = ["RetransmissionCache", "NackResponder", "NackStats", "RtxStream"]


class RetransmissionCache:
    """Recently sent RTP packets by (SSRC, sequence number).

    Each SSRC has a ring of ``max_packets`` slots indexed by sequence number, so storing and
    looking up cost the same whatever the load: a packet stays until a sequence number
    ``max_packets`` later takes its slot, and is no longer returned once older than
    ``max_age`` seconds. SSRCs that stored nothing for ``max_age`` are dropped by the sweep
    that :meth:`store` runs once per ``max_age``.
    """

    def __init__(self, max_packets: int = 1024, max_age: float = 1.0) -> None:
        if max_packets < 1:
            raise ValueError(f"max_packets {max_packets} is not positive")
        if max_age <= 0:
            raise ValueError(f"max_age {max_age} is not positive")
        self.max_packets = max_packets
        self.max_age = max_age
        #: SSRC -> [time of the last store, ring of (sequence, time, packet) or None]
        self._streams: dict[int, list] = {}
        self._last_sweep: float | None = None

    def store(self, ssrc: int, seq: int, packet: bytes, now: float) -> None:
        """Keep ``packet`` (a copy if it is a mutable buffer) as ``seq`` of ``ssrc``."""
        seq &= 0xFFFF
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = [now, [None] * self.max_packets]
        stream[0] = now
        stream[1][seq % self.max_packets] = (seq, now, bytes(packet))
        if self._last_sweep is None or not 0 <= now - self._last_sweep < self.max_age:
            self._last_sweep = now
            self.expire(now)

    def lookup(self, ssrc: int, seq: int, now: float) -> bytes | None:
        """The packet stored as ``seq`` of ``ssrc``, or None if unknown or too old."""
        stream = self._streams.get(ssrc)
        if stream is None:
            return None
        seq &= 0xFFFF
        entry = stream[1][seq % self.max_packets]
        if entry is None or entry[0] != seq or not 0 <= now - entry[1] <= self.max_age:
            return None
        return entry[2]

    def expire(self, now: float) -> None:
        """Drop the SSRCs that stored nothing for ``max_age``."""
        for ssrc in [s for s, stream in self._streams.items() if now - stream[0] > self.max_age]:
            del self._streams[ssrc]

    def forget(self, ssrc: int) -> None:
        """Drop everything stored for ``ssrc`` (its source went away)."""
        self._streams.pop(ssrc, None)

    def ssrcs(self) -> list[int]:
        return list(self._streams)

    def stored(self, ssrc: int, now: float) -> int:
        """How many packets of ``ssrc`` a lookup would still return."""
        stream = self._streams.get(ssrc)
        return 0 if stream is None else sum(
            1 for entry in stream[1] if entry is not None and 0 <= now - entry[1] <= self.max_age)


@dataclass(slots=True)
class RtxStream:
    """The RTX stream (RFC 4588, SSRC-multiplexed) negotiated with a receiver for one SSRC.

    ``payload_types`` maps the original payload type to its RTX payload type (``apt``);
    ``default_payload_type``, if set, is used for original payload types not in the map.
    ``sequence`` is the next RTX sequence number.
    """

    ssrc: int
    payload_types: dict[int, int] = field(default_factory=dict)
    default_payload_type: int | None = None
    sequence: int = 0

    def payload_type_for(self, original_pt: int) -> int | None:
        return self.payload_types.get(original_pt, self.default_payload_type)

    def next_sequence(self) -> int:
        seq = self.sequence
        self.sequence = (seq + 1) & 0xFFFF
        return seq


@dataclass(slots=True)
class NackStats:
    """What a :class:`NackResponder` did with the sequence numbers it was asked for."""

    requested: int = 0
    resent: int = 0
    resent_bytes: int = 0
    missing: int = 0  # not (or no longer) cached
    rate_limited: int = 0  # resent too recently
    over_budget: int = 0  # would exceed max_bytes_per_second


#: Looks up a packet by (SSRC, sequence number) as the receiver sees them.
Resolver = Callable[[int, int], bytes | None]


class NackResponder:
    """Answers one receiver's NACKs with retransmissions from a cache.

    :meth:`handle_nack` gets the parsed :class:`~vw.rtp.rtcp.Nack` (its ``media_ssrc`` and
    sequence numbers are those the receiver sees) and a resolver returning the packet exactly
    as it was sent to this receiver (SSRC and sequence number already rewritten), typically
    ``lambda ssrc, seq: cache.lookup(ssrc, seq, now)`` when the bridge forwards unchanged.

    A packet is resent at most once per ``max(rtt, min_interval)`` seconds (``rtt`` is the
    receiver's round trip time once known), and the bytes resent to the receiver in any one
    second stay within ``max_bytes_per_second``. With an RTX stream configured for the SSRC
    (:meth:`set_rtx`) the packet goes out as RTX with the stream's own sequence numbers;
    otherwise, or if its payload type has no RTX payload type, it is resent unchanged.
    """

    def __init__(
        self,
        max_bytes_per_second: float = 250_000,
        min_interval: float = 0.010,
        rtt: float | None = None,
        history: int = 4096,
    ) -> None:
        self.max_bytes_per_second = max_bytes_per_second
        self.min_interval = min_interval
        self.rtt = rtt
        self.stats = NackStats()
        self._history = history
        self._rtx: dict[int, RtxStream] = {}
        self._last_resent: OrderedDict[tuple[int, int], float] = OrderedDict()
        self._window: deque[tuple[float, int]] = deque()
        self._window_bytes = 0

    # -- configuration -------------------------------------------------------------------

    def set_rtx(
        self,
        media_ssrc: int,
        rtx_ssrc: int,
        payload_types: Mapping[int, int] | int,
        initial_sequence: int | None = None,
    ) -> RtxStream:
        """Resend ``media_ssrc`` packets as RTX on ``rtx_ssrc``.

        ``payload_types`` is either the original→RTX payload type map or one RTX payload
        type for all. The RTX sequence starts at ``initial_sequence`` (random if None); an
        existing stream for the same RTX SSRC keeps its sequence.
        """
        old = self._rtx.get(media_ssrc)
        if old is not None and old.ssrc == rtx_ssrc:
            sequence = old.sequence
        elif initial_sequence is None:
            sequence = random.getrandbits(16)
        else:
            sequence = initial_sequence & 0xFFFF
        if isinstance(payload_types, int):
            stream = RtxStream(rtx_ssrc, {}, payload_types, sequence)
        else:
            stream = RtxStream(rtx_ssrc, dict(payload_types), None, sequence)
        for pt in (*stream.payload_types.values(), stream.default_payload_type):
            if pt is not None and not 0 <= pt <= 127:
                raise ValueError(f"RTX payload type {pt} is not in 0-127")
        self._rtx[media_ssrc] = stream
        return stream

    def remove_rtx(self, media_ssrc: int) -> None:
        self._rtx.pop(media_ssrc, None)

    def rtx_stream(self, media_ssrc: int) -> RtxStream | None:
        """The RTX stream of ``media_ssrc`` (e.g. to take sequence numbers for padding)."""
        return self._rtx.get(media_ssrc)

    # -- NACKs ---------------------------------------------------------------------------

    def handle_nack(self, nack: Nack, resolve: Resolver, now: float) -> list[bytes]:
        """The packets to send to the receiver in answer to ``nack``."""
        ssrc = nack.media_ssrc
        rtx = self._rtx.get(ssrc)
        interval = max(self.rtt or 0.0, self.min_interval)
        self._expire(now, interval)
        out: list[bytes] = []
        seen: set[int] = set()
        stats = self.stats
        for seq in nack.lost:
            if seq in seen:
                continue
            seen.add(seq)
            stats.requested += 1
            packet = resolve(ssrc, seq)
            if packet is None or len(packet) < RTP_HEADER_LENGTH:
                stats.missing += 1
                continue
            key = (ssrc, seq)
            last = self._last_resent.get(key)
            if last is not None and 0 <= now - last < interval:
                stats.rate_limited += 1
                continue
            size = len(packet) + (2 if rtx is not None else 0)
            if self._window_bytes + size > self.max_bytes_per_second:
                stats.over_budget += 1
                continue
            if rtx is not None:
                rtx_pt = rtx.payload_type_for(peek_payload_type(packet))
                if rtx_pt is not None:
                    packet = wrap_rtx(packet, rtx_pt, rtx.ssrc, rtx.next_sequence())
                else:
                    size -= 2
            self._last_resent[key] = now
            self._last_resent.move_to_end(key)
            self._window.append((now, size))
            self._window_bytes += size
            stats.resent += 1
            stats.resent_bytes += size
            out.append(packet)
        while len(self._last_resent) > self._history:
            self._last_resent.popitem(last=False)
        return out

    def _expire(self, now: float, interval: float) -> None:
        window = self._window
        while window and not 0 <= now - window[0][0] < 1.0:
            self._window_bytes -= window.popleft()[1]
        # Entries are in resend order; anything older than the interval no longer limits.
        last = self._last_resent
        while last:
            key, when = next(iter(last.items()))
            if 0 <= now - when < interval:
                break
            del last[key]
