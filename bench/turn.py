"""vw-turn against coturn, side by side on the same load: relaying, allocations, memory.

Run: ``.venv/bin/python bench/turn.py [--quick]``. Both servers run on loopback from a
temporary directory, configured alike: UDP, TCP (no TLS/DTLS listeners for coturn), the same
TURN REST secret and realm, loopback peers allowed, allocation quotas lifted, one thread
relaying (coturn ``--relay-threads=1``; vw is one Python process). vw keeps its defaults
otherwise, its amplification limit included (3: uclient's and browsers' first Allocate get
their 401). Each phase is bounded in count and time.

(1) relaying: coturn's ``turnutils_uclient`` (M clients, N messages each, L-byte payloads, one
    every Z ms per client) through the server to ``turnutils_peer``, which echoes. Over
    channels (ChannelData, uclient without ``-s``: the main figure) and over Send/Data
    indications (``-s``). Relayed packets = 2 x the messages uclient got back: each completed
    round trip crossed the server twice, client -> peer and peer -> client. Divided by the
    server's CPU seconds (user + system, ``/proc/PID/stat``, every thread) over the run and
    until it has been quiet for 0.5 s (what a run leaves a server to do is charged to it).
(2) allocations: K concurrent UDP sockets, a fresh socket per allocation, each from a
    loopback address of its own (127.1.x.y), doing what a browser does: Allocate (28 bytes;
    401 with REALM and NONCE), Allocate with REST credentials, then Refresh with LIFETIME 0.
    Allocations per second of wall time, and per server CPU-second. The client is in this
    process (vw's STUN codec), so the wall rate can be client-bound; the per-CPU-second
    figure is the server's own.
(3) memory: the server's VmRSS before and after N live allocations held from N distinct
    client sockets; KiB per allocation.

Order: (3) on freshly started servers; restart; (2) and (1) for ``rounds`` rounds each, the
servers taking turns (who goes first alternates); the median round is reported. Then vw is
recorded with py-spy during one more relay run and one more allocation run (not in the
figures) and the profiles summarised. Results go to bench/results/turn-latest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import itertools
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from processes import free_port as free_udp_and_tcp_port
from processes import stop
from pyspy_top import summarise_profile

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
    long_term_key,
)
from vw.stun.wire import encode_type
from vw.turn.auth import rest_password

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
RESULTS = HERE / "results" / "turn-latest.json"
HOST = "127.0.0.1"
SECRET = "bench-turn-rest-secret"
REALM = "bench.vw"
USER = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: From the issue: vw at least as good as coturn on these.
TARGETS = {"relay_channel": 1.0, "alloc_per_s": 1.0}


@dataclass(frozen=True)
class Params:
    """The load, identical for both servers."""

    clients: int  # uclient -m
    messages: int  # uclient -n, per client
    length: int  # uclient -l, bytes
    interval: int  # uclient -z, ms between a client's messages
    alloc_sockets: int  # concurrent allocating sockets
    allocations: int  # allocations per allocation round
    hold: int  # live allocations for the memory phase
    rounds: int
    phase_timeout: float  # seconds, for any one run
    dont_fragment: bool = True  # uclient -g

    @classmethod
    def make(cls, args: argparse.Namespace) -> Params:
        if args.quick:
            base = cls(clients=10, messages=500, length=120, interval=2, alloc_sockets=16,
                       allocations=500, hold=300, rounds=1, phase_timeout=60)
        else:
            base = cls(clients=10, messages=2000, length=120, interval=2, alloc_sockets=16,
                       allocations=5000, hold=2000, rounds=3, phase_timeout=120)
        overrides = {k: v for k, v in vars(args).items()
                     if k in cls.__dataclass_fields__ and v is not None}
        if args.no_dont_fragment:
            overrides["dont_fragment"] = False
        return cls(**{**asdict(base), **overrides})


# -- processes -----------------------------------------------------------------------------------


def _child_setup() -> None:
    """In a child: die with the benchmark, and get as many open files as allowed."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def raise_fd_limit(need: int) -> None:
    """Raise this process's soft open-files limit to the hard one; fail if still below need."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        sys.exit(f"open-files limit {soft} is below the {need} this benchmark needs")


def free_port() -> int:
    """A loopback port number free for both UDP and TCP (vw uses one number for both)."""
    return free_udp_and_tcp_port(socket.SOCK_DGRAM, socket.SOCK_STREAM)


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # utime, stime (14, 15)


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


#: A server is quiet after this long without a CPU tick.
QUIET_S = 0.5
#: The longest a server is given to finish what a run left it (closing allocations...).
SETTLE_LIMIT_S = 10.0


def settle(server: Server) -> float:
    """Wait until ``server`` has used no CPU for :data:`QUIET_S` (at most
    :data:`SETTLE_LIMIT_S`), and return the CPU seconds it used meanwhile: work a run left
    it (coturn frees deleted allocations on its timers after the last answer), which is
    charged to that run and must not share the machine with the next one."""
    start = last = server.cpu()
    quiet_since = time.monotonic()
    deadline = quiet_since + SETTLE_LIMIT_S
    while time.monotonic() < deadline and time.monotonic() - quiet_since < QUIET_S:
        time.sleep(0.05)
        now = server.cpu()
        if now != last:
            last, quiet_since = now, time.monotonic()
    return last - start


def steal_seconds() -> float:
    """CPU seconds the hypervisor gave other guests while this machine wanted them, summed
    over its CPUs so far (``steal`` in /proc/stat): what tells a stalled VM from a slow
    server."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / CLK_TCK  # cpu user nice system idle iowait irq softirq steal


