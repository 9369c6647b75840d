"""RFC 8656 §2 in a running vw-turn: the 5-tuple names an allocation, so a UDP socket and a
TCP connection from one host and port hold an allocation each."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.turn_server import SECRET, Turn, run_turn
from vw.stun import (
    TRANSPORT_UDP,
    ErrorCode,
    Lifetime,
    Message,
    MessageClass,
    Method,
    Nonce,
    Realm,
    RequestedTransport,
    Username,
    XorMappedAddress,
    XorRelayedAddress,
    long_term_key,
)
from vw.stun.constants import HEADER_LENGTH
from vw.turn.auth import rest_password

USER = f"{int(time.time()) + 3600}:five-tuple"


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Turn]:
    yield from run_turn(tmp_path_factory.mktemp("turn-five-tuple"))


def over_udp(sock: socket.socket, server: tuple[str, int]) -> Callable[[bytes], Message]:
    def exchange(data: bytes) -> Message:
        sock.sendto(data, server)
        return Message.parse(sock.recv(2048))
    return exchange


def over_tcp(sock: socket.socket) -> Callable[[bytes], Message]:
    def exchange(data: bytes) -> Message:
        sock.sendall(data)
        head = read_exactly(sock, HEADER_LENGTH)
        return Message.parse(head + read_exactly(sock, int.from_bytes(head[2:4], "big")))
    return exchange


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the server closed the connection"
        data += chunk
    return data


class Client:
    """Long-term credentials over one transport: the first request learns REALM and NONCE."""

    def __init__(self, exchange: Callable[[bytes], Message]) -> None:
        self.exchange = exchange
        challenge = exchange(Message(Method.ALLOCATE, MessageClass.REQUEST, attributes=[
            RequestedTransport(TRANSPORT_UDP)]).bytes())
        code = challenge.get(ErrorCode)
        assert code is not None and code.code == 401
        self.realm, self.nonce = challenge.get(Realm), challenge.get(Nonce)
        assert self.realm is not None and self.nonce is not None
        self.key = long_term_key(USER, self.realm.value, rest_password(SECRET, USER))

    def request(self, method: int, *attributes: object) -> Message:
        message = Message(method, MessageClass.REQUEST, attributes=[
            *attributes, Username(USER), self.realm, self.nonce])
        reply = self.exchange(message.bytes(self.key, fingerprint=True))
        assert reply.message_class is MessageClass.SUCCESS, reply.get(ErrorCode)
        return reply


def test_a_udp_socket_and_a_tcp_connection_of_one_port_allocate_apart(turn: Turn) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        udp.settimeout(10)
        tcp.settimeout(10)
        udp.bind(("127.0.0.1", 0))
        local = udp.getsockname()
        tcp.bind(local)  # TCP and UDP ports are separate: the same number binds
        tcp.connect(("127.0.0.1", turn.tcp_port))
        clients = [Client(over_tcp(tcp)), Client(over_udp(udp, ("127.0.0.1", turn.port)))]
        replies = [client.request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP))
                   for client in clients]
        assert [reply.get(XorMappedAddress) for reply in replies] == [
            XorMappedAddress(*local)] * 2
        relays = {reply.get(XorRelayedAddress) for reply in replies}
        assert len(relays) == 2 and turn.metrics()["vw_turn_allocations"] == 2
        clients[1].request(Method.REFRESH, Lifetime(0))  # the UDP one ends; TCP's lives on
        assert clients[0].request(Method.REFRESH, Lifetime(600)).get(Lifetime) == Lifetime(600)
        assert turn.metrics()["vw_turn_allocations"] == 1
