"""An in-memory client endpoint that completes ICE and DTLS with a sans-IO Bridge."""

from __future__ import annotations

import secrets

from vw.bridge import colibri2
from vw.bridge.allocation import Allocations
from vw.bridge.bridge import Bridge
from vw.bridge.ice import Address
from vw.rtp.certificate import DtlsCertificate
from vw.rtp.dtls import DtlsSession
from vw.rtp.srtp import SrtpContext
from vw.stun import (
    IceControlled,
    Message,
    MessageClass,
    Method,
    Username,
    XorMappedAddress,
    check_integrity,
    short_term_key,
)

BRIDGE_ADDRESS: Address = ("127.0.0.1", 10000)


class Network:
    """Datagrams the bridge sent, by destination."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Address]] = []
        #: The endpoints' addresses, as the transport reports them to the media port.
        self.paths: set[Address] = set()

    def send(self, data: bytes, address: Address) -> None:
        self.sent.append((data, address))

    def path_changed(self, old: Address | None, new: Address | None) -> None:
        if old is not None:
            self.paths.remove(old)
        if new is not None:
            assert new not in self.paths
            self.paths.add(new)

    def take(self, address: Address) -> list[bytes]:
        mine = [d for d, a in self.sent if a == address]
        self.sent = [(d, a) for d, a in self.sent if a != address]
        return mine


def make_bridge(network: Network, clock: list[float]) -> Bridge:
    return Bridge("b1", DtlsCertificate.generate(), network.send, [BRIDGE_ADDRESS],
                  "ws://127.0.0.1:9090", lambda: clock[0], path_changed=network.path_changed)


class FakeClient:
    """A client endpoint: its own ICE credentials, a DTLS client, an SRTP context."""

    def __init__(self, bridge: Bridge, network: Network, meeting: str, endpoint_id: str,
                 port: int, ssrcs: list[int],
                 groups: list[tuple[str, list[int]]] = ()) -> None:
        self.bridge = bridge
        self.network = network
        self.address: Address = ("127.0.0.1", port)
        self.ufrag = secrets.token_hex(4)
        self.pwd = secrets.token_hex(12)
        self.certificate = DtlsCertificate.generate()
        self.dtls = DtlsSession(self.certificate, "client",
                                [("sha-256", self.certificate.fingerprint)])
        self.srtp: SrtpContext | None = None
        self.received_rtcp: list[bytes] = []
        allocations = Allocations(bridge)
        create = meeting not in bridge.conferences
        answer = allocations.modify(colibri2.ConferenceModify(
            meeting_id=meeting, create=create, endpoints=[colibri2.Endpoint(
                id=endpoint_id, create=True,
                transport=colibri2.Transport(ice_controlling=True))]))
        ice = answer.endpoint(endpoint_id).transport.ice_udp
        self.remote_ufrag, self.remote_pwd = ice.ufrag, ice.pwd
        self.remote_fingerprint = ice.fingerprint.value
        self.dtls.remote_fingerprints = [("sha-256", self.remote_fingerprint)]
        fingerprint = colibri2.Fingerprint(hash="sha-256", setup="active",
                                           value=self.certificate.fingerprint)
        sources = [colibri2.MediaSource(type="video", id=f"{endpoint_id}-v0",
                                        sources=[colibri2.Source(ssrc=s) for s in ssrcs],
                                        groups=[colibri2.SourceGroup(semantics, members)
                                                for semantics, members in groups])]
        allocations.modify(colibri2.ConferenceModify(meeting_id=meeting, endpoints=[
            colibri2.Endpoint(id=endpoint_id, sources=sources, transport=colibri2.Transport(
                ice_udp=colibri2.IceUdpTransport(ufrag=self.ufrag, pwd=self.pwd,
                                                 fingerprints=[fingerprint])))]))

    def deliver(self, data: bytes, now: float) -> None:
        self.bridge.transport.datagram_received(data, self.address, now)

    def check(self, now: float) -> None:
        """Our Binding request, then answers to the bridge's checks."""
        request = Message(Method.BINDING, MessageClass.REQUEST, attributes=[
            Username(f"{self.remote_ufrag}:{self.ufrag}"), IceControlled(1)])
        self.deliver(request.bytes(short_term_key(self.remote_pwd), fingerprint=True), now)
        for data in self.network.take(self.address):
            message = Message.parse(data)
            if message.message_class == MessageClass.REQUEST:
                assert check_integrity(data, short_term_key(self.pwd))
                reply = message.success_response(XorMappedAddress(*BRIDGE_ADDRESS))
                self.deliver(reply.bytes(short_term_key(self.pwd), fingerprint=True), now)

    def connect(self, now: float) -> None:
        self.check(now)
        pending = self.dtls.start(now)
        for _ in range(10):
            for data in pending:
                self.deliver(data, now)
            pending = []
            for data in self.network.take(self.address):
                if 20 <= data[0] <= 63:
                    pending += self.dtls.datagram_received(data, now)
            if self.dtls.state == "connected" and not pending:
                break
        assert self.dtls.state == "connected", self.dtls.failure
        self.srtp = self.dtls.srtp_keys().context()

    def received_media(self) -> list[bytes]:
        """Decrypted RTP the bridge sent us (RTCP is kept in ``received_rtcp``)."""
        out = []
        for data in self.network.take(self.address):
            if 128 <= data[0] <= 191 and self.srtp is not None:
                if 192 <= data[1] <= 223:
                    self.received_rtcp.append(self.srtp.unprotect_rtcp(data))
                else:
                    out.append(self.srtp.unprotect(data))
        return out


def rtp(ssrc: int, seq: int, payload: bytes = b"\x90\x80\x00" + bytes(100)) -> bytes:
    header = bytes([0x80, 100]) + seq.to_bytes(2, "big") + (seq * 3000).to_bytes(4, "big")
    return header + ssrc.to_bytes(4, "big") + payload


def vp8(ssrc: int, seq: int, keyframe: bool) -> bytes:
    """A one-packet VP8 frame: descriptor with S=1, then a key or delta frame header."""
    header = bytes([0x80, 0xE4]) + seq.to_bytes(2, "big") + (seq * 3000).to_bytes(4, "big")
    frame = (b"\x10\x02\x00\x9d\x01\x2a\x40\x01\xf0\x00" if keyframe
             else b"\x11\x02\x00" + bytes(7))
    return header + ssrc.to_bytes(4, "big") + b"\x10" + frame + bytes(50)
