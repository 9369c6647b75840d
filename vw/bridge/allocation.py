"""Colibri2 on the bridge: conference-modify IQs in, conference-modified answers out."""

from __future__ import annotations

import secrets

from twisted.logger import Logger
from twisted.words.xish.domish import Element

from vw.bridge import colibri2
from vw.bridge.bridge import Bridge
from vw.bridge.conference import Conference
from vw.bridge.conference import Endpoint as BridgeEndpoint
from vw.bridge.sources import SourceDescription, sources_from_groups
from vw.rtp.extensions import AUDIO_LEVEL_URI, TRANSPORT_CC_URI
from vw.xmpp.stanzas import CLIENT_NS

log = Logger()

#: Host candidates: type preference 126, local preference 65535, component 1 (RFC 8445 §5.1.2.1).
HOST_PRIORITY = (126 << 24) | (65535 << 8) | 255
SRFLX_PRIORITY = (100 << 24) | (65535 << 8) | 255


def rtx_payload_types(payload_types: list[colibri2.PayloadType]) -> dict[int, int]:
    """Original -> RTX payload type, from the ``rtx`` payload types' ``apt`` parameters."""
    found = {}
    for payload_type in payload_types:
        if (payload_type.name or "").lower() != "rtx":
            continue
        apt = next((p.value for p in payload_type.parameters if p.name == "apt"), None)
        if apt is not None and apt.isdigit() and int(apt) <= 127:
            found[int(apt)] = payload_type.id
    return found


class AllocationError(Exception):
    def __init__(self, reason: str, text: str = "") -> None:
        super().__init__(f"{reason}: {text}")
        self.reason = reason
        self.text = text


