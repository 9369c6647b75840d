"""Conferences and endpoints: who sends what, and who receives it (sans-IO)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from vw.bridge.allocator import (
    CandidateSource,
    ReceiverState,
    allocate,
    forwarded_endpoints,
    forwarded_sources,
)
from vw.bridge.channel import dominant_speaker, forwarded_source_names, last_n_endpoints
from vw.bridge.estimator import BandwidthEstimator
from vw.bridge.feedback import FEEDBACK_SSRC, TransportCcReceiver
from vw.bridge.ice import Address, IceAgent
from vw.bridge.repair import ForwardedAsIs, ReceiverView, Repair
from vw.bridge.reports import LegReports
from vw.bridge.simulcast import SimulcastRouter
from vw.bridge.sources import SourceDescription
from vw.bridge.speakers import DominantSpeakerIdentifier
from vw.rtp.certificate import DtlsCertificate
from vw.rtp.dtls import DtlsSession, role_for_remote_setup
from vw.rtp.extensions import (
    get_audio_level,
    get_transport_cc,
    pack_transport_cc,
    set_extension_into,
)
from vw.rtp.rtcp import (
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    RtcpPacket,
    SenderReport,
    TransportFeedback,
    pack_compound,
    parse_compound,
)
from vw.rtp.rtp import unwrap_rtx
from vw.rtp.srtp import SrtpContext, SrtpError

#: Original -> RTX payload types when Colibri2 names none: Jicofo's VP8, VP9 and H.264 offer.
DEFAULT_RTX_PAYLOAD_TYPES = {100: 96, 101: 97, 107: 99}


@dataclass(slots=True)
class EndpointStats:
    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    dropped_unannounced: int = 0
    dropped_srtp: int = 0
    dropped_rtcp: int = 0


class Endpoint:
    """One participant's leg: ICE, DTLS-SRTP, its sources and what it wants to receive."""

    def __init__(self, conference: Conference, endpoint_id: str, now: float) -> None:
        self.conference = conference
        self.id = endpoint_id
        self.ice = IceAgent()
        self.stats_id = ""
        self.created = now
        self.sources: list[SourceDescription] = []
        self.remote_fingerprints: list[tuple[str, str]] = []
        self.remote_setup = "active"
        self.dtls: DtlsSession | None = None
        self.srtp: SrtpContext | None = None
        self.stats = EndpointStats()
        #: Endpoints whose video this endpoint is sent; None: everyone's (no constraints yet).
        self.video_from: set[str] | None = None
        #: The RTP header extension id of RFC 6464 audio levels, from the endpoint's media.
        self.audio_level_id: int | None = None
        #: The transport-wide congestion control extension id; the bridge terminates it per leg.
        self.transport_cc_id: int | None = None
        self.transport_cc = TransportCcReceiver()
        #: Original -> RTX payload types this endpoint negotiated (empty: no RTX).
        self.rtx_payload_types: dict[int, int] = dict(DEFAULT_RTX_PAYLOAD_TYPES)
        self.estimator = BandwidthEstimator()
        self.reports = LegReports(FEEDBACK_SSRC)
        self._transport_seq = 0
        self.channel_send: Callable[[str], None] | None = None
        self.channel_pwd = self.ice.local_pwd

    @property
    def address(self) -> Address | None:
        return self.ice.selected

    @property
    def connected(self) -> bool:
        return self.srtp is not None and self.ice.selected is not None

    def ensure_dtls(self, certificate: DtlsCertificate, now: float) -> list[bytes]:
        """Create the DTLS session once ICE and the remote fingerprint are known."""
        if self.dtls is not None or not self.remote_fingerprints or self.address is None:
            return []
        role = role_for_remote_setup(self.remote_setup)
        self.dtls = DtlsSession(certificate, role, self.remote_fingerprints)
        return self.dtls.start(now)

    def dtls_received(self, data: bytes, now: float) -> list[bytes]:
        if self.dtls is None:
            return []
        out = self.dtls.datagram_received(data, now)
        if self.srtp is None and self.dtls.state == "connected":
            self.srtp = self.dtls.srtp_keys().context()
            self.conference.endpoint_connected(self, now)
        return out

    def send_rtp(self, packet: bytes, now: float) -> None:
        """Protect ``packet`` for this connected leg, with this leg's own transport-wide
        sequence number, and send it: once per packet and receiver, the bridge's hot path."""
        if self.transport_cc_id is not None:
            packet = self._sequenced(packet, now)
        try:
            protected = self.srtp.protect(packet)  # type: ignore[union-attr]
        except SrtpError:
            return
        self.conference.send(protected, self.ice.selected)  # type: ignore[arg-type]
        stats = self.stats
        stats.packets_out += 1
        stats.bytes_out += len(protected)

    def _sequenced(self, packet: bytes, now: float) -> bytes:
        buffer = bytearray(packet)
        sequence = self._transport_seq
        if not set_extension_into(buffer, self.transport_cc_id,  # type: ignore[arg-type]
                                  pack_transport_cc(sequence)):
            return packet
        self._transport_seq = (sequence + 1) & 0xFFFF
        self.estimator.sent(sequence, len(buffer), now)
        return bytes(buffer)

    def rtcp_due(self, now: float) -> None:
        """Send the transport-cc feedback and the receiver report due for what this endpoint
        sent us."""
        if not self.connected or not self.sources:
            return
        due = []
        if self.transport_cc_id is not None:
            due += self.transport_cc.feedback(now, FEEDBACK_SSRC, self.sources[0].primary)
        report = self.reports.report_due(now)
        if report is not None:
            due.append(bytes(report))
        for rtcp in due:
            self.send_rtcp(rtcp)

    def send_rtcp(self, packet: bytes) -> None:
        if self.srtp is None or self.ice.selected is None:
            return
        try:
            self.conference.send(self.srtp.protect_rtcp(packet), self.ice.selected)
        except SrtpError:
            pass

    def ssrcs(self) -> set[int]:
        return {ssrc for source in self.sources for ssrc in source.ssrcs()}


