"""DTLS-SRTP sessions: handshakes in memory, loss, garbage, fingerprints, and independent peers."""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vw.rtp.certificate import DtlsCertificate, certificate_fingerprint
from vw.rtp.dtls import (
    DtlsError,
    DtlsSession,
    SrtpKeys,
    role_for_remote_setup,
    setup_for_role,
    split_records,
    split_srtp_keying_material,
)
from vw.rtp.srtp import AEAD_AES_128_GCM, AES128_CM_SHA1_80, PROFILES_BY_NAME, SrtpContext

FINGERPRINT = re.compile(r"^([0-9A-F]{2}:){31}[0-9A-F]{2}$")

# Drop rule: (sender role, index of the datagram in that sender's output, datagram) -> drop?
Drop = Callable[[str, int, bytes], bool]


@pytest.fixture(scope="module")
def certs() -> tuple[DtlsCertificate, DtlsCertificate]:
    return DtlsCertificate.generate(), DtlsCertificate.generate()


def sessions(
    certs: tuple[DtlsCertificate, DtlsCertificate],
    client_expects: str | None = None,
    server_expects: str | None = None,
) -> tuple[DtlsSession, DtlsSession]:
    ccert, scert = certs
    client = DtlsSession(ccert, "client", [("sha-256", client_expects or scert.fingerprint)])
    server = DtlsSession(scert, "server", [("sha-256", server_expects or ccert.fingerprint)])
    return client, server


def exchange(
    client: DtlsSession,
    server: DtlsSession,
    now: float,
    pending: list[tuple[str, bytes]] | None = None,
    drop: Drop | None = None,
    counts: dict[str, int] | None = None,
) -> dict[str, int]:
    """Deliver datagrams until both sides are quiet; returns datagrams sent per side."""
    counts = counts if counts is not None else {"client": 0, "server": 0}
    queue = list(pending) if pending is not None else [("client", d) for d in client.start(now)]
    while queue:
        sender, datagram = queue.pop(0)
        index = counts[sender]
        counts[sender] += 1
        if drop is not None and drop(sender, index, datagram):
            continue
        receiver = server if sender == "client" else client
        for out in receiver.datagram_received(datagram, now):
            queue.append((receiver.role, out))
    return counts


def rtp(seq: int, ssrc: int = 0xCAFE, payload: bytes = b"\x42" * 1100) -> bytes:
    return struct.pack("!BBHII", 0x80, 111, seq, seq * 960, ssrc) + payload


def rtcp_rr(ssrc: int = 0xCAFE) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


def assert_media_flows(a: SrtpContext, b: SrtpContext) -> None:
    for seq in (1, 2, 3):
        assert b.unprotect(a.protect(rtp(seq))) == rtp(seq)
        assert a.unprotect(b.protect(rtp(seq, ssrc=7))) == rtp(seq, ssrc=7)
    assert b.unprotect_rtcp(a.protect_rtcp(rtcp_rr())) == rtcp_rr()
    assert a.unprotect_rtcp(b.protect_rtcp(rtcp_rr(7))) == rtcp_rr(7)


# -- certificate ---------------------------------------------------------------------------


def test_certificate(certs: tuple[DtlsCertificate, DtlsCertificate]) -> None:
    a, b = certs
    assert FINGERPRINT.match(a.fingerprint)
    digest = a.certificate.fingerprint(hashes.SHA256())
    assert a.fingerprint == ":".join(f"{x:02X}" for x in digest)
    assert a.fingerprint != b.fingerprint
    assert isinstance(a.key, ec.EllipticCurvePrivateKey) and a.key.curve.name == "secp256r1"
    assert a.certificate.issuer == a.certificate.subject != b.certificate.subject
    a.certificate.verify_directly_issued_by(a.certificate)  # self-signed
    now = datetime.datetime.now(datetime.UTC)
    assert a.certificate.not_valid_before_utc < now < a.expires
    assert certificate_fingerprint(a.certificate, "SHA-1").count(":") == 19
    with pytest.raises(ValueError):
        certificate_fingerprint(a.certificate, "md5")
    assert a.create_context("server") is a.create_context("server")
    assert a.create_context("client") is not a.create_context("server")
    with pytest.raises(ValueError):
        a.create_context("both")  # type: ignore[arg-type]