class Allocations:
    """Answers the focus's Colibri2 requests against one Bridge."""

    def __init__(self, bridge: Bridge, focus_jids: frozenset[str] = frozenset()) -> None:
        self.bridge = bridge
        #: Bare JIDs allowed to allocate (empty: anyone who can reach the bridge).
        self.focus_jids = focus_jids
        self.feedback_ssrcs = {"audio": secrets.randbits(31) | 1, "video": secrets.randbits(31) | 1}

    def handle_iq(self, iq: Element) -> Element | None:
        """The result or error reply to a conference-modify IQ (None for results and errors)."""
        if iq.getAttribute("type") not in ("get", "set"):
            return None
        payload = next((c for c in iq.elements() if c.uri == colibri2.COLIBRI2_NS), None)
        try:
            sender = iq.getAttribute("from", "").partition("/")[0]
            if self.focus_jids and sender not in self.focus_jids:
                log.info("refused Colibri2 from {sender}", sender=sender)
                return colibri2.colibri2_error_reply(iq, "unspecified", "not the focus",
                                                     "forbidden")
            if payload is None:
                raise AllocationError("feature_not_implemented", "expected conference-modify")
            try:
                request = colibri2.ConferenceModify.fromElement(payload)
            except ValueError as e:
                log.info("malformed conference-modify: {error}", error=e)
                return colibri2.colibri2_error_reply(iq, "unspecified", str(e)[:200],
                                                     "bad-request")
            answer = self.modify(request)
        except AllocationError as e:
            return colibri2.colibri2_error_reply(iq, e.reason, e.text)
        reply = Element((CLIENT_NS, "iq"))
        reply["type"] = "result"
        for key, value in (("id", iq.getAttribute("id")), ("to", iq.getAttribute("from")),
                           ("from", iq.getAttribute("to"))):
            if value is not None:
                reply[key] = value
        reply.addChild(answer.toElement())
        return reply

    def modify(self, request: colibri2.ConferenceModify) -> colibri2.ConferenceModified:
        conference = self.bridge.conferences.get(request.meeting_id)
        if request.create:
            if conference is not None:
                raise AllocationError("conference_already_exists", request.meeting_id)
            if self.bridge.draining:
                raise AllocationError("graceful_shutdown", "this bridge is draining")
            conference = Conference(id=request.meeting_id, name=request.name or "",
                                    meeting_id=request.meeting_id, send=self.bridge.transport.send)
            self.bridge.conferences[conference.id] = conference
        elif conference is None:
            raise AllocationError("conference_not_found", request.meeting_id)
        answer = colibri2.ConferenceModified()
        for wanted in request.endpoints:
            answer.endpoints.append(self._endpoint(conference, wanted))
        if request.create:
            answer.sources = [self._feedback_source(media) for media in ("audio", "video")]
        if request.expire:
            self.bridge.expire_conference(conference)
        return answer

    def _endpoint(self, conference: Conference,
                  wanted: colibri2.Endpoint) -> colibri2.Endpoint:
        existing = conference.endpoints.get(wanted.id)
        if wanted.expire:
            if existing is not None:
                self.bridge.transport.remove_endpoint(existing, self.bridge.now())
            return colibri2.Endpoint(id=wanted.id, expire=True)
        if wanted.create:
            if existing is not None:
                raise AllocationError("unspecified", f"endpoint {wanted.id} exists")
            existing = self.bridge.transport.add_endpoint(conference, wanted.id,
                                                         self.bridge.now())
            existing.stats_id = wanted.stats_id or ""
        elif existing is None:
            raise AllocationError("unknown_endpoint", wanted.id)
        self._apply(existing, wanted)
        described = colibri2.Endpoint(id=wanted.id)
        if wanted.create:
            described.transport = colibri2.Transport(ice_udp=self._describe(existing))
        return described

    def _apply(self, endpoint: BridgeEndpoint, wanted: colibri2.Endpoint) -> None:
        transport = wanted.transport
        if transport is not None:
            if wanted.create:
                endpoint.ice.controlling = transport.ice_controlling
            ice = transport.ice_udp
            if ice is not None:
                if ice.ufrag and ice.pwd:
                    endpoint.ice.set_remote(ice.ufrag, ice.pwd)
                for fingerprint in ice.fingerprints:
                    if fingerprint.setup not in (None, "active", "passive", "actpass"):
                        raise AllocationError("unspecified", f"setup {fingerprint.setup}")
                    endpoint.remote_fingerprints.append((fingerprint.hash, fingerprint.value))
                    if fingerprint.setup:
                        endpoint.remote_setup = fingerprint.setup
                now = self.bridge.now()
                for candidate in ice.candidates:
                    if candidate.protocol == "udp" and candidate.component == 1:
                        endpoint.ice.add_remote_candidate((candidate.ip, candidate.port), now)
        for media in wanted.media:
            if media.type == "video" and media.payload_types:
                endpoint.rtx_payload_types = rtx_payload_types(media.payload_types)
            for extension in media.header_extensions:
                if media.type == "audio" and extension.uri == AUDIO_LEVEL_URI:
                    endpoint.audio_level_id = extension.id
                elif extension.uri == TRANSPORT_CC_URI:
                    endpoint.transport_cc_id = extension.id
        if wanted.sources is not None:
            sources: list[SourceDescription] = []
            for media_source in wanted.sources:
                sources += sources_from_groups(
                    media_source.type, [s.ssrc for s in media_source.sources],
                    [(g.semantics, g.ssrcs) for g in media_source.groups], media_source.id)
            endpoint.conference.set_sources(endpoint, sources, self.bridge.now())

    def _describe(self, endpoint: BridgeEndpoint) -> colibri2.IceUdpTransport:
        offered = [(address, "host") for address in self.bridge.host_candidates]
        if self.bridge.advertised is not None:
            offered.append((self.bridge.advertised, "srflx"))
        candidates = [
            colibri2.Candidate(
                component=1, foundation=str(index), ip=ip, port=port,
                priority=HOST_PRIORITY if kind == "host" else SRFLX_PRIORITY, protocol="udp",
                type=kind, generation=0, id=f"c{index}", network=0)
            for index, ((ip, port), kind) in enumerate(offered, start=1)]
        fingerprint = colibri2.Fingerprint(hash="sha-256", setup="actpass",
                                           value=self.bridge.transport.certificate.fingerprint)
        return colibri2.IceUdpTransport(
            ufrag=endpoint.ice.local_ufrag, pwd=endpoint.ice.local_pwd,
            fingerprints=[fingerprint], candidates=candidates, rtcp_mux=True,
            web_sockets=[colibri2.WebSocket(url=self.bridge.websocket_url(endpoint))])

    def _feedback_source(self, media: str) -> colibri2.MediaSource:
        name = f"jvb-{media[0]}0"
        msid = colibri2.Parameter("msid", f"mixedmslabel mixedlabel{media}0")
        source = colibri2.Source(ssrc=self.feedback_ssrcs[media], name=name, parameters=[msid])
        return colibri2.MediaSource(type=media, id=name, sources=[source])

