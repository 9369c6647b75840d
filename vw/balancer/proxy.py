"""The proxy's Twisted glue: client connections read as HTTP/1.1 requests (after a PROXY
header from a trusted peer), each request routed and forwarded with its head rewritten, the
responses spliced back with flow control both ways; WebSocket upgrades become tunnels.

Routing is per request: a keep-alive connection keeps its backend connection while its
requests go to the same backend, and moves to another backend once the responses it waits
for are complete (requests for the other backend wait meanwhile). The connection it leaves
is parked, idle, for the client connection's next request there (up to PARKED of them), as
a client that speaks for many rooms (an HTTP proxy in front) moves between shards all the
time. When a shard cannot be reached, the requests (none of them sent yet) go to the room's
next shard, up to ``connect_retries`` times (HAProxy's ``retries`` with ``option
redispatch``). When a backend connection that already served closes before answering (the
backend may have closed it as idle while a request was on its way), its requests are sent
once more on a new connection if each may be sent twice: bodiless GET, HEAD or OPTIONS."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from functools import partial

from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IPushProducer,
    IReactorTCP,
    IReactorTime,
)
from twisted.internet.protocol import ClientFactory, Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from vw.balancer.http import HTTPError, Limits, RequestHead, Requests, Responses, forwarded_head
from vw.balancer.rooms import RoomError
from vw.balancer.router import Backend, Router
from vw.balancer.routes import HEALTH, Route
from vw.balancer.shards import Shard
from vw.balancer.stats import Stats
from vw.common import proxyproto
from vw.common.ratelimit import TokenBucket

REASONS = {400: "Bad Request", 404: "Not Found", 408: "Request Timeout",
           429: "Too Many Requests", 431: "Request Header Fields Too Large",
           501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
           505: "HTTP Version Not Supported"}
#: Seconds an error answer waits for the client to close before closing itself.
LINGER = 2.0
#: Seconds between looks for addresses and rooms to forget (each look scans them all).
FORGET_INTERVAL = 10.0
#: Idle backend connections kept per client connection, for its requests to other backends,
#: and for how many seconds one is taken back (less than backends keep an idle connection:
#: one closing just as a request goes out would cost the client a 502).
PARKED = 4
PARKED_SECONDS = 4.0
#: Methods whose requests (without a body) may be sent twice.
SAFE_METHODS = frozenset([b"GET", b"HEAD", b"OPTIONS"])


def simple_response(status: int, body: bytes, close: bool,
                    content_type: bytes = b"text/plain") -> bytes:
    reason = REASONS.get(status, "OK").encode()
    return b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n%s" % (
        status, reason, content_type, len(body), b"connection: close\r\n" if close else b"",
        body)


def no_delay(transport: object) -> None:
    """Small writes go out at once (TCP_NODELAY), as a proxy's should."""
    if hasattr(transport, "setTcpNoDelay"):
        transport.setTcpNoDelay(True)


@implementer(IPushProducer)
class Throttle:
    """Pauses and resumes one side's transport while the other side's write buffer is full.
    Its ``stopProducing`` does nothing: each side closes the other itself."""

    def __init__(self, transport: object) -> None:
        self.transport = transport

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()  # type: ignore[attr-defined]

    def stopProducing(self) -> None:
        pass


#: Asks ``shard`` whether it hosts ``room``; the answer goes to the callable.
Ask = Callable[[Shard, str, Callable[[bool], None]], None]
#: Opens a TCP connection to (host, port) for the factory, with a timeout in seconds.
Connect = Callable[[str, int, ClientFactory, float], object]