class Usage:
    """What a server uses over a run, from when this is made to :meth:`stop`."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.cpu0, self.system0 = server.cpu(), server.system_cpu()
        self.wall0, self.steal0 = time.perf_counter(), steal_seconds()

    def stop(self) -> dict[str, float]:
        """The run's figures, the server's deferred work (:func:`settle`) included in its
        CPU but not in its share of the run's wall time."""
        wall = time.perf_counter() - self.wall0
        steal = steal_seconds() - self.steal0
        deferred = settle(self.server)
        cpu = self.server.cpu() - self.cpu0
        return {"server_cpu_s": cpu, "server_system_s": self.server.system_cpu() - self.system0,
                "wall_s": wall, "machine_steal_s": steal, "deferred_cpu_s": deferred,
                "server_cpu_share": (cpu - deferred) / wall}


def udp_errors() -> dict[str, int]:
    """The machine's UDP receive-error counters (/proc/net/snmp): datagrams the kernel
    dropped, mostly for a full receive buffer. Machine-wide: other processes count too."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
             if line.startswith("Udp:")]
    counters = dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=True))
    return {k: counters.get(k, 0) for k in ("InErrors", "RcvbufErrors")}


def binding_answered(port: int, timeout: float = 0.5) -> bool:
    """Whether a STUN Binding request to the port gets a success response."""
    request = Message(Method.BINDING, MessageClass.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(request.bytes(), (HOST, port))
        try:
            data = s.recv(2048)
        except OSError:
            return False
    return data[8:20] == request.transaction_id and data[:2] == SUCCESS[Method.BINDING]


class Server:
    """One TURN server process on a free loopback port."""

    name = ""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.popen: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        with open(self.directory / "server.log", "ab") as log:
            self.popen = subprocess.Popen(
                self.command(), cwd=self.directory, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=_child_setup)
        deadline = time.monotonic() + 30
        while not self.ready():
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}\n"
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after 30 s\n{self.log_tail()}")
            time.sleep(0.2)

    def ready(self) -> bool:
        return binding_answered(self.port)

    def stop(self) -> None:
        stop(self.popen)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def cpu(self) -> float:
        return sum(cpu_times(self.pid))

    def system_cpu(self) -> float:
        return cpu_times(self.pid)[1]

    def rss(self) -> int:
        return rss_kib(self.pid)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stats(self) -> dict[str, float]:
        return {}

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            text = (self.directory / "server.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""


class VwTurn(Server):
    name = "vw"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.http_port = free_port()
        self.config = directory / "vw.toml"
        self.config.write_text(f"""
