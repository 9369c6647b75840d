"""The floor of bench/bridge.py: a plain Twisted UDP relay, without ICE, DTLS or SRTP.

Run: ``python bench/bridge_relay.py PORT``. A datagram ``join ROOM`` (first byte below 128)
puts its sender in ROOM and is answered ``joined``; any other datagram from a member is sent
as it is to every other member of its room: a Twisted ``DatagramProtocol`` on the epoll
reactor, the plainest Python relay, with no ICE, DTLS, SRTP or routing state.
"""

from __future__ import annotations

import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.internet.protocol import DatagramProtocol  # noqa: E402

Address = tuple[str, int]


class Relay(DatagramProtocol):
    """Rooms of addresses; every datagram goes to the other members of its sender's room."""

    def __init__(self) -> None:
        self.rooms: dict[bytes, list[Address]] = {}
        self.room_of: dict[Address, list[Address]] = {}

    def datagramReceived(self, data: bytes, addr: Address) -> None:  # noqa: N802
        if data and data[0] < 128:
            if data.startswith(b"join ") and addr not in self.room_of:
                room = self.rooms.setdefault(data[5:], [])
                room.append(addr)
                self.room_of[addr] = room
            if addr in self.room_of:
                self.transport.write(b"joined", addr)
            return
        room = self.room_of.get(addr)
        if room is not None:
            write = self.transport.write
            for member in room:
                if member != addr:
                    write(data, member)


def main() -> None:
    reactor.listenUDP(int(sys.argv[1]), Relay(), interface="127.0.0.1")
    reactor.callWhenRunning(print, "ready", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
