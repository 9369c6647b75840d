"""HTTP/1.1 message framing for a proxy (sans-IO): request heads parsed strictly enough that
the balancer and the backend cannot disagree on where a request ends (no smuggling), bodies
delimited without being buffered, responses delimited so that a connection can move to
another backend between requests."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

#: RFC 9110 tokens (methods, header names), origin-form targets, field values.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"/[\x21-\x7e]*")
_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")
#: A header block: each field ended by CRLF.
_FIELDS = re.compile(rb"(?:" + _TOKEN.pattern + b":" + _VALUE.pattern + rb"\r\n)*")
#: A well-formed request head with a CRLF after it (fullmatch): the method, the target, the
#: version and the header block.
_REQUEST_HEAD = re.compile(b"(" + _TOKEN.pattern + b") (" + _TARGET.pattern
                           + rb") (HTTP/1\.[01])\r\n(" + _FIELDS.pattern + b")")
#: A well-formed response head with a CRLF after it (fullmatch): the status and the header
#: block.
_RESPONSE_HEAD = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: [^\r\n]*)?\r\n("
                            + _FIELDS.pattern + b")")
#: In a valid, lowercased header block: the fields framing depends on, and those saying who
#: the client is (values untrimmed: a lazy match between runs of blanks would take
#: quadratic time).
_SCANNED = re.compile(rb"^(host|content-length|transfer-encoding|connection|upgrade"
                      rb"|x-forwarded-(?:for|proto|host|port)|x-real-ip|forwarded):(.*)\r$",
                      re.M)
#: Longest chunk-size line (with extensions) and longest trailer section.
MAX_CHUNK_LINE = 1024
MAX_TRAILERS = 8192


class HTTPError(Exception):
    """Bad input, answered with ``status`` and the connection closed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    max_head_bytes: int = 16384
    max_headers: int = 100


class RequestHead(NamedTuple):
    method: bytes
    target: bytes
    version: bytes
    #: The header fields as they came, each line ended by CRLF.
    fields: bytes
    #: Body framing: -1 for chunked, else the Content-Length (0 for none).
    body: int
    keep_alive: bool
    #: A WebSocket upgrade: after the head the connection becomes a tunnel if accepted.
    websocket: bool
    #: Whether a field says who the client is (X-Forwarded-For, Forwarded...).
    forwarding: bool


def _start_line(head: bytes, limits: Limits) -> bytes:
    """The start line of a head that did not parse, once its header fields are checked:
    what is wrong with those is said first."""
    end = head.find(b"\r\n")
    if end < 0:
        return head
    block = head[end + 2:] + b"\r\n"
    if not _FIELDS.fullmatch(block):
        _refuse_field(block)
    _count_fields(block, limits)
    return head[:end]


def _count_fields(fields: bytes, limits: Limits) -> None:
    if fields.count(b"\n") > limits.max_headers:
        raise HTTPError(431, "too many header fields")


def _refuse_field(block: bytes) -> None:
    """Say what is wrong with a header block that does not match ``_FIELDS``."""
    for line in block.split(b"\r\n")[:-1]:
        name, colon, value = line.partition(b":")
        if line[:1] in (b" ", b"\t"):
            raise HTTPError(400, "obsolete line folding")
        if not colon:
            raise HTTPError(400, "header line without a colon")
        if not _TOKEN.fullmatch(name):
            raise HTTPError(400, "invalid header name")
        if not _VALUE.fullmatch(value):
            raise HTTPError(400, "control character in a header value")
    raise HTTPError(400, "malformed header block")


def _tokens(value: bytes) -> list[bytes]:
    """The comma-separated, lowercased tokens of a (combined) header value."""
    return [token for part in value.lower().split(b",") if (token := part.strip(b" \t"))]


