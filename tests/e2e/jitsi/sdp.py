"""Jingle <-> SDP, translated the way lib-jitsi-meet does it, in the unified plan aiortc takes.

**Offer side** (PROTOCOL.md §4, ``SDP.fromJingle`` then sdp-interop and sdp-simulcast).
:class:`RemoteOffer` keeps the focus's offer as lib-jitsi-meet keeps its remote description:
one section per Jingle content (``a=mid`` = content name) with its payload types, header
extensions, ``<rtcp-mux/>`` and its sources and ssrc-groups, updated in place by
``source-add`` (sources whose SSRC is new, groups not yet present) and ``source-remove``
(sources by SSRC, groups by exact match). :class:`UnifiedPlan` then lays it out as aiortc wants
it: the first m-line of each content is the local one (``senders`` mapped to a direction:
initiator→sendonly, responder→recvonly, both→sendrecv, none→inactive), and every remote stream
(sources sharing an msid, bridge streams ``mixedmslabel``/``default`` hidden, sources without
msid dropped) gets an m-line of its own, ``a=sendonly`` from the focus's side, carrying its
SIM[0] SSRC first and its FID (RTX) partner second, which is what aiortc reads as the
stream's SSRC and RTX SSRC. A stream that goes away keeps its m-line, now ``a=inactive``
without SSRCs (m-lines are never removed in unified plan), and one that comes back, or whose
SSRCs change, gets a new m-line (aiortc cannot re-point a started receiver). Every m-line
repeats the bridge's transport (ufrag, pwd, fingerprint with ``a=setup`` from its
``setup``, its UDP candidates) and is in the BUNDLE group. Like lib-jitsi-meet, no
``a=ice-lite`` is written: the bridge is a full, controlling ICE agent.

**Answer side** (``SDP.toJingle``). :func:`session_accept` turns aiortc's answer into the
session-accept lib-jitsi-meet sends: one content per Jingle content of the offer
(``creator="responder"``), each with the answered payload types (fmtp parameters, rtcp-fb),
header extensions, ``<rtcp-mux/>``, the local sources with their msid (only on m-lines that
send), ssrc-groups (FID), and the transport's ufrag, pwd and fingerprint (``setup`` from
``a=setup``, ``active`` for aiortc); candidates follow in ``transport-info``
(:func:`transport_info`, one per candidate as lib-jitsi-meet sends them).
"""

from __future__ import annotations

import copy
import itertools
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from vw.bridge.colibri2 import (
    Candidate,
    Fingerprint,
    HeaderExtension,
    IceUdpTransport,
    Parameter,
    PayloadType,
    RtcpFeedback,
    Source,
    SourceGroup,
)
from vw.focus.jingle import Content, Group, Jingle, RtpDescription

#: The msid streams lib-jitsi-meet hides (the bridge's own, and Plan B's default).
HIDDEN_STREAMS = ("mixedmslabel", "default")
#: Jingle ``senders`` -> the offer's SDP direction (seen from the focus, the offerer).
SENDERS_DIRECTION = {"initiator": "sendonly", "responder": "recvonly", "both": "sendrecv",
                     "none": "inactive", "rejected": "inactive", None: "sendrecv"}
#: The answer's SDP direction (seen from the client, the responder) -> Jingle ``senders``.
DIRECTION_SENDERS = {"sendrecv": "both", "sendonly": "responder", "recvonly": "initiator",
                     "inactive": "none"}
DIRECTIONS = frozenset(DIRECTION_SENDERS)


# -- the offer ---------------------------------------------------------------------------------

@dataclass
class Section:
    """One Jingle content of the offer, as ``SDP.fromJingle`` makes it one m-line."""

    mid: str
    media: str
    senders: str | None
    description: RtpDescription


