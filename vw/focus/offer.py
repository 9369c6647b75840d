"""The focus's Jingle offer and the conference's source bookkeeping (sans-IO).

- :class:`OfferConfig` is what the focus offers: Jicofo's defaults (``JingleOfferFactory`` at
  jicofo 04c1143c) for opus, VP8 (+RTX), optionally VP9 and H.264, and the header extensions.
- :func:`session_initiate` / :func:`transport_replace` build the offer of PROTOCOL.md §4: contents
  ``audio`` and ``video`` with ``<rtcp-mux/>`` in the description, the bridge's transport, the
  BUNDLE group, the bridge's feedback sources first (owner ``jvb``), then everyone else's.
- :class:`ConferenceSources` keeps each participant's sources, validates what a client signals
  (session-accept, source-add, source-remove) much as Jicofo's ``ValidatingConferenceSourceMap``
  does, and gives what to relay: :func:`source_add` / :func:`source_remove` for the others, and
  :meth:`ConferenceSources.media_sources` for the bridge (Colibri2).
- :func:`client_transport` turns the client's session-accept or transport-info into the ICE-UDP
  transport the bridge is given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from vw.bridge.colibri2 import (
    MAX_SSRC,
    Candidate,
    Fingerprint,
    HeaderExtension,
    IceUdpTransport,
    Media,
    MediaSource,
    Parameter,
    PayloadType,
    RtcpFeedback,
    Source,
    SourceGroup,
)
from vw.focus.jingle import BridgeSession, Content, Group, Jingle, RtpDescription
from vw.rtp.extensions import ABS_SEND_TIME_URI, AUDIO_LEVEL_URI, TRANSPORT_CC_URI

#: The media types the focus offers, in offer order (also the Jingle content names).
MEDIA_TYPES = ("audio", "video")
#: The owner of the bridge's own (feedback) sources, as Jicofo republishes them.
BRIDGE_OWNER = "jvb"
#: The msid stream of the bridge's sources; the client hides the streams that carry it.
BRIDGE_MSID = "mixedmslabel"

#: RFC 8830 msid: an id and optional appdata, each 1-64 RFC 4566 token characters.
_TOKEN = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]{1,64}"
_MSID = re.compile(f"{_TOKEN}( {_TOKEN})?")
#: ssrc-group semantics (RFC 5888 tokens such as SIM, FID, FEC-FR).
_SEMANTICS = re.compile(r"[A-Za-z0-9-]{1,32}")


# -- the offer ---------------------------------------------------------------------------------

@dataclass
class OfferConfig:
    """What the focus offers; the defaults are Jicofo's, with VP9 and H.264 off.

    ``rtx`` is off when the client's conference request says ``disableRtx``; with ``tcc`` off the
    video codecs offer ``goog-remb`` instead of ``transport-cc``.
    """

    opus_pt: int = 111
    opus_minptime: int = 10
    opus_fec: bool = True
    vp8_pt: int = 100
    vp8_rtx_pt: int = 96
    vp9: bool = False
    vp9_pt: int = 101
    vp9_rtx_pt: int = 97
    h264: bool = False
    h264_pt: int = 107
    h264_rtx_pt: int = 99
    rtx: bool = True
    tcc: bool = True
    audio_level_id: int = 1
    abs_send_time_id: int = 3
    tcc_id: int = 5

    def __post_init__(self) -> None:
        pts = [pt.id for media in MEDIA_TYPES for pt in self.payload_types(media)]
        for pt in pts:
            if not 0 <= pt <= 127:
                raise ValueError(f"payload type out of range 0..127: {pt}")
        if len(set(pts)) != len(pts):
            raise ValueError(f"payload types are not distinct: {pts}")
        ids = [self.audio_level_id, self.abs_send_time_id, self.tcc_id]
        for ext_id in ids:
            if not 1 <= ext_id <= 14:
                raise ValueError(f"header extension id out of range 1..14: {ext_id}")
        if len(set(ids)) != len(ids):
            raise ValueError(f"header extension ids are not distinct: {ids}")

    def payload_types(self, media: str) -> list[PayloadType]:
        """The payload types offered for ``media``, in order of preference."""
        if media == "audio":
            opus = PayloadType(self.opus_pt, "opus", 48000, 2,
                               [Parameter("minptime", str(self.opus_minptime))])
            if self.opus_fec:
                opus.parameters.append(Parameter("useinbandfec", "1"))
            if self.tcc:
                opus.rtcp_fbs.append(RtcpFeedback("transport-cc"))
            return [opus]
        if media != "video":
            raise ValueError(f"unknown media type: {media!r}")
        codecs: list[tuple[str, int, int, list[Parameter]]] = [
            ("VP8", self.vp8_pt, self.vp8_rtx_pt, [])]
        if self.vp9:
            codecs.append(("VP9", self.vp9_pt, self.vp9_rtx_pt, []))
        if self.h264:
            codecs.append(("H264", self.h264_pt, self.h264_rtx_pt, [
                Parameter("level-asymmetry-allowed", "1"), Parameter("packetization-mode", "1"),
                Parameter("profile-level-id", "42e01f")]))
        payload_types: list[PayloadType] = []
        for name, pt, rtx_pt, parameters in codecs:
            payload_types.append(PayloadType(pt, name, 90000, None, parameters,
                                             self._video_feedback()))
            if self.rtx:
                payload_types.append(PayloadType(rtx_pt, "rtx", 90000, None,
                                                 [Parameter("apt", str(pt))]))
        return payload_types

    def _video_feedback(self) -> list[RtcpFeedback]:
        feedback = [RtcpFeedback("ccm", "fir"), RtcpFeedback("nack"), RtcpFeedback("nack", "pli")]
        feedback.append(RtcpFeedback("transport-cc") if self.tcc else RtcpFeedback("goog-remb"))
        return feedback

    def header_extensions(self, media: str) -> list[HeaderExtension]:
        """The RTP header extensions offered for ``media``."""
        if media == "audio":
            extensions = [HeaderExtension(self.audio_level_id, AUDIO_LEVEL_URI)]
        elif media == "video":
            extensions = [HeaderExtension(self.abs_send_time_id, ABS_SEND_TIME_URI)]
        else:
            raise ValueError(f"unknown media type: {media!r}")
        if self.tcc:
            extensions.append(HeaderExtension(self.tcc_id, TRANSPORT_CC_URI))
        return extensions

    def media(self) -> list[Media]:
        """The same offer as Colibri2 ``<media/>``, for the bridge allocation."""
        return [Media(m, self.payload_types(m), self.header_extensions(m)) for m in MEDIA_TYPES]


@dataclass
class MediaSources:
    """The sources and ssrc-groups of one owner and one media type.

    Kept sources carry their msid as their only parameter; the owner is the key they are kept
    under and is written as ``ssrc-info`` when they are sent.
    """

    sources: list[Source] = field(default_factory=list)
    groups: list[SourceGroup] = field(default_factory=list)

    @property
    def ssrcs(self) -> list[int]:
        return [s.ssrc for s in self.sources]

    def __bool__(self) -> bool:
        return bool(self.sources or self.groups)


#: Per owner (an occupant JID, or ``jvb``), per media type: sources and groups.
SourceMap = dict[str, dict[str, MediaSources]]


def _clone(source: Source, owner: str | None = None) -> Source:
    return Source(source.ssrc, owner=owner, parameters=[replace(p) for p in source.parameters])


def _clone_group(group: SourceGroup) -> SourceGroup:
    return SourceGroup(group.semantics, list(group.ssrcs))


def _bridge_sources(bridge_sources: Iterable[MediaSource]) -> dict[str, MediaSources]:
    """The bridge's feedback sources (Colibri2 conference-level ``<sources>``) by media type.

    A source without an msid gets Jicofo's ``mixedmslabel mixedlabel{media}0``.
    """
    by_media: dict[str, MediaSources] = {}
    for media_source in bridge_sources:
        kept = by_media.setdefault(media_source.type, MediaSources())
        for source in media_source.sources:
            msid = source.msid or f"{BRIDGE_MSID} mixedlabel{media_source.type}0"
            kept.sources.append(Source(source.ssrc, parameters=[Parameter("msid", msid)]))
        kept.groups += [_clone_group(g) for g in media_source.groups]
    return by_media


def _owned(media: str, sources: SourceMap) -> tuple[list[Source], list[SourceGroup]]:
    """Every owner's ``media`` sources, each with its ``ssrc-info`` owner, and groups."""
    owned: list[Source] = []
    groups: list[SourceGroup] = []
    for owner, by_media in sources.items():
        kept = by_media.get(media)
        if kept is not None:
            owned += [_clone(s, owner) for s in kept.sources]
            groups += [_clone_group(g) for g in kept.groups]
    return owned, groups


