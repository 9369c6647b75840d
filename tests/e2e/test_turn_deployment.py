"""What deployments need of a running vw-turn: the 5-tuple names an allocation (RFC 8656
§2), relays behind a one-to-one NAT are announced with ``turn.external_address``, IPv4 clients
of a dual-stack listener are answered with their IPv4 address, ``turn.tcp_relays = false``
refuses RFC 6062 allocations, and ``turn.log_allocations`` logs each one."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.turn_server import (
    Turn,
    TurnClient,
    over_stream,
    over_udp,
    run_turn,
    turn_running,
)
from vw.stun import (
    TRANSPORT_TCP,
    Data,
    ErrorCode,
    Lifetime,
    Message,
    MessageClass,
    Method,
    RequestedTransport,
    XorMappedAddress,
    XorPeerAddress,
    XorRelayedAddress,
)


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Turn]:
    yield from run_turn(tmp_path_factory.mktemp("turn-deployment"))


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(10)
    sock.bind(("127.0.0.1", 0))
    return sock


def test_a_udp_socket_and_a_tcp_connection_of_one_port_allocate_apart(turn: Turn) -> None:
    with udp_socket() as udp, socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.settimeout(10)
        local = udp.getsockname()
        tcp.bind(local)  # TCP and UDP ports are separate: the same number binds
        tcp.connect(("127.0.0.1", turn.tcp_port))
        clients = [TurnClient(over_stream(tcp), "tcp"),
                   TurnClient(over_udp(udp, ("127.0.0.1", turn.port)), "udp")]
        replies = [client.allocate() for client in clients]
        assert [reply.get(XorMappedAddress) for reply in replies] == [
            XorMappedAddress(*local)] * 2
        relays = {reply.get(XorRelayedAddress) for reply in replies}
        assert len(relays) == 2 and turn.metrics()["vw_turn_allocations"] == 2
        clients[1].request(Method.REFRESH, Lifetime(0))  # the UDP one ends; TCP's lives on
        assert clients[0].request(Method.REFRESH, Lifetime(600)).get(Lifetime) == Lifetime(600)
        assert turn.metrics()["vw_turn_allocations"] == 1


def test_relays_on_the_wildcard_are_announced_and_reached_at_the_external_address(
        tmp_path: Path) -> None:
    """A one-to-one NAT's public address stands for the relays' own: 127.0.0.2 here, which
    reaches relays opened on 0.0.0.0 as the NAT would."""
    with turn_running(tmp_path, 'relay_address = "0.0.0.0"\nexternal_address = "127.0.0.2"\n'
                    'drain_seconds = 1') as server:
        with udp_socket() as sock, udp_socket() as peer:
            client = TurnClient(over_udp(sock, ("127.0.0.1", server.port)), "nat")
            relayed = client.allocate().get(XorRelayedAddress)
            assert relayed is not None and relayed.host == "127.0.0.2"
            client.request(Method.CREATE_PERMISSION, XorPeerAddress(*peer.getsockname()))
            peer.sendto(b"through the NAT", ("127.0.0.2", relayed.port))
            indication = Message.parse(sock.recv(2048))
            assert (indication.method, indication.message_class) == (
                Method.DATA, MessageClass.INDICATION)
            assert indication.get(Data) == Data(b"through the NAT")
            assert indication.get(XorPeerAddress) == XorPeerAddress(*peer.getsockname())


def test_ipv4_clients_of_a_dual_stack_listener_are_answered_with_ipv4_addresses(
        tmp_path: Path) -> None:
    settings = 'relay_address = "127.0.0.1"\ndrain_seconds = 1'
    with turn_running(tmp_path, settings, bind="::") as server:
        with udp_socket() as udp, socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.settimeout(10)
            tcp.connect(("127.0.0.1", server.tcp_port))
            for sock, client in (
                    (udp, TurnClient(over_udp(udp, ("127.0.0.1", server.port)), "udp")),
                    (tcp, TurnClient(over_stream(tcp), "tcp"))):
                mapped = client.allocate().get(XorMappedAddress)
                assert mapped == XorMappedAddress(*sock.getsockname())  # not ::ffff:127.0.0.1


def test_without_tcp_relays_a_tcp_allocation_is_442(tmp_path: Path) -> None:
    with turn_running(tmp_path, "tcp_relays = false\ndrain_seconds = 1") as server:
        with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=10) as tcp:
            client = TurnClient(over_stream(tcp), "tcp")
            refused = client.answer(Method.ALLOCATE, RequestedTransport(TRANSPORT_TCP))
            assert refused.get(ErrorCode).code == 442
            assert client.allocate().get(XorRelayedAddress) is not None  # UDP relays work


def test_allocations_are_logged_as_they_are_made_and_end(tmp_path: Path) -> None:
    with turn_running(tmp_path, "log_allocations = true\ndrain_seconds = 1") as server:
        with udp_socket() as sock:
            client = TurnClient(over_udp(sock, ("127.0.0.1", server.port)), "logged")
            relayed = client.allocate().get(XorRelayedAddress)
            client.request(Method.REFRESH, Lifetime(0))
            host, port = sock.getsockname()
        made = (f"allocation 127.0.0.1:{relayed.port} (udp) for {client.user} from "
                f"{host}:{port} over udp")
        ended = re.compile(rf"allocation 127\.0\.0\.1:{relayed.port} of {re.escape(client.user)} "
                           rf"from {host}:{port} ended after 0 s: deleted")
        log = server.log()
        assert made in log and ended.search(log), log[-2000:]
