"""The floor under vw-turn's relay figures: what forwarding a datagram costs a Python process
before any TURN work, with Twisted's reactor and with a bare epoll loop.

Run: ``.venv/bin/python bench/udp_floor.py [--packets N] [--interval S]``. For each kind of
forwarder a child process binds a UDP port; a load process sends N 120-byte datagrams, one
every S seconds, which the forwarder passes to an echoing peer and back (each datagram
crosses it twice, as through a TURN relay). The forwarder's CPU seconds, less those of an
idle run of the same length, over the datagrams it forwarded, give microseconds per packet.
Bounded: N datagrams, a fixed run time.
"""

from __future__ import annotations

import argparse
import resource
import select
import socket
import subprocess
import sys
import threading
import time

HELLO, PEER = b"client", b"peer"


def forward_with_twisted(port: int, seconds: float) -> tuple[int, float]:
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.internet.protocol import DatagramProtocol

    class Forwarder(DatagramProtocol):
        def __init__(self) -> None:
            self.count = 0
            self.ends: dict[bytes, tuple[str, int]] = {}

        def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:  # noqa: N802
            if data in (HELLO, PEER):
                self.ends[data] = addr
                return
            self.count += 1
            to = self.ends[HELLO] if addr == self.ends.get(PEER) else self.ends[PEER]
            self.transport.socket.sendto(data, to)

    forwarder = Forwarder()
    reactor.listenUDP(port, forwarder, interface="127.0.0.1")
    start = _cpu()
    reactor.callLater(seconds, reactor.stop)
    reactor.run()
    return forwarder.count, _cpu() - start


def forward_with_epoll(port: int, seconds: float) -> tuple[int, float]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    sock.setblocking(False)
    poller = select.epoll()
    poller.register(sock.fileno(), select.EPOLLIN)
    ends: dict[bytes, tuple[str, int]] = {}
    count = 0
    start = _cpu()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in poller.poll(0.2):
            while True:
                try:
                    data, addr = sock.recvfrom(8192)
                except BlockingIOError:
                    break
                if data in (HELLO, PEER):
                    ends[data] = addr
                    continue
                count += 1
                sock.sendto(data, ends[HELLO] if addr == ends.get(PEER) else ends[PEER])
    return count, _cpu() - start


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load(port: int, packets: int, interval: float) -> None:
    """Send ``packets`` datagrams through the forwarder to an echoing peer."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for sock, hello in ((client, HELLO), (peer, PEER)):
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(1.0)
        sock.sendto(hello, ("127.0.0.1", port))
    time.sleep(0.2)

    def echo() -> None:
        try:
            while True:
                data, addr = peer.recvfrom(2048)
                peer.sendto(data, addr)
        except OSError:
            pass

    def drain() -> None:
        try:
            while True:
                client.recvfrom(2048)
        except OSError:
            pass

    threads = [threading.Thread(target=echo), threading.Thread(target=drain)]
    for thread in threads:
        thread.start()
    payload = bytes(120)
    for _ in range(packets):
        client.sendto(payload, ("127.0.0.1", port))
        if interval:
            time.sleep(interval)
    for thread in threads:
        thread.join()


def measure(kind: str, packets: int, interval: float, seconds: float) -> float:
    """Microseconds of forwarder CPU per forwarded datagram."""
    port = _free_port()
    child = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port),
                              str(seconds)], stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    load(port, packets, interval)
    count, cpu = map(float, child.communicate(timeout=seconds + 30)[0].split())
    idle = subprocess.run([sys.executable, __file__, "--serve", kind, str(_free_port()),
                           str(seconds)], capture_output=True, text=True, timeout=seconds + 30)
    idle_cpu = float(idle.stdout.split()[1])
    return (cpu - idle_cpu) / max(count, 1) * 1e6


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=10000)
    parser.add_argument("--interval", type=float, default=0.0005, help="seconds between sends")
    parser.add_argument("--serve", nargs=3, metavar=("KIND", "PORT", "SECONDS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, port, seconds = args.serve
        forward = forward_with_twisted if kind == "twisted" else forward_with_epoll
        count, cpu = forward(int(port), float(seconds))
        print(count, cpu)
        return
    seconds = args.packets * args.interval + 6
    for kind in ("twisted", "epoll"):
        microseconds = measure(kind, args.packets, args.interval, seconds)
        print(f"{kind:8} forwarder: {microseconds:5.1f} us of CPU per forwarded datagram")


if __name__ == "__main__":
    main()
