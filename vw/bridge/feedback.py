"""Receiver-side RTCP feedback the bridge generates on each incoming leg (sans-IO).

:class:`TransportCcReceiver` records the transport-wide sequence number and arrival time of
every RTP packet an endpoint sends the bridge and turns them into transport-cc feedback
(draft-holmer-rmcat-transport-wide-cc-extensions-01) for the endpoint's send-side estimator.
:class:`KeyframeRequester` builds rate-limited PLI or FIR requests towards a sender.

Time is ``now`` / ``arrival_time`` in seconds from the caller's clock; nothing here does I/O.
"""

from __future__ import annotations

from vw.rtp.rtcp import Fir, Pli, TransportFeedback

__all__ = ["TransportCcReceiver", "KeyframeRequester"]

_MAX_STATUS = 0xFFFF  # the packet status count is 16 bits
_DELTA_MIN = -0x8000  # receive deltas are signed 16-bit in 250 µs ticks
_DELTA_MAX = 0x7FFF
_MAX_PENDING = 0x20000  # arrivals kept when nobody asks for feedback


def _ticks(t: int, ref: int) -> int:
    """Arrival ``t`` (µs) in 250 µs ticks since ``ref``, rounded as TransportFeedback does."""
    return (t - ref + 125) // 250


#: The SSRC the bridge sends its own feedback from.
FEEDBACK_SSRC = 0x7662

class TransportCcReceiver:
    """Transport-cc feedback for one incoming leg.

    Call :meth:`packet_received` for every RTP packet carrying the transport-cc extension and
    :meth:`feedback` periodically; it reports every sequence number since the previous
    feedback up to the highest received, received or not, every ``interval`` seconds.

    Sequence numbers are unwrapped against the highest seen. A packet arriving after its
    sequence number was already reported lost moves the next feedback back so it is
    reported received (as libwebrtc does), provided it is within the last ``rewind``
    sequence numbers; older stragglers and duplicates are ignored. A feedback round is split
    into several RTCP packets when a receive delta does not fit 16 bits, when it would cover
    more than 65535 sequence numbers, or when a packet would report more than
    ``max_received`` received packets (about 1.2 kB at most).
    """

    def __init__(self, interval: float = 0.05, max_received: int = 200, rewind: int = 1024):
        if max_received < 1:
            raise ValueError(f"max_received {max_received} is not positive")
        self.interval = interval
        self.max_received = max_received
        self.rewind = rewind
        self.packets_received = 0
        self._count = 0
        self._arrivals: dict[int, int] = {}  # extended sequence -> arrival in µs
        self._highest: int | None = None
        self._next = 0  # first extended sequence not reported yet
        self._floor = 0  # extended sequences below this are forgotten
        self._last_feedback: float | None = None

    @property
    def feedback_count(self) -> int:
        """The feedback packet count the next feedback packet will carry."""
        return self._count

    def packet_received(self, transport_seq: int, arrival_time: float) -> None:
        """Record the arrival of ``transport_seq`` (16-bit) at ``arrival_time`` seconds."""
        seq = transport_seq & 0xFFFF
        highest = self._highest
        if highest is None:
            ext = seq
            self._highest = self._next = ext
            self._floor = ext - self.rewind
        else:
            ext = highest + ((seq - highest + 0x8000) & 0xFFFF) - 0x8000
            if ext < self._floor or ext in self._arrivals:
                return
            if ext > highest:
                self._highest = ext
            elif ext < self._next:
                self._next = ext  # a straggler already reported lost: report it again
        self._arrivals[ext] = round(arrival_time * 1_000_000)
        self.packets_received += 1
        if len(self._arrivals) > _MAX_PENDING:  # feedback() is not being called: forget
            floor = self._highest - (_MAX_STATUS - 1)
            self._next = max(self._next, floor)
            self._floor = max(self._floor, floor)
            self._arrivals = {e: t for e, t in self._arrivals.items() if e >= floor}

    @property
    def next_feedback_time(self) -> float | None:
        """When :meth:`feedback` will next produce something (-inf: now), None if nothing new."""
        if self._highest is None or self._highest < self._next:
            return None
        if self._last_feedback is None:
            return float("-inf")
        return self._last_feedback + self.interval

    def feedback(
        self, now: float, sender_ssrc: int, media_ssrc: int, force: bool = False
    ) -> list[bytes]:
        """Transport-cc feedback packets for what arrived since the last feedback.

        Empty when nothing new arrived or, unless ``force``, less than ``interval`` seconds
        after the previous feedback.
        """
        highest = self._highest
        if highest is None or highest < self._next:
            return []
        last = self._last_feedback
        if not force and last is not None and 0 <= now - last < self.interval:
            return []
        self._last_feedback = now
        start = self._next
        received = sorted((e, t) for e, t in self._arrivals.items() if e >= start)
        out = []
        for seg_start, seg in self._segments(start, received):
            packets: list[tuple[int, int | None]] = []
            if seg_start < seg[0][0]:
                packets.append((seg_start & 0xFFFF, None))
            packets.extend((e & 0xFFFF, t) for e, t in seg)
            fb = TransportFeedback.build(sender_ssrc, media_ssrc, self._count, packets)
            out.append(bytes(fb))
            self._count = (self._count + 1) & 0xFF
        self._next = highest + 1
        floor = self._next - self.rewind
        if floor > self._floor:
            self._floor = floor
            self._arrivals = {e: t for e, t in self._arrivals.items() if e >= floor}
        return out

    def _segments(
        self, start: int, received: list[tuple[int, int]]
    ) -> list[tuple[int, list[tuple[int, int]]]]:
        """Split ``received`` (sorted, all >= ``start``) into (first sequence, packets)."""
        segments: list[tuple[int, list[tuple[int, int]]]] = []
        current: list[tuple[int, int]] = []
        ref = previous = 0
        for ext, t in received:
            if current:
                ticks = _ticks(t, ref)
                if (
                    ext - start + 1 > _MAX_STATUS
                    or not _DELTA_MIN <= ticks - previous <= _DELTA_MAX
                    or len(current) >= self.max_received
                ):
                    segments.append((start, current))
                    start = current[-1][0] + 1
                    current = []
                else:
                    previous = ticks
            if not current:
                start = max(start, ext - (_MAX_STATUS - 1))
                ref = t // 64000 * 64000
                previous = _ticks(t, ref)
            current.append((ext, t))
        if current:
            segments.append((start, current))
        return segments


