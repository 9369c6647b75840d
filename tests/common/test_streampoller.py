"""The stream poller: TCP connections read through one reactor descriptor, on a real epoll
reactor of the test's own over loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

from OpenSSL import SSL
from twisted.internet import error
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.interfaces import IHalfCloseableProtocol, IPullProducer
from twisted.internet.protocol import ClientFactory, Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from vw.common.listener import TCPListener
from vw.common.streampoller import PolledClient, PolledServer, StreamPoller, connect
from vw.common.tls import PreparedContextFactory, ensure_material, server_context
from vw.config import Config, GeneralConfig


@implementer(IHalfCloseableProtocol)
class Echo(Protocol):
    """Echoes; closes once the peer has sent everything and the echo is written."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass


@implementer(IHalfCloseableProtocol)
class Client(Protocol):
    """Sends ``payload``, half-closes, and records what comes back and how it ends."""

    def __init__(self, payload: bytes, done: Callable[[Client], None]) -> None:
        self.payload = payload
        self.done = done
        self.received = b""
        self.read_closed = False
        self.reason: Failure | None = None

    def connectionMade(self) -> None:
        self.transport.write(self.payload)  # type: ignore[union-attr]
        self.transport.loseWriteConnection()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if not self.received:
            self.first_data()
        self.received += data

    def first_data(self) -> None:
        """Called as the first bytes come back."""

    def readConnectionLost(self) -> None:
        self.read_closed = True
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self.reason = reason
        self.done(self)


class OneClient(ClientFactory):
    def __init__(self, protocol: Protocol) -> None:
        self.protocol_instance = protocol
        self.failure: Failure | None = None

    def buildProtocol(self, addr: object) -> Protocol:
        return self.protocol_instance

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.failure = reason


class Recording(Protocol):
    """Keeps what it receives in ``received``; calls ``ended`` once the connection ends."""

    def __init__(self, received: list[bytes], ended: Callable[[], object] = lambda: None) -> None:
        self.received = received
        self.ended = ended

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.ended()


def recording_server(reactor: EPollReactor, poller: StreamPoller, received: list[bytes],
                     ended: Callable[[], object] = lambda: None) -> TCPListener:
    """A polled listener on a free loopback port whose connections record what they get."""
    factory = Factory.forProtocol(lambda: Recording(received, ended))  # type: ignore[arg-type]
    listener = TCPListener(reactor, 0, factory, "127.0.0.1", poller=poller)
    listener.startService()
    return listener


def run(reactor: EPollReactor, seconds: float = 10.0) -> None:
    reactor.callLater(seconds, reactor.stop)
    reactor.run(installSignalHandlers=False)


def test_connections_are_read_through_the_poller_and_end_cleanly() -> None:
    reactor = EPollReactor()
    poller = StreamPoller(reactor, "test")
    listener = TCPListener(reactor, 0, Factory.forProtocol(Echo), "127.0.0.1", poller=poller)
    listener.startService()
    finished: list[Client] = []
    payload = bytes(range(256)) * 4096  # 1 MiB: the echo's writes fill the socket buffers
    seen: dict[str, object] = {}

    def check_registration() -> None:
        readers = reactor.getReaders()
        seen["poller_is_a_reader"] = poller in readers
        seen["no_connection_is"] = not any(
            isinstance(reader, PolledServer | PolledClient) for reader in readers)

    def ended(client: Client) -> None:
        finished.append(client)
        if len(finished) == 3:
            reactor.callLater(0, reactor.stop)

    clients = [Client(payload, ended) for _ in range(3)]
    for client in clients:
        client.first_data = check_registration  # type: ignore[method-assign]
        connect(poller, "127.0.0.1", listener.port, OneClient(client), 5)
    run(reactor)
    listener.stopService()
    assert seen == {"poller_is_a_reader": True, "no_connection_is": True}
    assert len(finished) == 3
    for client in clients:
        assert client.received == payload and client.read_closed
        assert isinstance(client.transport, PolledClient)


