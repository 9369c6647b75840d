"""What each endpoint sends: its media sources, their SSRCs and groups (sans-IO)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SourceDescription:
    """One signalled media source of an endpoint (a camera, a microphone, a screen)."""

    media: str  # "audio" | "video"
    #: Simulcast layers' primary SSRCs, lowest first (one entry without simulcast).
    layers: tuple[int, ...]
    #: RTX SSRC for each primary SSRC (RFC 4588 FID groups).
    rtx: dict[int, int] = field(default_factory=dict)
    name: str = ""

    @property
    def primary(self) -> int:
        """The SSRC receivers see: SIM[0] (Jitsi rewrites every layer onto it)."""
        return self.layers[0]

    def ssrcs(self) -> set[int]:
        return set(self.layers) | set(self.rtx.values())


def sources_from_groups(media: str, ssrcs: list[int], groups: list[tuple[str, list[int]]],
                        name: str = "") -> list[SourceDescription]:
    """Group SSRCs and SIM/FID groups (as Jingle and Colibri2 carry them) into sources named
    ``name`` (the Colibri2 media-source id, such as ``abcd1234-v0``)."""
    rtx: dict[int, int] = {}
    simulcast: list[list[int]] = []
    for semantics, members in groups:
        if semantics == "FID" and len(members) == 2:
            rtx[members[0]] = members[1]
        elif semantics == "SIM" and members:
            simulcast.append(members)
    in_groups = {s for layers in simulcast for s in layers} | set(rtx.values())
    sources = [SourceDescription(media, tuple(layers), {s: rtx[s] for s in layers if s in rtx},
                                 name) for layers in simulcast]
    for ssrc in ssrcs:
        if ssrc not in in_groups:
            in_groups.add(ssrc)
            sources.append(SourceDescription(media, (ssrc,), {ssrc: rtx[ssrc]} if ssrc in rtx
                                             else {}, name))
    return sources
