"""RTCP packets (RFC 3550, RFC 4585, RFC 5104, transport-cc, REMB) and receiver statistics.

:func:`parse_compound` splits a (compound or reduced-size, RFC 5506) RTCP datagram into packet
objects; each class also has ``parse(data)`` for exactly one packet and ``bytes()``. Unknown
packet types and feedback formats parse into :class:`UnknownRtcp`, :class:`RtpFeedback` or
:class:`PayloadFeedback` rather than failing. Malformed input raises :class:`ValueError`.

Transport-wide feedback arrival times are integer microseconds on the feedback's own clock:
``reference_time * 64000`` plus the receive deltas (250 µs units).

:class:`ReceptionStatistics` is RFC 3550 appendix A.1/A.3/A.8 for one received SSRC; feed it
every packet and ask for a :class:`ReportBlock` when sending a report. Time is given in
seconds (a reactor's ``seconds()``), wall clock for the NTP helpers.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Self, TypeAlias

__all__ = [
    "RTCP_SR",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_BYE",
    "RTCP_APP",
    "RTCP_RTPFB",
    "RTCP_PSFB",
    "SDES_CNAME",
    "ReportBlock",
    "SenderReport",
    "ReceiverReport",
    "SdesChunk",
    "SourceDescription",
    "Bye",
    "App",
    "Nack",
    "TransportFeedback",
    "RtpFeedback",
    "Pli",
    "Fir",
    "Remb",
    "PayloadFeedback",
    "UnknownRtcp",
    "RtcpPacket",
    "parse_compound",
    "pack_compound",
    "ReceptionStatistics",
    "ntp_from_seconds",
    "ntp_to_seconds",
    "compact_ntp",
    "round_trip_time",
]

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
RTCP_RTPFB = 205
RTCP_PSFB = 206

RTPFB_NACK = 1
RTPFB_TRANSPORT_CC = 15
PSFB_PLI = 1
PSFB_FIR = 4
PSFB_AFB = 15

SDES_CNAME = 1

_HEADER = struct.Struct("!BBH")
_U32 = struct.Struct("!I")
_II = struct.Struct("!II")
_HH = struct.Struct("!HH")
_BLOCK = struct.Struct("!IIIIII")
_SENDER_INFO = struct.Struct("!QIII")
_TCC_HEAD = struct.Struct("!HHI")

_LOST_MIN = -(1 << 23)
_LOST_MAX = (1 << 23) - 1


def _header(packet_type: int, count: int, body: bytes, pad: bool = False) -> bytes:
    """Header + body; with ``pad``, pads to 32 bits with the P bit (as libwebrtc does)."""
    if not 0 <= count <= 31:
        raise ValueError(f"RTCP count {count} is not in 0-31")
    if not 0 <= packet_type <= 255:
        raise ValueError(f"RTCP packet type {packet_type} is not in 0-255")
    padding = -len(body) % 4
    if padding and not pad:
        raise ValueError(f"RTCP packet body of {len(body)} bytes is not a multiple of 4")
    if padding:
        body = body + bytes(padding - 1) + bytes((padding,))
    words = len(body) // 4
    if words > 0xFFFF:
        raise ValueError(f"RTCP packet of {len(body)} bytes is too long")
    return _HEADER.pack(0x80 | (0x20 if padding else 0) | count, packet_type, words) + body


def _check(what: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{what} {value} is not a {bits}-bit unsigned value")


class _Packet:
    """Mixin: ``parse`` of exactly one RTCP packet of the subclass's kind."""

    __slots__ = ()

    @classmethod
    def parse(cls, data: bytes) -> Self:
        packets = parse_compound(data)
        if len(packets) != 1:
            raise ValueError(f"expected one RTCP packet, found {len(packets)}")
        packet = packets[0]
        if type(packet) is not cls:
            raise ValueError(f"RTCP packet is a {type(packet).__name__}, not a {cls.__name__}")
        return packet


# --- reports --------------------------------------------------------------------------------


