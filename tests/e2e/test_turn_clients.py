"""vw-turn against a TURN client no one here wrote (aioice), old TLS versions, and hostile
datagrams sent over the network while a witness session keeps relaying; and, on a second
server with ``amplification_limit = 1``, no answer over UDP larger than its request."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from aioice.turn import TurnTransport, create_turn_endpoint

from tests.e2e.turn_server import SECRET, Turn, run_turn
from vw.stun import (
    TRANSPORT_UDP,
    Attribute,
    ChannelNumber,
    Data,
    ErrorCode,
    Lifetime,
    Message,
    MessageClass,
    Method,
    Nonce,
    RawAttribute,
    Realm,
    RequestedTransport,
    Software,
    Username,
    XorMappedAddress,
    XorPeerAddress,
    XorRelayedAddress,
    long_term_key,
)

#: Seconds to wait for anything on loopback (generous: the machine is shared).
WAIT = 10.0
#: Stop at once on SIGTERM rather than wait for allocations to end.
QUICK_STOP = "drain_seconds = 0"


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Turn]:
    """vw-turn with the default configuration (but loopback peers allowed)."""
    yield from run_turn(tmp_path_factory.mktemp("turn-clients"), QUICK_STOP)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Turn]:
    """vw-turn never answering over UDP with more bytes than a request without valid
    credentials had."""
    yield from run_turn(tmp_path_factory.mktemp("turn-strict"),
                        f"amplification_limit = 1.0\n{QUICK_STOP}")


def rest_credentials(user: str) -> tuple[str, str]:
    """coturn's TURN REST API: ``"<expiry>:<user>"`` and base64(HMAC-SHA1(secret, username))."""
    username = f"{int(time.time()) + 3600}:{user}"
    digest = hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


class Inbox(asyncio.DatagramProtocol):
    """Collects datagrams; ``echo`` sends each one back where it came from."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))
        if self.echo and self.transport is not None:
            self.transport.sendto(data, addr)

    async def next(self) -> tuple[bytes, tuple[str, int]]:
        return await asyncio.wait_for(self.queue.get(), WAIT)


async def open_peer(echo: bool = False) -> tuple[asyncio.DatagramTransport, Inbox]:
    """A plain UDP peer on loopback (allowed by the test server's ``allowed_peers``)."""
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(lambda: Inbox(echo),
                                               local_addr=("127.0.0.1", 0))


def client_ssl(turn: Turn) -> ssl.SSLContext:
    """Verifies the server against the generated CA (its certificate names 127.0.0.1)."""
    return ssl.create_default_context(cafile=str(turn.ca))


async def open_aioice(turn: Turn, transport: str, user: str) -> tuple[TurnTransport, Inbox]:
    """An aioice TURN allocation over ``transport`` ("udp", "tcp" or "tls")."""
    username, password = rest_credentials(user)
    port = {"udp": turn.port, "tcp": turn.tcp_port, "tls": turn.tls_port}[transport]
    return await asyncio.wait_for(create_turn_endpoint(
        Inbox, ("127.0.0.1", port), username, password,
        transport="udp" if transport == "udp" else "tcp",
        ssl=client_ssl(turn) if transport == "tls" else None), WAIT)


# --- aioice --------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_aioice_allocates_and_relays_both_ways(request: pytest.FixtureRequest,
                                               transport: str) -> None:
    turn = request.getfixturevalue("turn")

    async def scenario() -> None:
        peer_transport, peer = await open_peer()
        relay, client = await open_aioice(turn, transport, f"aioice-{transport}")
        try:
            relayed = relay.get_extra_info("sockname")
            assert relayed[0] == "127.0.0.1" and relayed[1] not in (turn.port, 0)
            peer_address = peer_transport.get_extra_info("sockname")
            for n in range(5):
                relay.sendto(b"to peer %d" % n, peer_address)
                assert await peer.next() == (b"to peer %d" % n, relayed)
                peer_transport.sendto(b"to client %d" % n, relayed)
                assert await client.next() == (b"to client %d" % n, peer_address)
        finally:
            relay.close()
            peer_transport.close()
            await asyncio.sleep(0.1)  # let the Refresh(0) go out

    asyncio.run(scenario())


def test_aioice_with_a_wrong_password_gets_no_allocation(turn: Turn) -> None:
    async def scenario() -> None:
        username, _ = rest_credentials("mallory")
        with pytest.raises(Exception) as caught:
            await asyncio.wait_for(create_turn_endpoint(
                Inbox, ("127.0.0.1", turn.tcp_port), username, "not the password",
                transport="tcp"), WAIT)
        assert "401" in str(caught.value), repr(caught.value)

    asyncio.run(scenario())


# --- TLS versions --------------------------------------------------------------------------

VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