def _copy_transport(transport: IceUdpTransport) -> IceUdpTransport:
    return replace(transport, fingerprints=[replace(f) for f in transport.fingerprints],
                   candidates=[replace(c) for c in transport.candidates],
                   web_sockets=[replace(w) for w in transport.web_sockets])


def _offer(action: str, config: OfferConfig, sid: str, initiator: str,
           bridge_transport: IceUdpTransport, sources_by_owner: SourceMap,
           bridge_sources: Iterable[MediaSource], bridge_session: str | None) -> Jingle:
    sources = {BRIDGE_OWNER: _bridge_sources(bridge_sources)}
    sources.update((o, s) for o, s in sources_by_owner.items() if o != BRIDGE_OWNER)
    contents = []
    for media in MEDIA_TYPES:
        owned, groups = _owned(media, sources)
        description = RtpDescription(
            media, payload_types=config.payload_types(media),
            header_extensions=config.header_extensions(media), sources=owned, groups=groups,
            rtcp_mux=True)
        contents.append(Content(media, creator="initiator", senders="both",
                                description=description,
                                transport=_copy_transport(bridge_transport)))
    return Jingle(action, sid, initiator=initiator, contents=contents,
                  groups=[Group("BUNDLE", list(MEDIA_TYPES))],
                  bridge_session=None if bridge_session is None else BridgeSession(bridge_session))


