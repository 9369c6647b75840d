"""Media relayed by compiled code, on leases from the TURN core.

Nearly every datagram a TURN server sees is media between a client and a peer: ChannelData
over a bound channel, else Send and Data indications. Python costs more per datagram than
the system calls that move it, so vw-turn's UDP sockets are read by
``vw.turn._channelrelay`` (C, built when vw is installed with a compiler at hand; without it
everything stays in Python). It relays a datagram only when a lease covers it, and hands
every other one to the Python handlers, which decide as before.

A lease repeats a decision the core made: once the core relayed a channel's data or a Send
indication, the service asks it (:meth:`~vw.turn.allocations.TurnCore.channel_route`,
:meth:`~vw.turn.allocations.TurnCore.send_route`,
:meth:`~vw.turn.allocations.TurnCore.peer_route`) until when the same answer holds (the
allocation's, the channel's and the permission's expiry, whichever comes first) and leases it
that long. Allocations with a bandwidth cap get no lease. When the core shortens or ends an
allocation it tells the service, which revokes the leases through its relay; a relay socket's
leases go before it closes, so no lease outlives the descriptor it sends from.

The first request of every allocation, an Allocate without credentials, is leased too: the
core's 401 differs only in its transaction id while its nonce is the same, so the service
leases it (:meth:`~vw.turn.allocations.TurnCore.challenge`) for that nonce's second, and the
relay answers with it, asking the core for each client whether its budget of unauthenticated
requests allows it (which counts the 401 too).

What the Python handlers send while the relay reads (answers, media it did not relay) goes
through :meth:`ChannelPoller.send` into the relay's own queue, after what the relay queued
before; a batch of datagrams that reached Python leaves in one ``sendmmsg`` once it is done,
so a busy server wakes each client once per burst rather than once per answer.

Under Twisted's epoll reactor the relay also lingers: after a wake-up, it waits on the
reactor's own epoll object and reads again while nothing else is ready there, up to the
reactor's next timer, so a stream of media costs no Python per wake-up and a stream of
requests none of the reactor's.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable

from twisted.internet.interfaces import IReactorFDSet
from twisted.logger import Logger
from twisted.python.failure import Failure

from vw.common.networks import family_of
from vw.common.poller import READ_BATCH, Address, DatagramPoller, Receiver

try:
    from vw.turn._channelrelay import ChannelRelay
except ImportError:  # built without a C compiler: ChannelData stays in Python
    ChannelRelay = None

log = Logger()

#: A client's lease: (relay socket's descriptor, packed peer address, until).
ClientLease = tuple[int, bytes, float]
#: A peer's lease: (listening socket's descriptor, packed client address, until, channel);
#: channel 0 sends Data indications.
PeerLease = tuple[int, bytes, float, int]
#: Datagrams read from one ready socket at a time.
SOCKET_BATCH = 16
#: The longest the relay stays away from an idle reactor with no timer due, in seconds.
LINGER_MAX = 1.0
#: Leases through one relay socket, each way: a permission covers every port of its peer's
#: address, so each port could take one; past these, datagrams go through Python.
MAX_LEASES_PER_RELAY = 64


def leasable(*addresses: Address) -> bool:
    """Whether the compiled relay can name these addresses: a scoped (link-local) IPv6 one
    always reaches Python, which names it with its scope."""
    return not any("%" in host for host, _ in addresses)


def pack(address: Address) -> bytes:
    """An address as the compiled relay keys it: the packed IP, then the port (2 bytes)."""
    host, port = address
    return socket.inet_pton(family_of(host), host) + port.to_bytes(2, "big")


def reactor_epoll(reactor: IReactorFDSet) -> int:
    """The descriptor of the epoll object ``reactor`` waits on, or -1 if it is not
    Twisted's epoll reactor."""
    poller = getattr(reactor, "_poller", None)
    return poller.fileno() if isinstance(poller, select.epoll) else -1