def python_handshake(port: int, version: str) -> str | None:
    """The version a Python client limited to ``version`` (ciphers at SECLEVEL 0, so that
    TLS 1.0 and 1.1 are not refused on the client's side) negotiates, or None."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = VERSIONS[version]
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                return tls.version()
        except (ssl.SSLError, ConnectionError):
            return None


def openssl_handshake(port: int, version: str) -> str | None:
    """The same with ``openssl s_client``."""
    option = {"TLSv1": "-tls1", "TLSv1.1": "-tls1_1", "TLSv1.2": "-tls1_2",
              "TLSv1.3": "-tls1_3"}[version]
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", option,
         "-cipher", "DEFAULT:@SECLEVEL=0"], stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=WAIT * 3)
    # "Protocol : TLSv1.1" in the session (not printed for TLS 1.3 without a ticket yet);
    # "New, TLSv1.3, Cipher is ..." names the cipher's version, right only for TLS 1.3.
    protocol = re.search(r"^\s*Protocol\s*: (TLSv[0-9.]+)", result.stdout, re.M)
    new = re.search(r"^New, (TLSv1\.3), Cipher is (?!\(NONE\))", result.stdout, re.M)
    negotiated = protocol or new
    if result.returncode != 0 or negotiated is None:
        return None
    return {"TLSv1.0": "TLSv1"}.get(negotiated.group(1), negotiated.group(1))


HANDSHAKES = {"python": python_handshake, "openssl": openssl_handshake}


def permissive_server(material: Path, key: Path) -> tuple[socket.socket, threading.Thread]:
    """A TLS server that accepts anything from TLS 1.0 up, for one connection: proof that the
    clients above really offer the old versions."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.load_cert_chain(material, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT * 3)

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        connection.settimeout(WAIT)
        try:
            with context.wrap_socket(connection, server_side=True) as tls:
                tls.recv(1)
        except OSError:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("client", HANDSHAKES)
@pytest.mark.parametrize("version", VERSIONS)
def test_tls_below_1_2_is_refused(turn: Turn, client: str, version: str) -> None:
    if client == "openssl" and shutil.which("openssl") is None:
        pytest.skip("the openssl command is missing")
    handshake = HANDSHAKES[client]
    tls = turn.directory / "var" / "tls"
    listener, thread = permissive_server(tls / "server.pem", tls / "server.key")
    try:
        control = handshake(listener.getsockname()[1], version)
    finally:
        thread.join(WAIT * 3)
        listener.close()
    assert control == version, f"the {client} client cannot speak {version} at all"
    negotiated = handshake(turn.tls_port, version)
    if version in ("TLSv1", "TLSv1.1"):
        assert negotiated is None
    else:
        assert negotiated == version
    assert turn.process.poll() is None


# --- hostile datagrams while a witness relays ----------------------------------------------


class StunClient:
    """A blocking STUN/TURN client on its own UDP socket, with REST credentials."""

    def __init__(self, turn: Turn, user: str = "attacker") -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.connect(("127.0.0.1", turn.port))
        self.socket.settimeout(WAIT)
        self.username, password = rest_credentials(user)
        self.password = password
        self.realm = ""
        self.nonce = ""

    def close(self) -> None:
        self.socket.close()

    def ask(self, request: Message, key: bytes | None = None) -> Message:
        """Send a request; the response with its transaction id."""
        self.socket.send(request.bytes(key))
        while True:
            reply = Message.parse(self.socket.recv(70000))
            if reply.transaction_id == request.transaction_id:
                return reply

    def signed(self, method: int, *attributes: Attribute) -> Message:
        """A request with long-term credentials, challenged first if need be (that request
        padded with SOFTWARE, so that the 401 is not larger and comes back over UDP)."""
        if not self.nonce:
            challenge = self.ask(Message(method, MessageClass.REQUEST,
                                         attributes=[*attributes, Software("x" * 120)]))
            assert code(challenge) == 401
            self.realm = challenge.get(Realm).value  # type: ignore[union-attr]
            self.nonce = challenge.get(Nonce).value  # type: ignore[union-attr]
        key = long_term_key(self.username, self.realm, self.password)
        message = Message(method, MessageClass.REQUEST, attributes=[
            *attributes, Username(self.username), Realm(self.realm), Nonce(self.nonce)])
        return self.ask(message, key)


def code(reply: Message) -> int | None:
    error = reply.get(ErrorCode)
    return None if error is None else error.code