class MediaSink(Protocol):
    """Receives the decrypted RTP of a conference's sources (a recorder, for one)."""

    def rtp_received(self, endpoint_id: str, packet: bytes, now: float) -> None:
        """``packet`` from an SSRC ``endpoint_id`` announced; it must not be modified."""


@dataclass
class Conference:
    """The endpoints of one meeting and the SSRC table that routes between them."""

    id: str
    name: str = ""
    meeting_id: str = ""
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    owners: dict[int, Endpoint] = field(default_factory=dict)
    #: SSRCs of audio sources: their packets feed the dominant speaker detection.
    audio_ssrcs: set[int] = field(default_factory=set)
    #: RTX SSRC -> the SSRC it retransmits (FID groups).
    rtx_media: dict[int, int] = field(default_factory=dict)
    #: Media sinks: they get the decrypted RTP of every source (a recorder, for one).
    sinks: list[MediaSink] = field(default_factory=list)
    #: Called with (packet, address) for every datagram to send.
    send: Callable[[bytes, Address], None] = lambda data, address: None
    speakers: DominantSpeakerIdentifier = field(default_factory=DominantSpeakerIdentifier)
    simulcast: SimulcastRouter = field(init=False)
    #: What each receiver asked for (ReceiverVideoConstraints); absent: everything.
    constraints: dict[str, ReceiverState] = field(default_factory=dict)
    #: When the allocation was last decided (it follows the estimates every second).
    allocated: float = 0.0

    def __post_init__(self) -> None:
        self.simulcast = SimulcastRouter(self._request_keyframe)
        self.repair = Repair()

    def set_sources(self, endpoint: Endpoint, sources: list[SourceDescription],
                    now: float) -> None:
        """Replace an endpoint's sources; SSRCs claimed by another endpoint are refused."""
        for ssrc in endpoint.ssrcs():
            if self.owners.get(ssrc) is endpoint:
                del self.owners[ssrc]
                self.audio_ssrcs.discard(ssrc)
                self.rtx_media.pop(ssrc, None)
                self.repair.forget(ssrc)
                endpoint.reports.forget(ssrc)
        accepted = []
        for source in sources:
            if any(self.owners.get(s, endpoint) is not endpoint for s in source.ssrcs()):
                continue
            accepted.append(source)
            for ssrc in source.ssrcs():
                self.owners[ssrc] = endpoint
                if source.media == "audio":
                    self.audio_ssrcs.add(ssrc)
            self.rtx_media.update((rtx, media) for media, rtx in source.rtx.items())
        endpoint.sources = accepted
        self.simulcast.set_sources(endpoint.id, accepted)
        self.reallocate(now)

    def remove(self, endpoint: Endpoint, now: float) -> None:
        self.set_sources(endpoint, [], now)
        self.endpoints.pop(endpoint.id, None)
        self.speakers.remove(endpoint.id)
        self.simulcast.remove_receiver(endpoint.id)
        self.repair.remove_receiver(endpoint.id)
        self.constraints.pop(endpoint.id, None)

    # -- media ---------------------------------------------------------------------

    def rtp_received(self, sender: Endpoint, packet: bytes, now: float) -> None:
        """Forward a decrypted RTP packet from ``sender`` to every other connected endpoint."""
        ssrc = int.from_bytes(packet[8:12], "big")
        if self.owners.get(ssrc) is not sender:
            sender.stats.dropped_unannounced += 1
            return
        if sender.transport_cc_id is not None:
            sequence = get_transport_cc(packet, sender.transport_cc_id)
            if sequence is not None:
                sender.transport_cc.packet_received(sequence, now)
        for sink in self.sinks:
            sink.rtp_received(sender.id, packet, now)
        video = ssrc not in self.audio_ssrcs
        if video:
            media_ssrc = self.rtx_media.get(ssrc)
            if media_ssrc is not None:
                self._retransmission_received(sender, media_ssrc, packet, now)
                return
        sequence = packet[2] << 8 | packet[3]
        sender.reports.packet_received(ssrc, sequence, int.from_bytes(packet[4:8], "big"),
                                       90000 if video else 48000, now)
        if video:
            self.repair.cache.store(ssrc, sequence, packet, now)
        elif sender.audio_level_id is not None:
            level = get_audio_level(packet, sender.audio_level_id)
            if level is not None:
                self.speakers.audio_level(sender.id, level[1], level[0], now)
        simulcast = self.simulcast
        if ssrc in simulcast.layers:
            receivers = [e.id for e in self.endpoints.values() if e is not sender and e.connected]
            for receiver, rewritten in simulcast.forward(ssrc, packet, receivers, now):
                self.endpoints[receiver].send_rtp(rewritten, now)
            return
        for receiver in self.endpoints.values():
            if receiver is sender or receiver.srtp is None:  # SRTP comes after ICE: connected
                continue
            if video and receiver.video_from is not None and sender.id not in receiver.video_from:
                continue
            receiver.send_rtp(packet, now)

    def endpoint_connected(self, receiver: Endpoint, now: float) -> None:
        """A new receiver can only decode from a key frame: ask the senders of plain video for
        one (a simulcast projection asks for its own when it starts)."""
        for sender in self.endpoints.values():
            if sender is receiver:
                continue
            for source in sender.sources:
                if source.media == "video" and source.primary not in self.simulcast.primaries:
                    self.request_keyframe(source.primary, now)

    def set_constraints(self, receiver: Endpoint, state: ReceiverState, now: float) -> None:
        self.constraints[receiver.id] = state
        self.reallocate(now)

    def reallocate(self, now: float) -> None:
        """Decide again what video each constrained receiver gets (last-N, max heights,
        speaker order, its bandwidth estimate once it reports one) and tell it which
        endpoints it now receives."""
        self.allocated = now
        ranks = self.speakers.speaker_ranks()
        self.simulcast.measure(now)
        video = [(e, s) for e in self.endpoints.values() for s in e.sources if s.media == "video"]
        sources = [CandidateSource(e.id, s.primary, self.simulcast.layer_info(s), ranks.get(e.id))
                   for e, s in video]
        names = {s.primary: s.name or f"{e.id}-v0" for e, s in video}
        for receiver in self.endpoints.values():
            state = self.constraints.get(receiver.id)
            if state is None:
                continue
            theirs = [source for source in sources if source.endpoint_id != receiver.id]
            estimator = receiver.estimator
            limit = estimator.estimate(now) if estimator.informed else math.inf
            allocation = allocate(state, theirs, limit)
            for primary, layer_index in allocation.items():
                if primary in self.simulcast.primaries:
                    self.simulcast.set_target(receiver.id, primary, layer_index, now)
            forwarded = forwarded_endpoints(state, theirs, allocation)
            if receiver.video_from is None or set(forwarded) != receiver.video_from:
                receiver.video_from = set(forwarded)
                if receiver.channel_send is not None:
                    receiver.channel_send(last_n_endpoints(forwarded))
                    receiver.channel_send(forwarded_source_names(
                        [names[key] for key in forwarded_sources(state, theirs, allocation)]))

    def dominant_speaker_changed(self, now: float) -> str | None:
        """The new dominant speaker, when it changes (told to everyone on the bridge channel)."""
        speaker = self.speakers.poll(now)
        if speaker is not None:
            frame = dominant_speaker(speaker, self.speakers.previous_speakers())
            for endpoint in self.endpoints.values():
                if endpoint.channel_send is not None:
                    endpoint.channel_send(frame)
            self.reallocate(now)
        return speaker

    def _request_keyframe(self, owner: str, rtcp: bytes) -> None:
        endpoint = self.endpoints.get(owner)
        if endpoint is not None:
            endpoint.send_rtcp(rtcp)

    def rtcp_received(self, sender: Endpoint, packet: bytes, now: float) -> None:
        """Terminate what is about this leg; route feedback to the media's sender and sender
        reports to everyone else."""
        try:
            packets = parse_compound(packet)
        except ValueError:
            sender.stats.dropped_rtcp += 1
            return
        for_sender: dict[Endpoint, list[RtcpPacket]] = {}
        reports: list[RtcpPacket] = []
        for rtcp in packets:
            if isinstance(rtcp, TransportFeedback):
                sender.estimator.feedback_received(rtcp, now)
            elif isinstance(rtcp, Remb):
                sender.estimator.remb_received(rtcp.bitrate, now)
            elif isinstance(rtcp, Nack):
                self._answer_nack(sender, rtcp, now)
            elif isinstance(rtcp, Pli | Fir):
                about = [ssrc for ssrc, _ in rtcp.entries] if isinstance(rtcp, Fir) else [
                    rtcp.media_ssrc]
                if any(ssrc in self.simulcast.primaries for ssrc in about):
                    self.simulcast.keyframe_requested(sender.id, rtcp, now)
                    continue
                owner = next((self.owners[s] for s in about if s in self.owners), None)
                if owner is not None and owner is not sender:
                    for_sender.setdefault(owner, []).append(rtcp)
            elif isinstance(rtcp, SenderReport | ReceiverReport):
                for block in rtcp.reports:
                    if self.owners.get(block.ssrc) is not sender:
                        sender.reports.report_block_received(block, now)
                if isinstance(rtcp, SenderReport):
                    sender.reports.sender_report_received(rtcp.ssrc, rtcp.ntp_timestamp, now)
                    if rtcp.ssrc not in self.simulcast.layers:
                        reports.append(dataclasses.replace(rtcp, reports=[]))
        for owner, feedback in for_sender.items():
            owner.send_rtcp(pack_compound(feedback))
        if reports:
            compound = pack_compound(reports)
            for receiver in self.endpoints.values():
                if receiver is not sender and receiver.connected:
                    for report in reports:
                        receiver.reports.sender_report_forwarded(report.ntp_timestamp, now)
                    receiver.send_rtcp(compound)

    def _answer_nack(self, receiver: Endpoint, nack: Nack, now: float) -> None:
        """Resend from the cache what ``receiver`` lost; ask senders for what the bridge lost."""
        owner = self.owners.get(nack.media_ssrc)
        if owner is None or owner is receiver or nack.media_ssrc in self.audio_ssrcs:
            return
        view: ReceiverView | None
        if nack.media_ssrc in self.simulcast.primaries:
            view = self.simulcast.view(receiver.id, nack.media_ssrc)
            if view is None:
                return
        else:
            view = ForwardedAsIs(nack.media_ssrc)
        rtx_ssrc = next((s.rtx.get(nack.media_ssrc) for s in owner.sources
                         if nack.media_ssrc in s.layers), None)
        rtx = (rtx_ssrc, receiver.rtx_payload_types) if rtx_ssrc and receiver.rtx_payload_types \
            else None
        resent, missing = self.repair.answer(receiver.id, nack, view, rtx,
                                             receiver.reports.rtt, now)
        for packet in resent:
            receiver.send_rtp(packet, now)
        if missing:
            owner.send_rtcp(pack_compound(
                [Nack(FEEDBACK_SSRC, ssrc, lost) for ssrc, lost in missing.items()]))

    def _retransmission_received(self, sender: Endpoint, media_ssrc: int, packet: bytes,
                                 now: float) -> None:
        """A sender's RTX: into the cache, and on to the receivers that wait for it."""
        original_pt = next((pt for pt, rtx in sender.rtx_payload_types.items()
                            if rtx == packet[1] & 0x7F), None)
        if original_pt is None:
            return
        try:
            seq, original = unwrap_rtx(packet, original_pt)
        except ValueError:
            return  # padding only: a bandwidth probe
        original = original[:8] + media_ssrc.to_bytes(4, "big") + original[12:]
        for receiver_id, nack in self.repair.recovered(media_ssrc, seq, original, now):
            receiver = self.endpoints.get(receiver_id)
            if receiver is not None and receiver.connected:
                self._answer_nack(receiver, nack, now)

    def request_keyframe(self, ssrc: int, now: float) -> None:
        """Ask the sender of ``ssrc`` for a key frame (rate-limited), e.g. for a media sink."""
        owner = self.owners.get(ssrc)
        if owner is not None:
            request = self.simulcast.keyframes.request(ssrc, now)
            if request is not None:
                owner.send_rtcp(request)