class ChannelPoller(DatagramPoller):
    """A :class:`~vw.common.poller.DatagramPoller` whose sockets the compiled relay reads, with
    the leases it relays on: by client address and channel number or peer address on the
    listening socket (:meth:`serve_clients`), by peer address on each relay socket."""

    def __init__(self, reactor: IReactorFDSet, name: str, now: Callable[[], float]) -> None:
        if ChannelRelay is None:
            raise RuntimeError("vw.turn._channelrelay is not built")
        super().__init__(reactor, name)
        self.relay = ChannelRelay(self._handler_failed)
        self.now = now
        self._reactor_epoll = reactor_epoll(reactor)
        #: By socket: (its leases, its handler, whether it is a relay socket).
        self._readers: dict[int, tuple[dict[bytes, tuple], Receiver, bool]] = {}
        self._clients: dict[bytes, ClientLease] = {}
        #: Client lease keys by the relay socket they send from, to revoke them with it.
        self._through: dict[int, set[bytes]] = {}

    def add(self, sock: socket.socket, received: Receiver) -> None:
        """Read ``sock``, a relay socket until :meth:`serve_clients` says otherwise."""
        super().add(sock, received)
        self._readers[sock.fileno()] = ({}, received, True)

    def serve_clients(self, sock: socket.socket) -> None:
        """``sock``, added already, is a listening port: its leases are the clients'."""
        fd = sock.fileno()
        self._readers[fd] = (self._clients, self._readers[fd][1], False)

    def remove(self, sock: socket.socket) -> None:
        """Stop reading ``sock``, send what is queued and end the leases through it (before
        it is closed: no queued datagram or lease may name a reused descriptor)."""
        fd = sock.fileno()
        self.relay.flush(fd)
        self.revoke(fd)
        reader = self._readers.pop(fd, None)
        if reader is not None and not reader[2]:  # a listening port: every lease ends
            self.relay.challenge = None
            self._clients.clear()
            self._through.clear()
            for relay in self._readers.values():
                relay[0].clear()
        super().remove(sock)

    def send(self, sock: socket.socket, data: bytes, address: Address) -> None:
        """Send a datagram from ``sock``: while the relay reads, in its queue, after what it
        relayed before and in one burst with the rest."""
        if not self.relay.send(sock.fileno(), data, address):
            super().send(sock, data, address)

    def _read(self) -> None:
        if self._reactor_epoll < 0:
            self.relay.drain(self.fileno(), self._readers, self.now, READ_BATCH, SOCKET_BATCH)
        else:
            self.relay.drain(self.fileno(), self._readers, self.now, READ_BATCH, SOCKET_BATCH,
                             self._reactor_epoll, self._linger, self.reactor.threadCallQueue)

    def _linger(self) -> float:
        """How long the relay may linger, asked as it starts and after handlers ran: until
        the reactor's next timer; not at all when the reactor is not running its loop or has
        just been told to stop, when calls from other threads wait (drain() watches that list
        as it lingers) or when a wake-up's end has work of its own."""
        reactor = self.reactor
        if (self._after_reading or not reactor.running
                or reactor._justStopped or reactor.threadCallQueue):
            return 0.0
        timeout = reactor.timeout()
        return LINGER_MAX if timeout is None else min(timeout, LINGER_MAX)

    def _handler_failed(self, error: BaseException, address: Address | None) -> None:
        log.failure("handling a datagram from {address}", Failure(error), address=address)

    def lease_client(self, client: Address, channel: int, relay_fd: int, peer: Address,
                     until: float) -> None:
        """ChannelData from ``client`` on ``channel`` goes from ``relay_fd`` to ``peer``
        until ``until``."""
        if leasable(client, peer):
            self._lease_client(pack(client) + channel.to_bytes(2, "big"), relay_fd, peer, until)

    def lease_send(self, client: Address, peer: Address, relay_fd: int, until: float) -> None:
        """Send indications from ``client`` to ``peer`` (the compiled relay reads those to
        IPv4 peers) go from ``relay_fd`` until ``until``."""
        if leasable(client, peer) and family_of(peer[0]) == socket.AF_INET:
            self._lease_client(pack(client) + pack(peer), relay_fd, peer, until)

    def _lease_client(self, key: bytes, relay_fd: int, peer: Address, until: float) -> None:
        through = self._through.setdefault(relay_fd, set())
        if key in through or len(through) < MAX_LEASES_PER_RELAY:
            self._clients[key] = (relay_fd, pack(peer), float(until))
            through.add(key)

    def lease_peer(self, relay_fd: int, peer: Address, listening_fd: int, client: Address,
                   channel: int, until: float) -> None:
        """Data from ``peer`` on ``relay_fd`` goes to ``client`` on ``channel`` (0: in Data
        indications) until ``until``."""
        reader = self._readers.get(relay_fd)
        if reader is None or not reader[2] or not leasable(client, peer):
            return
        key, leases = pack(peer), reader[0]
        if key in leases or len(leases) < MAX_LEASES_PER_RELAY:
            leases[key] = (listening_fd, pack(client), float(until), channel)

    def lease_challenge(self, listening_fd: int, attributes: bytes, since: float, until: float,
                        amplification_limit: float,
                        admit: Callable[[Address, float], bool]) -> None:
        """From ``since`` until ``until``, Allocate requests without integrity on
        ``listening_fd`` (of the usual forms) get the 401 whose attributes are ``attributes``,
        each if ``admit(client, now)`` says so and the answer is at most ``amplification_limit``
        times the request."""
        self.relay.challenge = (listening_fd, attributes, float(since), float(until),
                                float(amplification_limit), admit)

    def challenge_lapsed(self, now: float) -> bool:
        """Whether no 401 is leased for ``now`` (none, or one of another second)."""
        challenge = self.relay.challenge
        return challenge is None or not challenge[2] <= now < challenge[3]

    def revoke(self, relay_fd: int) -> None:
        """End every lease through the relay socket ``relay_fd``."""
        for key in self._through.pop(relay_fd, ()):
            self._clients.pop(key, None)
        reader = self._readers.get(relay_fd)
        if reader is not None and reader[2]:
            reader[0].clear()

    def prune(self, now: float) -> None:
        """Drop the leases that ended (a client or peer that stopped sending leaves its
        lease behind until its relay closes, else)."""
        for key, lease in list(self._clients.items()):
            if lease[2] <= now:
                del self._clients[key]
                self._through.get(lease[0], set()).discard(key)
        for leases, _, from_peers in self._readers.values():
            if from_peers:
                for key in [key for key, lease in leases.items() if lease[2] <= now]:
                    del leases[key]

    @property
    def leases(self) -> int:
        """Leases held (clients' and peers')."""
        return len(self._clients) + sum(len(r[0]) for r in self._readers.values() if r[2])