def _body_length(lengths: list[bytes], encoding: bytes | None, request: bool) -> int | None:
    """-1 for chunked, the Content-Length, or None if neither is given; ``encoding`` is the
    combined Transfer-Encoding (None if absent)."""
    if encoding is not None:
        if lengths:
            raise HTTPError(400, "both Content-Length and Transfer-Encoding")
        encodings = _tokens(encoding)
        if encodings[-1:] != [b"chunked"] or (request and encodings != [b"chunked"]):
            raise HTTPError(501 if request else 502, "unsupported Transfer-Encoding")
        return -1
    if not lengths:
        return None
    if len(lengths) == 1 and lengths[0].isdigit() and len(lengths[0]) <= 18:
        return int(lengths[0])  # the usual case, spared the checks below
    values = {v.strip(b" \t") for value in lengths for v in value.split(b",")}
    if len(values) != 1:
        raise HTTPError(400, "conflicting Content-Length")
    (value,) = values
    if not value.isdigit() or len(value) > 18:
        raise HTTPError(400, "invalid Content-Length")
    return int(value)


def _scan(lowered: bytes) -> tuple[int, list[bytes], bytes | None, bytes, bytes, bool]:
    """What framing needs from a lowercased header block, in one pass: the number of Host
    fields, the Content-Length values, the combined Transfer-Encoding (None if absent),
    Connection and Upgrade, and whether a field says who the client is."""
    hosts = 0
    lengths: list[bytes] = []
    encoding: bytes | None = None
    connection = upgrade = b""
    forwarding = False
    for name, value in _SCANNED.findall(lowered):
        value = value.strip(b" \t")
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            encoding = value if encoding is None else encoding + b"," + value
        elif name == b"connection":
            connection += b"," + value
        elif name == b"upgrade":
            upgrade += b"," + value
        else:
            forwarding = True
    return hosts, lengths, encoding, connection, upgrade, forwarding


def _refuse_request_head(head: bytes, limits: Limits) -> None:
    """Say what is wrong with a request head that ``_REQUEST_HEAD`` does not match."""
    parts = _start_line(head, limits).split(b" ")
    if len(parts) != 3:
        raise HTTPError(400, "malformed request line")
    method, target, version = parts
    if version not in _VERSIONS:
        raise HTTPError(505 if version.startswith(b"HTTP/") else 400, "unsupported version")
    if not _TOKEN.fullmatch(method):
        raise HTTPError(400, "invalid method")
    if not _TARGET.fullmatch(target):
        raise HTTPError(400, "request target is not an absolute path")
    raise HTTPError(400, "malformed request head")


def parse_request_head(head: bytes, limits: Limits) -> RequestHead:
    """A request head: the bytes before its empty line, without the final CRLF pair."""
    matched = _REQUEST_HEAD.fullmatch(head + b"\r\n")
    if matched is None:
        _refuse_request_head(head, limits)
    method, target, version, fields = matched.groups()  # type: ignore[union-attr]
    _count_fields(fields, limits)
    hosts, lengths, encoding, connection_field, upgrade, forwarding = _scan(fields.lower())
    if hosts > 1 or (version == b"HTTP/1.1" and not hosts):
        raise HTTPError(400, "a request needs one Host header")
    if version == b"HTTP/1.0" and encoding is not None:
        raise HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request")
    body = _body_length(lengths, encoding, request=True) or 0
    connection = _tokens(connection_field) if connection_field else []
    if version == b"HTTP/1.1":
        keep_alive = b"close" not in connection
    else:
        keep_alive = b"keep-alive" in connection
    websocket = (method == b"GET" and b"upgrade" in connection
                 and b"websocket" in _tokens(upgrade))
    return RequestHead(method, target, version, fields, body, keep_alive, websocket, forwarding)


def forwarded_head(head: RequestHead, client: str, scheme: bytes, keep: bool) -> bytes:
    """The head sent to the backend, its fields as they came, with X-Forwarded-For and -Proto
    for ``client``. What the request said in them (and in Forwarded, X-Real-IP...) is kept
    only if ``keep`` (the word of a trusted proxy): its client chain is extended and its
    scheme kept."""
    start = b" ".join((head.method, head.target, head.version))
    fields = head.fields
    chain = [client.encode()]
    if head.forwarding:
        kept = []
        for line in fields.split(b"\r\n")[:-1]:
            name, _, value = line.partition(b":")
            name = name.lower()
            if name in _FORWARDING:
                if not keep:
                    continue
                if name == b"x-forwarded-for":
                    chain.insert(-1, value.strip(b" \t"))
                    continue
                if name == b"x-forwarded-proto":
                    scheme = value.strip(b" \t")
                    continue
            kept.append(line + b"\r\n")
        fields = b"".join(kept)
    return b"".join((start, b"\r\n", fields, b"x-forwarded-for: ", b", ".join(chain),
                     b"\r\nx-forwarded-proto: ", scheme, b"\r\n\r\n"))


