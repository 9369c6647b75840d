"""The stream poller: TCP connections read through one reactor descriptor, on a real epoll
reactor of the test's own over loopback."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.epollreactor import EPollReactor
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from vw.common.listener import TCPListener
from vw.common.streampoller import PolledClient, PolledServer, StreamPoller, connect


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
    assert factory.failure is not None


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