class Balancer:
    """What every listener shares: the router, the counters, the limits, the clock."""

    def __init__(self, router: Router, reactor: IReactorTCP, stats: Stats | None = None,
                 ask: Ask | None = None, connect: Connect | None = None) -> None:
        self.router = router
        self.reactor = reactor
        #: How connections to backends are made (``reactor.connectTCP`` by default).
        self.connect: Connect = connect or (
            lambda host, port, factory, timeout: reactor.connectTCP(host, port, factory,
                                                                   timeout=timeout))
        #: Asks a draining shard whether it hosts a room (None: rooms seen here decide).
        self.ask = ask
        self.clock: IReactorTime = reactor  # type: ignore[assignment]
        self.stats = stats or Stats()
        #: Connection rate per client address.
        self.buckets: dict[str, TokenBucket] = {}
        self.next_forget = 0.0
        self.configure()

    def configure(self) -> None:
        settings = self.settings = self.router.settings
        self.limits = Limits(settings.max_header_bytes, settings.max_headers)

    def admit(self, host: str) -> bool:
        """Whether ``host`` may open one more connection now."""
        settings = self.settings
        now = self.clock.seconds()
        bucket = self.buckets.get(host)
        if bucket is None:
            bucket = self.buckets[host] = TokenBucket(settings.connection_rate,
                                                      settings.connection_burst, now)
        return bucket.take(1, now)

    def tick(self, now: float) -> None:
        """Forget addresses whose buckets are full and rooms not seen for long, every
        FORGET_INTERVAL seconds."""
        if now < self.next_forget:
            return
        self.next_forget = now + FORGET_INTERVAL
        for host in [host for host, bucket in self.buckets.items() if bucket.full(now)]:
            del self.buckets[host]
        self.router.shards.forget(now)


class ProxyFactory(Factory):
    def __init__(self, balancer: Balancer, scheme: bytes) -> None:
        self.balancer = balancer
        #: b"http" or b"https", for X-Forwarded-Proto.
        self.scheme = scheme

    def buildProtocol(self, addr: object) -> ClientProtocol:
        return ClientProtocol(self.balancer, self.scheme)