[general]
state_dir = "{directory / 'var'}"
bind = "{HOST}"
[xmpp.turn]
secret = "{SECRET}"
[turn]
udp_port = {self.port}
tcp_port = {self.port}
tls_port = {free_port()}
http_port = {self.http_port}
realm = "{REALM}"
allowed_peers = ["127.0.0.1/32"]
rfc5766_channels = true
max_allocations = 100000
max_allocations_per_user = 100000
""")

    def command(self) -> list[str]:
        return [str(BIN / "twistd"), "--nodaemon", "--pidfile=", "vw-turn",
                "--config", str(self.config)]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(  # noqa: S310 - loopback
                    f"http://{HOST}:{self.http_port}/about/health", timeout=2) as response:
                if response.status != 200:
                    return False
        except OSError:
            return False
        return super().ready()

    def stats(self) -> dict[str, float]:
        """vw's own counters (vw_turn_* on /metrics)."""
        url = f"http://{HOST}:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            text = response.read().decode()
        pattern = r'^vw_turn_(\w+?)(?:_total\{reason="(\w+)"\})? (\S+)$'
        return {m[1] + (f"_{m[2]}" if m[2] else ""): float(m[3])
                for m in re.finditer(pattern, text, re.M)}


class Coturn(Server):
    name = "coturn"

    def command(self) -> list[str]:
        d = self.directory
        return ["turnserver", "-n", "--use-auth-secret", f"--static-auth-secret={SECRET}",
                f"--realm={REALM}", f"--listening-ip={HOST}", f"--relay-ip={HOST}",
                f"--listening-port={self.port}", "--no-cli", "--no-tls", "--no-dtls",
                "--relay-threads=1", "--allow-loopback-peers", "--user-quota=0",
                "--total-quota=0", f"--pidfile={d / 'turnserver.pid'}",
                f"--db={d / 'turndb'}", f"--log-file={d / 'coturn.log'}", "--simple-log",
                "--no-stdout-log"]


def coturn_version() -> str:
    result = subprocess.run(["turnserver", "--version"], capture_output=True, text=True,
                            timeout=10, check=False)
    return (result.stdout or result.stderr).strip().splitlines()[-1]


# -- (1) relaying with turnutils_uclient ------------------------------------------------------


def uclient_command(p: Params, port: object, peer_port: object, mode: str) -> list[str]:
    """turnutils_uclient's command line: channels, or Send indications (``mode`` "send")."""
    return ["turnutils_uclient", *(["-s"] if mode == "send" else []), "-m", str(p.clients),
            "-n", str(p.messages), "-l", str(p.length), "-z", str(p.interval), "-c",
            "-e", HOST, "-r", str(peer_port), "-X", *(["-g"] if p.dont_fragment else []),
            "-u", USER, "-W", SECRET,
            "-p", str(port), HOST]