class KeyframeRequester:
    """Rate-limited keyframe requests: at most one per ``min_interval`` seconds per SSRC.

    :meth:`request` returns a PLI (RFC 4585) or, with ``use_fir``, a FIR (RFC 5104) whose
    command sequence number increases by one (mod 256) with every FIR sent for that SSRC.
    ``sender_ssrc`` is the bridge's SSRC on the leg the request is sent on.
    """

    def __init__(self, sender_ssrc: int = FEEDBACK_SSRC, min_interval: float = 0.3,
                 use_fir: bool = False) -> None:
        self.sender_ssrc = sender_ssrc
        self.min_interval = min_interval
        self.use_fir = use_fir
        self.sent = 0
        self.suppressed = 0
        self._last: dict[int, float] = {}
        self._fir_seq: dict[int, int] = {}

    def request(self, ssrc: int, now: float, use_fir: bool | None = None) -> bytes | None:
        """RTCP asking ``ssrc``'s sender for a keyframe, or None if one was asked too recently."""
        last = self._last.get(ssrc)
        if last is not None and 0 <= now - last < self.min_interval:
            self.suppressed += 1
            return None
        if use_fir is None:
            use_fir = self.use_fir
        if use_fir:
            seq = (self._fir_seq.get(ssrc, -1) + 1) & 0xFF
            data = bytes(Fir(self.sender_ssrc, [(ssrc, seq)]))
            self._fir_seq[ssrc] = seq
        else:
            data = bytes(Pli(self.sender_ssrc, ssrc))
        self._last[ssrc] = now
        self.sent += 1
        return data

    def forget(self, ssrc: int) -> None:
        """Drop the state of ``ssrc`` (its source went away)."""
        self._last.pop(ssrc, None)
        self._fir_seq.pop(ssrc, None)