class RemoteOffer:
    """The focus's offer: session-initiate, then every source-add and source-remove."""

    def __init__(self, jingle: Jingle) -> None:
        self.sections: list[Section] = []
        self.transport: IceUdpTransport | None = None
        for content in jingle.contents:
            if content.description is None:
                continue  # a data (SCTP) content: this client has no data channel
            if self.transport is None and content.transport is not None:
                self.transport = copy.deepcopy(content.transport)
            self.sections.append(Section(content.name, content.description.media,
                                         content.senders, copy.deepcopy(content.description)))
        if self.transport is None:
            raise ValueError("the offer carries no ICE-UDP transport")
        if self.transport.fingerprint is None or not (self.transport.ufrag
                                                      and self.transport.pwd):
            raise ValueError("the offer's transport lacks ICE credentials or a fingerprint")
        self.bundle = jingle.bundle.contents if jingle.bundle is not None else []

    @property
    def content_names(self) -> list[str]:
        return [s.mid for s in self.sections]

    def section(self, content: Content) -> Section:
        """The section a source-add/remove content applies to: by name, else by media."""
        for section in self.sections:
            if section.mid == content.name:
                return section
        media = content.description.media if content.description is not None else None
        for section in self.sections:
            if section.media == media:
                return section
        raise ValueError(f"no m-line for content {content.name!r}")

    def add_sources(self, contents: Sequence[Content]) -> list[Source]:
        """Apply a source-add; returns the sources that were new."""
        added = []
        for content in contents:
            if content.description is None:
                continue
            description = self.section(content).description
            known = {s.ssrc for s in description.sources}
            for source in content.description.sources:
                if source.ssrc not in known:  # lib-jitsi-meet skips (and logs) a known SSRC
                    description.sources.append(copy.deepcopy(source))
                    known.add(source.ssrc)
                    added.append(source)
            for group in content.description.groups:
                if group not in description.groups:
                    description.groups.append(copy.deepcopy(group))
        return added

    def remove_sources(self, contents: Sequence[Content]) -> list[Source]:
        """Apply a source-remove (groups by exact match, as lib-jitsi-meet removes the
        ``a=ssrc-group`` lines by text); returns the sources removed."""
        removed = []
        for content in contents:
            if content.description is None:
                continue
            description = self.section(content).description
            gone = {s.ssrc for s in content.description.sources}
            removed += [s for s in description.sources if s.ssrc in gone]
            description.sources = [s for s in description.sources if s.ssrc not in gone]
            description.groups = [g for g in description.groups
                                  if g not in content.description.groups]
        return removed


@dataclass(frozen=True)
class RemoteStream:
    """One remote msid stream, as it gets an m-line of its own."""

    media: str
    msid: str
    #: Primary (SIM[0]) first, then its FID (RTX) partner, then any other.
    ssrcs: tuple[int, ...]
    #: The ``ssrc-info`` owner of the primary: the occupant JID, or ``jvb``.
    owner: str | None
    groups: tuple[SourceGroup, ...] = ()
    #: Each SSRC's ``<parameter>``s, written as ``a=ssrc:SSRC name:value``.
    parameters: tuple[tuple[int, tuple[tuple[str, str], ...]], ...] = ()

    @property
    def primary(self) -> int:
        return self.ssrcs[0]

    @property
    def endpoint(self) -> str | None:
        """The owner's endpoint id: its occupant resource (the MUC nick)."""
        if self.owner is None:
            return None
        return self.owner.partition("/")[2] or self.owner


def is_hidden(msid: str) -> bool:
    return msid.split(" ")[0] in HIDDEN_STREAMS


def remote_streams(section: Section) -> list[RemoteStream]:
    """The section's sources as streams: grouped by msid, SIM imploded to SIM[0] plus its FID
    partner (sdp-simulcast), hidden and msid-less sources dropped."""
    description = section.description
    by_msid: dict[str, list[Source]] = {}
    for source in description.sources:
        msid = source.msid
        if msid and not is_hidden(msid):
            by_msid.setdefault(msid, []).append(source)
    streams = []
    for msid, sources in by_msid.items():
        members = {s.ssrc: s for s in sources}
        groups = [g for g in description.groups if g.ssrcs and set(g.ssrcs) <= set(members)]
        fid = {g.ssrcs[0]: g.ssrcs[1] for g in groups if g.semantics == "FID"
               and len(g.ssrcs) == 2}
        sim = next((g for g in groups if g.semantics == "SIM"), None)
        if sim is not None:
            primary = sim.ssrcs[0]
            ssrcs = [primary] + ([fid[primary]] if primary in fid else [])
        else:
            primary = next(iter(fid), sources[0].ssrc)
            ssrcs = [primary] + ([fid[primary]] if primary in fid else [])
            ssrcs += [s for s in members if s not in ssrcs]
        kept = tuple(g for g in groups if set(g.ssrcs) <= set(ssrcs))
        parameters = tuple((ssrc, tuple((p.name, p.value) for p in members[ssrc].parameters
                                        if p.value is not None)) for ssrc in ssrcs)
        streams.append(RemoteStream(section.media, msid, tuple(ssrcs), members[primary].owner,
                                    kept, parameters))
    return streams


