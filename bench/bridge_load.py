"""The load generator of bench/bridge.py: endpoints that connect and send video-like RTP.

Run by bench/bridge.py as ``python bench/bridge_load.py SPEC.json`` in a process of its own.
Every endpoint has its own UDP socket. In ``srtp`` mode an endpoint completes real ICE (it
answers the bridge's checks, as a controlled agent) and a DTLS client handshake with the
bridge, using the project's sans-IO cores (vw.stun, vw.rtp.dtls, vw.rtp.srtp); in ``plain``
mode it just joins a room of the plain relay (bench/bridge_relay.py). Then, on ``go``, every
sender sends RTP at a fixed rate for a fixed time, each packet carrying its send time, and
every endpoint counts and times what it receives.

Protocol on stdio, one JSON object a line: ``{"event": "ready", ...}`` once every endpoint is
connected; then it waits for a line ``go`` on stdin; ``{"event": "done", ...}`` with the
figures once sending has stopped and the sockets are drained. Every loop is bounded in time.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import socket
import struct
import sys
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from vw.rtp.certificate import DtlsCertificate
from vw.rtp.dtls import DtlsSession
from vw.rtp.srtp import SrtpContext, SrtpError
from vw.stun import (
    IceControlled,
    Message,
    MessageClass,
    Method,
    Priority,
    StunError,
    UseCandidate,
    Username,
    XorMappedAddress,
    check_integrity,
    short_term_key,
)

VIDEO_PT = 100
#: Video frames per second: the RTP timestamp (90 kHz) advances once a frame.
FPS = 30
#: Seconds between rounds of the send loop (each sender catches up with its schedule).
SEND_TICK = 0.002
#: Datagrams read from one socket per wake-up, at most.
READ_BATCH = 64
#: Socket buffers asked for (Linux caps them at net.core.rmem_max/wmem_max).
SOCKET_BUFFER = 4 * 1024 * 1024
#: RTP header (12 bytes) followed by the send time in nanoseconds (perf_counter_ns).
HEADER = struct.Struct("!BBHIIQ")
#: The priority this side claims for its peer-reflexive candidate.
PRIORITY = 1853824767


@dataclass
class Counters:
    """What one endpoint saw."""

    sent: int = 0
    send_failed: int = 0
    received: int = 0
    srtp_failed: int = 0
    other: int = 0
    delays: array = field(default_factory=lambda: array("q"))


class Endpoint:
    """One participant: a UDP socket, ICE and DTLS towards the bridge, SRTP, counters."""

    def __init__(self, spec: dict[str, Any], server: tuple[str, int], mode: str,
                 certificate: DtlsCertificate | None, bridge_fingerprint: str,
                 payload: int) -> None:
        self.id: str = spec["id"]
        self.conference: str = spec["conference"]
        self.ssrc: int | None = spec.get("ssrc")
        self.mode = mode
        self.server = server
        self.certificate = certificate
        self.bridge_fingerprint = bridge_fingerprint
        self.ufrag: str = spec.get("ufrag", "")
        self.local_key = short_term_key(spec.get("pwd", ""))
        self.bridge_ufrag: str = spec.get("bridge_ufrag", "")
        self.bridge_key = short_term_key(spec.get("bridge_pwd", ""))
        self.tie_breaker = secrets.randbits(64)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            self.sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.connect(server)
        self.sock.setblocking(False)
        self.dtls: DtlsSession | None = None
        self.srtp: SrtpContext | None = None
        self.nominated = False
        self.connected = False
        self.counters = Counters()
        self.seq = secrets.randbits(16)
        self.padding = os.urandom(payload - 8)
        self.per_frame = 1

    # -- receiving -------------------------------------------------------------------------

    def readable(self) -> None:
        """Drain up to READ_BATCH datagrams: media on the fast path, the rest to control."""
        recv = self.sock.recv
        counters = self.counters
        srtp = self.srtp
        for _ in range(READ_BATCH):
            try:
                data = recv(2048)
            except BlockingIOError:
                return
            except OSError:  # ICMP errors surfacing on a connected socket
                counters.other += 1
                continue
            now = time.perf_counter_ns()
            if data and 128 <= data[0] <= 191 and not 192 <= data[1] <= 223:
                if srtp is not None:
                    try:
                        data = srtp.unprotect(data)
                    except SrtpError:
                        counters.srtp_failed += 1
                        continue
                elif self.mode == "srtp":
                    counters.other += 1
                    continue
                counters.received += 1
                counters.delays.append(now - int.from_bytes(data[12:20], "big"))
            else:
                self.control(data)
                srtp = self.srtp

    def control(self, data: bytes) -> None:
        """STUN, DTLS, or the relay's join answer."""
        now = time.monotonic()
        if self.mode == "plain":
            if data == b"joined":
                self.connected = True
            else:
                self.counters.other += 1
            return
        if data and data[0] <= 3:
            self.stun(data, now)
        elif data and 20 <= data[0] <= 63 and self.dtls is not None:
            self.send_all(self.dtls.datagram_received(data, now))
            self.check_dtls()
        else:
            self.counters.other += 1

    def stun(self, data: bytes, now: float) -> None:
        """Answer the bridge's checks (it nominates with USE-CANDIDATE), then start DTLS."""
        try:
            message = Message.parse(data)
        except StunError:
            self.counters.other += 1
            return
        if message.message_class != MessageClass.REQUEST:
            return  # the answer to our own check: nothing more to learn from it
        if message.method != Method.BINDING or not check_integrity(data, self.local_key):
            self.counters.other += 1
            return
        answer = message.success_response(XorMappedAddress(*self.server))
        self.send(answer.bytes(self.local_key, fingerprint=True))
        if message.get(UseCandidate) is not None and not self.nominated:
            self.nominated = True
            if self.dtls is None and self.certificate is not None:
                self.dtls = DtlsSession(self.certificate, "client",
                                        [("sha-256", self.bridge_fingerprint)])
                self.send_all(self.dtls.start(now))

    def check_dtls(self) -> None:
        dtls = self.dtls
        if self.srtp is None and dtls is not None and dtls.state == "connected":
            self.srtp = dtls.srtp_keys().context()
            self.connected = True
        elif dtls is not None and dtls.state in ("failed", "closed"):
            raise RuntimeError(f"{self.id}: DTLS {dtls.state}: {dtls.failure}")

    # -- sending ---------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except OSError:
            self.counters.send_failed += 1

    def send_all(self, datagrams: list[bytes]) -> None:
        for datagram in datagrams:
            self.send(datagram)

    def binding_request(self) -> bytes:
        """Our check towards the bridge (controlled side, no nomination)."""
        request = Message(Method.BINDING, MessageClass.REQUEST, attributes=[
            Username(f"{self.bridge_ufrag}:{self.ufrag}"), Priority(PRIORITY),
            IceControlled(self.tie_breaker)])
        return request.bytes(self.bridge_key, fingerprint=True)

    async def connect(self, timeout: float) -> float:
        """ICE and DTLS (or the relay's join) within ``timeout`` seconds; returns seconds taken."""
        started = time.monotonic()
        deadline = started + timeout
        next_check = started
        while not self.connected:
            now = time.monotonic()
            if now > deadline:
                state = self.dtls.state if self.dtls else "not started"
                raise TimeoutError(f"{self.id}: not connected after {timeout}s "
                                   f"(nominated={self.nominated}, dtls={state})")
            if now >= next_check and not self.nominated:
                next_check = now + 0.2
                self.send(self.binding_request() if self.mode == "srtp"
                          else b"join " + self.conference.encode())
            if self.dtls is not None:
                deadline_dtls = self.dtls.timeout()
                if deadline_dtls is not None and deadline_dtls <= now:
                    self.send_all(self.dtls.handle_timeout(now))
                    self.check_dtls()
            await asyncio.sleep(0.02)
        return time.monotonic() - started

    def send_media(self, count: int) -> None:
        """``count`` RTP packets (SRTP-protected when keyed), each stamped with its send time."""
        sock_send = self.sock.send
        counters = self.counters
        srtp = self.srtp
        ssrc = self.ssrc or 0
        per_frame = self.per_frame
        padding = self.padding
        for _ in range(count):
            index = counters.sent + counters.send_failed
            frame, position = divmod(index, per_frame)
            marker = 0x80 if position == per_frame - 1 else 0
            packet = HEADER.pack(0x80, marker | VIDEO_PT, (self.seq + index) & 0xFFFF,
                                 (frame * 90000 // FPS) & 0xFFFFFFFF, ssrc,
                                 time.perf_counter_ns()) + padding
            if srtp is not None:
                packet = srtp.protect(packet)
            try:
                sock_send(packet)
                counters.sent += 1
            except OSError:
                counters.send_failed += 1


def load_certificate(spec: dict[str, str]) -> DtlsCertificate:
    key = serialization.load_pem_private_key(Path(spec["key"]).read_bytes(), None)
    certificate = x509.load_pem_x509_certificate(Path(spec["cert"]).read_bytes())
    return DtlsCertificate(key, certificate)  # type: ignore[arg-type]


def emit(event: str, **values: Any) -> None:
    print(json.dumps({"event": event, **values}), flush=True)


def percentile(ordered: list[int], fraction: float) -> float:
    """The value below which ``fraction`` of the (sorted) samples lie, in microseconds."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000


async def send_loop(senders: list[Endpoint], rate: float, duration: float) -> float:
    """Every sender keeps to ``rate`` packets per second for ``duration`` seconds."""
    start = time.perf_counter()
    end = start + duration
    most = max(1, int(rate * 0.05))  # a stalled loop catches up by at most 50 ms per round
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        due = min(int((now - start) * rate) + 1, int(rate * duration))
        for sender in senders:
            behind = due - sender.counters.sent - sender.counters.send_failed
            if behind > 0:
                sender.send_media(min(behind, most))
        await asyncio.sleep(SEND_TICK)
    return time.perf_counter() - start


async def run(spec: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    mode = spec["mode"]
    server = (spec["server"][0], int(spec["server"][1]))
    certificate = load_certificate(spec["certificate"]) if mode == "srtp" else None
    endpoints = [Endpoint(e, server, mode, certificate, spec.get("bridge_fingerprint", ""),
                          spec["payload"]) for e in spec["endpoints"]]
    rate, duration = float(spec["rate"]), float(spec["duration"])
    for endpoint in endpoints:
        endpoint.per_frame = max(1, round(rate / FPS))
        loop.add_reader(endpoint.sock.fileno(), endpoint.readable)
    setup_started = time.monotonic()
    limit = asyncio.Semaphore(8)

    async def connect(endpoint: Endpoint) -> float:
        async with limit:
            return await endpoint.connect(spec.get("connect_timeout", 15))

    times = await asyncio.gather(*(connect(e) for e in endpoints))
    profiles = sorted({e.dtls.srtp_profile or "" for e in endpoints if e.dtls is not None})
    emit("ready", endpoints=len(endpoints), setup_s=time.monotonic() - setup_started,
         slowest_connect_s=max(times), srtp_profiles=profiles)
    line = await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline),
                                  spec.get("go_timeout", 60))
    if line.strip() != "go":
        raise RuntimeError(f"expected 'go', got {line!r}")
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    senders = [e for e in endpoints if e.ssrc is not None]
    sending_s = await send_loop(senders, rate, duration)
    await asyncio.sleep(spec.get("drain", 0.5))
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    for endpoint in endpoints:
        loop.remove_reader(endpoint.sock.fileno())
    members: dict[str, int] = {}
    for endpoint in endpoints:
        members[endpoint.conference] = members.get(endpoint.conference, 0) + 1
    expected = sum(s.counters.sent * (members[s.conference] - 1) for s in senders)
    delays = sorted(d for e in endpoints for d in e.counters.delays)
    received = sum(e.counters.received for e in endpoints)
    emit("done", mode=mode, sending_s=sending_s,
         packets_sent=sum(s.counters.sent for s in senders),
         send_failed=sum(s.counters.send_failed for s in senders),
         expected=expected, received=received,
         loss=(1 - received / expected) if expected else float("nan"),
         srtp_failed=sum(e.counters.srtp_failed for e in endpoints),
         other=sum(e.counters.other for e in endpoints),
         delay_us={"p50": percentile(delays, 0.5), "p90": percentile(delays, 0.9),
                   "p99": percentile(delays, 0.99), "max": percentile(delays, 1.0)},
         load_cpu_s=(usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime))
    for endpoint in endpoints:
        endpoint.sock.close()


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    asyncio.run(asyncio.wait_for(run(spec), spec.get("timeout", 120)))


if __name__ == "__main__":
    main()
