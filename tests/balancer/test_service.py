"""The TLS context (SNI, ALPN), the health checker's ticks, the admin API's credentials."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path

from OpenSSL import SSL
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.test.requesthelper import DummyRequest

from vw.balancer.admin import authorized
from vw.balancer.checker import Prober
from vw.balancer.geo import Geo
from vw.balancer.router import Router
from vw.balancer.service import tls_context
from vw.common.tls import ensure_material
from vw.config import BalancerConfig, Config, GeneralConfig, ShardConfig


def config_in(directory: Path, domain: str = "localhost", **balancer: object) -> Config:
    return replace(Config(), general=GeneralConfig(domain=domain, state_dir=str(directory)),
                   balancer=replace(BalancerConfig(), **balancer))


def handshake(context: SSL.Context, server_name: bytes | None,
              protocols: list[bytes]) -> tuple[str, bytes]:
    """The certificate's common name and the ALPN protocol the server chose."""
    server = SSL.Connection(context, None)
    server.set_accept_state()
    client_context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    client = SSL.Connection(client_context, None)
    if server_name:
        client.set_tlsext_host_name(server_name)
    if protocols:
        client.set_alpn_protos(protocols)
    client.set_connect_state()
    for _ in range(10):
        for source, sink in ((client, server), (server, client)):
            try:
                source.do_handshake()
            except SSL.WantReadError:
                pass
            try:
                sink.bio_write(source.bio_read(65536))
            except SSL.WantReadError:
                pass
    name = client.get_peer_certificate().get_subject().CN
    return name, client.get_alpn_proto_negotiated()


def test_sni_chooses_the_certificate_and_alpn_http11(tmp_path: Path) -> None:
    other = ensure_material(config_in(tmp_path / "other", domain="other.example"))
    config = config_in(tmp_path / "main", sni_certificates={
        "Other.Example": [str(other.certificate), str(other.key)]})
    context = tls_context(config)
    assert handshake(context, b"other.example", [b"h2", b"http/1.1"]) == (
        "other.example", b"http/1.1")
    assert handshake(context, b"localhost", [b"http/1.1"]) == ("localhost", b"http/1.1")
    assert handshake(context, None, []) == ("localhost", b"")


def test_health_checks_start_when_due_and_failures_take_a_shard_down(tmp_path: Path) -> None:
    config = config_in(tmp_path, shards=[ShardConfig("a", "127.0.0.1:7001")],
                       health_interval=2.0, health_fall=2, health_timeout=1.0)
    router = Router(config, Geo({}))
    reactor = MemoryReactorClock()
    checker = Prober(router, reactor)
    checker.tick()
    checker.tick()
    assert len(reactor.tcpClients) == 1
    host, port, factory, timeout, _ = reactor.tcpClients[0]
    assert (host, port, timeout) == ("127.0.0.1", 7001, 1.0)
    check = factory.buildProtocol(None)
    transport = StringTransport()
    check.makeConnection(transport)
    assert transport.value().startswith(b"GET /about/health HTTP/1.1\r\n")
    check.dataReceived(b"HTTP/1.1 503 Service Unavailable\r\n")
    reactor.advance(2.0)
    checker.tick()
    reactor.tcpClients[1][2].clientConnectionFailed(None, None)
    assert not router.shards.shards["a"].up
    reactor.advance(2.0)
    checker.tick()
    reactor.advance(1.0)  # no answer within the timeout: a failure, not a hang
    assert not router.shards.shards["a"].health.checking
    reactor.advance(1.0)
    checker.tick()
    factory = reactor.tcpClients[3][2]
    check = factory.buildProtocol(None)
    check.makeConnection(StringTransport())
    check.dataReceived(b"HTTP/1.1 200 OK\r\n")
    assert router.shards.shards["a"].health.streak == 1


def request_with(authorization: bytes | None) -> DummyRequest:
    request = DummyRequest([b"shards"])
    if authorization is not None:
        request.requestHeaders.addRawHeader(b"authorization", authorization)
    return request


def test_admin_credentials() -> None:
    basic = b"Basic " + base64.b64encode(b"admin:pw")
    assert authorized(request_with(b"Bearer tok"), "tok", "")
    assert authorized(request_with(b"bearer tok"), "tok", "")
    assert authorized(request_with(basic), "", "pw")
    assert not authorized(request_with(basic), "tok", "")
    assert not authorized(request_with(b"Bearer "), "", "")
    assert not authorized(request_with(None), "tok", "pw")
    assert not authorized(request_with(b"Basic %%%"), "", "pw")
    assert not authorized(request_with(b"Bearer tok2"), "tok", "pw")