def hostile_datagrams() -> list[bytes]:
    """Garbage, overrunning lengths and an over-long USERNAME, for the listening port."""
    rng = random.Random(8656)
    allocate = Message(Method.ALLOCATE, MessageClass.REQUEST,
                       attributes=[RequestedTransport(TRANSPORT_UDP)]).bytes()
    long_name = (str(int(time.time()) + 60) + ":" + "u" * 589).encode()
    datagrams = [rng.randbytes(rng.randint(1, 300)) for _ in range(40)]
    datagrams += [
        allocate[:2] + struct.pack("!H", 0xFFFC) + allocate[4:],  # header length past the end
        allocate[:22] + struct.pack("!H", 0xFFFF) + allocate[24:],  # attribute past the end
        struct.pack("!HH", 0x4000, 0xFFFF) + b"short",  # ChannelData past the end
        Message(Method.ALLOCATE, MessageClass.REQUEST, attributes=[
            RequestedTransport(TRANSPORT_UDP), RawAttribute(Username.type, long_name)]).bytes(),
        b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(11),  # truncated header
        b"",
    ]
    return datagrams


def network_attacks(turn: Turn, victim: tuple[str, int]) -> dict[str, object]:
    """Run the attacks (blocking); what was observed."""
    seen: dict[str, object] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        for datagram in hostile_datagrams():
            raw.sendto(datagram, ("127.0.0.1", turn.port))
    attacker = StunClient(turn)
    try:
        reply = attacker.signed(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP))
        assert code(reply) is None, reply
        seen["relay"] = reply.get(XorRelayedAddress)
        for host, port in (("169.254.169.254", 80), ("127.0.0.2", victim[1]), ("10.0.0.1", 53)):
            reply = attacker.signed(Method.CREATE_PERMISSION, XorPeerAddress(host, port))
            seen[f"permission {host}"] = code(reply)
            reply = attacker.signed(Method.CHANNEL_BIND, ChannelNumber(0x4000),
                                    XorPeerAddress(host, port))
            seen[f"channel {host}"] = code(reply)
        before = turn.metrics()
        for host, port in (("169.254.169.254", 80), ("127.0.0.2", victim[1])):
            for _ in range(5):
                send = Message(Method.SEND, MessageClass.INDICATION, attributes=[
                    XorPeerAddress(host, port), Data(b"GET /latest/meta-data/ HTTP/1.0\r\n\r\n")])
                attacker.socket.send(send.bytes())
        # A Binding round trip on the same socket: the Sends before it have been handled.
        attacker.ask(Message(Method.BINDING, MessageClass.REQUEST))
        after = turn.metrics()
        seen["dropped sends"] = after["vw_turn_dropped"] - before["vw_turn_dropped"]
        seen["malformed"] = after["vw_turn_malformed"]
    finally:
        attacker.close()
    # Streams: bytes that are neither STUN nor ChannelData (nor TLS) close the connection.
    for port, garbage in ((turn.tcp_port, b"\xff" * 64), (turn.tcp_port, b"\x80" + bytes(23)),
                          (turn.tls_port, b"\x00\x01\x00\x00" + bytes(100))):
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as stream:
            stream.sendall(garbage)
            try:
                closed = stream.recv(100) == b""
            except ConnectionResetError:
                closed = True
            seen[f"closed {port} {garbage[:2].hex()}"] = closed
    return seen


@pytest.mark.parametrize("witness_transport", ["udp", "tcp"])
def test_hostile_datagrams_leave_a_witness_relaying(request: pytest.FixtureRequest,
                                                    witness_transport: str) -> None:
    """The attacks against a server with an aioice witness relaying over UDP or TCP."""
    turn = request.getfixturevalue("turn")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        peer_transport, _ = await open_peer(echo=True)
        victim_transport, victim = await loop.create_datagram_endpoint(
            Inbox, local_addr=("127.0.0.2", 0))
        relay, witness = await open_aioice(turn, witness_transport, "witness")
        peer_address = peer_transport.get_extra_info("sockname")
        sent: list[bytes] = []

        try:
            # The witness relays before the attacks...
            relay.sendto(b"before", peer_address)
            assert await witness.next() == (b"before", peer_address)
            # ...during them (at least 30 datagrams, however quick the attacks are)...
            attacks = asyncio.create_task(asyncio.to_thread(
                network_attacks, turn, victim_transport.get_extra_info("sockname")))
            while not attacks.done() or len(sent) < 30:
                sent.append(b"witness %d" % len(sent))
                relay.sendto(sent[-1], peer_address)
                await asyncio.sleep(0.005)
            seen = await attacks
            # ...and after them.
            relay.sendto(b"after", peer_address)
            sent.append(b"after")
            echoed = set()
            while len(echoed) < len(sent):
                data, address = await witness.next()
                assert address == peer_address
                echoed.add(data)
            assert echoed == set(sent)
            assert victim.queue.empty()
        finally:
            relay.close()
            peer_transport.close()
            victim_transport.close()
            await asyncio.sleep(0.1)
        assert seen.pop("relay") is not None
        assert seen.pop("dropped sends") == 10
        assert seen.pop("malformed") >= 40
        assert seen == {
            "permission 169.254.169.254": 403, "channel 169.254.169.254": 403,
            "permission 127.0.0.2": 403, "channel 127.0.0.2": 403,
            "permission 10.0.0.1": 403, "channel 10.0.0.1": 403,
            **{key: True for key in seen if key.startswith("closed")},
        }
        assert len([key for key in seen if key.startswith("closed")]) == 3

    asyncio.run(scenario())
    # The server stays up and answers someone new.
    assert turn.process.poll() is None
    newcomer = StunClient(turn, "newcomer")
    try:
        reply = newcomer.ask(Message(Method.BINDING, MessageClass.REQUEST))
        assert reply.message_class is MessageClass.SUCCESS
        assert reply.get(XorMappedAddress) == XorMappedAddress(
            *newcomer.socket.getsockname())
        assert code(newcomer.signed(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP))) is None
    finally:
        newcomer.close()