@dataclass
class MLine:
    """One m-line of the unified-plan offer given to aiortc."""

    mid: str
    media: str
    #: The content (section) this m-line takes its codecs from.
    content: str
    #: The remote stream it carries; None for the local m-line of a content.
    stream: RemoteStream | None = None
    #: A remote stream's m-line whose stream is gone (now inactive, never reused).
    retired: bool = False

    @property
    def local(self) -> bool:
        return self.stream is None and not self.retired


@dataclass
class UnifiedPlan:
    """The m-line layout across renegotiations (lib-jitsi-meet's sdp-interop, for aiortc)."""

    mlines: list[MLine] = field(default_factory=list)
    session_id: int = field(default_factory=lambda: secrets.randbelow(2 ** 62))
    version: int = 0

    def update(self, offer: RemoteOffer) -> tuple[list[MLine], list[MLine]]:
        """Lay out ``offer``'s current streams; returns the m-lines added and retired."""
        if not self.mlines:
            self.mlines = [MLine(s.mid, s.media, s.mid) for s in offer.sections]
        current = {(stream.media, stream.msid): (section.mid, stream)
                   for section in offer.sections for stream in remote_streams(section)}
        active = {(m.media, m.stream.msid): m for m in self.mlines
                  if m.stream is not None and not m.retired}
        retired = []
        for key, mline in active.items():
            if key not in current or current[key][1] != mline.stream:
                mline.retired = True
                retired.append(mline)
        added = []
        for key, (content, stream) in current.items():
            if key not in active or active[key].retired:
                mline = MLine(str(len(self.mlines)), stream.media, content, stream)
                self.mlines.append(mline)
                added.append(mline)
        return added, retired

    def offer(self, offer: RemoteOffer) -> str:
        """The next offer SDP (a new session version each time)."""
        self.version += 1
        sections = {s.mid: s for s in offer.sections}
        lines = ["v=0", f"o=- {self.session_id} {self.version} IN IP4 0.0.0.0", "s=-", "t=0 0",
                 "a=msid-semantic: WMS *",
                 "a=group:BUNDLE " + " ".join(m.mid for m in self.mlines)]
        for mline in self.mlines:
            lines += _media_lines(mline, sections[mline.content], offer.transport)
        return "\r\n".join(lines) + "\r\n"


def _media_lines(mline: MLine, section: Section, transport: IceUdpTransport) -> list[str]:
    description = section.description
    pts = [str(pt.id) for pt in description.payload_types]
    lines = [f"m={mline.media} 9 UDP/TLS/RTP/SAVPF {' '.join(pts)}", "c=IN IP4 0.0.0.0"]
    lines += _transport_lines(transport)
    lines.append(f"a=mid:{mline.mid}")
    for extension in description.header_extensions:
        lines.append(f"a=extmap:{extension.id} {extension.uri}")
    if mline.local:
        lines.append("a=" + SENDERS_DIRECTION.get(section.senders, "sendrecv"))
    else:
        lines.append("a=inactive" if mline.retired else "a=sendonly")
    if description.rtcp_mux:  # lib-jitsi-meet takes a=rtcp-mux from here only
        lines.append("a=rtcp-mux")
    for pt in description.payload_types:
        rtpmap = f"a=rtpmap:{pt.id} {pt.name}/{pt.clockrate}"
        if pt.channels is not None and pt.channels > 1:
            rtpmap += f"/{pt.channels}"
        lines.append(rtpmap)
        if pt.parameters:
            lines.append(f"a=fmtp:{pt.id} " + ";".join(
                p.name if p.value is None else f"{p.name}={p.value}" for p in pt.parameters))
        for feedback in pt.rtcp_fbs:
            lines.append(_feedback_line(str(pt.id), feedback))
    for feedback in description.rtcp_fbs:
        lines.append(_feedback_line("*", feedback))
    stream = mline.stream
    if stream is not None and not mline.retired:
        lines.append(f"a=msid:{stream.msid}")
        for group in stream.groups:
            lines.append(f"a=ssrc-group:{group.semantics} " + " ".join(map(str, group.ssrcs)))
        for ssrc, parameters in stream.parameters:
            lines += [f"a=ssrc:{ssrc} {name}:{value}" for name, value in parameters]
    return lines