def test_setup_roles() -> None:
    assert role_for_remote_setup("active") == "server"
    assert role_for_remote_setup("passive") == "client"
    assert role_for_remote_setup("ACTPASS") == "client"
    with pytest.raises(ValueError):
        role_for_remote_setup("holdconn")
    assert setup_for_role("client") == "active" and setup_for_role("server") == "passive"


def test_split_keying_material() -> None:
    """RFC 5764 §4.2: client key, server key, client salt, server salt."""
    material = bytes([1] * 16 + [2] * 16 + [3] * 12 + [4] * 12)
    client = split_srtp_keying_material(material, AEAD_AES_128_GCM, "client")
    server = split_srtp_keying_material(material, AEAD_AES_128_GCM, "server")
    assert client.local == bytes([1] * 16 + [3] * 12) == server.remote
    assert client.remote == bytes([2] * 16 + [4] * 12) == server.local
    with pytest.raises(ValueError):
        split_srtp_keying_material(material, AES128_CM_SHA1_80, "client")


# -- handshakes in memory ------------------------------------------------------------------


def test_handshake_and_srtp(certs: tuple[DtlsCertificate, DtlsCertificate]) -> None:
    client, server = sessions(certs)
    assert client.state == server.state == "new"
    now = time.time()
    hello = client.start(now)
    assert client.state == "connecting" and len(hello) == 1
    assert client.timeout() == pytest.approx(now + 1.0, abs=0.1)  # OpenSSL's first RTO
    assert server.start(now) == [] and server.state == "connecting"
    counts = exchange(client, server, now, [("client", d) for d in hello])
    assert counts == {"client": 2, "server": 2}  # two flights each way, no cookie exchange
    assert client.state == server.state == "connected"
    assert client.failure is None and server.failure is None
    assert client.srtp_profile == server.srtp_profile == "SRTP_AEAD_AES_128_GCM"
    assert client.remote_fingerprint == certs[1].fingerprint
    assert server.remote_fingerprint == certs[0].fingerprint
    assert client.timeout() is None and server.timeout() is None

    ckeys, skeys = client.srtp_keys(), server.srtp_keys()
    assert isinstance(ckeys, SrtpKeys) and ckeys.profile is AEAD_AES_128_GCM
    assert ckeys.local == skeys.remote and ckeys.remote == skeys.local
    assert ckeys.local != ckeys.remote and len(ckeys.local) == 28
    assert_media_flows(ckeys.context(), skeys.context())
    # the bridge's way of building its context
    assert_media_flows(
        SrtpContext(client.srtp_profile, ckeys.local, ckeys.remote),
        SrtpContext(server.srtp_profile, skeys.local, skeys.remote),
    )


def test_datagrams_fit_mtu(certs: tuple[DtlsCertificate, DtlsCertificate]) -> None:
    ccert, scert = certs
    client = DtlsSession(ccert, "client", [("sha-256", scert.fingerprint)], mtu=600)
    server = DtlsSession(scert, "server", [("sha-256", ccert.fingerprint)], mtu=600)
    sizes: list[int] = []
    exchange(client, server, time.time(), drop=lambda _s, _i, d: sizes.append(len(d)) or False)
    assert client.state == server.state == "connected"
    assert max(sizes) <= 600 and len(sizes) > 4
    assert all(split_records(d) for d in client.send_application_data(os.urandom(500)))


def test_application_data_and_close(certs: tuple[DtlsCertificate, DtlsCertificate]) -> None:
    client, server = sessions(certs)
    now = time.time()
    with pytest.raises(DtlsError):
        client.send_application_data(b"too early")
    exchange(client, server, now)
    for datagram in client.send_application_data(b"sctp from client"):
        assert server.datagram_received(datagram, now) == []
    for datagram in server.send_application_data(b"sctp from server"):
        client.datagram_received(datagram, now)
    assert server.receive_application_data() == [b"sctp from client"]
    assert client.receive_application_data() == [b"sctp from server"]
    assert server.receive_application_data() == []

    goodbye = client.close()
    assert client.state == "closed" and len(goodbye) == 1
    assert client.close() == []
    for datagram in goodbye:
        server.datagram_received(datagram, now)
    assert server.state == "closed" and server.failure is None
    with pytest.raises(DtlsError):
        server.srtp_keys()
    assert server.datagram_received(goodbye[0], now) == []
    assert server.handle_timeout(now + 100) == [] and server.timeout() is None