@dataclass(slots=True)
class ReportBlock:
    """One reception report block (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int = 0
    cumulative_lost: int = 0  # signed 24-bit
    highest_sequence: int = 0  # extended highest sequence number received
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> ReportBlock:
        if len(data) < offset + 24:
            raise ValueError(f"RTCP report block is truncated at {len(data) - offset} bytes")
        ssrc, w, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        lost = w & 0xFFFFFF
        if lost & 0x800000:
            lost -= 1 << 24
        return cls(ssrc, w >> 24, lost, highest, jitter, lsr, dlsr)

    def __bytes__(self) -> bytes:
        _check("fraction lost", self.fraction_lost, 8)
        if not _LOST_MIN <= self.cumulative_lost <= _LOST_MAX:
            raise ValueError(f"cumulative lost {self.cumulative_lost} is not signed 24-bit")
        try:
            return _BLOCK.pack(
                self.ssrc,
                self.fraction_lost << 24 | (self.cumulative_lost & 0xFFFFFF),
                self.highest_sequence,
                self.jitter,
                self.lsr,
                self.dlsr,
            )
        except struct.error as e:
            raise ValueError(f"report block field out of range: {e}") from None


def _parse_blocks(body: bytes, offset: int, count: int) -> list[ReportBlock]:
    return [ReportBlock.parse(body, offset + 24 * i) for i in range(count)]


@dataclass(slots=True)
class SenderReport(_Packet):
    """SR (RFC 3550 §6.4.1); ``extension`` is any profile-specific extension after the blocks."""

    PACKET_TYPE: ClassVar[int] = RTCP_SR

    ssrc: int
    ntp_timestamp: int = 0
    rtp_timestamp: int = 0
    packet_count: int = 0
    octet_count: int = 0
    reports: list[ReportBlock] = field(default_factory=list)
    extension: bytes = b""

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> SenderReport:
        need = 24 + 24 * count
        if len(body) < need:
            raise ValueError(f"RTCP SR with {count} blocks needs {need} bytes, has {len(body)}")
        ssrc = _U32.unpack_from(body)[0]
        ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(body, 4)
        reports = _parse_blocks(body, 24, count)
        return cls(ssrc, ntp, rtp_ts, packets, octets, reports, bytes(body[need:]))

    def __bytes__(self) -> bytes:
        try:
            head = _U32.pack(self.ssrc) + _SENDER_INFO.pack(
                self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
            )
        except struct.error as e:
            raise ValueError(f"RTCP SR field out of range: {e}") from None
        body = b"".join([head, *map(bytes, self.reports), self.extension])
        return _header(RTCP_SR, len(self.reports), body)


@dataclass(slots=True)
class ReceiverReport(_Packet):
    """RR (RFC 3550 §6.4.2)."""

    PACKET_TYPE: ClassVar[int] = RTCP_RR

    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)
    extension: bytes = b""

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> ReceiverReport:
        need = 4 + 24 * count
        if len(body) < need:
            raise ValueError(f"RTCP RR with {count} blocks needs {need} bytes, has {len(body)}")
        ssrc = _U32.unpack_from(body)[0]
        return cls(ssrc, _parse_blocks(body, 4, count), bytes(body[need:]))

    def __bytes__(self) -> bytes:
        _check("RTCP RR SSRC", self.ssrc, 32)
        body = b"".join([_U32.pack(self.ssrc), *map(bytes, self.reports), self.extension])
        return _header(RTCP_RR, len(self.reports), body)


# --- SDES, BYE, APP -------------------------------------------------------------------------


@dataclass(slots=True)
class SdesChunk:
    """One SDES chunk: an SSRC and its (item type, value) list."""

    ssrc: int
    items: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def cname(self) -> str | None:
        for item_type, value in self.items:
            if item_type == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None


@dataclass(slots=True)
class SourceDescription(_Packet):
    """SDES (RFC 3550 §6.5)."""

    PACKET_TYPE: ClassVar[int] = RTCP_SDES

    chunks: list[SdesChunk] = field(default_factory=list)

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> SourceDescription:
        n = len(body)
        pos = 0
        chunks = []
        for _ in range(count):
            if n < pos + 4:
                raise ValueError("RTCP SDES chunk is truncated in its SSRC")
            chunk = SdesChunk(_U32.unpack_from(body, pos)[0])
            pos += 4
            while True:
                if pos >= n:
                    raise ValueError("RTCP SDES chunk has no terminating null item")
                item_type = body[pos]
                if item_type == 0:
                    pos = min(n, (pos + 4) & ~3)
                    break
                if pos + 2 > n:
                    raise ValueError(f"RTCP SDES item {item_type} has no length byte")
                length = body[pos + 1]
                if pos + 2 + length > n:
                    raise ValueError(f"RTCP SDES item {item_type} is truncated")
                chunk.items.append((item_type, bytes(body[pos + 2 : pos + 2 + length])))
                pos += 2 + length
            chunks.append(chunk)
        return cls(chunks)

    def __bytes__(self) -> bytes:
        parts = []
        for chunk in self.chunks:
            _check("RTCP SDES SSRC", chunk.ssrc, 32)
            data = bytearray(_U32.pack(chunk.ssrc))
            for item_type, value in chunk.items:
                if not 1 <= item_type <= 255:
                    raise ValueError(f"RTCP SDES item type {item_type} is not in 1-255")
                if len(value) > 255:
                    raise ValueError(f"RTCP SDES item {item_type} is longer than 255 bytes")
                data += bytes((item_type, len(value)))
                data += value
            data += bytes(4 - len(data) % 4)  # at least one null octet, then to 32 bits
            parts.append(bytes(data))
        return _header(RTCP_SDES, len(self.chunks), b"".join(parts))


@dataclass(slots=True)
class Bye(_Packet):
    """BYE (RFC 3550 §6.6) with an optional reason."""

    PACKET_TYPE: ClassVar[int] = RTCP_BYE

    sources: list[int] = field(default_factory=list)
    reason: bytes = b""

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> Bye:
        pos = 4 * count
        if len(body) < pos:
            raise ValueError(f"RTCP BYE with {count} sources is truncated at {len(body)} bytes")
        sources = list(struct.unpack_from(f"!{count}I", body)) if count else []
        reason = b""
        if len(body) > pos:
            length = body[pos]
            if len(body) < pos + 1 + length:
                raise ValueError("RTCP BYE reason is truncated")
            reason = bytes(body[pos + 1 : pos + 1 + length])
        return cls(sources, reason)

    def __bytes__(self) -> bytes:
        if len(self.reason) > 255:
            raise ValueError("RTCP BYE reason is longer than 255 bytes")
        try:
            body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        except struct.error as e:
            raise ValueError(f"RTCP BYE SSRC out of range: {e}") from None
        if self.reason:
            reason = bytes((len(self.reason),)) + self.reason
            body += reason + bytes(-len(reason) % 4)
        return _header(RTCP_BYE, len(self.sources), body)


@dataclass(slots=True)
class App(_Packet):
    """APP (RFC 3550 §6.7), kept raw."""

    PACKET_TYPE: ClassVar[int] = RTCP_APP

    subtype: int
    ssrc: int
    name: bytes
    data: bytes = b""

    @classmethod
    def _from_body(cls, count: int, body: bytes) -> App:
        if len(body) < 8:
            raise ValueError(f"RTCP APP is {len(body)} bytes, fewer than 8")
        return cls(count, _U32.unpack_from(body)[0], bytes(body[4:8]), bytes(body[8:]))

    def __bytes__(self) -> bytes:
        if len(self.name) != 4:
            raise ValueError(f"RTCP APP name is {len(self.name)} bytes, not 4")
        _check("RTCP APP SSRC", self.ssrc, 32)
        return _header(RTCP_APP, self.subtype, _U32.pack(self.ssrc) + self.name + self.data)


# --- transport layer feedback (RTPFB) -------------------------------------------------------


def _fb_body(sender_ssrc: int, media_ssrc: int, fci: bytes) -> bytes:
    try:
        return _II.pack(sender_ssrc, media_ssrc) + fci
    except struct.error as e:
        raise ValueError(f"RTCP feedback SSRC out of range: {e}") from None


@dataclass(slots=True)
class Nack(_Packet):
    """Generic NACK (RFC 4585 §6.2.1): ``lost`` lists sequence numbers."""

    PACKET_TYPE: ClassVar[int] = RTCP_RTPFB
    FMT: ClassVar[int] = RTPFB_NACK

    sender_ssrc: int
    media_ssrc: int
    lost: list[int] = field(default_factory=list)

    @classmethod
    def _from_fci(cls, sender_ssrc: int, media_ssrc: int, fci: bytes) -> Nack:
        if len(fci) % 4:
            raise ValueError(f"RTCP NACK FCI is {len(fci)} bytes, not a multiple of 4")
        lost = []
        for pos in range(0, len(fci), 4):
            pid, blp = _HH.unpack_from(fci, pos)
            lost.append(pid)
            d = 1
            while blp:
                if blp & 1:
                    lost.append((pid + d) & 0xFFFF)
                blp >>= 1
                d += 1
        return cls(sender_ssrc, media_ssrc, lost)

    def __bytes__(self) -> bytes:
        fci = bytearray()
        pid = -1
        blp = 0
        for seq in self.lost:
            _check("NACK sequence number", seq, 16)
            if pid >= 0:
                d = (seq - pid - 1) & 0xFFFF
                if d < 16:
                    blp |= 1 << d
                    continue
                fci += _HH.pack(pid, blp)
            pid = seq
            blp = 0
        if pid >= 0:
            fci += _HH.pack(pid, blp)
        body = _fb_body(self.sender_ssrc, self.media_ssrc, bytes(fci))
        return _header(RTCP_RTPFB, RTPFB_NACK, body)


_NOT_RECEIVED, _SMALL, _LARGE = 0, 1, 2


@dataclass(slots=True)
class TransportFeedback(_Packet):
    """Transport-wide congestion control feedback (RTPFB fmt 15).

    ``packets`` lists (transport sequence number, arrival time in µs or None if not received)
    in sequence order starting at ``base_sequence``; gaps count as not received. Times are on
    the feedback clock (``reference_time`` is in 64 ms units) and are quantized to 250 µs when
    serialized. Use :meth:`build` to derive base and reference time from the packets.
    """

    PACKET_TYPE: ClassVar[int] = RTCP_RTPFB
    FMT: ClassVar[int] = RTPFB_TRANSPORT_CC

    sender_ssrc: int
    media_ssrc: int
    base_sequence: int
    reference_time: int  # 24 bits, 64 ms units
    feedback_count: int  # 8 bits
    packets: list[tuple[int, int | None]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        sender_ssrc: int,
        media_ssrc: int,
        feedback_count: int,
        packets: Iterable[tuple[int, int | None]],
    ) -> TransportFeedback:
        """Feedback for ``packets`` (sequence, arrival µs or None), sorted by sequence.

        The reference time is the first received arrival rounded down to 64 ms (kept to its
        24 bits; times are shifted by the same amount so that they stay consistent with it).
        """
        packets = list(packets)
        if not packets:
            raise ValueError("transport-cc feedback needs at least one packet")
        times = [t for _, t in packets if t is not None]
        ref = times[0] // 64000 if times else 0
        shift = (ref - (ref & 0xFFFFFF)) * 64000
        if shift:
            packets = [(s, None if t is None else t - shift) for s, t in packets]
        return cls(sender_ssrc, media_ssrc, packets[0][0], ref & 0xFFFFFF, feedback_count, packets)

    @property
    def received(self) -> list[tuple[int, int]]:
        """(sequence, arrival µs) of the packets reported received."""
        return [(s, t) for s, t in self.packets if t is not None]

    @classmethod
    def _from_fci(cls, sender_ssrc: int, media_ssrc: int, fci: bytes) -> TransportFeedback:
        n = len(fci)
        if n < 8:
            raise ValueError(f"transport-cc feedback FCI is {n} bytes, fewer than 8")
        base, count, ref_fb = _TCC_HEAD.unpack_from(fci)
        symbols: list[int] = []
        pos = 8
        while len(symbols) < count:
            if pos + 2 > n:
                raise ValueError(
                    f"transport-cc feedback is truncated after {len(symbols)} of {count} statuses"
                )
            chunk = fci[pos] << 8 | fci[pos + 1]
            pos += 2
            if not chunk & 0x8000:  # run length chunk
                symbols.extend([(chunk >> 13) & 3] * min(chunk & 0x1FFF, count - len(symbols)))
            elif not chunk & 0x4000:  # status vector, 14 one-bit symbols
                symbols.extend((chunk >> i) & 1 for i in range(13, -1, -1))
            else:  # status vector, 7 two-bit symbols
                symbols.extend((chunk >> i) & 3 for i in range(12, -1, -2))
        del symbols[count:]
        reference_time = ref_fb >> 8
        t = reference_time * 64000
        packets: list[tuple[int, int | None]] = []
        for i, symbol in enumerate(symbols):
            seq = (base + i) & 0xFFFF
            if symbol == _NOT_RECEIVED:
                packets.append((seq, None))
                continue
            if symbol == _SMALL:
                if pos >= n:
                    raise ValueError(f"transport-cc receive delta of {seq} is truncated")
                t += fci[pos] * 250
                pos += 1
            elif symbol == _LARGE:
                if pos + 2 > n:
                    raise ValueError(f"transport-cc receive delta of {seq} is truncated")
                d = fci[pos] << 8 | fci[pos + 1]
                t += (d - 0x10000 if d & 0x8000 else d) * 250
                pos += 2
            else:
                raise ValueError(f"transport-cc status of {seq} is the reserved symbol 3")
            packets.append((seq, t))
        return cls(sender_ssrc, media_ssrc, base, reference_time, ref_fb & 0xFF, packets)

    def __bytes__(self) -> bytes:
        _check("transport-cc base sequence", self.base_sequence, 16)
        _check("transport-cc reference time", self.reference_time, 24)
        _check("transport-cc feedback count", self.feedback_count, 8)
        arrivals: dict[int, int | None] = {}
        for seq, t in self.packets:
            _check("transport-cc sequence", seq, 16)
            arrivals[(seq - self.base_sequence) & 0xFFFF] = t
        count = max(arrivals) + 1 if arrivals else 0
        symbols = [_NOT_RECEIVED] * count
        deltas = bytearray()
        previous = 0
        ref = self.reference_time * 64000
        for offset in sorted(arrivals):
            t = arrivals[offset]
            if t is None:
                continue
            ticks = (t - ref + 125) // 250
            d = ticks - previous
            previous = ticks
            if 0 <= d <= 255:
                symbols[offset] = _SMALL
                deltas.append(d)
            elif -0x8000 <= d <= 0x7FFF:
                symbols[offset] = _LARGE
                deltas += (d & 0xFFFF).to_bytes(2, "big")
            else:
                raise ValueError(
                    f"transport-cc receive delta of {d * 250} µs at sequence "
                    f"{(self.base_sequence + offset) & 0xFFFF} does not fit 16 bits; split it"
                )
        fci = b"".join(
            (
                _TCC_HEAD.pack(
                    self.base_sequence, count, self.reference_time << 8 | self.feedback_count
                ),
                _encode_chunks(symbols),
                deltas,
            )
        )
        body = _fb_body(self.sender_ssrc, self.media_ssrc, fci)
        return _header(RTCP_RTPFB, RTPFB_TRANSPORT_CC, body, pad=True)


def _encode_chunks(symbols: list[int]) -> bytes:
    """Packet status chunks for ``symbols``: runs where long, else status vectors."""
    out = bytearray()
    n = len(symbols)
    i = 0
    while i < n:
        s = symbols[i]
        run = 1
        while i + run < n and symbols[i + run] == s and run < 0x1FFF:
            run += 1
        if run >= 14:
            chunk = s << 13 | run
            i += run
        elif max(symbols[i : i + 14]) <= _SMALL:
            chunk = 0x8000
            for k, sym in enumerate(symbols[i : i + 14]):
                chunk |= sym << (13 - k)
            i += 14
        elif run >= 7:
            chunk = s << 13 | run
            i += run
        else:
            chunk = 0xC000
            for k, sym in enumerate(symbols[i : i + 7]):
                chunk |= sym << (12 - 2 * k)
            i += 7
        out += chunk.to_bytes(2, "big")
    return bytes(out)


@dataclass(slots=True)
class RtpFeedback(_Packet):
    """Any other transport layer feedback message (RTPFB), FCI kept raw."""

    PACKET_TYPE: ClassVar[int] = RTCP_RTPFB

    fmt: int
    sender_ssrc: int
    media_ssrc: int
    fci: bytes = b""

    def __bytes__(self) -> bytes:
        return _header(RTCP_RTPFB, self.fmt, _fb_body(self.sender_ssrc, self.media_ssrc, self.fci))


# --- payload-specific feedback (PSFB) -------------------------------------------------------


@dataclass(slots=True)
class Pli(_Packet):
    """Picture Loss Indication (RFC 4585 §6.3.1)."""

    PACKET_TYPE: ClassVar[int] = RTCP_PSFB
    FMT: ClassVar[int] = PSFB_PLI

    sender_ssrc: int
    media_ssrc: int

    def __bytes__(self) -> bytes:
        return _header(RTCP_PSFB, PSFB_PLI, _fb_body(self.sender_ssrc, self.media_ssrc, b""))


@dataclass(slots=True)
class Fir(_Packet):
    """Full Intra Request (RFC 5104 §4.3.1): ``entries`` are (media SSRC, command seq nr)."""

    PACKET_TYPE: ClassVar[int] = RTCP_PSFB
    FMT: ClassVar[int] = PSFB_FIR

    sender_ssrc: int
    entries: list[tuple[int, int]] = field(default_factory=list)
    media_ssrc: int = 0  # RFC 5104: SHALL be 0

    @classmethod
    def _from_fci(cls, sender_ssrc: int, media_ssrc: int, fci: bytes) -> Fir:
        if len(fci) % 8:
            raise ValueError(f"RTCP FIR FCI is {len(fci)} bytes, not a multiple of 8")
        entries = [(_U32.unpack_from(fci, p)[0], fci[p + 4]) for p in range(0, len(fci), 8)]
        return cls(sender_ssrc, entries, media_ssrc)

    def __bytes__(self) -> bytes:
        fci = bytearray()
        for ssrc, seq in self.entries:
            _check("FIR SSRC", ssrc, 32)
            _check("FIR sequence number", seq, 8)
            fci += _U32.pack(ssrc) + bytes((seq, 0, 0, 0))
        body = _fb_body(self.sender_ssrc, self.media_ssrc, bytes(fci))
        return _header(RTCP_PSFB, PSFB_FIR, body)


@dataclass(slots=True)
class Remb(_Packet):
    """Receiver Estimated Maximum Bitrate (draft-alvestrand-rmcat-remb), PSFB fmt 15 'REMB'.

    Serializing rounds ``bitrate`` down to the 18-bit mantissa and 6-bit exponent.
    """

    PACKET_TYPE: ClassVar[int] = RTCP_PSFB
    FMT: ClassVar[int] = PSFB_AFB

    sender_ssrc: int
    bitrate: int
    ssrcs: list[int] = field(default_factory=list)
    media_ssrc: int = 0

    @classmethod
    def _from_fci(cls, sender_ssrc: int, media_ssrc: int, fci: bytes) -> Remb:
        if len(fci) < 8:
            raise ValueError(f"REMB FCI is {len(fci)} bytes, fewer than 8")
        num = fci[4]
        if len(fci) < 8 + 4 * num:
            raise ValueError(f"REMB with {num} SSRCs is truncated at {len(fci)} bytes")
        exponent = fci[5] >> 2
        mantissa = (fci[5] & 3) << 16 | fci[6] << 8 | fci[7]
        ssrcs = list(struct.unpack_from(f"!{num}I", fci, 8)) if num else []
        return cls(sender_ssrc, mantissa << exponent, ssrcs, media_ssrc)

    def __bytes__(self) -> bytes:
        if self.bitrate < 0:
            raise ValueError(f"REMB bitrate {self.bitrate} is negative")
        if len(self.ssrcs) > 255:
            raise ValueError(f"REMB has {len(self.ssrcs)} SSRCs, more than 255")
        exponent = max(0, self.bitrate.bit_length() - 18)
        if exponent > 63:
            raise ValueError(f"REMB bitrate {self.bitrate} is too large")
        mantissa = self.bitrate >> exponent
        try:
            ssrcs = struct.pack(f"!{len(self.ssrcs)}I", *self.ssrcs)
        except struct.error as e:
            raise ValueError(f"REMB SSRC out of range: {e}") from None
        fci = (
            b"REMB"
            + bytes(
                (
                    len(self.ssrcs),
                    exponent << 2 | mantissa >> 16,
                    (mantissa >> 8) & 0xFF,
                    mantissa & 0xFF,
                )
            )
            + ssrcs
        )
        return _header(RTCP_PSFB, PSFB_AFB, _fb_body(self.sender_ssrc, self.media_ssrc, fci))


@dataclass(slots=True)
class PayloadFeedback(_Packet):
    """Any other payload-specific feedback message (PSFB), FCI kept raw."""

    PACKET_TYPE: ClassVar[int] = RTCP_PSFB

    fmt: int
    sender_ssrc: int
    media_ssrc: int
    fci: bytes = b""

    def __bytes__(self) -> bytes:
        return _header(RTCP_PSFB, self.fmt, _fb_body(self.sender_ssrc, self.media_ssrc, self.fci))


@dataclass(slots=True)
class UnknownRtcp(_Packet):
    """An RTCP packet of a type not modelled here (XR, ...), body kept raw (padding removed)."""

    packet_type: int
    count: int
    body: bytes = b""

    def __bytes__(self) -> bytes:
        return _header(self.packet_type, self.count, self.body)


RtcpPacket: TypeAlias = (
    SenderReport
    | ReceiverReport
    | SourceDescription
    | Bye
    | App
    | Nack
    | TransportFeedback
    | RtpFeedback
    | Pli
    | Fir
    | Remb
    | PayloadFeedback
    | UnknownRtcp
)


def _iter_packets(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    n = len(data)
    pos = 0
    while pos < n:
        if n - pos < 4:
            raise ValueError(f"RTCP packet at offset {pos} is {n - pos} bytes, fewer than 4")
        b0, packet_type, words = _HEADER.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise ValueError(f"RTCP version is {b0 >> 6}, not 2 (packet at offset {pos})")
        end = pos + 4 + 4 * words
        if end > n:
            raise ValueError(
                f"RTCP packet at offset {pos} claims {end - pos} bytes, only {n - pos} left"
            )
        body = data[pos + 4 : end]
        if b0 & 0x20:
            padding = body[-1] if body else 0
            if padding == 0 or padding > len(body):
                raise ValueError(f"RTCP padding length {padding} is invalid for {len(body)} bytes")
            body = body[:-padding]
        yield b0 & 0x1F, packet_type, body
        pos = end


_REPORTS = {
    RTCP_SR: SenderReport,
    RTCP_RR: ReceiverReport,
    RTCP_SDES: SourceDescription,
    RTCP_BYE: Bye,
    RTCP_APP: App,
}
_RTPFB = {RTPFB_NACK: Nack, RTPFB_TRANSPORT_CC: TransportFeedback}
_PSFB = {PSFB_FIR: Fir}


def _parse_one(count: int, packet_type: int, body: bytes) -> RtcpPacket:
    kind = _REPORTS.get(packet_type)
    if kind is not None:
        return kind._from_body(count, body)
    if packet_type != RTCP_RTPFB and packet_type != RTCP_PSFB:
        return UnknownRtcp(packet_type, count, bytes(body))
    if len(body) < 8:
        raise ValueError(f"RTCP feedback message is {len(body)} bytes, fewer than 8")
    sender_ssrc, media_ssrc = _II.unpack_from(body)
    fci = bytes(body[8:])
    if packet_type == RTCP_RTPFB:
        fb = _RTPFB.get(count)
        if fb is None:
            return RtpFeedback(count, sender_ssrc, media_ssrc, fci)
        return fb._from_fci(sender_ssrc, media_ssrc, fci)
    if count == PSFB_PLI:
        return Pli(sender_ssrc, media_ssrc)
    if count == PSFB_AFB and fci[:4] == b"REMB":
        return Remb._from_fci(sender_ssrc, media_ssrc, fci)
    psfb = _PSFB.get(count)
    if psfb is None:
        return PayloadFeedback(count, sender_ssrc, media_ssrc, fci)
    return psfb._from_fci(sender_ssrc, media_ssrc, fci)


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Parse every RTCP packet in a datagram; raises ValueError if any is malformed."""
    return [_parse_one(count, pt, body) for count, pt, body in _iter_packets(data)]


