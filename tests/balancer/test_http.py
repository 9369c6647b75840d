"""HTTP/1.1 framing for the proxy: strict request heads, no smuggling, bodies and responses
delimited."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vw.balancer.http import (
    Body,
    HTTPError,
    Limits,
    Requests,
    Responses,
    forwarded_head,
    parse_request_head,
)

fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = Limits(max_head_bytes=1024, max_headers=10)


def head(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def test_a_request_head() -> None:
    request = parse_request_head(head("GET /room?x=1 HTTP/1.1\nHost: a\nX-Y:  v v \t"), LIMITS)
    assert (request.method, request.target, request.version) == (b"GET", b"/room?x=1",
                                                                 b"HTTP/1.1")
    assert request.fields == b"Host: a\r\nX-Y:  v v \t\r\n"
    assert request.body == 0 and request.keep_alive and not request.websocket
    assert not request.forwarding


@pytest.mark.parametrize("text, keep_alive", [
    ("GET / HTTP/1.1\nHost: a\nConnection: close", False),
    ("GET / HTTP/1.0", False),
    ("GET / HTTP/1.0\nConnection: Keep-Alive", True),
    ("GET / HTTP/1.1\nHost: a\nConnection: keep-alive, Upgrade", True),
])
def test_keep_alive(text: str, keep_alive: bool) -> None:
    assert parse_request_head(head(text), LIMITS).keep_alive is keep_alive


def test_websocket_upgrade_is_detected() -> None:
    text = "GET /xmpp-websocket HTTP/1.1\nHost: a\nConnection: keep-alive, Upgrade\n" \
           "Upgrade: WebSocket"
    assert parse_request_head(head(text), LIMITS).websocket
    assert not parse_request_head(head(text.replace("Upgrade\n", "x\n")), LIMITS).websocket
    assert not parse_request_head(head(text.replace("GET", "POST")), LIMITS).websocket


@pytest.mark.parametrize("text, body", [
    ("POST / HTTP/1.1\nHost: a\nContent-Length: 12", 12),
    ("POST / HTTP/1.1\nHost: a\nContent-Length: 12\nContent-Length: 12", 12),
    ("POST / HTTP/1.1\nHost: a\nTransfer-Encoding: Chunked", -1),
])
def test_body_framing(text: str, body: int) -> None:
    assert parse_request_head(head(text), LIMITS).body == body


@pytest.mark.parametrize("text, status", [
    # smuggling: two framings, ambiguous or invalid ones
    ("POST / HTTP/1.1\nHost: a\nContent-Length: 5\nTransfer-Encoding: chunked", 400),
    ("POST / HTTP/1.1\nHost: a\nContent-Length: 5\nContent-Length: 6", 400),
    ("POST / HTTP/1.1\nHost: a\nContent-Length: 5, 6", 400),
    ("POST / HTTP/1.1\nHost: a\nContent-Length: +5", 400),
    ("POST / HTTP/1.1\nHost: a\nContent-Length: 0x5", 400),
    ("POST / HTTP/1.1\nHost: a\nContent-Length: 1234567890123456789", 400),
    ("POST / HTTP/1.1\nHost: a\nTransfer-Encoding: gzip, chunked", 501),
    ("POST / HTTP/1.1\nHost: a\nTransfer-Encoding: chunked, identity", 501),
    ("POST / HTTP/1.1\nHost: a\nTransfer-Encoding: xchunked", 501),
    ("POST / HTTP/1.1\nHost: a\nTransfer-Encoding:", 501),
    ("POST / HTTP/1.0\nTransfer-Encoding: chunked", 400),
    ("POST / HTTP/1.1\nHost: a\nTransfer-Encoding : chunked", 400),
    ("POST / HTTP/1.1\nHost: a\nX: y\n Transfer-Encoding: chunked", 400),  # obs-fold
    ("POST / HTTP/1.1\nHost: a\nX: y\n\tz", 400),
    ("GET / HTTP/1.1\nHost: a\nX: a\x00b", 400),
    ("GET / HTTP/1.1\nHost: a\nX: a\rb", 400),
    ("GET / HTTP/1.1\nHost: a\nNo colon", 400),
    ("GET / HTTP/1.1", 400),                     # no Host
    ("GET / HTTP/1.1\nHost: a\nHost: b", 400),
    ("GET  / HTTP/1.1\nHost: a", 400),
    ("GET / HTTP/2.0\nHost: a", 505),
    ("GET / FTP/1.0\nHost: a", 400),
    ("G(T / HTTP/1.1\nHost: a", 400),
    ("GET http://a/ HTTP/1.1\nHost: a", 400),
    ("GET * HTTP/1.1\nHost: a", 400),
    ("GET /a b HTTP/1.1\nHost: a", 400),
    ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2", 400),
    ("GET / HTTP/1.1\nHost: a" + "\nX: y" * 10, 431),
])
def test_refused_heads(text: str, status: int) -> None:
    with pytest.raises(HTTPError) as caught:
        parse_request_head(head(text), LIMITS)
    assert caught.value.status == status


def test_forwarded_headers_from_an_untrusted_client_are_replaced() -> None:
    request = parse_request_head(head(
        "GET / HTTP/1.1\nHost: a\nX-Forwarded-For: 6.6.6.6\nX-Real-IP: 6.6.6.6\n"
        "Forwarded: for=6.6.6.6\nX-Forwarded-Proto: https\nAccept: */*"), LIMITS)
    assert request.forwarding
    out = forwarded_head(request, "192.0.2.7", b"http", keep=False)
    assert out == head("GET / HTTP/1.1\nHost: a\nAccept: */*\nx-forwarded-for: 192.0.2.7\n"
                       "x-forwarded-proto: http\n\n")


def test_framing_values_are_read_without_their_blanks() -> None:
    request = parse_request_head(head("POST / HTTP/1.1\nHost: a\nContent-Length: \t 12 \t\n"
                                      "Connection:  \tclose  \t"), LIMITS)
    assert request.body == 12 and not request.keep_alive
    spaced = parse_request_head(head("GET / HTTP/1.1\nHost: a" + " " * 2000 + "b"), LIMITS)
    assert spaced.fields.startswith(b"Host: a ")


def test_fields_are_forwarded_as_they_came() -> None:
    request = parse_request_head(head("GET /a?b HTTP/1.0\nHost: a\nX-Y:  v v \t\nX-Real-IPs: 1"),
                                 LIMITS)
    assert not request.forwarding  # X-Real-IPs is not X-Real-IP
    out = forwarded_head(request, "2001:db8::1", b"https", keep=False)
    assert out == head("GET /a?b HTTP/1.0\nHost: a\nX-Y:  v v \t\nX-Real-IPs: 1\n"
                       "x-forwarded-for: 2001:db8::1\nx-forwarded-proto: https\n\n")


def test_forwarded_headers_from_a_trusted_proxy_are_extended() -> None:
    request = parse_request_head(head(
        "GET / HTTP/1.1\nHost: a\nX-Forwarded-For: 198.51.100.1\nX-Real-IP: 198.51.100.1\n"
        "x-forwarded-for:203.0.113.9 \nX-Forwarded-Proto: https"), LIMITS)
    out = forwarded_head(request, "10.0.0.1", b"http", keep=True)
    assert out == head("GET / HTTP/1.1\nHost: a\nX-Real-IP: 198.51.100.1\n"
                       "x-forwarded-for: 198.51.100.1, 203.0.113.9, 10.0.0.1\n"
                       "x-forwarded-proto: https\n\n")


def drain(requests: Requests) -> list[object]:
    events = []
    while (event := requests.next()) is not None:
        events.append(event)
    return events


def test_pipelined_requests_with_bodies() -> None:
    requests = Requests(LIMITS)
    requests.feed(head("POST /a HTTP/1.1\nHost: a\nContent-Length: 3\n\nabc"
                       "POST /b HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n"
                       "3;x=y\nabc\n0\nTrailer: t\n\nGET /c HTTP/1.1\nHost: a\n\n"))
    events = drain(requests)
    assert [e.target if not isinstance(e, bytes) else e for e in events] == [
        b"/a", b"abc", b"/b", b"3;x=y\r\nabc\r\n0\r\nTrailer: t\r\n\r\n", b"/c"]
    assert not requests.partial


def test_body_bytes_come_as_they_arrive() -> None:
    requests = Requests(LIMITS)
    requests.feed(head("POST /a HTTP/1.1\nHost: a\nContent-Length: 5\n\nab"))
    assert [type(e).__name__ for e in drain(requests)] == ["RequestHead", "bytes"]
    requests.feed(b"cdeGET")
    assert drain(requests) == [b"cde"]
    assert requests.partial


def test_after_an_upgrade_everything_is_raw() -> None:
    requests = Requests(LIMITS)
    requests.feed(head("GET /xmpp-websocket HTTP/1.1\nHost: a\nConnection: upgrade\n"
                       "Upgrade: websocket\n\n") + b"\x81\x00GET / HTTP/1.1")
    events = drain(requests)
    assert events[0].websocket and events[1:] == [b"\x81\x00GET / HTTP/1.1"]


def test_an_oversized_head_is_refused_before_it_ends() -> None:
    requests = Requests(LIMITS)
    requests.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 1100)
    with pytest.raises(HTTPError) as caught:
        requests.next()
    assert caught.value.status == 431


@pytest.mark.parametrize("chunks", [b"zz\r\n", b"3\nabc\r\n", b"3\r\nabcd\r\n",
                                    b"3\r\nabc\r\n0\r\n\n", b"1" * 17 + b"\r\n",
                                    b"-1\r\n", b"3" + b" " * 2000])
def test_malformed_chunks_are_refused(chunks: bytes) -> None:
    body = Body(-1)
    with pytest.raises(HTTPError):
        body.feed(chunks)


def test_responses_are_delimited_and_marked() -> None:
    responses = Responses(LIMITS, b"x-vw-shard: s1\r\n")
    for method in (b"GET", b"HEAD", b"GET", b"GET"):
        responses.expect(method)
    data = head("HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\nContent-Length: 2\n\nok"
                "HTTP/1.1 200 OK\nContent-Length: 99\n\n"
                "HTTP/1.1 204 No Content\n\n"
                "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nok\n0\n\n")
    out, done = responses.feed(data)
    assert done == 4 and responses.outstanding == 0
    assert out.count(b"x-vw-shard: s1\r\n") == 5
    assert out.replace(b"x-vw-shard: s1\r\n", b"") == data


def test_a_response_split_anywhere_is_delimited_the_same() -> None:
    data = head("HTTP/1.1 200 OK\nContent-Length: 2\n\nok"
                "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nok\n0\n\n")
    for cut in range(len(data)):
        responses = Responses(LIMITS)
        responses.expect(b"GET")
        responses.expect(b"GET")
        first, one = responses.feed(data[:cut])
        second, two = responses.feed(data[cut:])
        assert first + second == data and one + two == 2


def test_a_response_without_length_ends_with_the_connection() -> None:
    responses = Responses(LIMITS)
    responses.expect(b"GET")
    out, done = responses.feed(b"HTTP/1.0 200 OK\r\n\r\nall of it")
    assert done == 0 and responses.until_close
    assert responses.feed(b" and more") == (b" and more", 0)


def test_an_upgrade_becomes_a_tunnel_or_is_refused() -> None:
    responses = Responses(LIMITS)
    responses.expect(b"GET", upgrade=True)
    out, done = responses.feed(b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x00")
    assert done == 1 and responses.tunnel and out.endswith(b"\r\n\r\n\x81\x00")
    refused = Responses(LIMITS)
    refused.expect(b"GET", upgrade=True)
    assert refused.feed(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")[1] == 1
    assert refused.refused_upgrade and not refused.tunnel


def test_an_unsolicited_response_is_an_error() -> None:
    with pytest.raises(HTTPError):
        Responses(LIMITS).feed(b"HTTP/1.1 200 OK\r\n\r\n")


@fuzz
@given(st.binary(max_size=300))
def test_random_requests_parse_or_are_refused(data: bytes) -> None:
    requests = Requests(LIMITS)
    requests.feed(data)
    try:
        events = drain(requests)
    except HTTPError as e:
        assert 400 <= e.status < 600
        return
    assert sum(len(e) for e in events if isinstance(e, bytes)) <= len(data)


tokens = st.sampled_from(["GET", "POST", "HEAD", "G T", "PUT"])
names = st.sampled_from(["Host", "Content-Length", "Transfer-Encoding", "Connection",
                         "Upgrade", "X-Forwarded-For", "Bad Name", ""])
values = st.sampled_from(["a", "5", "chunked", "close", "websocket", " 5", "5,5", "", "\x00",
                          "upgrade", "-1", "chunked, gzip"])


@fuzz
@given(tokens, st.lists(st.tuples(names, values), max_size=6), st.binary(max_size=40))
def test_structured_requests_parse_or_are_refused(method: str, headers: list[tuple[str, str]],
                                                  rest: bytes) -> None:
    text = f"{method} /r HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    lowered = text.lower()
    both_framings = "content-length" in lowered and "transfer-encoding" in lowered
    try:
        request = parse_request_head(text.encode()[:-2], LIMITS)
    except HTTPError:
        return
    assert not both_framings
    assert request.body >= -1


@fuzz
@given(st.binary(max_size=300))
def test_random_responses_are_delimited_or_refused(data: bytes) -> None:
    responses = Responses(LIMITS)
    responses.expect(b"GET")
    try:
        out, done = responses.feed(data)
    except HTTPError:
        return
    assert done <= 1 and len(out) <= len(data)