def _feedback_line(pt: str, feedback: RtcpFeedback) -> str:
    line = f"a=rtcp-fb:{pt} {feedback.type}"
    return line + (f" {feedback.subtype}" if feedback.subtype else "")


def _transport_lines(transport: IceUdpTransport) -> list[str]:
    fingerprint = transport.fingerprint
    assert fingerprint is not None
    lines = [f"a=ice-ufrag:{transport.ufrag}", f"a=ice-pwd:{transport.pwd}",
             f"a=fingerprint:{fingerprint.hash} {fingerprint.value}",
             f"a=setup:{fingerprint.setup or 'actpass'}"]
    for candidate in transport.candidates:
        if candidate.protocol == "udp":
            lines.append("a=candidate:" + candidate_line(candidate))
    lines.append("a=end-of-candidates")
    return lines


def candidate_line(candidate: Candidate) -> str:
    """``a=candidate`` text (after the colon), with raddr/rport/tcptype when present."""
    line = (f"{candidate.foundation} {candidate.component} {candidate.protocol} "
            f"{candidate.priority} {candidate.ip} {candidate.port} typ {candidate.type}")
    if candidate.rel_addr is not None:
        line += f" raddr {candidate.rel_addr}"
    if candidate.rel_port is not None:
        line += f" rport {candidate.rel_port}"
    if candidate.tcptype is not None:
        line += f" tcptype {candidate.tcptype}"
    return line + f" generation {candidate.generation or 0}"


# -- the answer --------------------------------------------------------------------------------

@dataclass
class MediaSection:
    """One m-line of a parsed SDP: its ``m=`` fields and its ``a=`` attributes in order."""

    media: str
    port: int
    formats: list[str]
    attributes: list[tuple[str, str]] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.attributes if key == name]

    def value(self, name: str, session: Sequence[tuple[str, str]] = ()) -> str | None:
        """The first ``a=name`` here, else at session level."""
        found = self.values(name) or [v for k, v in session if k == name]
        return found[0] if found else None

    @property
    def mid(self) -> str | None:
        return self.value("mid")

    @property
    def direction(self) -> str:
        return next((key for key, _ in self.attributes if key in DIRECTIONS), "sendrecv")


@dataclass
class ParsedSdp:
    session: list[tuple[str, str]]
    media: list[MediaSection]


def parse_sdp(text: str) -> ParsedSdp:
    session: list[tuple[str, str]] = []
    media: list[MediaSection] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("m="):
            fields = line[2:].split()
            media.append(MediaSection(fields[0], int(fields[1]), fields[3:]))
        elif line.startswith("a="):
            key, _, value = line[2:].partition(":")
            (media[-1].attributes if media else session).append((key, value))
    return ParsedSdp(session, media)


def _payload_types(section: MediaSection) -> list[PayloadType]:
    found: dict[str, PayloadType] = {}
    for value in section.values("rtpmap"):
        pt, _, codec = value.partition(" ")
        name, clockrate, *channels = codec.split("/")
        found[pt] = PayloadType(int(pt), name, int(clockrate),
                                int(channels[0]) if channels and channels[0] != "1" else None)
    for value in section.values("fmtp"):
        pt, _, parameters = value.partition(" ")
        if pt in found:
            for parameter in parameters.split(";"):
                name, sep, parameter_value = parameter.strip().partition("=")
                if name:
                    found[pt].parameters.append(Parameter(name, parameter_value if sep else None))
    for value in section.values("rtcp-fb"):
        pt, _, feedback = value.partition(" ")
        kind, _, subtype = feedback.partition(" ")
        if pt in found:
            found[pt].rtcp_fbs.append(RtcpFeedback(kind, subtype or None))
    return [found[pt] for pt in section.formats if pt in found]


