"""A small, fast raw-XML XMPP client for load generation (asyncio, no XML parser).

It does just what the benchmarks need: stream header, STARTTLS (no certificate
verification), SASL ANONYMOUS, resource binding, then raw stanzas. Responses are
recognised by substring and regex scanning of the received bytes, which is enough
to step through negotiation and to count deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl

STREAM_NS = "http://etherx.jabber.org/streams"
END_FEATURES = b"</stream:features>"
JID_RE = re.compile(rb"<jid>([^<]+)</jid>")
#: The presence that ends a MUC join carries status 110 (self-presence).
SELF_PRESENCE_RE = re.compile(rb"code=['\"]110['\"]")
READ_SIZE = 262144


class XMPPError(Exception):
    """Negotiation failed or the server answered something unexpected."""


def client_tls_context() -> ssl.SSLContext:
    """A TLS client context that accepts any certificate (loopback benchmarking only)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def stream_header(domain: str) -> bytes:
    """The opening tag of a client-to-server stream."""
    return (f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
            f"xmlns:stream='{STREAM_NS}' version='1.0'>").encode()


class RawClient:
    """One client connection; ``login`` negotiates it up to a bound resource."""

    def __init__(self, host: str, port: int, domain: str, tls: ssl.SSLContext,
                 timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.domain = domain
        self.tls = tls
        self.timeout = timeout
        self.jid = ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._buffer = b""

    # -- plumbing -------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue raw bytes for the server."""
        assert self.writer is not None
        self.writer.write(data)

    async def _read_until(self, *markers: bytes) -> bytes:
        """Read until one of ``markers`` is buffered; return the buffer up to and including it."""
        assert self.reader is not None
        scanned = 0
        while True:
            best: tuple[int, int] | None = None
            for marker in markers:
                index = self._buffer.find(marker, max(0, scanned - len(marker)))
                if index >= 0 and (best is None or index < best[0]):
                    best = (index, index + len(marker))
            if best is not None:
                end = best[1]
                head, self._buffer = self._buffer[:end], self._buffer[end:]
                return head
            scanned = len(self._buffer)
            chunk = await self.reader.read(READ_SIZE)
            if not chunk:
                raise XMPPError(f"connection closed while waiting for {markers!r}: "
                                f"{self._buffer[-300:]!r}")
            self._buffer += chunk

    async def _expect(self, *markers: bytes, failures: tuple[bytes, ...] = ()) -> bytes:
        head = await self._read_until(*markers, *failures)
        for failure in failures:
            if failure in head:
                raise XMPPError(f"server refused: {head[-400:]!r}")
        return head

    # -- negotiation ----------------------------------------------------------------

    async def login(self) -> str:
        """Connect, STARTTLS, SASL ANONYMOUS and bind; return the bound JID."""
        async with asyncio.timeout(self.timeout):
            return await self._login()

    async def _login(self) -> str:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.send(stream_header(self.domain))
        features = await self._expect(END_FEATURES, failures=(b"</stream:stream>",))
        if b"starttls" not in features:
            raise XMPPError(f"no STARTTLS offered: {features!r}")
        self.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await self._expect(b"<proceed", failures=(b"<failure",))
        await self._expect(b">")  # the end of <proceed .../>
        self._buffer = b""
        await self.writer.start_tls(self.tls, server_hostname=self.domain)
        self.send(stream_header(self.domain))
        features = await self._expect(END_FEATURES, failures=(b"</stream:stream>",))
        if b"ANONYMOUS" not in features:
            raise XMPPError(f"no SASL ANONYMOUS offered: {features!r}")
        self.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
        await self._expect(b"<success", failures=(b"<failure",))
        await self._expect(b">")  # the end of <success .../> or of <success ...>
        self._buffer = b""
        self.send(stream_header(self.domain))
        await self._expect(END_FEATURES, failures=(b"</stream:stream>",))
        self.send(b"<iq type='set' id='bind1'>"
                  b"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        head = await self._expect(b"</iq>", failures=(b"type='error'", b'type="error"'))
        match = JID_RE.search(head)
        if match is None:
            raise XMPPError(f"no JID in bind result: {head!r}")
        self.jid = match.group(1).decode()
        return self.jid

    async def join_room(self, room_jid: str, nick: str) -> None:
        """Enter a MUC room without history; return once the self-presence arrives."""
        self.send(f"<presence to='{room_jid}/{nick}'>"
                  "<x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x>"
                  "</presence>".encode())
        assert self.reader is not None
        deadline = asyncio.get_running_loop().time() + self.timeout
        while not SELF_PRESENCE_RE.search(self._buffer):
            if b"type='error'" in self._buffer or b'type="error"' in self._buffer:
                raise XMPPError(f"MUC join refused: {self._buffer[-500:]!r}")
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise XMPPError(f"MUC join timed out: {self._buffer[-500:]!r}")
            chunk = await asyncio.wait_for(self.reader.read(READ_SIZE), left)
            if not chunk:
                raise XMPPError("connection closed during MUC join")
            self._buffer += chunk

    def take_buffer(self) -> bytes:
        """Return and forget what was received but not consumed by negotiation."""
        data, self._buffer = self._buffer, b""
        return data

    async def close(self, wait: float = 5.0) -> None:
        """Close the stream politely: send the end tag, wait for the server's, then hang up."""
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        with contextlib.suppress(Exception):
            writer.write(b"</stream:stream>")
            async with asyncio.timeout(wait):
                await self._read_until(b"</stream:stream>")
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(wait):
                await writer.wait_closed()

    def abort(self) -> None:
        """Drop the connection at once."""
        if self.writer is not None:
            self.writer.transport.abort()
            self.writer = None


class MarkerCounter:
    """Counts occurrences of byte markers in a stream delivered in arbitrary chunks."""

    def __init__(self, *markers: bytes) -> None:
        self.markers = markers
        self.counts = [0] * len(markers)
        self._keep = max(len(m) for m in markers) - 1
        self._tail = b""

    def feed(self, data: bytes) -> list[int]:
        """Count markers in ``data`` (joined to the previous tail); return per-marker increments."""
        joined = self._tail + data
        added = []
        for i, marker in enumerate(self.markers):
            # occurrences fully inside the old tail were counted before
            n = joined.count(marker) - self._tail.count(marker)
            self.counts[i] += n
            added.append(n)
        self._tail = joined[-self._keep:] if self._keep else b""
        return added