def session_initiate(config: OfferConfig, sid: str, initiator: str,
                     bridge_transport: IceUdpTransport, sources_by_owner: SourceMap,
                     bridge_sources: Iterable[MediaSource],
                     bridge_session: str | None = None) -> Jingle:
    """The offer to one participant.

    ``initiator`` is the focus's JID; ``bridge_transport`` the participant's endpoint transport
    from the bridge (candidates, ``actpass`` fingerprint, web-socket); ``sources_by_owner`` every
    *other* participant's sources (:meth:`ConferenceSources.others`); ``bridge_sources`` the
    bridge's feedback sources, sent first with owner ``jvb``; ``bridge_session`` the
    ``<bridge-session id/>`` the client echoes when it asks for a restart.
    """
    return _offer("session-initiate", config, sid, initiator, bridge_transport,
                  sources_by_owner, bridge_sources, bridge_session)


def transport_replace(config: OfferConfig, sid: str, initiator: str,
                      bridge_transport: IceUdpTransport, sources_by_owner: SourceMap,
                      bridge_sources: Iterable[MediaSource],
                      bridge_session: str | None = None) -> Jingle:
    """A transport-replace (a new bridge transport): the same body as :func:`session_initiate`."""
    return _offer("transport-replace", config, sid, initiator, bridge_transport,
                  sources_by_owner, bridge_sources, bridge_session)


def _source_update(action: str, sid: str, sources: SourceMap) -> Jingle:
    contents = []
    for media in MEDIA_TYPES:
        owned, groups = _owned(media, sources)
        if owned or groups:
            contents.append(Content(media, creator="initiator", description=RtpDescription(
                media, sources=owned, groups=groups)))
    return Jingle(action, sid, contents=contents)