def test_a_refused_connection_fails_through_the_factory() -> None:
    reactor = EPollReactor()
    poller = StreamPoller(reactor, "test")
    listener = TCPListener(reactor, 0, Factory.forProtocol(Echo), "127.0.0.1")
    listener.startService()
    port = listener.port
    listener.stopService()  # nothing listens there now
    factory = OneClient(Protocol())
    connect(poller, "127.0.0.1", port, factory, 5)
    reactor.callLater(0.5, reactor.stop)
    run(reactor)
    assert factory.failure is not None and factory.failure.check(error.ConnectionRefusedError)
    assert not poller._readers and not poller._fds


class Raising(Protocol):
    """Raises from connectionLost, as a buggy protocol might."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        raise RuntimeError("a bug in one protocol")


def test_what_goes_wrong_with_one_connection_ends_that_one_alone() -> None:
    reactor = EPollReactor()
    poller = StreamPoller(reactor, "test")
    accepted: list[Protocol] = []

    class Accepting(Factory):
        def buildProtocol(self, addr: object) -> Protocol:
            protocol = Raising() if not accepted else Protocol()
            accepted.append(protocol)
            return protocol

    listener = TCPListener(reactor, 0, Accepting(), "127.0.0.1", poller=poller)
    listener.startService()
    lost: list[Failure] = []

    class Watching(Protocol):
        def connectionLost(self, reason: Failure = connectionDone) -> None:
            lost.append(reason)

    first = Protocol()
    seen: dict[str, object] = {}

    def connect_the_second() -> None:
        if not accepted:  # the first one's server side (the buggy one) comes first
            reactor.callLater(0.01, connect_the_second)
            return
        connect(poller, "127.0.0.1", listener.port, OneClient(Watching()), 5)
        reactor.callLater(0.01, close_the_first)

    def close_the_first() -> None:
        if len(accepted) < 2:
            reactor.callLater(0.01, close_the_first)
            return
        first.transport.loseConnection()  # type: ignore[union-attr]
        reactor.callLater(0.2, look)

    def look() -> None:
        seen["lost"] = list(lost)
        seen["polling"] = poller in reactor.getReaders()
        reactor.stop()

    connect(poller, "127.0.0.1", listener.port, OneClient(first), 5)
    reactor.callLater(0.01, connect_the_second)
    run(reactor)
    listener.stopService()
    # the second connection was not taken down by the first one's bug
    assert seen == {"lost": [], "polling": True}


def test_shutdown_reaches_every_connection_even_past_a_failing_one() -> None:
    reactor = EPollReactor()
    poller = StreamPoller(reactor, "test")
    lost: list[int] = []

    class Counting(Raising):
        def __init__(self, number: int) -> None:
            self.number = number

        def connectionLost(self, reason: Failure = connectionDone) -> None:
            lost.append(self.number)
            super().connectionLost(reason)

    listener = TCPListener(reactor, 0, Factory.forProtocol(Protocol), "127.0.0.1",
                           poller=poller)
    listener.startService()
    for number in range(3):
        connect(poller, "127.0.0.1", listener.port, OneClient(Counting(number)), 5)
    reactor.callLater(0.3, reactor.stop)
    run(reactor)
    assert sorted(lost) == [0, 1, 2]


def test_nothing_written_after_an_abort_goes_out() -> None:
    reactor = EPollReactor()
    poller = StreamPoller(reactor, "test")
    received: list[bytes] = []
    listener = recording_server(reactor, poller, received)

    class Aborting(Protocol):
        def connectionMade(self) -> None:
            self.transport.abortConnection()  # type: ignore[union-attr]
            self.transport.write(b"after the abort")  # type: ignore[union-attr]

    connect(poller, "127.0.0.1", listener.port, OneClient(Aborting()), 5)
    reactor.callLater(0.3, reactor.stop)
    run(reactor)
    listener.stopService()
    assert received == []


@implementer(IPullProducer)
class Pulled:
    """Writes 1,000 bytes each time it is asked, 100 times, then unregisters."""

    def __init__(self, transport: object) -> None:
        self.transport = transport
        self.left = 100

    def resumeProducing(self) -> None:
        self.left -= 1
        self.transport.write(b"x" * 1000)  # type: ignore[attr-defined]
        if not self.left:
            self.transport.unregisterProducer()  # type: ignore[attr-defined]
            self.transport.loseConnection()  # type: ignore[attr-defined]

    def stopProducing(self) -> None:
        pass


def test_a_pull_producer_is_asked_until_it_is_done() -> None:
    reactor = EPollReactor()
    poller = StreamPoller(reactor, "test")
    received: list[bytes] = []
    listener = recording_server(reactor, poller, received, reactor.stop)

    class Producing(Protocol):
        def connectionMade(self) -> None:
            self.transport.registerProducer(Pulled(self.transport), False)  # type: ignore

    connect(poller, "127.0.0.1", listener.port, OneClient(Producing()), 5)
    run(reactor, 5)
    listener.stopService()
    assert len(b"".join(received)) == 100_000


def test_shutdown_ends_the_polled_connections_once() -> None:
    reactor = EPollReactor()
    poller = StreamPoller(reactor, "test")
    lost: list[Failure] = []

    class Silent(Protocol):
        def connectionMade(self) -> None:
            reactor.callLater(0.1, reactor.stop)

        def connectionLost(self, reason: Failure) -> None:
            lost.append(reason)

    listener = TCPListener(reactor, 0, Factory.forProtocol(Protocol), "127.0.0.1",
                           poller=poller)
    listener.startService()
    connect(poller, "127.0.0.1", listener.port, OneClient(Silent()), 5)
    run(reactor)
    assert len(lost) == 1  # the reactor's shutdown reached it through the poller


def test_a_write_goes_out_at_once_when_nothing_is_queued() -> None:
    reactor = EPollReactor()
    poller = StreamPoller(reactor, "test")
    listener = TCPListener(reactor, 0, Factory.forProtocol(Echo), "127.0.0.1", poller=poller)
    listener.startService()
    seen: dict[str, object] = {}

    class Writer(Protocol):
        def connectionMade(self) -> None:
            self.transport.write(b"ping")  # type: ignore[union-attr]
            seen["queued"] = self.transport in reactor.getWriters()

        def dataReceived(self, data: bytes) -> None:
            seen["echo"] = data
            reactor.stop()

    connect(poller, "127.0.0.1", listener.port, OneClient(Writer()), 5)
    run(reactor, 5)
    listener.stopService()
    assert seen == {"queued": False, "echo": b"ping"}


def client_hello() -> bytes:
    """A TLS ClientHello, made in memory."""
    connection = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    connection.set_connect_state()
    try:
        connection.do_handshake()
    except SSL.WantReadError:
        pass
    return connection.bio_read(65536)


def test_after_start_tls_what_is_written_is_encrypted(tmp_path: Path) -> None:
    material = ensure_material(Config(general=GeneralConfig(state_dir=str(tmp_path))))
    context = PreparedContextFactory(server_context(material))
    reactor = EPollReactor()
    poller = StreamPoller(reactor, "test")

    class Upgrading(Protocol):
        def connectionMade(self) -> None:
            self.transport.startTLS(context)  # type: ignore[union-attr]
            self.transport.write(b"a secret")  # type: ignore[union-attr]

    listener = TCPListener(reactor, 0, Factory.forProtocol(Upgrading), "127.0.0.1",
                           poller=poller)
    listener.startService()
    first: list[bytes] = []

    def client() -> None:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as raw:
            raw.sendall(client_hello())
            first.append(raw.recv(5))  # a TLS record header, or the plaintext
        reactor.callFromThread(reactor.stop)

    thread = threading.Thread(target=client, daemon=True)
    reactor.callLater(0, thread.start)
    run(reactor, 5)
    thread.join(5)
    listener.stopService()
    assert first and first[0][:2] == b"\x16\x03"  # the server's handshake, not b"a se"