def pack_compound(packets: Iterable[RtcpPacket]) -> bytes:
    """Concatenate packets into one compound RTCP datagram."""
    return b"".join(bytes(p) for p in packets)


# --- NTP time and round trip time -----------------------------------------------------------

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


def ntp_from_seconds(seconds: float) -> int:
    """Unix time in seconds to a 64-bit NTP timestamp (32.32 fixed point since 1900)."""
    whole = math.floor(seconds)
    frac = round((seconds - whole) * (1 << 32))
    return (((whole + NTP_EPOCH_OFFSET) << 32) + frac) & 0xFFFFFFFFFFFFFFFF


def ntp_to_seconds(ntp: int) -> float:
    """A 64-bit NTP timestamp to Unix time in seconds."""
    return (ntp >> 32) - NTP_EPOCH_OFFSET + (ntp & 0xFFFFFFFF) / (1 << 32)


def compact_ntp(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp (16.16), as in LSR and DLSR."""
    return (ntp >> 16) & 0xFFFFFFFF


def round_trip_time(block: ReportBlock, arrival_time: float) -> float | None:
    """RTT in seconds from a report block about our SR, received at Unix time ``arrival_time``.

    RFC 3550 §6.4.1: A - LSR - DLSR. None if the block has no LSR (no SR received yet);
    clamped to 0 when clock rounding makes it negative.
    """
    if block.lsr == 0:
        return None
    a = compact_ntp(ntp_from_seconds(arrival_time))
    rtt = (a - block.lsr - block.dlsr) & 0xFFFFFFFF
    if rtt >= 0x80000000:
        return 0.0
    return rtt / 65536


# --- reception statistics -------------------------------------------------------------------

_SEQ_MOD = 1 << 16
_MAX_DROPOUT = 3000
_MAX_MISORDER = 100


class ReceptionStatistics:
    """Receiver-side statistics of one RTP source (RFC 3550 A.1, A.3, A.8).

    Sans-IO: call :meth:`add` for every received packet (not RTX-repaired ones, which would
    skew jitter) and :meth:`sender_report_received` for each SR from that source; then
    :meth:`report_block` when sending an RR/SR. A jump of more than 3000 sequence numbers is
    ignored unless the next packet follows it, which restarts the statistics (A.1).
    """

    def __init__(self, ssrc: int, clock_rate: int) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock rate {clock_rate} is not positive")
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.packets_received = 0
        self.jitter = 0.0  # in timestamp units
        self._started = False
        self._base_seq = 0
        self._max_seq = 0
        self._cycles = 0
        self._bad_seq = _SEQ_MOD + 1
        self._expected_prior = 0
        self._received_prior = 0
        self._last_arrival: float | None = None
        self._last_timestamp = 0
        self._lsr = 0
        self._sr_arrival: float | None = None

    def _init_seq(self, seq: int) -> None:
        self._base_seq = seq
        self._max_seq = seq
        self._bad_seq = _SEQ_MOD + 1
        self._cycles = 0
        self.packets_received = 0
        self._received_prior = 0
        self._expected_prior = 0
        self._last_arrival = None

    def add(self, sequence: int, timestamp: int, arrival_time: float) -> bool:
        """Account one packet; False if it was set aside as a suspicious sequence jump."""
        if not self._started:
            self._started = True
            self._init_seq(sequence)
        else:
            udelta = (sequence - self._max_seq) & 0xFFFF
            if udelta < _MAX_DROPOUT:
                if sequence < self._max_seq:
                    self._cycles += _SEQ_MOD
                self._max_seq = sequence
            elif udelta <= _SEQ_MOD - _MAX_MISORDER:
                if sequence != self._bad_seq:
                    self._bad_seq = (sequence + 1) & 0xFFFF
                    return False
                self._init_seq(sequence)  # two sequential packets: the source restarted
        self.packets_received += 1
        last = self._last_arrival
        if last is not None:
            ts_delta = (timestamp - self._last_timestamp) & 0xFFFFFFFF
            if ts_delta >= 0x80000000:
                ts_delta -= 1 << 32
            d = (arrival_time - last) * self.clock_rate - ts_delta
            self.jitter += (abs(d) - self.jitter) / 16
        self._last_arrival = arrival_time
        self._last_timestamp = timestamp
        return True

    @property
    def extended_highest_sequence(self) -> int:
        return self._cycles + self._max_seq

    @property
    def expected(self) -> int:
        if not self._started:
            return 0
        return self.extended_highest_sequence - self._base_seq + 1

    @property
    def cumulative_lost(self) -> int:
        """Expected minus received; negative when duplicates arrived."""
        return self.expected - self.packets_received

    @property
    def fraction_lost(self) -> int:
        """Fraction lost since the last report block, in 1/256 (A.3)."""
        expected_interval = self.expected - self._expected_prior
        lost_interval = expected_interval - (self.packets_received - self._received_prior)
        if expected_interval <= 0 or lost_interval <= 0:
            return 0
        return (lost_interval << 8) // expected_interval

    def sender_report_received(self, ntp_timestamp: int, arrival_time: float) -> None:
        """Remember the source's last SR for LSR/DLSR."""
        self._lsr = compact_ntp(ntp_timestamp)
        self._sr_arrival = arrival_time

    def report_block(self, now: float) -> ReportBlock:
        """The report block to send now; starts a new interval for ``fraction_lost``."""
        if not self._started:
            raise ValueError(f"no packet received from SSRC {self.ssrc} yet")
        fraction = self.fraction_lost
        self._expected_prior = self.expected
        self._received_prior = self.packets_received
        dlsr = 0
        if self._sr_arrival is not None:
            dlsr = min(0xFFFFFFFF, max(0, int((now - self._sr_arrival) * 65536)))
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            cumulative_lost=max(_LOST_MIN, min(_LOST_MAX, self.cumulative_lost)),
            highest_sequence=self.extended_highest_sequence & 0xFFFFFFFF,
            jitter=min(0xFFFFFFFF, int(self.jitter)),
            lsr=self._lsr,
            dlsr=dlsr,
        )