def test_misuse(certs: tuple[DtlsCertificate, DtlsCertificate]) -> None:
    client, server = sessions(certs)
    with pytest.raises(DtlsError):
        client.srtp_keys()
    with pytest.raises(ValueError):
        DtlsSession(certs[0], "actpass", [])  # type: ignore[arg-type]
    now = time.time()
    hello = client.start(now)
    assert len(hello) == 1
    assert client.start(now) == []  # already started
    assert client.handle_timeout(now) == []  # OpenSSL's timer has not run out
    # a server that is fed a ClientHello before start() starts by itself
    exchange(client, server, now, [("client", hello[0])])
    assert server.state == "connected"


# -- fingerprints --------------------------------------------------------------------------


def test_client_detects_fingerprint_mismatch(
    certs: tuple[DtlsCertificate, DtlsCertificate],
) -> None:
    wrong = DtlsCertificate.generate().fingerprint
    client, server = sessions(certs, client_expects=wrong)
    exchange(client, server, time.time())
    assert client.state == "failed" and client.failure == "fingerprint mismatch"
    # the client aborted on the server's Certificate and sent a fatal alert
    assert server.state == "failed" and "alert" in (server.failure or "")
    for session in (client, server):
        assert session.srtp_profile is None
        with pytest.raises(DtlsError):
            session.srtp_keys()
        assert session.timeout() is None


def test_server_detects_fingerprint_mismatch(
    certs: tuple[DtlsCertificate, DtlsCertificate],
) -> None:
    client, server = sessions(certs, server_expects="00:" * 31 + "00")
    exchange(client, server, time.time())
    assert server.state == "failed" and server.failure == "fingerprint mismatch"
    assert client.state == "failed"
    with pytest.raises(DtlsError):
        client.srtp_keys()


@pytest.mark.parametrize(
    "signaled",
    [
        lambda fp, _: [("SHA-256", fp.lower())],  # case-insensitive
        lambda fp, c: [("sha-1", "00:11"), ("sha-512", certificate_fingerprint(c, "sha-512"))],
        lambda fp, _: [("unknown-hash", "00"), ("sha-256", fp)],
    ],
    ids=["case", "sha-512-among-several", "unsupported-ignored"],
)
def test_fingerprint_forms_accepted(
    certs: tuple[DtlsCertificate, DtlsCertificate],
    signaled: Callable[..., list[tuple[str, str]]],
) -> None:
    ccert, scert = certs
    client = DtlsSession(ccert, "client", signaled(scert.fingerprint, scert.certificate))
    server = DtlsSession(scert, "server", [("sha-256", ccert.fingerprint)])
    exchange(client, server, time.time())
    assert client.state == server.state == "connected"


def test_no_supported_fingerprint(certs: tuple[DtlsCertificate, DtlsCertificate]) -> None:
    ccert, scert = certs
    client = DtlsSession(ccert, "client", [("md5", "00:11")])
    server = DtlsSession(scert, "server", [("sha-256", ccert.fingerprint)])
    exchange(client, server, time.time())
    assert client.state == "failed"
    assert client.failure == "no remote fingerprint with a supported algorithm"


# -- loss and retransmission ---------------------------------------------------------------


def wait_until(deadline: float) -> float:
    """Sleep until the wall clock reaches deadline (OpenSSL's timers run on it)."""
    time.sleep(max(0.0, deadline - time.time()) + 0.01)
    return time.time()


def test_lost_client_hello_retransmitted(certs: tuple[DtlsCertificate, DtlsCertificate]) -> None:
    client, server = sessions(certs)
    now = time.time()
    hello = client.start(now)
    deadline = client.timeout()
    assert deadline is not None and deadline > now
    # the ClientHello is lost; nothing is resent before the timer runs out
    assert client.handle_timeout(now) == []
    assert client.timeout() == pytest.approx(deadline, abs=0.05)
    now = wait_until(deadline)
    resent = client.handle_timeout(now)
    assert len(resent) == 1 and resent[0][0] == hello[0][0] == 22
    assert client.timeout() == pytest.approx(now + 2.0, abs=0.1)  # backed off
    exchange(client, server, now, [("client", d) for d in resent])
    assert client.state == server.state == "connected"
    assert client.srtp_keys().local == server.srtp_keys().remote


