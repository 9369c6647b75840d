"""H.264 RTP payloads (RFC 6184): which NAL units a packet carries, for keyframe detection.

Handles single NAL unit packets, STAP-A/STAP-B aggregation and FU-A/FU-B fragments (only a
start fragment reveals its NAL unit type).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "NAL_SLICE",
    "NAL_IDR",
    "NAL_SEI",
    "NAL_SPS",
    "NAL_PPS",
    "NAL_AUD",
    "NAL_STAP_A",
    "NAL_STAP_B",
    "NAL_MTAP16",
    "NAL_MTAP24",
    "NAL_FU_A",
    "NAL_FU_B",
    "H264PayloadInfo",
    "nal_unit_types",
    "parse_payload",
    "is_keyframe",
]

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
NAL_STAP_A = 24
NAL_STAP_B = 25
NAL_MTAP16 = 26
NAL_MTAP24 = 27
NAL_FU_A = 28
NAL_FU_B = 29


@dataclass(frozen=True, slots=True)
class H264PayloadInfo:
    """What one H.264 RTP payload carries.

    ``nal_types`` lists the NAL unit types inside (the aggregated ones for STAP, the
    fragmented one for a start fragment, nothing for a later fragment). ``packetization`` is
    the type of the outer NAL unit header (24 STAP-A, 28 FU-A, else the NAL unit type).
    """

    packetization: int
    nal_types: tuple[int, ...]
    fragment_start: bool = False
    fragment_end: bool = False

    @property
    def has_idr(self) -> bool:
        return NAL_IDR in self.nal_types

    @property
    def has_sps(self) -> bool:
        return NAL_SPS in self.nal_types

    @property
    def has_pps(self) -> bool:
        return NAL_PPS in self.nal_types

    @property
    def is_keyframe(self) -> bool:
        """An IDR slice or an SPS (which precedes the IDR of a key frame), as libwebrtc."""
        return NAL_IDR in self.nal_types or NAL_SPS in self.nal_types


def parse_payload(payload: bytes) -> H264PayloadInfo:
    """Classify one H.264 RTP payload; raises ValueError if it is empty or truncated."""
    n = len(payload)
    if n < 1:
        raise ValueError("H.264 payload is empty")
    kind = payload[0] & 0x1F
    if kind == NAL_STAP_A or kind == NAL_STAP_B:
        pos = 1 if kind == NAL_STAP_A else 3  # STAP-B has a 16-bit DON
        if n < pos:
            raise ValueError("H.264 STAP-B is truncated in its DON")
        types = []
        while pos < n:
            if pos + 2 > n:
                raise ValueError("H.264 STAP NAL unit size is truncated")
            size = payload[pos] << 8 | payload[pos + 1]
            pos += 2
            if size == 0 or pos + size > n:
                raise ValueError(f"H.264 STAP NAL unit of {size} bytes is invalid at {n - pos}")
            types.append(payload[pos] & 0x1F)
            pos += size
        return H264PayloadInfo(kind, tuple(types))
    if kind == NAL_FU_A or kind == NAL_FU_B:
        if n < 2:
            raise ValueError("H.264 FU is truncated in its FU header")
        fu = payload[1]
        start = bool(fu & 0x80)
        return H264PayloadInfo(kind, (fu & 0x1F,) if start else (), start, bool(fu & 0x40))
    if kind == NAL_MTAP16 or kind == NAL_MTAP24:
        return H264PayloadInfo(kind, ())  # not used by WebRTC; not looked into
    return H264PayloadInfo(kind, (kind,))


def nal_unit_types(payload: bytes) -> tuple[int, ...]:
    """The NAL unit types carried in one H.264 RTP payload (see :class:`H264PayloadInfo`)."""
    return parse_payload(payload).nal_types


def is_keyframe(payload: bytes) -> bool:
    """True if the payload carries an IDR slice or an SPS (start of a key frame)."""
    kind = payload[0] & 0x1F if payload else -1
    if kind == NAL_IDR or kind == NAL_SPS:
        return True
    return parse_payload(payload).is_keyframe