@implementer(IHalfCloseableProtocol)
class ClientProtocol(Protocol):
    """One client connection."""

    def __init__(self, balancer: Balancer, scheme: bytes) -> None:
        self.balancer = balancer
        self.scheme = scheme
        self.requests = Requests(balancer.limits)
        self.backend: BackendProtocol | None = None
        #: Idle connections to backends (normally other than ``backend``'s), oldest first.
        self.parked: dict[Backend, BackendProtocol] = {}
        #: The client's address (from a PROXY header if a trusted peer sent one).
        self.client: tuple[str, int] = ("", 0)
        #: Believe X-Forwarded-For: the peer is a trusted proxy that sent no PROXY header.
        self.keep_forwarded = False
        #: Bytes from a trusted peer before its PROXY header is complete; None when done.
        self.preamble: bytes | None = None
        #: A request waiting for the responses before it to complete (another backend), or
        #: for a draining shard to say whether it hosts the room (``asking``).
        self.waiting: RequestHead | None = None
        self.asking = False
        #: No more requests: the last one said Connection: close, or upgraded.
        self.final = False
        self.last = 0.0
        self.header_deadline: float | None = None
        #: The timeout timer (None when there is none) and when it fires.
        self.timer: IDelayedCall | None = None
        self.timer_at = 0.0
        #: An error was answered: the connection closes once the client has read it.
        self.lingering = False
        self.closed = False

    # --- connection --------------------------------------------------------------------

    def connectionMade(self) -> None:
        balancer = self.balancer
        stats = balancer.stats
        stats.connections += 1
        stats.active += 1
        transport = self.transport
        peer = transport.getPeer()  # type: ignore[union-attr]
        self.client = (peer.host, peer.port)
        no_delay(transport)
        self.last = balancer.clock.seconds()
        if stats.active > balancer.settings.max_connections:
            self.refuse("max_connections")
            return
        if balancer.router.is_trusted(peer.host):
            self.preamble = b""
            self.keep_forwarded = True
        elif not balancer.admit(peer.host):
            self.refuse("rate", 429)
            return
        self.schedule()

    def refuse(self, reason: str, status: int = 0) -> None:
        self.balancer.stats.refused[reason] += 1
        if status:
            self.transport.write(simple_response(status, REASONS[status].encode(), True))
            self.transport.loseConnection()
        else:
            self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        stats = self.balancer.stats
        stats.active -= 1
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if self.backend is not None:
            if self.backend.responses.tunnel:
                stats.tunnels -= 1
            self.backend.detach()
        self.drop_parked()

    def drop_parked(self) -> None:
        """Close the idle backend connections kept for later requests."""
        for parked in list(self.parked.values()):
            parked.detach()

    def readConnectionLost(self) -> None:
        """The client sent all it will send: answer what it asked, then close."""
        backend = self.backend
        if self.lingering or backend is None or not (backend.responses.outstanding
                                                     or backend.responses.tunnel):
            self.transport.loseConnection()
        else:
            self.final = True
            if backend.responses.tunnel:
                backend.transport.loseWriteConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        self.transport.loseConnection()

    def fail(self, status: int, reason: str) -> None:
        """Answer an error and close (no response may be outstanding). The close lingers:
        what the client still sends is read and dropped for up to LINGER seconds, as closing
        with unread data would reset the connection and lose the answer."""
        self.balancer.stats.refused[str(status)] += 1
        self.final = True
        self.lingering = True
        self.requests = Requests(self.balancer.limits)
        self.transport.write(simple_response(status, reason.encode() + b"\n", True))
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = self.balancer.clock.callLater(LINGER, self.transport.loseConnection)

    # --- client bytes ------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.lingering:
            return
        self.last = self.balancer.clock.seconds()
        if self.preamble is not None:
            data = self.proxy_header(data)
            if not data:
                return
        if self.final and not self.requests.raw:
            return
        self.requests.feed(data)
        if self.waiting is not None:
            self.transport.pauseProducing()  # type: ignore[union-attr]
            return
        self.process()

    def proxy_header(self, data: bytes) -> bytes:
        """Take a trusted peer's PROXY header, if it sends one; the bytes after it."""
        try:
            header, rest = proxyproto.read_header(self.preamble + data)  # type: ignore[operator]
        except proxyproto.ProxyProtocolError as e:
            self.preamble = None
            self.fail(400, str(e))
            return b""
        if rest is None:
            self.preamble += data  # type: ignore[operator]
            return b""
        self.preamble = None
        if header is not None and header.source is not None:
            # The PROXY header names the client; what the client's request says is its own.
            self.client = header.source
            self.keep_forwarded = False
            if not self.balancer.admit(header.source[0]):
                self.refuse("rate", 429)
                return b""
        return rest

    def process(self) -> None:
        """Forward what can be forwarded now."""
        requests = self.requests
        while requests.buffer and self.waiting is None and not self.closed:
            try:
                event = requests.next()
            except HTTPError as e:
                if self.backend is not None and self.backend.responses.outstanding:
                    # The answer cannot come before theirs: close once they are written.
                    self.final = True
                    requests.buffer = b""
                else:
                    self.fail(e.status, e.reason)
                return
            if event is None:
                break
            if isinstance(event, bytes):
                if self.backend is not None:  # else the connection is closing
                    self.backend.send(event)
            elif self.final:
                requests.buffer = b""
                break
            else:
                self.balancer.stats.requests += 1
                self.request(event)
        self.schedule()

    def request(self, head: RequestHead) -> None:
        balancer = self.balancer
        try:
            route = balancer.router.route(head.target)
        except RoomError as e:
            reason = str(e)
            self.hold_or(head, lambda: self.fail(400, reason))
            return
        if route.kind == HEALTH:
            self.hold_or(head, lambda: self.health(head))
            return
        if balancer.ask is not None:
            draining = balancer.router.to_ask(route, self.client[0])
            if draining is not None:
                self.ask(head, draining, route.key)
                return
        backend = balancer.router.backend(route, self.client[0], balancer.clock.seconds())
        if backend is None:
            self.hold_or(head, lambda: self.fail(503, "no backend available"))
            return
        last = not head.keep_alive or head.websocket  # no request comes after this one
        current = self.backend
        if current is None or current.target is not backend:
            if current is not None and current.responses.outstanding:
                self.wait(head)
                return
            self.backend = current = self.switch(backend, route, keep=not last)
        elif current.pending is not None and current.route != route:
            current.route = None  # requests for several rooms wait to be sent: no redispatch
        balancer.stats.routed[backend.name] += 1
        if last:
            self.final = True
            self.drop_parked()
        current.forward(head, forwarded_head(head, self.client[0], self.scheme,
                                             self.keep_forwarded))

    def switch(self, target: Backend, route: Route, keep: bool) -> BackendProtocol:
        """A connection to ``target`` for ``route``: the one parked for it, else a new one.
        The current backend connection is parked if ``keep`` and it can take requests
        again, else closed; beyond PARKED, the oldest parked one is closed, and so is one
        parked for over PARKED_SECONDS or to a backend a reload replaced."""
        now = self.balancer.clock.seconds()
        for parked in list(self.parked.values()):
            if parked.target.retired or now - parked.parked_at > PARKED_SECONDS:
                parked.detach()
        current = self.backend
        if current is not None:
            if keep and current.reusable:
                others = [parked for parked in self.parked.values() if parked.target is not target]
                if len(others) >= PARKED:  # the one about to be taken back stays
                    others[0].detach()
                current.park(now)
            else:
                current.detach()
        backend = self.parked.get(target)
        if backend is None:
            backend = BackendProtocol(self, target, route)
            backend.connect()
        else:
            backend.unpark(route)
        return backend

    def hold_or(self, head: RequestHead, answer: Callable[[], None]) -> None:
        """Answer now if no response is outstanding, else wait for them (and route the
        request again then)."""
        if self.backend is not None and self.backend.responses.outstanding:
            self.wait(head)
        else:
            answer()

    def health(self, head: RequestHead) -> None:
        ok = self.balancer.router.health()
        body = b'{"status": "ok"}' if ok else b'{"status": "unhealthy"}'
        self.transport.write(simple_response(200 if ok else 503, body, not head.keep_alive,
                                             b"application/json"))
        if not head.keep_alive:
            self.final = True
            self.transport.loseConnection()

    def wait(self, head: RequestHead) -> None:
        self.waiting = head
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def ask(self, head: RequestHead, shard: Shard, room: str) -> None:
        """Hold ``head`` while draining ``shard`` says whether it hosts ``room``."""
        self.wait(head)
        self.asking = True
        balancer = self.balancer
        balancer.stats.drain_queries[shard.name] += 1
        balancer.ask(shard, room, partial(self.answered, shard, room))  # type: ignore[misc]

    def answered(self, shard: Shard, room: str, hosted: bool) -> None:
        """Route the held request now that the shard has answered."""
        balancer = self.balancer
        balancer.router.shards.answered(shard, room, hosted, balancer.clock.seconds())
        self.asking = False
        head, self.waiting = self.waiting, None
        if head is None or self.closed:
            return
        self.transport.resumeProducing()  # type: ignore[union-attr]
        self.request(head)
        self.process()

    # --- from the backend --------------------------------------------------------------

    def responses_complete(self) -> None:
        """The backend finished responses; go on with a waiting request, or close."""
        backend = self.backend
        if (backend is None or backend.responses.outstanding or backend.responses.tunnel
                or self.asking):
            return
        if self.final or backend.responses.refused_upgrade:
            self.transport.loseConnection()
            return
        head, self.waiting = self.waiting, None
        if head is not None:
            self.transport.resumeProducing()  # type: ignore[union-attr]
            self.request(head)
            self.process()
        else:
            self.schedule()

    def backend_lost(self, backend: BackendProtocol) -> None:
        """The backend connection closed: end the client's if a response was cut short."""
        if backend is not self.backend:
            return
        responses = backend.responses
        if responses.tunnel:
            self.balancer.stats.tunnels -= 1
            self.backend = None
            self.transport.loseConnection()
        elif responses.outstanding:
            self.backend = None
            if responses.started:
                self.transport.loseConnection()
            elif not backend.resend():
                self.fail(502, "the backend closed the connection")
        else:
            self.backend = None
            if self.final:
                self.transport.loseConnection()

    # --- timers ------------------------------------------------------------------------

    def schedule(self) -> None:
        """Run the header timeout while a request head is awaited, else the idle timeout."""
        if self.closed or self.lingering:
            return
        balancer = self.balancer
        settings = balancer.settings
        requests = self.requests
        responses = None if self.backend is None else self.backend.responses
        tunnel = responses is not None and responses.tunnel
        busy = responses is not None and (responses.methods or tunnel)
        if requests.raw or (busy and not requests.partial):
            self.header_deadline = None
        elif self.header_deadline is None:
            self.header_deadline = balancer.clock.seconds() + settings.header_timeout
        deadline = self.last + (settings.tunnel_timeout if tunnel else settings.idle_timeout)
        if self.header_deadline is not None and self.header_deadline < deadline:
            deadline = self.header_deadline
        if self.timer is None:
            self.timer = balancer.clock.callLater(
                max(0.0, deadline - balancer.clock.seconds()), self.expire)
            self.timer_at = deadline
        elif self.timer_at > deadline:
            self.timer.reset(max(0.0, deadline - balancer.clock.seconds()))
            self.timer_at = deadline

    def expire(self) -> None:
        self.timer = None
        now = self.balancer.clock.seconds()
        if self.header_deadline is not None and now >= self.header_deadline:
            if self.requests.partial or self.preamble:
                self.fail(408, "request head timeout")
            else:
                self.balancer.stats.refused["keep_alive_timeout"] += 1
                self.transport.loseConnection()
            return
        settings = self.balancer.settings
        backend = self.backend
        idle = settings.tunnel_timeout if backend is not None and backend.responses.tunnel \
            else settings.idle_timeout
        if now - self.last >= idle:
            self.balancer.stats.refused["idle_timeout"] += 1
            self.transport.loseConnection()
            return
        self.schedule()


