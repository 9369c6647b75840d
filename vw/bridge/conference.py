"""Conferences and endpoints: who sends what, and who receives it (sans-IO)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vw.bridge.channel import dominant_speaker
from vw.bridge.ice import Address, IceAgent
from vw.bridge.simulcast import SimulcastRouter
from vw.bridge.sources import SourceDescription
from vw.bridge.speakers import DominantSpeakerIdentifier
from vw.rtp.certificate import DtlsCertificate
from vw.rtp.dtls import DtlsSession, role_for_remote_setup
from vw.rtp.extensions import get_audio_level
from vw.rtp.rtcp import Fir, Nack, Pli, parse_compound
from vw.rtp.srtp import SrtpContext, SrtpError

RTCP_SR = 200
RTCP_RTPFB = 205
RTCP_PSFB = 206


@dataclass
class EndpointStats:
    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    dropped_unannounced: int = 0
    dropped_srtp: int = 0


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
        self.last_n = -1
        #: The RTP header extension id of RFC 6464 audio levels, from the endpoint's media.
        self.audio_level_id: int | None = None
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
        return out

    def protect(self, packet: bytes) -> bytes | None:
        try:
            return self.srtp.protect(packet)
        except SrtpError:
            return None

    def ssrcs(self) -> set[int]:
        return {ssrc for source in self.sources for ssrc in source.ssrcs()}


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
    #: Called with (packet, address) for every datagram to send.
    send: Callable[[bytes, Address], None] = lambda data, address: None
    speakers: DominantSpeakerIdentifier = field(default_factory=DominantSpeakerIdentifier)
    simulcast: SimulcastRouter = field(init=False)

    def __post_init__(self) -> None:
        self.simulcast = SimulcastRouter(self._request_keyframe)

    def set_sources(self, endpoint: Endpoint, sources: list[SourceDescription]) -> None:
        """Replace an endpoint's sources; SSRCs claimed by another endpoint are refused."""
        for ssrc in endpoint.ssrcs():
            if self.owners.get(ssrc) is endpoint:
                del self.owners[ssrc]
                self.audio_ssrcs.discard(ssrc)
        accepted = []
        for source in sources:
            if any(self.owners.get(s, endpoint) is not endpoint for s in source.ssrcs()):
                continue
            accepted.append(source)
            for ssrc in source.ssrcs():
                self.owners[ssrc] = endpoint
                if source.media == "audio":
                    self.audio_ssrcs.add(ssrc)
        endpoint.sources = accepted
        self.simulcast.set_sources(endpoint.id, accepted)

    def remove(self, endpoint: Endpoint) -> None:
        self.set_sources(endpoint, [])
        self.endpoints.pop(endpoint.id, None)
        self.speakers.remove(endpoint.id)
        self.simulcast.remove_receiver(endpoint.id)

    # -- media ---------------------------------------------------------------------

    def rtp_received(self, sender: Endpoint, packet: bytes, now: float) -> None:
        """Forward a decrypted RTP packet from ``sender`` to every other connected endpoint."""
        ssrc = int.from_bytes(packet[8:12], "big")
        if self.owners.get(ssrc) is not sender:
            sender.stats.dropped_unannounced += 1
            return
        if ssrc in self.audio_ssrcs and sender.audio_level_id is not None:
            level = get_audio_level(packet, sender.audio_level_id)
            if level is not None:
                self.speakers.audio_level(sender.id, level[1], level[0], now)
        simulcast = self.simulcast
        if ssrc in simulcast.layers:
            receivers = [e.id for e in self.endpoints.values() if e is not sender and e.connected]
            for receiver, rewritten in simulcast.forward(ssrc, packet, receivers, now):
                self._send_rtp(self.endpoints[receiver], rewritten)
            return
        if ssrc in simulcast.rtx:
            return  # receivers of a simulcast source get retransmissions from the bridge
        send = self.send
        for receiver in self.endpoints.values():
            if receiver is sender or receiver.srtp is None or receiver.ice.selected is None:
                continue
            protected = receiver.protect(packet)
            if protected is not None:
                send(protected, receiver.ice.selected)
                receiver.stats.packets_out += 1
                receiver.stats.bytes_out += len(protected)

    def dominant_speaker_changed(self, now: float) -> str | None:
        """The new dominant speaker, when it changes (told to everyone on the bridge channel)."""
        speaker = self.speakers.poll(now)
        if speaker is not None:
            frame = dominant_speaker(speaker, self.speakers.previous_speakers())
            for endpoint in self.endpoints.values():
                if endpoint.channel_send is not None:
                    endpoint.channel_send(frame)
        return speaker

    def _send_rtp(self, receiver: Endpoint, packet: bytes) -> None:
        protected = receiver.protect(packet)
        if protected is not None and receiver.ice.selected is not None:
            self.send(protected, receiver.ice.selected)
            receiver.stats.packets_out += 1
            receiver.stats.bytes_out += len(protected)

    def _request_keyframe(self, owner: str, rtcp: bytes) -> None:
        endpoint = self.endpoints.get(owner)
        if endpoint is not None and endpoint.connected:
            try:
                self.send(endpoint.srtp.protect_rtcp(rtcp), endpoint.ice.selected)
            except SrtpError:
                pass

    def _simulcast_feedback(self, sender: Endpoint, packet: bytes, now: float) -> bool:
        """Handle a receiver's feedback about projected sources; True if it was only that."""
        primaries = self.simulcast.primaries
        try:
            packets = parse_compound(packet)
        except ValueError:
            return False
        handled = False
        for rtcp in packets:
            about = ([ssrc for ssrc, _ in rtcp.entries] if isinstance(rtcp, Fir)
                     else [rtcp.media_ssrc] if isinstance(rtcp, Pli | Nack) else [])
            if any(ssrc in primaries for ssrc in about):
                handled = True
                for resent in self.simulcast.feedback(sender.id, rtcp, now):
                    self._send_rtp(sender, resent)
        return handled

    def rtcp_received(self, sender: Endpoint, packet: bytes, now: float) -> None:
        """Route feedback to the sender of the media it is about; sender reports to everyone."""
        if self.simulcast.primaries and self._simulcast_feedback(sender, packet, now):
            return
        target = self._feedback_target(packet)
        if target is not None:
            receivers = [target] if target is not sender else []
        elif _packet_types(packet) & {RTCP_SR}:
            receivers = [e for e in self.endpoints.values() if e is not sender]
        else:
            return
        for receiver in receivers:
            if receiver.srtp is None or receiver.ice.selected is None:
                continue
            try:
                protected = receiver.srtp.protect_rtcp(packet)
            except SrtpError:
                continue
            self.send(protected, receiver.ice.selected)

    def _feedback_target(self, packet: bytes) -> Endpoint | None:
        offset = 0
        while offset + 12 <= len(packet):
            packet_type = packet[offset + 1]
            length = (int.from_bytes(packet[offset + 2:offset + 4], "big") + 1) * 4
            if packet_type in (RTCP_RTPFB, RTCP_PSFB):
                media_ssrc = int.from_bytes(packet[offset + 8:offset + 12], "big")
                owner = self.owners.get(media_ssrc)
                if owner is not None:
                    return owner
            offset += length
        return None


def _packet_types(packet: bytes) -> set[int]:
    types = set()
    offset = 0
    while offset + 4 <= len(packet):
        types.add(packet[offset + 1])
        offset += (int.from_bytes(packet[offset + 2:offset + 4], "big") + 1) * 4
    return types