def source_add(sid: str, sources: SourceMap) -> Jingle:
    """The source-add telling one participant (session ``sid``) about others' new sources."""
    return _source_update("source-add", sid, sources)


def source_remove(sid: str, sources: SourceMap) -> Jingle:
    """The source-remove for others' removed sources; ``sources`` should be what
    :class:`ConferenceSources` returned, so the groups repeat the source-add's exactly."""
    return _source_update("source-remove", sid, sources)


# -- the client's transport --------------------------------------------------------------------

def client_transport(jingle: Jingle) -> IceUdpTransport:
    """The client's ICE-UDP transport from a session-accept or transport-info, for the bridge.

    The contents' transports are merged (BUNDLE: one ufrag and pwd; transport-info may name its
    content ``"0"``). The fingerprint's setup is ``active`` (the client is the DTLS client) unless
    the client said ``passive``.
    """
    transports = [c.transport for c in jingle.contents if c.transport is not None]
    if not transports:
        raise ValueError(f"{jingle.action} carries no ICE-UDP transport")
    ufrags = {t.ufrag for t in transports if t.ufrag is not None}
    pwds = {t.pwd for t in transports if t.pwd is not None}
    if len(ufrags) > 1 or len(pwds) > 1:
        raise ValueError(f"{jingle.action} carries different ICE credentials in its contents")
    fingerprints: list[Fingerprint] = []
    candidates: list[Candidate] = []
    for transport in transports:
        for fingerprint in transport.fingerprints:
            setup = "passive" if fingerprint.setup == "passive" else "active"
            kept = Fingerprint(fingerprint.hash, setup, fingerprint.value)
            if kept not in fingerprints:
                fingerprints.append(kept)
        for candidate in transport.candidates:
            if candidate not in candidates:
                candidates.append(replace(candidate))
    return IceUdpTransport(ufrag=next(iter(ufrags), None), pwd=next(iter(pwds), None),
                           fingerprints=fingerprints, candidates=candidates)


# -- source bookkeeping ------------------------------------------------------------------------

def _signalled(contents: Sequence[Content]) -> dict[str, MediaSources]:
    """The sources and groups in ``contents`` by media type, checked one by one; sources keep
    only their msid, empty groups are dropped."""
    found: dict[str, MediaSources] = {}
    for content in contents:
        description = content.description
        if description is None or not (description.sources or description.groups):
            continue
        if description.media not in MEDIA_TYPES:
            raise ValueError(f"sources for media {description.media!r}")
        kept = found.setdefault(description.media, MediaSources())
        for source in description.sources:
            if not 1 <= source.ssrc <= MAX_SSRC:
                raise ValueError(f"invalid SSRC: {source.ssrc}")
            msid = source.msid
            if msid is not None and not _MSID.fullmatch(msid):
                raise ValueError(f"SSRC {source.ssrc} has an invalid msid: {msid!r}")
            if msid is not None and BRIDGE_MSID in msid:
                raise ValueError(f"SSRC {source.ssrc} has the bridge's msid: {msid!r}")
            kept.sources.append(
                Source(source.ssrc, parameters=[] if msid is None else [Parameter("msid", msid)]))
        for group in description.groups:
            if not _SEMANTICS.fullmatch(group.semantics):
                raise ValueError(f"invalid ssrc-group semantics: {group.semantics!r}")
            if group.ssrcs:
                kept.groups.append(_clone_group(group))
    return found


class _Components:
    """Union-find over SSRCs: the sources that groups tie together."""

    def __init__(self) -> None:
        self._parent: dict[int, int] = {}

    def find(self, ssrc: int) -> int:
        root = ssrc
        while self._parent.get(root, root) != root:
            root = self._parent[root]
        self._parent[ssrc] = root
        return root

    def union(self, ssrcs: Sequence[int]) -> None:
        roots = [self.find(s) for s in ssrcs]
        for root in roots[1:]:
            self._parent[root] = roots[0]


