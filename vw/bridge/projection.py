"""Simulcast projection: what one receiver sees of one sender's video source (sans-IO).

A simulcast sender sends each spatial layer on its own SSRC (SIM group, lowest first). A receiver
must see one stream per source, on SIM[0], whichever layer the bridge forwards to it
(PROTOCOL.md §7). :class:`VideoProjection` picks packets of one layer, rewrites SSRC, sequence
number, timestamp and (VP8) PictureID/TL0PICIDX so that the output is one continuous stream, and
switches layers only where the target layer starts a key frame.

The output is organised in *segments*: one run of one input layer, started at a key frame (or
at a large sequence jump in the forwarded layer). Within a segment every field is the input plus
a fixed offset, so packets lost upstream keep their gap (the receiver NACKs them and
:meth:`VideoProjection.original_sequence` maps them back) and late or retransmitted packets fill
it. A new segment continues where the output stands: the next sequence number, the next
PictureID and TL0PICIDX, and a timestamp advanced by the wall-clock time since the last frame
(at least one tick).

Switch points are key frame starts (:func:`vw.rtp.vp8.is_keyframe`, :func:`vw.rtp.h264.is_keyframe`
on the first packet). For other codecs the projection cannot see key frames: it starts on the
first packet it gets and switches at the first packet after a marker bit (a frame start); the
receiver then asks for a key frame itself.

Time ``now`` is in seconds from the caller's clock. Nothing here does I/O.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import NamedTuple

from vw.bridge.sources import SourceDescription
from vw.rtp import h264, vp8
from vw.rtp.rtp import header_length

__all__ = ["VideoProjection", "CODECS"]

#: Codecs whose key frames the projection recognises; anything else is "other".
CODECS = ("VP8", "H264", "other")

#: Output packets remembered for NACK mapping and duplicate suppression.
HISTORY = 1024
#: A sequence number this far (or further) from the forwarded layer's newest one is a restart.
MAX_JUMP = 0x1000
#: Video RTP clock rate.
CLOCK_RATE = 90_000

_RTCP_SR = 200
_MAX_SEGMENTS = 64
_U32 = struct.Struct("!I")
_SEQ_TS_SSRC = struct.Struct("!HII")
_SR = struct.Struct("!BBHI8sIII")
_HB = struct.Struct("!HB")


class _Segment(NamedTuple):
    """One run of one input layer in the output."""

    start: int  # extended output sequence number of its first packet
    ssrc: int
    in_start: int  # input sequence number of its first packet
    ts_offset: int
    picture_id_offset: int
    tl0_offset: int


def _rewrite_vp8(
    buf: bytearray, pos: int, end: int, pic_off: int, tl0_off: int
) -> tuple[int | None, int | None]:
    """Add the offsets to the VP8 PictureID/TL0PICIDX at ``buf[pos:end]`` in place.

    Returns the new (PictureID, TL0PICIDX), None for a field the descriptor lacks. The
    PictureID keeps its 7- or 15-bit width.
    """
    if pos + 1 >= end or not buf[pos] & 0x80:
        return None, None
    x = buf[pos + 1]
    pos += 2
    pic = tl0 = None
    if x & 0x80 and pos < end:
        b = buf[pos]
        if b & 0x80:
            if pos + 1 < end:
                pic = (((b & 0x7F) << 8 | buf[pos + 1]) + pic_off) & 0x7FFF
                buf[pos] = 0x80 | pic >> 8
                buf[pos + 1] = pic & 0xFF
            pos += 2
        else:
            pic = (b + pic_off) & 0x7F
            buf[pos] = pic
            pos += 1
    if x & 0x40 and pos < end:
        tl0 = (buf[pos] + tl0_off) & 0xFF
        buf[pos] = tl0
    return pic, tl0


def _vp8_fields(payload: bytes) -> tuple[int | None, int | None]:
    """(PictureID, TL0PICIDX) of a VP8 payload descriptor, None where absent."""
    return _rewrite_vp8(bytearray(payload[:6]), 0, min(len(payload), 6), 0, 0)


def _payload_end(packet: bytes) -> int:
    """End of the payload: the packet length minus any RTP padding."""
    return len(packet) - packet[-1] if packet[0] & 0x20 else len(packet)


class VideoProjection:
    """One receiver's projection of one simulcast (or single-layer) video source.

    ``target_layer`` is the layer (index into ``source.layers``) the allocator wants the
    receiver to get, -1 for none; ``current_layer`` is the one being forwarded, -1 while
    nothing is (before the first key frame and while paused). Every output packet carries
    SSRC ``source.layers[0]``.
    """

    __slots__ = (
        "source", "codec", "primary", "target_layer", "current_layer", "packets_sent",
        "octets_sent", "switches", "_vp8", "_layer_of", "_current_ssrc", "_in_high",
        "_out_high", "_seg_start", "_ts_off", "_pic_off", "_tl0_off", "_last_ts",
        "_last_ts_time", "_last_pic", "_last_tl0", "_sent", "_segments", "_frame_start",
    )

    def __init__(self, source: SourceDescription, codec: str = "VP8") -> None:
        if not source.layers:
            raise ValueError("video source has no SSRCs")
        if codec not in CODECS:
            codec = "other"
        self.source = source
        self.codec = codec
        self.primary = source.layers[0]
        self.target_layer = 0
        self.current_layer = -1
        #: Packets and payload octets sent (for the projected sender reports).
        self.packets_sent = 0
        self.octets_sent = 0
        #: Segments started (the first forwarded key frame counts).
        self.switches = 0
        self._vp8 = codec == "VP8"
        self._layer_of = {ssrc: i for i, ssrc in enumerate(source.layers)}
        self._current_ssrc: int | None = None
        # The forwarded layer's newest input sequence number and its extended output number.
        self._in_high = 0
        self._out_high: int | None = None
        self._seg_start = 0
        self._ts_off = 0
        self._pic_off = 0
        self._tl0_off = 0
        # Last output values of the newest packet sent, to continue from at a switch.
        self._last_ts: int | None = None
        self._last_ts_time = 0.0
        self._last_pic: int | None = None
        self._last_tl0: int | None = None
        self._sent = [-1] * HISTORY
        self._segments: deque[_Segment] = deque(maxlen=_MAX_SEGMENTS)
        # "other" codecs: may a layer switch at its next packet (previous one ended a frame)?
        self._frame_start = [False] * len(source.layers)

    # -- control -------------------------------------------------------------------------

    @property
    def keyframe_needed(self) -> bool:
        """True while a switch to ``target_layer`` waits for a key frame of that layer."""
        return self.target_layer >= 0 and self.target_layer != self.current_layer

    @property
    def keyframe_ssrc(self) -> int | None:
        """The SSRC to send a PLI/FIR for while :attr:`keyframe_needed`, else None."""
        return self.source.layers[self.target_layer] if self.keyframe_needed else None

    def set_target(self, layer: int) -> bool:
        """Aim at ``layer`` (-1 pauses); True if a key frame of that layer is needed.

        The answer stays True on every call until the switch happens: callers throttle the
        requests (:class:`vw.bridge.feedback.KeyframeRequester`). Pausing stops forwarding at
        once; resuming then needs a key frame like any switch.
        """
        if not -1 <= layer < len(self.source.layers):
            raise ValueError(f"layer {layer} is not in -1..{len(self.source.layers) - 1}")
        self.target_layer = layer
        if layer < 0:
            self.current_layer = -1
            self._current_ssrc = None
        return self.keyframe_needed

    # -- RTP -------------------------------------------------------------------------------

    def rewrite(self, packet: bytes, now: float) -> bytes | None:
        """The packet to send to the receiver for ``packet`` (decrypted RTP), or None to drop it.

        ``packet`` comes from one of the source's layer SSRCs (RTX already unwrapped). Dropped:
        other layers than the one forwarded, packets before the current segment or more than
        :data:`HISTORY` behind the newest, duplicates, and malformed packets.
        """
        n = len(packet)
        if n < 12:
            return None
        seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(packet, 2)
        if ssrc != self._current_ssrc and not self._switch(packet, now):
            return None
        # The payload offset (vw.rtp.rtp.header_length, inlined: this is the hot path).
        b0 = packet[0]
        pos = 12 + ((b0 & 0x0F) << 2)
        if b0 & 0x10:
            if n < pos + 4:
                return None
            pos += 4 + ((packet[pos + 2] << 8 | packet[pos + 3]) << 2)
        end = n - packet[-1] if b0 & 0x20 else n
        if end < pos:
            return None
        payload = pos
        delta = ((seq - self._in_high + 0x8000) & 0xFFFF) - 0x8000
        if not -MAX_JUMP < delta < MAX_JUMP:
            if not self._resync(packet, delta, now):
                return None
            delta = 1
        out_high = self._out_high
        out = out_high + delta
        newest = delta > 0
        if newest:
            self._in_high = seq
            self._out_high = out
        elif out < self._seg_start or out <= out_high - HISTORY or self._sent[out & 1023] == out:
            return None  # before this segment, too old, or a duplicate
        ts = (ts + self._ts_off) & 0xFFFFFFFF
        buf = bytearray(packet)
        _SEQ_TS_SSRC.pack_into(buf, 2, out & 0xFFFF, ts, self.primary)
        if not self._vp8 or pos + 1 >= end or not buf[pos] & 0x80:
            pass
        elif buf[pos + 1] & 0xC0 == 0xC0 and buf[pos + 2] & 0x80 and pos + 5 <= end:
            # The usual VP8 descriptor: 15-bit PictureID followed by TL0PICIDX.
            pic, tl0 = _HB.unpack_from(buf, pos + 2)
            pic = (pic + self._pic_off) & 0x7FFF
            tl0 = (tl0 + self._tl0_off) & 0xFF
            _HB.pack_into(buf, pos + 2, 0x8000 | pic, tl0)
            if newest:
                self._last_pic = pic
                self._last_tl0 = tl0
        else:
            # Any other VP8 descriptor (as _rewrite_vp8, inlined).
            x = buf[pos + 1]
            pos += 2
            if x & 0x80 and pos < end:
                b = buf[pos]
                if b & 0x80:
                    if pos + 1 < end:
                        pic = (((b & 0x7F) << 8 | buf[pos + 1]) + self._pic_off) & 0x7FFF
                        buf[pos] = 0x80 | pic >> 8
                        buf[pos + 1] = pic & 0xFF
                        if newest:
                            self._last_pic = pic
                    pos += 2
                else:
                    pic = (b + self._pic_off) & 0x7F
                    buf[pos] = pic
                    if newest:
                        self._last_pic = pic
                    pos += 1
            if x & 0x40 and pos < end:
                tl0 = (buf[pos] + self._tl0_off) & 0xFF
                buf[pos] = tl0
                if newest:
                    self._last_tl0 = tl0
        if newest and ts != self._last_ts:
            self._last_ts = ts
            self._last_ts_time = now
        self._sent[out & 1023] = out
        self.packets_sent += 1
        self.octets_sent += end - payload
        return bytes(buf)

    def rewrite_retransmission(self, packet: bytes) -> bytes | None:
        """An input packet rewritten as it was (or would have been) sent, without state change.

        For answering a NACK from a cache of the sender's packets: the packet must belong to a
        recent segment, at or before the newest packet sent. None otherwise.
        """
        if len(packet) < 12 or self._out_high is None:
            return None
        ssrc = _U32.unpack_from(packet, 8)[0]
        seq = packet[2] << 8 | packet[3]
        following: int | None = None
        for seg in reversed(self._segments):
            if seg.ssrc == ssrc:
                out = seg.start + ((seq - seg.in_start) & 0xFFFF)
                if out <= self._out_high - HISTORY:
                    return None
                if out <= self._out_high and (following is None or out < following):
                    break
            following = seg.start
        else:
            return None
        try:
            pos = header_length(packet)
        except ValueError:
            return None
        buf = bytearray(packet)
        ts = (_U32.unpack_from(packet, 4)[0] + seg.ts_offset) & 0xFFFFFFFF
        _SEQ_TS_SSRC.pack_into(buf, 2, out & 0xFFFF, ts, self.primary)
        if self._vp8:
            _rewrite_vp8(buf, pos, _payload_end(buf), seg.picture_id_offset, seg.tl0_offset)
        return bytes(buf)

    def original_sequence(self, out_seq: int) -> tuple[int, int] | None:
        """(input SSRC, input sequence number) behind output sequence number ``out_seq``.

        Works for the last :data:`HISTORY` output numbers, including those lost upstream and
        never sent; None for anything else.
        """
        if self._out_high is None:
            return None
        d = ((out_seq - self._out_high + 0x8000) & 0xFFFF) - 0x8000
        if d > 0 or d <= -HISTORY:
            return None
        out = self._out_high + d
        for seg in reversed(self._segments):
            if out >= seg.start:
                return seg.ssrc, (seg.in_start + out - seg.start) & 0xFFFF
        return None

    # -- RTCP ------------------------------------------------------------------------------

    def rewrite_sender_report(self, sr: bytes) -> bytes | None:
        """The projected SR for an RTCP SR of the forwarded layer; None for other SSRCs.

        ``sr`` starts with one SR packet (RFC 3550 §6.4.1). The result is a 28-byte SR
        without report blocks: SSRC ``source.layers[0]``, the sender's NTP time, its RTP
        timestamp with the segment's offset, and this projection's packet and octet counts.
        """
        if len(sr) < 28 or sr[0] >> 6 != 2 or sr[1] != _RTCP_SR:
            return None
        ssrc, ntp, rtp_ts = struct.unpack_from("!I8sI", sr, 4)
        if ssrc != self._current_ssrc:
            return None
        return _SR.pack(
            0x80,
            _RTCP_SR,
            6,
            self.primary,
            ntp,
            (rtp_ts + self._ts_off) & 0xFFFFFFFF,
            self.packets_sent & 0xFFFFFFFF,
            self.octets_sent & 0xFFFFFFFF,
        )

    # -- switching -------------------------------------------------------------------------

    def _switch(self, packet: bytes, now: float) -> bool:
        """Start a segment at ``packet`` if it is a switch point of the target layer."""
        ssrc = _U32.unpack_from(packet, 8)[0]
        layer = self._layer_of.get(ssrc)
        if layer is None:
            return False
        if self.codec == "other":
            switchable = self._frame_start[layer] or self._out_high is None
            self._frame_start[layer] = packet[1] >= 0x80
            if not switchable:
                return False
        if layer != self.target_layer:
            return False
        if self.codec != "other" and not self._is_keyframe(packet):
            return False
        self._start_segment(packet, now)
        self.current_layer = layer
        self._current_ssrc = ssrc
        return True

    def _resync(self, packet: bytes, delta: int, now: float) -> bool:
        """Handle a sequence jump in the forwarded layer (a restarted sender, or a stray packet).

        A key frame starts a new segment; for "other" codecs any packet jumping forward does.
        """
        if self.codec == "other":
            if delta < 0:
                return False
        elif not self._is_keyframe(packet):
            return False
        self._start_segment(packet, now)
        return True

    def _is_keyframe(self, packet: bytes) -> bool:
        try:
            pos = header_length(packet)
            if self._vp8:
                return vp8.is_keyframe(packet[pos : pos + 32])
            return h264.is_keyframe(packet[pos : _payload_end(packet)])
        except (ValueError, IndexError):
            return False

    def _start_segment(self, packet: bytes, now: float) -> None:
        """Anchor the offsets so that ``packet`` follows the last packet sent."""
        seq = packet[2] << 8 | packet[3]
        ts = _U32.unpack_from(packet, 4)[0]
        pic = tl0 = None
        if self._vp8:
            try:
                pos = header_length(packet)
                pic, tl0 = _vp8_fields(packet[pos : _payload_end(packet)])
            except (ValueError, IndexError):
                pass
        if self._out_high is None:
            # The first segment passes everything through unchanged.
            self._out_high = 0x10000 + seq - 1
        if self._last_ts is None:
            self._ts_off = 0
        else:
            step = max(1, round((now - self._last_ts_time) * CLOCK_RATE))
            self._ts_off = (self._last_ts + step - ts) & 0xFFFFFFFF
        if pic is not None:
            self._pic_off = 0 if self._last_pic is None else (self._last_pic + 1 - pic) & 0x7FFF
        if tl0 is not None:
            self._tl0_off = 0 if self._last_tl0 is None else (self._last_tl0 + 1 - tl0) & 0xFF
        self._in_high = (seq - 1) & 0xFFFF
        self._seg_start = self._out_high + 1
        self._segments.append(
            _Segment(
                self._seg_start,
                _U32.unpack_from(packet, 8)[0],
                seq,
                self._ts_off,
                self._pic_off,
                self._tl0_off,
            )
        )
        self.switches += 1