_FORWARDING = frozenset([b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
                         b"x-forwarded-port", b"x-real-ip", b"forwarded"])


class Body:
    """Delimits one message body (Content-Length or chunked) in a byte stream, without
    keeping it: ``feed`` says how many bytes of the data belong to the body."""

    __slots__ = ("remaining", "chunked", "state", "line", "done")

    def __init__(self, length: int) -> None:
        self.chunked = length < 0
        self.remaining = 0 if self.chunked else length
        #: Chunked decoding: "size", "data", "crlf" (after data), "trailer", then done.
        self.state = "size"
        self.line = b""
        self.done = length == 0

    def feed(self, data: bytes, start: int = 0) -> int:
        """How many bytes from ``data[start:]`` are body; ``done`` once the body is over."""
        if not self.chunked:
            taken = min(self.remaining, len(data) - start)
            self.remaining -= taken
            self.done = self.remaining == 0
            return taken
        offset = start
        while offset < len(data) and not self.done:
            if self.state == "data":
                taken = min(self.remaining, len(data) - offset)
                offset += taken
                self.remaining -= taken
                if self.remaining == 0:
                    self.state = "crlf"
                continue
            end = data.find(b"\n", offset)
            if end < 0:
                self.line += data[offset:]
                self._check_line()
                return len(data) - start
            self.line += data[offset:end + 1]
            offset = end + 1
            self._check_line()
            self._line(self.line[:-1])
            self.line = b""
        return offset - start

    def _check_line(self) -> None:
        limit = MAX_TRAILERS if self.state == "trailer" else MAX_CHUNK_LINE
        if len(self.line) > limit:
            raise HTTPError(400, "chunk line too long")

    def _line(self, line: bytes) -> None:
        if not line.endswith(b"\r") or b"\r" in line[:-1]:
            raise HTTPError(400, "chunk line not ended by CRLF")
        line = line[:-1]
        if self.state == "crlf":
            if line:
                raise HTTPError(400, "chunk data longer than its size")
            self.state = "size"
        elif self.state == "size":
            size = line.split(b";", 1)[0].rstrip(b" \t")
            if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
                raise HTTPError(400, "invalid chunk size")
            self.remaining = int(size, 16)
            self.state = "data" if self.remaining else "trailer"
        elif not line:
            self.done = True