def _validate(media: str, kept: MediaSources, max_sources: int, max_groups: int) -> None:
    """Check one owner's complete set of one media type."""
    if len(kept.sources) > max_sources:
        raise ValueError(f"more than {max_sources} {media} sources")
    if len(kept.groups) > max_groups:
        raise ValueError(f"more than {max_groups} {media} ssrc-groups")
    msids = {s.ssrc: s.msid for s in kept.sources}
    components = _Components()
    in_semantics: set[tuple[str, int]] = set()
    for group in kept.groups:
        if len(set(group.ssrcs)) != len(group.ssrcs):
            raise ValueError(f"ssrc-group {group.semantics} repeats an SSRC: {group.ssrcs}")
        if group.semantics == "FID" and len(group.ssrcs) != 2:
            raise ValueError(f"FID group without exactly 2 SSRCs: {group.ssrcs}")
        for ssrc in group.ssrcs:
            if ssrc not in msids:
                raise ValueError(f"ssrc-group {group.semantics} has SSRC {ssrc}, which is not "
                                 f"one of the sender's {media} sources")
            if msids[ssrc] is None:
                raise ValueError(f"grouped SSRC {ssrc} has no msid")
            if (group.semantics, ssrc) in in_semantics:
                raise ValueError(f"SSRC {ssrc} is in two {group.semantics} groups")
            in_semantics.add((group.semantics, ssrc))
        if len({msids[s] for s in group.ssrcs}) != 1:
            raise ValueError(f"ssrc-group {group.semantics} mixes msids: {group.ssrcs}")
        components.union(group.ssrcs)
    streams: dict[str, int] = {}
    for ssrc, msid in msids.items():
        if msid is None:
            continue
        root = components.find(ssrc)
        if streams.setdefault(msid, root) != root:
            raise ValueError(f"msid {msid!r} is used by unrelated {media} sources")


def _copy(by_media: Mapping[str, MediaSources]) -> dict[str, MediaSources]:
    """A deep copy of the non-empty media, in offer order."""
    return {media: MediaSources([_clone(s) for s in by_media[media].sources],
                                [_clone_group(g) for g in by_media[media].groups])
            for media in MEDIA_TYPES if by_media.get(media)}