def test_lost_final_flight_recovered(certs: tuple[DtlsCertificate, DtlsCertificate]) -> None:
    """The server's CCS+Finished is lost: the client resends, the connected server answers."""
    client, server = sessions(certs)
    now = time.time()
    counts = exchange(client, server, now, drop=lambda sender, i, _d: (sender, i) == ("server", 1))
    assert server.state == "connected" and client.state == "connecting"
    deadline = client.timeout()
    assert deadline is not None
    now = wait_until(deadline)
    resent = client.handle_timeout(now)
    assert resent
    exchange(client, server, now, [("client", d) for d in resent], counts=counts)
    assert client.state == "connected"
    assert client.srtp_keys().local == server.srtp_keys().remote
    assert client.timeout() is None


# -- garbage ---------------------------------------------------------------------------------


def record(content_type: int, epoch: int, body: bytes) -> bytes:
    header = struct.pack("!BHH6sH", content_type, 0xFEFD, epoch, os.urandom(6), len(body))
    return header + body


NOT_DTLS = [
    b"",
    b"\x16",
    os.urandom(200),
    b"\x16\xfe\xfd" + bytes(10),  # header without its body... of length 0: the next one lies
    record(22, 0, bytes(40))[:-1],  # truncated record
    record(22, 0, bytes(20)).replace(b"\xfe\xfd", b"\x03\x03", 1),  # TLS, not DTLS
    record(24, 0, bytes(20)),  # heartbeat: not a content type we take
    record(22, 0, bytes(20)) + b"\x00",  # trailing byte
]


def test_garbage_is_ignored(certs: tuple[DtlsCertificate, DtlsCertificate]) -> None:
    """Datagrams that are not DTLS records are dropped and counted, at any stage."""
    client, server = sessions(certs)
    now = time.time()
    junk = NOT_DTLS[:3] + NOT_DTLS[4:]  # NOT_DTLS[3] is a well-formed empty record
    for datagram in junk:
        assert server.datagram_received(datagram, now) == []
    assert server.ignored_datagrams == len(junk)

    def drop_and_inject(sender: str, _index: int, _datagram: bytes) -> bool:
        target = server if sender == "client" else client
        for datagram in junk:
            assert target.datagram_received(datagram, now) == []
        return False

    exchange(client, server, now, drop=drop_and_inject)
    assert client.state == server.state == "connected"
    # authenticated-epoch records that do not decrypt are silently dropped too
    for datagram in junk + [record(23, 1, os.urandom(64)), record(22, 1, os.urandom(64))]:
        assert client.datagram_received(datagram, now) == []
    assert client.state == "connected"
    assert_media_flows(client.srtp_keys().context(), server.srtp_keys().context())


def test_malformed_handshake_record_fails_handshake(
    certs: tuple[DtlsCertificate, DtlsCertificate],
) -> None:
    """A well-framed epoch-0 record that OpenSSL finds fatal ends the handshake (no raise)."""
    client, server = sessions(certs)
    now = time.time()
    out = server.datagram_received(record(22, 0, os.urandom(60)), now)
    assert server.state == "failed" and server.failure and "handshake failed" in server.failure
    assert out and out[0][0] == 21  # a fatal alert back
    client.start(now)
    assert client.datagram_received(record(21, 0, b"\x02\x28"), now) == []
    assert client.state == "failed" and "handshake failure" in (client.failure or "")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stage=st.sampled_from(["new", "handshaking", "connected"]),
    datagrams=st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.builds(
                record,
                st.integers(20, 23),
                st.integers(0, 2),
                st.binary(max_size=200),
            ),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_fuzz_never_raises(
    certs: tuple[DtlsCertificate, DtlsCertificate], stage: str, datagrams: list[bytes]
) -> None:
    client, server = sessions(certs)
    now = time.time()
    if stage == "handshaking":
        server.datagram_received(client.start(now)[0], now)
    elif stage == "connected":
        exchange(client, server, now)
    for datagram in datagrams:
        for out in server.datagram_received(datagram, now):
            assert split_records(out)
        server.handle_timeout(now)
    assert server.state in ("connecting", "connected", "failed", "closed")
    assert (server.state == "failed") == (server.failure is not None)
    if server.state == "connected":
        assert server.srtp_keys()


# -- independent peers: aiortc -------------------------------------------------------------