def _local_sources(section: MediaSection) -> tuple[list[Source], list[SourceGroup]]:
    """The m-line's own SSRCs (msid parameter only, as lib-jitsi-meet signals them)."""
    msids: dict[int, str] = {}
    order: list[int] = []
    for value in section.values("ssrc"):
        ssrc_text, _, attribute = value.partition(" ")
        ssrc = int(ssrc_text)
        if ssrc not in order:
            order.append(ssrc)
        name, _, attribute_value = attribute.partition(":")
        if name == "msid":
            msids[ssrc] = attribute_value
    stream_msid = section.value("msid")
    sources = []
    for ssrc in order:
        msid = msids.get(ssrc, stream_msid)
        sources.append(Source(ssrc, parameters=[] if msid is None else [Parameter("msid", msid)]))
    groups = []
    for value in section.values("ssrc-group"):
        semantics, *members = value.split()
        groups.append(SourceGroup(semantics, [int(m) for m in members]))
    return sources, groups


def local_transport(answer: ParsedSdp, section: MediaSection | None = None,
                    required: bool | None = None) -> IceUdpTransport:
    """The answer's ufrag, pwd and fingerprint (``setup`` from ``a=setup``)."""
    section = section or answer.media[0]
    hash_name, _, value = (section.value("fingerprint", answer.session) or " ").partition(" ")
    return IceUdpTransport(
        ufrag=section.value("ice-ufrag", answer.session),
        pwd=section.value("ice-pwd", answer.session),
        fingerprints=[Fingerprint(hash_name, section.value("setup", answer.session), value,
                                  required)])


def session_accept(answer_sdp: str, offer: RemoteOffer, sid: str, initiator: str | None,
                   responder: str | None) -> Jingle:
    """aiortc's answer as lib-jitsi-meet's session-accept (no candidates: transport-info)."""
    answer = parse_sdp(answer_sdp)
    by_mid = {m.mid: m for m in answer.media}
    contents = []
    for section in offer.sections:
        media = by_mid.get(section.mid)
        if media is None:
            raise ValueError(f"the answer has no m-line for content {section.mid!r}")
        sending = media.direction in ("sendrecv", "sendonly")
        sources, groups = _local_sources(media) if sending else ([], [])
        description = RtpDescription(
            media.media, ssrc=sources[0].ssrc if sources else None,
            payload_types=_payload_types(media),
            header_extensions=[HeaderExtension(int(v.split()[0].split("/")[0]), v.split()[1])
                               for v in media.values("extmap")],
            sources=sources, groups=groups, rtcp_mux=bool(media.values("rtcp-mux")))
        contents.append(Content(section.mid, creator="responder",
                                senders=DIRECTION_SENDERS[media.direction],
                                description=description,
                                transport=local_transport(answer, media)))
    return Jingle("session-accept", sid, initiator=initiator, responder=responder,
                  contents=contents, groups=[Group("BUNDLE", offer.content_names)])


def local_candidates(answer_sdp: str,
                     keep: Callable[[Candidate], bool] = lambda c: True) -> list[Candidate]:
    """The answer's ICE candidates (those ``keep`` accepts), once each."""
    answer = parse_sdp(answer_sdp)
    found: list[Candidate] = []
    ids = itertools.count(1)
    for media in answer.media:
        for value in media.values("candidate"):
            fields = value.split()
            extra = dict(zip(fields[8::2], fields[9::2], strict=False))
            candidate = Candidate(
                component=int(fields[1]), foundation=fields[0], ip=fields[4],
                port=int(fields[5]), priority=int(fields[3]), protocol=fields[2].lower(),
                type=fields[7], generation=int(extra.get("generation", 0)),
                network=0, rel_addr=extra.get("raddr"),
                rel_port=int(extra["rport"]) if "rport" in extra else None,
                tcptype=extra.get("tcptype"))
            if keep(candidate) and all((c.ip, c.port, c.protocol) != (candidate.ip, candidate.port,
                                                                      candidate.protocol)
                                       for c in found):
                candidate.id = f"c{next(ids)}"
                found.append(candidate)
    return found


def transport_info(answer_sdp: str, sid: str, content: str,
                   candidates: Iterable[Candidate]) -> Jingle:
    """One transport-info for ``candidates`` (lib-jitsi-meet sends one per candidate): the
    transport carries ufrag, pwd, the fingerprint (``required="true"``) and the candidates."""
    transport = local_transport(parse_sdp(answer_sdp), required=True)
    transport.candidates = list(candidates)
    return Jingle("transport-info", sid, contents=[
        Content(content, creator="initiator", transport=transport)])