def relay_run(p: Params, server: Server, peer_port: int, mode: str) -> dict[str, Any]:
    """One uclient run; server CPU and uclient's totals."""
    command = uclient_command(p, server.port, peer_port, mode)
    stats0, errors0, usage = server.stats(), udp_errors(), Usage(server)
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=p.phase_timeout, check=False)
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired as e:
        output = ((e.stdout or b"").decode(errors="replace")
                  + (e.stderr or b"").decode(errors="replace") + "\n(timed out)")
    used = usage.stop()
    cpu = used["server_cpu_s"]
    stats1, errors1 = server.stats(), udp_errors()
    totals = re.search(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$", output, re.M)
    if totals is None:
        raise RuntimeError(f"uclient gave no totals:\n{output[-1500:]}")
    sent, received = int(totals[1]), int(totals[2])
    lost = re.search(r"Total lost packets (\d+)", output)
    transmit = re.search(r"Total transmit time is (\d+)", output)
    result: dict[str, Any] = {
        "sent": sent, "received": received, "expected": p.clients * p.messages,
        "lost": int(lost[1]) if lost else None,
        "transmit_s": int(transmit[1]) if transmit else None,
        "relayed": 2 * received, **used,
        "relayed_per_cpu_s": 2 * received / cpu if cpu > 0 else float("nan"),
        "us_per_relayed": 1e6 * cpu / max(2 * received, 1),
        "udp_rcvbuf_errors": errors1["RcvbufErrors"] - errors0["RcvbufErrors"],
    }
    if stats0 and stats1:
        result["server_counters"] = {k: stats1[k] - stats0[k] for k in stats1 if k in stats0}
    return result


# -- (2) and (3): a STUN client for allocations -----------------------------------------------


SUCCESS = {m: encode_type(m, MessageClass.SUCCESS).to_bytes(2, "big")
           for m in (Method.BINDING, Method.ALLOCATE, Method.REFRESH)}
ERROR = {m: encode_type(m, MessageClass.ERROR).to_bytes(2, "big")
         for m in (Method.ALLOCATE, Method.REFRESH)}
#: Seconds before a request is sent again, and how many times it is sent at most.
RTO, TRIES = 0.5, 4


_SOURCES = itertools.count()


def next_source() -> str:
    """The next of 64,516 loopback addresses 127.1.x.y: each allocating client comes from an
    address of its own, as users do (and vw's per-IP limit on unauthenticated requests,
    20 a second, is about one source, not about the server's capacity)."""
    i = next(_SOURCES) % (254 * 254)
    return f"127.1.{1 + i // 254}.{1 + i % 254}"


@dataclass(eq=False)
class Flow:
    """One client socket going through Allocate (401), Allocate (authenticated), Refresh 0."""

    sock: socket.socket
    state: str = "idle"  # alloc0, alloc1, refresh, held, idle
    request: Message | None = None
    packet: bytes = b""
    sent_at: float = 0.0
    tries: int = 0
    nonce: str = ""
    realm: str = ""
    #: The REST username of this allocation (each its own, as each browser gets its own).
    username: str = ""


@dataclass
class AllocStats:
    allocations: int = 0
    deletions: int = 0
    failures: int = 0
    retransmissions: int = 0
    errors: Counter[str] = field(default_factory=Counter)


class Allocator:
    """Drives many flows over non-blocking UDP sockets with one selector, no asyncio.

    ``hold``: each flow allocates once and keeps its allocation. Otherwise each flow
    allocates, deletes (Refresh LIFETIME 0), closes its socket and starts again on a new one.
    """

    def __init__(self, port: int, hold: bool) -> None:
        self.server = (HOST, port)
        self.hold = hold
        self.expiry = int(time.time()) + 86400
        self.started = 0
        self.selector = selectors.DefaultSelector()
        self.stats = AllocStats()
        self.inflight: set[Flow] = set()
        self.held: list[Flow] = []

    def _socket(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind((next_source(), 0))
        return s

    @staticmethod
    def _key(flow: Flow) -> bytes:
        return long_term_key(flow.username, flow.realm, rest_password(SECRET, flow.username))

    def _send(self, flow: Flow, state: str, request: Message, key: bytes | None) -> None:
        flow.state, flow.request, flow.tries = state, request, 1
        # the first Allocate as browsers send it: REQUESTED-TRANSPORT alone, 28 bytes
        flow.packet = request.bytes(key, fingerprint=key is not None)
        flow.sent_at = time.monotonic()
        flow.sock.sendto(flow.packet, self.server)

    def _credentials(self, flow: Flow) -> list[Any]:
        return [Username(flow.username), Realm(flow.realm), Nonce(flow.nonce)]

    def _start(self, flow: Flow) -> None:
        self.inflight.add(flow)
        self.started += 1
        flow.username = f"{self.expiry}:{USER}-{self.started}"
        request = Message(Method.ALLOCATE, MessageClass.REQUEST,
                          attributes=[RequestedTransport(TRANSPORT_UDP)])
        self._send(flow, "alloc0", request, None)

    def _allocate(self, flow: Flow) -> None:
        request = Message(Method.ALLOCATE, MessageClass.REQUEST, attributes=[
            RequestedTransport(TRANSPORT_UDP), *self._credentials(flow)])
        self._send(flow, "alloc1", request, self._key(flow))

    def release(self, flow: Flow) -> None:
        request = Message(Method.REFRESH, MessageClass.REQUEST,
                          attributes=[Lifetime(0), *self._credentials(flow)])
        self.inflight.add(flow)
        self._send(flow, "refresh", request, self._key(flow))

    def _finish(self, flow: Flow, error: str | None) -> None:
        self.inflight.discard(flow)
        if error is not None:
            self.stats.failures += 1
            self.stats.errors[error] += 1
        if self.hold and flow.state == "held":
            self.held.append(flow)
            return
        flow.state = "idle"
        self.selector.unregister(flow.sock)
        flow.sock.close()

    def _reply(self, flow: Flow, data: bytes) -> None:
        assert flow.request is not None
        if data[8:20] != flow.request.transaction_id:
            return  # the answer to a retransmission already answered
        kind, state = data[:2], flow.state
        if kind == ERROR.get(flow.request.method):
            message = Message.parse(data)
            error = message.get(ErrorCode)
            code = error.code if error is not None else 0
            nonce, realm = message.get(Nonce), message.get(Realm)
            if ((state == "alloc0" and code == 401) or code == 438) and nonce and realm:
                flow.nonce, flow.realm = nonce.value, realm.value
                if state == "refresh":
                    self.release(flow)
                else:
                    self._allocate(flow)
                return
            self._finish(flow, f"{state}: {code}")
        elif state == "alloc1" and kind == SUCCESS[Method.ALLOCATE]:
            self.stats.allocations += 1
            if self.hold:
                flow.state = "held"
                self._finish(flow, None)
            else:
                self.release(flow)
        elif state == "refresh" and kind == SUCCESS[Method.REFRESH]:
            self.stats.deletions += 1
            self._finish(flow, None)
        else:
            self._finish(flow, f"{state}: unexpected {data[:2].hex()}")

    def _retransmit(self, now: float) -> None:
        for flow in list(self.inflight):
            if now - flow.sent_at < RTO:
                continue
            if flow.tries >= TRIES:
                self._finish(flow, f"{flow.state}: timeout")
                continue
            flow.tries += 1
            flow.sent_at = now
            self.stats.retransmissions += 1
            flow.sock.sendto(flow.packet, self.server)

    def _new_flow(self) -> Flow:
        flow = Flow(self._socket())
        self.selector.register(flow.sock, selectors.EVENT_READ, flow)
        return flow

    def run(self, count: int, window: int, deadline: float) -> None:
        """Allocate ``count`` times (``window`` flows at a time); no new start after
        ``deadline``; in-flight flows get 3 more seconds."""
        started = 0
        last_check = time.monotonic()
        while True:
            now = time.monotonic()
            while len(self.inflight) < window and started < count and now < deadline:
                self._start(self._new_flow())
                started += 1
            if not self.inflight and (started >= count or now >= deadline):
                break
            if now > deadline + 3:
                for flow in list(self.inflight):
                    self._finish(flow, f"{flow.state}: unfinished")
                break
            for key, _ in self.selector.select(0.05):
                flow = key.data
                while flow.state not in ("idle", "held"):
                    try:
                        data = flow.sock.recv(4096)
                    except BlockingIOError:
                        break
                    except OSError as e:  # ICMP port unreachable: the server is gone
                        self._finish(flow, f"{flow.state}: {e.__class__.__name__}")
                        break
                    self._reply(flow, data)
            if now - last_check > 0.1:
                last_check = now
                self._retransmit(now)

    def release_all(self, window: int, deadline: float) -> None:
        """Refresh LIFETIME 0 every held allocation, ``window`` at a time, and close."""
        self.hold = False
        held, self.held = self.held, []
        while (held or self.inflight) and time.monotonic() < deadline:
            while held and len(self.inflight) < window:
                self.release(held.pop())
            for key, _ in self.selector.select(0.05):
                flow = key.data
                with contextlib.suppress(BlockingIOError, OSError):
                    while flow.state == "refresh":
                        self._reply(flow, flow.sock.recv(4096))
            self._retransmit(time.monotonic())
        for flow in held + list(self.inflight):
            self.selector.unregister(flow.sock)
            flow.sock.close()
        self.inflight.clear()
        self.selector.close()


def alloc_run(p: Params, server: Server) -> dict[str, Any]:
    """``allocations`` create-and-delete cycles, ``alloc_sockets`` at a time."""
    allocator = Allocator(server.port, hold=False)
    own0, usage = time.process_time(), Usage(server)
    allocator.run(p.allocations, p.alloc_sockets, time.monotonic() + p.phase_timeout)
    own = time.process_time() - own0
    used = usage.stop()
    allocator.selector.close()
    s = allocator.stats
    cpu = used["server_cpu_s"]
    return {"allocations": s.allocations, "deletions": s.deletions, "failures": s.failures,
            "retransmissions": s.retransmissions, "errors": dict(s.errors), **used,
            "client_cpu_s": own,
            "alloc_per_s": s.allocations / used["wall_s"],
            "alloc_per_cpu_s": s.allocations / cpu if cpu > 0 else float("nan")}


def memory_run(p: Params, server: Server) -> dict[str, Any]:
    """RSS growth of the server while ``hold`` allocations are live."""
    warm = Allocator(server.port, hold=False)  # code paths and caches before the baseline
    warm.run(20, 4, time.monotonic() + 20)
    warm.selector.close()
    time.sleep(1.5)
    rss0, cpu0 = server.rss(), server.cpu()
    allocator = Allocator(server.port, hold=True)
    wall0 = time.perf_counter()
    allocator.run(p.hold, 64, time.monotonic() + p.phase_timeout)
    wall = time.perf_counter() - wall0
    time.sleep(2.0)
    rss1, cpu = server.rss(), server.cpu() - cpu0
    live = len(allocator.held)
    allocator.release_all(64, time.monotonic() + 30)
    s = allocator.stats
    return {"live": live, "failures": s.failures, "errors": dict(s.errors),
            "rss_before_kib": rss0, "rss_after_kib": rss1,
            "kib_per_allocation": (rss1 - rss0) / max(live, 1),
            "setup_wall_s": wall, "setup_server_cpu_s": cpu,
            "released": s.deletions}


# -- profiles ---------------------------------------------------------------------------------


class Recorder:
    """py-spy recording a process (raw collapsed stacks) while the ``with`` block runs."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid, self.out = pid, out
        self.popen: subprocess.Popen | None = None

    def __enter__(self) -> Recorder:
        spy = BIN / "py-spy"
        if not spy.exists():
            spy = Path(shutil.which("py-spy") or "py-spy")
        self.popen = subprocess.Popen(
            [str(spy), "record", "--pid", str(self.pid), "--rate", "250", "--nonblocking",
             "--format", "raw", "-o", str(self.out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_child_setup)
        time.sleep(1.0)  # let py-spy attach
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


#: Where a sample's time goes, by its innermost frame and the frames above it.
CATEGORIES = (
    "logging (twisted.logger)",
    "relay ports: open and close (RelaySocket.bind, RelaySocket.close)",
    "UDP sendto from Python (RelaySocket.send, UdpListener.send)",
    "compiled relay: reading, relaying and its system calls (ChannelRelay.drain)",
    "UDP recvfrom loop in Python (DatagramPoller._read)",
    "HMAC and hashing (credentials, nonces, integrity)",
    "STUN codec (vw/stun: parse, build, attributes)",
    "TURN core and service (vw/turn)",
    "Twisted reactor and dispatch, unattributed",
)
_PORT_FRAMES = ("RelaySocket.bind ", "RelaySocket.close ")


def category(frames: list[str]) -> str:
    """One of CATEGORIES for a sample (frames from the outermost to the innermost)."""
    leaf = frames[-1]
    if any("twisted/logger/" in f for f in frames):
        return CATEGORIES[0]
    if any(f.startswith(_PORT_FRAMES) for f in frames):
        return CATEGORIES[1]
    if leaf.startswith(("RelaySocket.send ", "UdpListener.send ")):
        return CATEGORIES[2]
    if leaf.startswith("ChannelPoller._read "):  # in C: the handlers it calls are frames above
        return CATEGORIES[3]
    if leaf.startswith("DatagramPoller._read "):
        return CATEGORIES[4]
    if "hmac.py" in leaf or "hashlib" in leaf:
        return CATEGORIES[5]
    for frame in reversed(frames):
        if "vw/stun/" in frame:
            return CATEGORIES[6]
        if "vw/turn/" in frame:
            return CATEGORIES[7]
    return CATEGORIES[8]


# -- report -----------------------------------------------------------------------------------

#: (label, phase, key, higher is better, target key)
METRICS = [
    ("(1) relayed pkts per server CPU-s, channels", "relay_channel", "relayed_per_cpu_s",
     True, "relay_channel"),
    ("(1) relayed pkts per server CPU-s, Send ind.", "relay_send", "relayed_per_cpu_s",
     True, None),
    ("    CPU us per relayed packet, channels", "relay_channel", "us_per_relayed", False, None),
    ("    ... of which system (kernel) CPU s", "relay_channel", "server_system_s", False, None),
    ("    server CPU share of the run, channels", "relay_channel", "server_cpu_share",
     False, None),
    ("    lost packets, channels (uclient)", "relay_channel", "lost", False, None),
    ("    lost packets, Send indications (uclient)", "relay_send", "lost", False, None),
    ("(2) allocations per second (wall)", "alloc", "alloc_per_s", True, "alloc_per_s"),
    ("(2) allocations per server CPU-s", "alloc", "alloc_per_cpu_s", True, None),
    ("    server CPU share of the run", "alloc", "server_cpu_share", False, None),
    ("(3) KiB RSS per live allocation", "memory", "kib_per_allocation", False, None),
    ("    server RSS before (MiB)", "memory", "rss_before_kib", False, None),
]


def median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The run with the median ``key`` (the upper one of an even count)."""
    usable = [r for r in runs if key in r and r[key] is not None]
    if not usable:
        return None
    return sorted(usable, key=lambda r: r[key])[len(usable) // 2]


#: The figure whose median round the indented rows of a phase are read from.
ANCHOR = {"relay_channel": "relayed_per_cpu_s", "relay_send": "relayed_per_cpu_s",
          "alloc": "alloc_per_s", "memory": "kib_per_allocation"}


def summarise(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    rows = []
    for label, phase, key, higher, target in METRICS:
        values = {}
        for name in ("vw", "coturn"):
            run = median_run(runs[name][phase], ANCHOR[phase] if label[0] == " " else key)
            value = float("nan") if run is None else float(run[key])
            values[name] = value / 1024 if key == "rss_before_kib" else value
        vw, co = values["vw"], values["coturn"]
        ratio = vw / co if co else float("nan")
        rows.append({"metric": label.strip(), "label": label, "phase": phase, "key": key,
                     "higher_is_better": higher, "vw": vw, "coturn": co,
                     "vw_over_coturn": ratio, "target": TARGETS.get(target or "")})
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'metric':<46}{'vw':>12}{'coturn':>12}{'vw/coturn':>11}  better  target")
    print("-" * 100)
    for row in rows:
        verdict = ""
        if row["target"] is not None and row["vw_over_coturn"] == row["vw_over_coturn"]:
            ok = row["vw_over_coturn"] >= row["target"]
            verdict = f">= {row['target']:g}x {'met' if ok else 'MISSED'}"
        better = "higher" if row["higher_is_better"] else "lower"
        ratio = row["vw_over_coturn"]
        ratio_text = f"{ratio:.2f}x" if ratio == ratio else "-"  # NaN: nothing to divide by
        print(f"{row['label']:<46}{row['vw']:>12,.4g}{row['coturn']:>12,.4g}"
              f"{ratio_text:>11}  {better:<7} {verdict}")
    print("-" * 100)
    print("medians over rounds; relayed packets = 2 x messages uclient got back (each crossed "
          "the server twice)")


def print_profile(title: str, profile: dict[str, Any]) -> None:
    if "error" in profile:
        print(f"\nprofile of vw, {title}: {profile['error']}")
        return
    print(f"\nprofile of vw, {title} ({profile['busy_samples']} busy samples, "
          f"{profile['idle_samples']} idle)")
    for table in ("categories", "self", "inclusive"):
        print(f"-- top {table} --")
        for frame, percent in profile[table]:
            print(f"{percent:6.1f}%  {frame}")


# -- main -------------------------------------------------------------------------------------


def one(label: str, run: Any) -> dict[str, Any]:
    """Run a measurement; a failure becomes an error entry instead of ending the benchmark."""
    print(f"  {label:<26}", end="", flush=True)
    try:
        result = run()
    except Exception as e:  # noqa: BLE001 - report and carry on
        result = {"error": f"{e.__class__.__name__}: {e}"}
        print(f" FAILED: {result['error'][:400]}")
        return result
    brief = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()
             if not isinstance(v, dict) or v}
    print(" " + ", ".join(f"{k}={v}" for k, v in brief.items()), flush=True)
    return result


def bench(p: Params, base: Path, phases: set[str], profile: bool) -> dict[str, Any]:
    servers: dict[str, Server] = {"vw": VwTurn(base / "vw"), "coturn": Coturn(base / "coturn")}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {"relay_channel": [], "relay_send": [], "alloc": [], "memory": []}
        for name in servers}
    profiles: dict[str, Any] = {}
    peer_port = free_port()
    peer = subprocess.Popen(["turnutils_peer", "-L", HOST, "-p", str(peer_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_child_setup)
    order = list(servers)
    try:
        if "memory" in phases:
            print(f"(3) memory: {p.hold} live allocations, fresh servers")
            for name in order:
                servers[name].start()
                runs[name]["memory"].append(one(name, lambda s=servers[name]: memory_run(p, s)))
                servers[name].stop()
        if phases - {"memory"}:
            for server in servers.values():
                server.start()
        if "alloc" in phases:
            print(f"(2) allocations: {p.allocations} per round, {p.alloc_sockets} sockets "
                  f"at a time, {p.rounds} rounds")
            for r in range(p.rounds):
                for name in order:
                    runs[name]["alloc"].append(
                        one(f"{name} round {r + 1}", lambda s=servers[name]: alloc_run(p, s)))
                order.reverse()
        for mode in ("channel", "send"):
            if f"relay_{mode}" not in phases and "relay" not in phases:
                continue
            print(f"(1) relaying, {mode}: "
                  + " ".join(uclient_command(p, "PORT", peer_port, mode)))
            for r in range(p.rounds):
                for name in order:
                    runs[name][f"relay_{mode}"].append(one(
                        f"{name} round {r + 1}",
                        lambda s=servers[name], m=mode: relay_run(p, s, peer_port, m)))
                order.reverse()
        if profile and servers["vw"].alive():
            vw = servers["vw"]
            print("profiles of vw (py-spy; not in the figures)")
            out = base / "vw-relay.txt"
            with Recorder(vw.pid, out):
                one("vw relay, channels", lambda: relay_run(p, vw, peer_port, "channel"))
            profiles["relay_channel"] = summarise_profile(out, category)
            out = base / "vw-alloc.txt"
            with Recorder(vw.pid, out):
                one("vw allocations", lambda: alloc_run(p, vw))
            profiles["alloc"] = summarise_profile(out, category)
        for name, server in servers.items():
            if server.popen is not None and not server.alive():
                raise RuntimeError(f"{name} died during the run\n{server.log_tail()}")
    finally:
        for server in servers.values():
            server.stop()
        stop(peer)
    return {"runs": runs, "profiles": profiles}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller loads, one round")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--clients", type=int, help="uclient -m")
    parser.add_argument("--messages", type=int, help="uclient -n")
    parser.add_argument("--length", type=int, help="uclient -l")
    parser.add_argument("--interval", type=int, help="uclient -z (ms)")
    parser.add_argument("--allocations", type=int, help="allocations per round")
    parser.add_argument("--alloc-sockets", type=int, help="concurrent allocating sockets")
    parser.add_argument("--hold", type=int, help="live allocations for the memory phase")
    parser.add_argument("--no-dont-fragment", action="store_true",
                        help="uclient without -g (DONT-FRAGMENT)")
    parser.add_argument("--phases", default="memory,alloc,relay",
                        help="comma-separated subset of memory,alloc,relay_channel,relay_send "
                             "(relay: both)")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy runs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    p = Params.make(args)
    for tool in ("turnserver", "turnutils_uclient", "turnutils_peer"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: install Debian's coturn (make os-deps)")
    raise_fd_limit(p.hold + 1000)
    phases = set(args.phases.split(","))
    started = datetime.datetime.now(datetime.UTC)
    base = Path(tempfile.mkdtemp(prefix="vw-bench-turn-"))
    print(f"vw-turn vs coturn {coturn_version()} on {os.cpu_count()} CPUs "
          f"(load average {os.getloadavg()[0]:.2f}); work dir {base}")
    print(f"parameters: {p}")
    try:
        outcome = bench(p, base, phases, not args.no_profile)
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    rows = summarise(outcome["runs"])
    print_table(rows)
    for title, profile in outcome["profiles"].items():
        print_profile(title, profile)
    report = {
        "benchmark": "bench/turn.py", "quick": args.quick,
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round((datetime.datetime.now(datetime.UTC) - started).total_seconds(), 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "coturn": coturn_version(),
                    "loadavg_at_end": os.getloadavg()},
        "parameters": asdict(p),
        "uclient": {mode: " ".join(uclient_command(p, "PORT", "PEERPORT", mode))
                    for mode in ("channel", "send")},
        "table": rows, **outcome,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\n{report['duration_s']} s; results in {args.output}")


if __name__ == "__main__":
    main()