class FakeIceTransport:
    """What aiortc's RTCDtlsTransport needs from an RTCIceTransport: role, _send, _recv."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()  # to aiortc
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()  # from aiortc

    async def _send(self, data: bytes) -> None:
        await self.outbox.put(data)

    async def _recv(self) -> bytes:
        return await self.inbox.get()


async def _aiortc_peer(our_role: str, their_profiles: list[str]) -> None:
    aiortc_dtls = pytest.importorskip("aiortc.rtcdtlstransport")

    ice = FakeIceTransport("controlling" if our_role == "client" else "controlled")
    their_cert = aiortc_dtls.RTCCertificate.generateCertificate()
    theirs = aiortc_dtls.RTCDtlsTransport(ice, [their_cert])
    theirs._srtp_profiles = [
        p for p in aiortc_dtls.SRTP_PROFILES if p.openssl_profile.decode() in their_profiles
    ]
    received: list[bytes] = []

    class Receiver:
        async def _handle_data(self, data: bytes) -> None:
            received.append(data)

    theirs._register_data_receiver(Receiver())

    our_cert = DtlsCertificate.generate()
    ours = DtlsSession(
        our_cert, our_role, [(f.algorithm, f.value) for f in their_cert.getFingerprints()]
    )
    params = aiortc_dtls.RTCDtlsParameters(
        fingerprints=[aiortc_dtls.RTCDtlsFingerprint("sha-256", our_cert.fingerprint)]
    )
    handshake = asyncio.ensure_future(theirs.start(params))
    for datagram in ours.start(time.time()):
        ice.inbox.put_nowait(datagram)
    async with asyncio.timeout(10):
        while not handshake.done() or ours.state == "connecting":
            try:
                data = await asyncio.wait_for(ice.outbox.get(), 0.02)
            except TimeoutError:
                deadline = ours.timeout()
                due = deadline is not None and time.time() >= deadline
                out = ours.handle_timeout(time.time()) if due else []
            else:
                out = ours.datagram_received(data, time.time())
            for datagram in out:
                ice.inbox.put_nowait(datagram)
    await handshake
    try:
        assert theirs.state == "connected", theirs.state
        assert ours.state == "connected", ours.failure
        assert ours.srtp_profile == their_profiles[0]
        ctx = ours.srtp_keys().context()
        # aiortc's SRTP sessions were keyed from its own export_keying_material
        for seq in range(1, 4):
            assert ctx.unprotect(theirs._tx_srtp.protect(rtp(seq))) == rtp(seq)
            assert theirs._rx_srtp.unprotect(ctx.protect(rtp(seq, 9))) == rtp(seq, 9)
        assert ctx.unprotect_rtcp(theirs._tx_srtp.protect_rtcp(rtcp_rr())) == rtcp_rr()
        assert theirs._rx_srtp.unprotect_rtcp(ctx.protect_rtcp(rtcp_rr(9))) == rtcp_rr(9)
        # application data both ways
        await theirs._send_data(b"from aiortc")
        ours.datagram_received(await ice.outbox.get(), time.time())
        assert ours.receive_application_data() == [b"from aiortc"]
        for datagram in ours.send_application_data(b"from vw"):
            ice.inbox.put_nowait(datagram)
        # and close_notify
        for datagram in ours.close():
            ice.inbox.put_nowait(datagram)
        async with asyncio.timeout(5):
            while theirs.state != "closed":
                await asyncio.sleep(0.005)
        assert received == [b"from vw"]
    finally:
        await theirs.stop()


@pytest.mark.parametrize("our_role", ["client", "server"])
@pytest.mark.parametrize(
    "their_profiles",
    [["SRTP_AEAD_AES_128_GCM", "SRTP_AES128_CM_SHA1_80"], ["SRTP_AES128_CM_SHA1_80"]],
    ids=["gcm", "sha1_80"],
)
def test_interop_aiortc(our_role: str, their_profiles: list[str]) -> None:
    asyncio.run(_aiortc_peer(our_role, their_profiles))


# -- independent peers: the openssl command line tool (another OpenSSL build) -------------

openssl_cli = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")


def _write_pem(cert: DtlsCertificate, directory: Path) -> tuple[str, str]:
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        cert.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def _run_udp(
    session: DtlsSession,
    sock: socket.socket,
    peer: tuple[str, int] | None,
    first: list[bytes],
    process: subprocess.Popen[bytes],
) -> tuple[str, int]:
    """Drive a session over a UDP socket until it leaves "connecting"; returns the peer."""
    for datagram in first:
        sock.sendto(datagram, peer)  # type: ignore[arg-type]
    end = time.monotonic() + 10
    while session.state in ("new", "connecting") and time.monotonic() < end:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            data, peer = sock.recvfrom(65536)
            out = session.datagram_received(data, time.time())
        else:
            deadline = session.timeout()
            due = deadline is not None and time.time() >= deadline
            out = session.handle_timeout(time.time()) if due else []
        for datagram in out:
            sock.sendto(datagram, peer)  # type: ignore[arg-type]
    assert peer is not None
    return peer


def _keying_material(process: subprocess.Popen[bytes], *, expect: bytes) -> bytes:
    """Stop the tool and read what it printed: its exported keying material, hex."""
    time.sleep(0.2)
    process.kill()
    output = process.communicate(timeout=5)[0].decode(errors="replace")
    assert expect.decode() in output, output
    match = re.search(r"Keying material: ([0-9A-F]+)", output)
    assert match, output
    return bytes.fromhex(match.group(1))


def _check_keys(session: DtlsSession, material: bytes) -> None:
    profile = PROFILES_BY_NAME[session.srtp_profile or ""]
    assert len(material) == 2 * profile.key_salt_length
    peer_role = "server" if session.role == "client" else "client"
    theirs = split_srtp_keying_material(material, profile, peer_role)
    ours = session.srtp_keys()
    assert ours.local == theirs.remote and ours.remote == theirs.local
    assert_media_flows(ours.context(), theirs.context())


@openssl_cli
@pytest.mark.parametrize("profile", ["SRTP_AES128_CM_SHA1_80", "SRTP_AEAD_AES_128_GCM"])
def test_interop_openssl_s_server(tmp_path: Path, profile: str) -> None:
    """We are the DTLS client; `openssl s_server -dtls1_2` (with its cookie exchange) serves."""
    server_cert, our_cert = DtlsCertificate.generate(), DtlsCertificate.generate()
    cert_path, key_path = _write_pem(server_cert, tmp_path)
    length = 2 * PROFILES_BY_NAME[profile].key_salt_length
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # s_server's -verify asks for a client certificate but tolerates self-signed ones
    process = subprocess.Popen(
        ["openssl", "s_server", "-dtls1_2", "-accept", f"127.0.0.1:{port}", "-cert", cert_path,
         "-key", key_path, "-verify", "1", "-use_srtp", profile, "-keymatexport",
         "EXTRACTOR-dtls_srtp", "-keymatexportlen", str(length)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        while b"ACCEPT" not in process.stdout.readline():
            assert process.poll() is None
        session = DtlsSession(our_cert, "client", [("sha-256", server_cert.fingerprint)])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            peer = ("127.0.0.1", port)
            _run_udp(session, sock, peer, session.start(time.time()), process)
            assert session.state == "connected", session.failure
            assert session.srtp_profile == profile
            for datagram in session.send_application_data(b"hello from vw\n"):
                sock.sendto(datagram, peer)
            material = _keying_material(process, expect=b"hello from vw")
    finally:
        process.kill()
        process.wait()
    _check_keys(session, material)


@openssl_cli
def test_interop_openssl_s_client(tmp_path: Path) -> None:
    """We are the DTLS server; `openssl s_client -dtls1_2` connects with its own certificate."""
    client_cert, our_cert = DtlsCertificate.generate(), DtlsCertificate.generate()
    cert_path, key_path = _write_pem(client_cert, tmp_path)
    session = DtlsSession(our_cert, "server", [("sha-256", client_cert.fingerprint)])
    session.start(time.time())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        process = subprocess.Popen(
            ["openssl", "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{port}", "-cert",
             cert_path, "-key", key_path, "-use_srtp",
             "SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80", "-keymatexport",
             "EXTRACTOR-dtls_srtp", "-keymatexportlen", "56"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            peer = _run_udp(session, sock, None, [], process)
            assert session.state == "connected", session.failure
            assert session.srtp_profile == "SRTP_AEAD_AES_128_GCM"
            for datagram in session.send_application_data(b"hello from the bridge\n"):
                sock.sendto(datagram, peer)
            material = _keying_material(process, expect=b"hello from the bridge")
        finally:
            process.kill()
            process.wait()
    _check_keys(session, material)