class BackendProtocol(Protocol):
    """The connection to one backend for one client connection."""

    def __init__(self, client: ClientProtocol, target: Backend, route: Route) -> None:
        self.client = client
        self.target = target
        #: The route of the requests waiting to be sent, for a redispatch (None if they go
        #: several ways, or are sent again after a reused connection closed).
        self.route: Route | None = route
        #: The shards that could not be reached for these requests.
        self.unreachable: tuple[Shard, ...] = ()
        balancer = client.balancer
        self.responses = Responses(balancer.limits, target.header)
        #: What to send once connected.
        self.pending: list[bytes] | None = []
        self.detached = False
        #: Idle in the client's ``parked``, since ``parked_at``.
        self.parked = False
        self.parked_at = 0.0
        #: The heads of the requests awaiting answers, in order (None for one that may not
        #: be sent twice), how many answers this connection gave, and whether its requests
        #: may be sent again (not if they were already).
        self.unanswered: deque[bytes | None] = deque()
        self.answered = 0
        self.may_resend = True

    def connect(self) -> None:
        balancer = self.client.balancer
        balancer.connect(self.target.host, self.target.port, BackendFactory(self),
                         balancer.settings.connect_timeout)

    @property
    def reusable(self) -> bool:
        """Whether another request may be sent: connected, every response complete, and
        none that ends the connection."""
        responses = self.responses
        return (self.pending is None and not self.detached and not self.target.retired
                and not responses.outstanding
                and not (responses.tunnel or responses.until_close or responses.refused_upgrade))

    def park(self, now: float) -> None:
        """Keep this idle connection for the client's next request to its backend (in
        place of one parked for it before, which a redispatch may have left)."""
        client = self.client
        other = client.parked.get(self.target)
        if other is not None:
            other.detach()
        client.parked[self.target] = self
        self.parked, self.parked_at = True, now
        client.transport.unregisterProducer()  # type: ignore[union-attr]
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def unpark(self, route: Route) -> None:
        """Serve the client's requests for ``route`` again."""
        del self.client.parked[self.target]
        self.parked = False
        self.route = route
        self.unreachable = ()
        self.client.transport.registerProducer(  # type: ignore[union-attr]
            Throttle(self.transport), True)

    def forward(self, head: RequestHead, data: bytes) -> None:
        """Send a request's head ``data``; its response is awaited."""
        self.responses.expect(head.method, head.websocket)
        again = head.method in SAFE_METHODS and not head.body and not head.websocket
        self.unanswered.append(data if again else None)
        self.send(data)

    def resend(self) -> bool:
        """This connection closed unanswered: if it had served before and every request it
        holds may be sent twice, send them on a new connection (once, to the same backend,
        unless a reload replaced it); else False."""
        responses = self.responses
        if (not self.answered or not self.may_resend or self.target.retired
                or responses.buffer or responses.interim or None in self.unanswered):
            return False
        client = self.client
        # Their rooms may differ from the one this connection was opened for: no redispatch.
        fresh = BackendProtocol(client, self.target, None)
        fresh.responses = responses
        fresh.unanswered = self.unanswered
        fresh.pending = list(self.unanswered)  # type: ignore[arg-type]
        fresh.may_resend = False
        client.backend = fresh
        client.balancer.stats.resent[self.target.name] += len(fresh.pending)
        if client.waiting is None:  # a full write buffer of this connection paused it
            client.transport.resumeProducing()  # type: ignore[union-attr]
        fresh.connect()
        return True

    def send(self, data: bytes) -> None:
        if self.pending is None:
            self.transport.write(data)
        else:
            self.pending.append(data)

    def connectionMade(self) -> None:
        if self.detached:
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        client = self.client
        version = client.balancer.settings.backend_proxy_protocol
        pending, self.pending = self.pending or [], None
        if version:
            host = client.transport.getHost()  # type: ignore[union-attr]
            build = proxyproto.build_v1 if version == 1 else proxyproto.build_v2
            pending.insert(0, build(client.client, (host.host, host.port)))
        no_delay(self.transport)
        self.transport.registerProducer(Throttle(client.transport), True)  # type: ignore
        client.transport.registerProducer(Throttle(self.transport), True)  # type: ignore
        self.transport.write(b"".join(pending))  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        client = self.client
        if self.detached:
            return
        if self.parked:  # nothing was asked of it
            self.detach()
            return
        client.last = client.balancer.clock.seconds()
        responses = self.responses
        was_tunnel = responses.tunnel
        try:
            out, done = responses.feed(data)
        except HTTPError:
            client.transport.loseConnection()  # type: ignore[union-attr]
            self.detach()
            return
        client.transport.write(out)
        if responses.tunnel and not was_tunnel:
            client.balancer.stats.tunnels += 1
        if done:
            self.answered += done
            for _ in range(done):
                self.unanswered.popleft()
            client.responses_complete()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.parked:
            self.detach()
        elif not self.detached:
            self.detached = True
            if not self.client.closed:
                self.client.transport.unregisterProducer()  # type: ignore[union-attr]
            self.client.backend_lost(self)

    def failed(self) -> None:
        """The connection could not be made: nothing was sent, so another shard may take
        the requests; else answer 503."""
        target = self.target
        client = self.client
        client.balancer.stats.backend_failures[target.name] += 1
        if target.shard is not None:
            target.shard.health.record(False)
        if not self.detached and client.backend is self and not self.redispatch():
            self.detached = True
            client.backend = None
            client.fail(503, "the backend is unreachable")

    def redispatch(self) -> bool:
        """Connect to the room's next shard, leaving out those that failed, as HAProxy's
        ``retries`` and ``option redispatch`` do; False if no retry is left or possible."""
        shard = self.target.shard
        balancer = self.client.balancer
        if (shard is None or self.route is None
                or len(self.unreachable) >= balancer.settings.connect_retries):
            return False
        self.unreachable += (shard,)
        target = balancer.router.backend(self.route, self.client.client[0],
                                         balancer.clock.seconds(), self.unreachable)
        if target is None:
            return False
        balancer.stats.retries[shard.name] += 1
        self.target = target
        self.responses.header = target.header
        self.connect()
        return True

    def detach(self) -> None:
        """The client is gone or has no more use for this connection: close it."""
        if self.detached:
            return
        self.detached = True
        client = self.client
        if self.parked:
            self.parked = False
            if client.parked.get(self.target) is self:
                del client.parked[self.target]
        elif self.transport is not None and not client.closed:
            client.transport.unregisterProducer()  # type: ignore[union-attr]
        if self.transport is not None:
            self.transport.unregisterProducer()
            self.transport.loseConnection()


class BackendFactory(ClientFactory):
    noisy = False

    def __init__(self, protocol: BackendProtocol) -> None:
        self.protocol = protocol

    def buildProtocol(self, addr: object) -> BackendProtocol:
        return self.protocol

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        self.protocol.failed()