class ConferenceSources:
    """Every participant's sources, by owner (occupant JID) and media type.

    :meth:`add` and :meth:`remove` apply a client's signalling all or nothing (``ValueError``
    otherwise) and return what changed as a :data:`SourceMap`, ready for :func:`source_add` /
    :func:`source_remove` to the other participants.
    """

    def __init__(self, max_sources: int = 20, max_groups: int = 20) -> None:
        self.max_sources = max_sources
        self.max_groups = max_groups
        self._owners: dict[str, dict[str, MediaSources]] = {}
        self._ssrc_owners: dict[int, str] = {}
        self._msid_owners: dict[str, str] = {}

    def reserve(self, owner: str, sources: Iterable[MediaSource]) -> None:
        """Claim SSRCs no client may use, such as the bridge's own (``owner`` ``jvb``)."""
        for media_source in sources:
            for source in media_source.sources:
                self._ssrc_owners.setdefault(source.ssrc, owner)

    def owners(self) -> list[str]:
        """The owners with sources, in the order they first signalled."""
        return list(self._owners)

    def of(self, owner: str) -> dict[str, MediaSources]:
        """A copy of ``owner``'s sources, by media type."""
        return _copy(self._owners.get(owner, {}))

    def others(self, owner: str) -> SourceMap:
        """A copy of everyone's sources but ``owner``'s: what an offer to ``owner`` carries."""
        return {o: _copy(m) for o, m in self._owners.items() if o != owner}

    def add(self, owner: str, contents: Sequence[Content]) -> SourceMap:
        """Add the sources and groups of a session-accept or source-add from ``owner``.

        Groups already known are ignored. Returns the added ones (``{}`` when none).
        """
        signalled = _signalled(contents)
        current = self._owners.get(owner, {})
        claimed: set[int] = set()
        added: dict[str, MediaSources] = {}
        results: dict[str, MediaSources] = {}
        for media, new in signalled.items():
            for source in new.sources:
                holder = owner if source.ssrc in claimed else self._ssrc_owners.get(source.ssrc)
                if holder is not None:
                    whose = "" if holder == owner else " by another participant"
                    raise ValueError(f"SSRC {source.ssrc} is already used{whose}")
                claimed.add(source.ssrc)
                msid = source.msid
                if msid is not None and self._msid_owners.get(msid, owner) != owner:
                    raise ValueError(f"msid {msid!r} is used by another participant")
            have = current.get(media, MediaSources())
            groups = [g for i, g in enumerate(new.groups)
                      if g not in have.groups and g not in new.groups[:i]]
            result = MediaSources(have.sources + new.sources, have.groups + groups)
            _validate(media, result, self.max_sources, self.max_groups)
            added[media] = MediaSources(new.sources, groups)
            results[media] = result
        if not any(added.values()):
            return {}
        self._owners[owner] = {**current, **results}
        for media_sources in added.values():
            for source in media_sources.sources:
                self._ssrc_owners[source.ssrc] = owner
                if source.msid is not None:
                    self._msid_owners[source.msid] = owner
        return {owner: _copy(added)}

    def remove(self, owner: str, contents: Sequence[Content]) -> SourceMap:
        """Remove the sources and groups of a source-remove from ``owner``.

        Sources match by SSRC alone; groups must match exactly; groups holding a removed SSRC go
        too. Returns what was removed, as it was added (``{}`` when nothing).
        """
        signalled = _signalled(contents)
        current = self._owners.get(owner, {})
        removed: dict[str, MediaSources] = {}
        results: dict[str, MediaSources] = {}
        for media, gone in signalled.items():
            have = current.get(media, MediaSources())
            for group in gone.groups:
                if group not in have.groups:
                    raise ValueError(f"no such {media} ssrc-group: {group.semantics} "
                                     f"{group.ssrcs}")
            ssrcs = set(gone.ssrcs)
            unknown = ssrcs - set(have.ssrcs)
            if unknown:
                raise ValueError(f"no such {media} source: {min(unknown)}")
            groups = [g for g in have.groups if g in gone.groups or ssrcs.intersection(g.ssrcs)]
            removed[media] = MediaSources([s for s in have.sources if s.ssrc in ssrcs], groups)
            result = MediaSources([s for s in have.sources if s.ssrc not in ssrcs],
                                  [g for g in have.groups if g not in groups])
            _validate(media, result, self.max_sources, self.max_groups)
            results[media] = result
        if not any(removed.values()):
            return {}
        self._owners[owner] = {**current, **results}
        self._forget(owner, removed)
        return {owner: _copy(removed)}

    def remove_owner(self, owner: str) -> SourceMap:
        """Forget everything ``owner`` signalled (it left); returns it (``{}`` when nothing)."""
        removed = _copy(self._owners.pop(owner, {}))
        self._forget(owner, removed)
        return {owner: removed} if removed else {}

    def _forget(self, owner: str, removed: Mapping[str, MediaSources]) -> None:
        for media_sources in removed.values():
            for source in media_sources.sources:
                self._ssrc_owners.pop(source.ssrc, None)
        remaining = {s.msid for kept in self._owners.get(owner, {}).values()
                     for s in kept.sources}
        for msid in [m for m, o in self._msid_owners.items() if o == owner and m not in remaining]:
            del self._msid_owners[msid]
        if owner in self._owners and not any(self._owners[owner].values()):
            del self._owners[owner]

    def media_sources(self, owner: str, endpoint_id: str) -> list[MediaSource]:
        """``owner``'s complete source set for its Colibri2 endpoint ``<sources>``: one
        ``media-source`` per media type with sources, id ``{endpoint_id}-a0`` / ``-v0``, SSRCs
        only."""
        return [MediaSource(media, f"{endpoint_id}-{media[0]}0",
                            [Source(s.ssrc) for s in kept.sources], kept.groups)
                for media, kept in self.of(owner).items()]