# --- no amplification over the network ------------------------------------------------------


def test_small_unauthenticated_allocate_gets_no_larger_answer_over_udp(strict: Turn) -> None:
    """Under a limit of 1, over UDP, aioice's 36-byte first Allocate (a 76-byte 401) and a
    20-byte Binding (32 bytes back) get nothing; padded, the Allocate gets its 401; over TCP
    the small one gets it too (the handshake proved the address)."""
    turn = strict
    small = Message(Method.ALLOCATE, MessageClass.REQUEST, attributes=[
        Lifetime(600), RequestedTransport(TRANSPORT_UDP)])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect(("127.0.0.1", turn.port))
        udp.settimeout(WAIT)
        udp.send(small.bytes())
        udp.send(Message(Method.BINDING, MessageClass.REQUEST).bytes())  # 20 bytes: 32 back
        padded = Message(Method.ALLOCATE, MessageClass.REQUEST, attributes=[
            Lifetime(600), RequestedTransport(TRANSPORT_UDP), Software("p" * 100)])
        udp.send(padded.bytes())
        reply = udp.recv(70000)  # the first answer is the padded request's
        assert Message.parse(reply).transaction_id == padded.transaction_id
        assert code(Message.parse(reply)) == 401 and len(reply) <= len(padded.bytes())
    with socket.create_connection(("127.0.0.1", turn.tcp_port), timeout=WAIT) as tcp:
        tcp.sendall(small.bytes())
        header = tcp.recv(20, socket.MSG_WAITALL)
        body = tcp.recv(struct.unpack("!H", header[2:4])[0], socket.MSG_WAITALL)
        reply_message = Message.parse(header + body)
        assert reply_message.transaction_id == small.transaction_id
        assert code(reply_message) == 401 and reply_message.get(Nonce) is not None


# --- SIGTERM ---------------------------------------------------------------------------------


def test_sigterm_drains_allocations_then_stops(tmp_path: Path) -> None:
    """On SIGTERM a server with a live allocation refuses new ones (403) and keeps relaying
    until ``drain_seconds`` have passed, then exits cleanly."""
    for turn in run_turn(tmp_path, "drain_seconds = 3"):
        alice, bob = StunClient(turn, "alice"), StunClient(turn, "bob")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            peer.settimeout(WAIT)
            assert code(alice.signed(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP))) is None
            assert code(alice.signed(Method.CREATE_PERMISSION,
                                     XorPeerAddress(*peer.getsockname()))) is None
            stopping = time.monotonic()
            turn.process.terminate()
            time.sleep(0.5)
            assert code(bob.signed(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP))) == 403
            send = Message(Method.SEND, MessageClass.INDICATION, attributes=[
                XorPeerAddress(*peer.getsockname()), Data(b"still here")])
            alice.socket.send(send.bytes())
            assert peer.recvfrom(100)[0] == b"still here"
            # Twisted re-raises the signal after a clean shutdown.
            assert turn.process.wait(WAIT + 3) in (0, -signal.SIGTERM)
            assert 2.5 <= time.monotonic() - stopping
        assert "Main loop terminated" in turn.log()
        alice.close()
        bob.close()


def test_extra_tls_ports_serve_turn(tmp_path: Path) -> None:
    """``extra_tls_ports`` (443 in production) serve TURN over TLS like ``tls_port``."""
    extra = random.randint(20000, 30000)
    for turn in run_turn(tmp_path, f"extra_tls_ports = [{extra}]\n{QUICK_STOP}"):
        context = client_ssl(turn)
        with socket.create_connection(("127.0.0.1", extra), timeout=WAIT) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            request = Message(Method.BINDING, MessageClass.REQUEST)
            tls.sendall(request.bytes())
            header = tls.recv(20)
            body = tls.recv(struct.unpack("!H", header[2:4])[0])
            reply = Message.parse(header + body)
        assert reply.transaction_id == request.transaction_id
        assert reply.get(XorMappedAddress) is not None