class Requests:
    """The client's side of a connection: the next request head, then its body; or, after
    a WebSocket upgrade, raw bytes. Feed bytes with ``feed``; take events with ``next``."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.buffer = b""
        self.body: Body | None = None
        #: After an upgrade request: everything is passed through.
        self.raw = False

    def feed(self, data: bytes) -> None:
        self.buffer = self.buffer + data if self.buffer else data

    def next(self) -> RequestHead | bytes | None:
        """A head, some bytes to forward (body or raw), or None when more data is needed."""
        buffer = self.buffer
        if not buffer:
            return None
        if self.raw:
            self.buffer = b""
            return buffer
        if self.body is not None:
            taken = self.body.feed(buffer)
            if self.body.done:
                self.body = None
            self.buffer = buffer[taken:]
            return buffer[:taken]
        end = buffer.find(b"\r\n\r\n", 0, self.limits.max_head_bytes + 4)
        if end < 0:
            if len(buffer) > self.limits.max_head_bytes:
                raise HTTPError(431, "request head too large")
            if buffer.startswith(b"\r\n"):
                raise HTTPError(400, "empty request line")
            return None
        head = parse_request_head(buffer[:end], self.limits)
        self.buffer = buffer[end + 4:]
        if head.websocket:
            self.raw = True
        elif head.body:
            self.body = Body(head.body)
        return head

    @property
    def partial(self) -> bool:
        """Whether part of a head has arrived (the header timeout runs)."""
        return bool(self.buffer) and self.body is None and not self.raw


class ResponseHead(NamedTuple):
    status: int
    #: The lowercased header fields.
    lowered: bytes


def parse_response_head(head: bytes, limits: Limits) -> ResponseHead:
    matched = _RESPONSE_HEAD.fullmatch(head + b"\r\n")
    if matched is None:
        _start_line(head, limits)
        raise HTTPError(502, "malformed status line")
    status, fields = matched.groups()
    _count_fields(fields, limits)
    return ResponseHead(int(status), fields.lower())


class Responses:
    """A backend's side of a connection: each response delimited (by the request it answers),
    with ``header`` added to its head. ``feed`` returns the bytes for the client and the
    number of responses completed."""

    def __init__(self, limits: Limits, header: bytes = b"") -> None:
        self.limits = limits
        #: An extra header line, such as b"x-vw-shard: shard1\r\n".
        self.header = header
        self.methods: deque[bytes] = deque()
        self.buffer = b""
        #: Bytes of the current response's Content-Length body still to come.
        self.remaining = 0
        #: The current response's chunked body.
        self.body: Body | None = None
        #: The response ends when the backend closes the connection.
        self.until_close = False
        #: After 101 Switching Protocols: everything is passed through.
        self.tunnel = False
        #: A response to an upgrade request that was refused: the connection must close.
        self.refused_upgrade = False
        #: An interim (1xx) response to the current request was given out.
        self.interim = False
        self.upgrades: deque[bool] = deque()

    def expect(self, method: bytes, upgrade: bool = False) -> None:
        """A request was sent; its response comes in turn."""
        self.methods.append(method)
        self.upgrades.append(upgrade)

    @property
    def outstanding(self) -> int:
        return len(self.methods)

    @property
    def started(self) -> bool:
        """Whether part of the current response has been given out (its head at least)."""
        return bool(self.remaining) or self.body is not None or self.until_close

    def feed(self, data: bytes) -> tuple[bytes, int]:
        if self.tunnel or self.until_close:
            return data, 0
        buffer = self.buffer + data if self.buffer else data
        out: list[bytes] = []
        done = 0
        offset = 0
        size = len(buffer)
        while offset < size:
            if self.remaining:
                taken = min(self.remaining, size - offset)
                out.append(buffer[offset:offset + taken])
                offset += taken
                self.remaining -= taken
                if not self.remaining:
                    done += self._complete()
                continue
            if self.body is not None:
                taken = self.body.feed(buffer, offset)
                out.append(buffer[offset:offset + taken])
                offset += taken
                if self.body.done:
                    self.body = None
                    done += self._complete()
                continue
            if not self.methods:
                raise HTTPError(502, "response without a request")
            end = buffer.find(b"\r\n\r\n", offset, offset + self.limits.max_head_bytes + 4)
            if end < 0:
                if size - offset > self.limits.max_head_bytes:
                    raise HTTPError(502, "response head too large")
                break
            head = parse_response_head(buffer[offset:end], self.limits)
            out.append(buffer[offset:end + 2] + self.header + b"\r\n")
            offset = end + 4
            done += self._framing(head)
            if self.tunnel or self.until_close:
                out.append(buffer[offset:])
                offset = size
        self.buffer = buffer[offset:]
        return b"".join(out), done

    def _framing(self, head: ResponseHead) -> int:
        status = head.status
        if status == 101 and self.upgrades[0]:
            self.tunnel = True
            return self._complete()
        if 100 <= status < 200:
            self.interim = True
            return 0
        if self.upgrades[0]:
            self.refused_upgrade = True
        if self.methods[0] == b"HEAD" or status in (204, 304):
            return self._complete()
        _, lengths, encoding, _, _, _ = _scan(head.lowered)
        length = _body_length(lengths, encoding, request=False)
        if length is None:
            self.until_close = True
            return 0
        if length == 0:
            return self._complete()
        if length > 0:
            self.remaining = length
        else:
            self.body = Body(length)
        return 0

    def _complete(self) -> int:
        self.methods.popleft()
        self.upgrades.popleft()
        self.interim = False
        return 1
