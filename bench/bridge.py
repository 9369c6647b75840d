"""vw-bridge forwarding SRTP, against the floor of a plain Python UDP relay, on the same load.

Run: ``.venv/bin/python bench/bridge.py [--quick]``. The all-in-one (``twistd vw``: XMPP server
and bridge in one process) runs on loopback from a temporary directory. A slixmpp client
logged in as ``focus@auth.localhost`` allocates C conferences of S senders and R receivers
with Colibri2, as jicofo would: the bridge's transport for every endpoint, then the
endpoint's ICE credentials, DTLS fingerprint (setup active) and, for senders, one video SSRC.
The load generator (bench/bridge_load.py, its own process, one UDP socket per endpoint)
completes real ICE and DTLS with the bridge, then every sender sends SRTP at a fixed rate
(video-like: ~1,100-byte payloads, PT 100, 30 frames a second) for a fixed time; the bridge
forwards every packet to the other S-1+R endpoints of its conference.

Then the same load pattern, without ICE/DTLS/SRTP, goes through bench/bridge_relay.py, a plain
Twisted UDP relay in its own process: the floor for a Python forwarder of this design.

Reported for each: packets forwarded (received by the load generator's endpoints), CPU
seconds (user + system, psutil) of the forwarding process over the sending window,
forwarded packets per CPU-second, p50/p99 forwarding delay (send time embedded in the
payload, measured in the load generator on one clock), and loss. A last run of the bridge is
recorded with py-spy (``--nonblocking``) and summarised; it is kept out of the figures.
The table is printed and everything is written to bench/results/bridge-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import psutil
import slixmpp
from cryptography.hazmat.primitives import serialization
from processes import free_port, stop
from pyspy_top import summarise_profile

from vw.bridge import colibri2
from vw.rtp.certificate import DtlsCertificate
from vw.xmpp.xmlparser import XMLStreamParser

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
RESULTS = HERE / "results" / "bridge-latest.json"
HOST = "127.0.0.1"
FOCUS = "focus@auth.localhost"
FOCUS_PASSWORD = "bench-focus-password"
BRIDGE_DOMAIN = "jvb.localhost"
#: mediasoup's figure: 500 consumers per core at 200 packets per second.
TARGET = 100_000


@dataclass(frozen=True)
class Params:
    """The load, identical for the bridge and the floor."""

    conferences: int
    senders: int
    receivers: int
    rate: float  # packets per second per sender
    duration: float  # seconds of sending per run
    payload: int  # bytes of RTP payload
    rounds: int
    profile_duration: float  # 0: no profiled run

    @classmethod
    def make(cls, args: argparse.Namespace) -> Params:
        if args.quick:
            base = cls(conferences=2, senders=2, receivers=3, rate=300, duration=4,
                       payload=1100, rounds=1, profile_duration=3)
        else:
            base = cls(conferences=4, senders=3, receivers=5, rate=500, duration=10,
                       payload=1100, rounds=3, profile_duration=10)
        overrides = {k: getattr(args, k) for k in ("conferences", "senders", "receivers",
                                                    "rate", "duration", "rounds")
                     if getattr(args, k) is not None}
        if args.no_profile:
            overrides["profile_duration"] = 0
        return cls(**{**asdict(base), **overrides})

    @property
    def fanout(self) -> int:
        """Copies the bridge sends of each packet it receives."""
        return self.senders - 1 + self.receivers

    @property
    def offered(self) -> float:
        """Packets per second the forwarder should send out."""
        return self.conferences * self.senders * self.rate * self.fanout


#: With ``--pin``: the cores of the forwarder and of the load (generator and this process).
PIN: dict[str, set[int]] = {}


def _die_with_parent() -> None:
    """In the child: have Linux send SIGTERM if the benchmark dies without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if "forwarder" in PIN:
        os.sched_setaffinity(0, PIN["forwarder"])


def cpu_seconds(process: psutil.Process) -> tuple[float, float]:
    """User and system CPU seconds of one process so far."""
    times = process.cpu_times()
    return times.user, times.system


def machine_busy() -> tuple[float, float, float]:
    """CPU seconds the whole machine has spent busy (every core, every process), in softirq
    (part of loopback delivery can run there, charged to no process) and stolen."""
    t = psutil.cpu_times()
    softirq = getattr(t, "softirq", 0.0)
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0) + softirq
    return busy, softirq, getattr(t, "steal", 0.0)


def wait_until(check: Any, what: str, process: subprocess.Popen, timeout: float) -> None:
    """Poll ``check()`` until true; raise if the process exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {process.returncode}")
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not ready after {timeout}s")


class Stack:
    """The all-in-one on free loopback ports, with a focus account."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.c2s, self.bridge_http, self.focus_http = free_port(), free_port(), free_port()
        self.xmpp_http = free_port()
        self.udp = free_port(socket.SOCK_DGRAM)
        self.config = directory / "vw.toml"
        self.config.write_text(f"""
[general]
state_dir = "{directory / 'var'}"
bind = "{HOST}"
[xmpp]
c2s_port = {self.c2s}
http_port = {self.xmpp_http}
component_port = {(component := free_port())}
[bridge]
udp_port = {self.udp}
http_port = {self.bridge_http}
bridge_id = "bench"
xmpp_port = {component}
[focus]
http_port = {self.focus_http}
xmpp_port = {self.c2s}
password = "{FOCUS_PASSWORD}"
[portal]
http_port = {free_port()}
[turn]
udp_port = {(turn := free_port(socket.SOCK_DGRAM, socket.SOCK_STREAM))}
tcp_port = {turn}
tls_port = {free_port()}
http_port = {free_port()}
""")
        subprocess.run([BIN / "vw-accounts", "--config", str(self.config), "add", FOCUS,
                        "--password-stdin"], input=FOCUS_PASSWORD + "\n", text=True,
                       check=True, cwd=directory, capture_output=True)
        with open(directory / "twistd.log", "wb") as log:
            self.popen = subprocess.Popen(
                [BIN / "twistd", "--nodaemon", "--pidfile=", "vw", "--config", str(self.config)],
                cwd=directory, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent)
        self.process = psutil.Process(self.popen.pid)
        wait_until(lambda: socket.create_connection((HOST, self.c2s), 0.5).close() is None,
                   "XMPP port", self.popen, 30)
        wait_until(lambda: self.stats() is not None, "bridge health", self.popen, 30)
        wait_until(lambda: urllib.request.urlopen(  # noqa: S310 - loopback
            f"http://{HOST}:{self.focus_http}/about/health", timeout=5).status == 200,
                   "focus health", self.popen, 30)

    def stats(self) -> dict[str, Any]:
        url = f"http://{HOST}:{self.bridge_http}/colibri/stats"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())

    @property
    def ca(self) -> Path:
        return self.directory / "var" / "tls" / "ca.pem"

    def stop(self) -> None:
        stop(self.popen)


class Relay:
    """bench/bridge_relay.py in a process of its own."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port(socket.SOCK_DGRAM)
        self.popen = subprocess.Popen(
            [sys.executable, str(HERE / "bridge_relay.py"), str(self.port)],
            stdout=subprocess.PIPE, stderr=open(directory / "relay.log", "wb"),  # noqa: SIM115
            stdin=subprocess.DEVNULL, text=True, preexec_fn=_die_with_parent)
        self.process = psutil.Process(self.popen.pid)
        assert self.popen.stdout is not None
        if self.popen.stdout.readline().strip() != "ready":  # bounded: the relay prints or dies
            raise RuntimeError("the relay did not start; see relay.log")


# -- Colibri2 allocation, as the focus does it -------------------------------------------------


async def focus_client(stack: Stack, timeout: float = 20) -> slixmpp.ClientXMPP:
    """slixmpp logged in as the focus over STARTTLS."""
    client = slixmpp.ClientXMPP(f"{FOCUS}/bench", FOCUS_PASSWORD)
    client.enable_direct_tls = False
    client.ssl_context.load_verify_locations(str(stack.ca))
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    client.add_event_handler("session_start",
                             lambda _: started.done() or started.set_result(None))
    client.add_event_handler("failed_auth", lambda _: started.done() or started.set_exception(
        RuntimeError("focus login failed")))
    client.connect(HOST, stack.c2s)
    await asyncio.wait_for(started, timeout)
    return client


async def colibri(focus: slixmpp.ClientXMPP,
                  request: colibri2.ConferenceModify) -> colibri2.ConferenceModified:
    iq = focus.make_iq_set(ito=BRIDGE_DOMAIN)
    iq.xml.append(ElementTree.fromstring(request.toElement().toXml()))
    reply = await iq.send(timeout=10)
    parser = XMLStreamParser()
    parser.feed(b"<s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams'>")
    (event,) = parser.feed(str(reply).encode())
    return colibri2.ConferenceModified.fromElement(event.element.firstChildElement())


async def first_colibri(focus: slixmpp.ClientXMPP, request: colibri2.ConferenceModify,
                        timeout: float = 20) -> colibri2.ConferenceModified:
    """The first request, retried until the bridge's component has joined the XMPP server."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await colibri(focus, request)
        except (slixmpp.exceptions.IqError, slixmpp.exceptions.IqTimeout):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


@dataclass
class Allocation:
    meetings: list[str]
    endpoints: list[dict[str, Any]]
    bridge_fingerprint: str


async def allocate(focus: slixmpp.ClientXMPP, params: Params, tag: str,
                   fingerprint: str) -> Allocation:
    """C conferences of S senders (one video SSRC each) and R receivers, fully signaled."""
    meetings, endpoints, bridge_fingerprint = [], [], ""
    for c in range(params.conferences):
        meeting = str(uuid.uuid4())
        names = ([f"s{i}" for i in range(params.senders)]
                 + [f"r{i}" for i in range(params.receivers)])
        created = await first_colibri(focus, colibri2.ConferenceModify(
            meeting_id=meeting, name=f"bench-{tag}-{c}@conference.localhost", create=True,
            endpoints=[colibri2.Endpoint(id=n, create=True, transport=colibri2.Transport(
                ice_controlling=True)) for n in names]))
        meetings.append(meeting)
        signaled = []
        for name in names:
            bridge = created.endpoint(name).transport.ice_udp
            bridge_fingerprint = bridge.fingerprints[0].value
            ssrc = secrets.randbits(31) | 1 if name.startswith("s") else None
            spec = {"id": f"{tag}-{c}-{name}", "conference": f"{tag}-{c}", "ssrc": ssrc,
                    "ufrag": secrets.token_hex(4), "pwd": secrets.token_urlsafe(18),
                    "bridge_ufrag": bridge.ufrag, "bridge_pwd": bridge.pwd}
            endpoints.append(spec)
            sources = [] if ssrc is None else [colibri2.MediaSource(
                type="video", id=f"{name}-v0", sources=[colibri2.Source(ssrc=ssrc)])]
            signaled.append(colibri2.Endpoint(
                id=name, sources=sources, transport=colibri2.Transport(
                    ice_udp=colibri2.IceUdpTransport(
                        ufrag=spec["ufrag"], pwd=spec["pwd"], fingerprints=[
                            colibri2.Fingerprint(hash="sha-256", setup="active",
                                                 value=fingerprint)]))))
        await colibri(focus, colibri2.ConferenceModify(meeting_id=meeting, endpoints=signaled))
    return Allocation(meetings, endpoints, bridge_fingerprint)


async def expire(focus: slixmpp.ClientXMPP, allocation: Allocation) -> None:
    for meeting in allocation.meetings:
        with contextlib.suppress(slixmpp.exceptions.IqError, slixmpp.exceptions.IqTimeout):
            await colibri(focus, colibri2.ConferenceModify(meeting_id=meeting, expire=True))


def plain_endpoints(params: Params, tag: str) -> list[dict[str, Any]]:
    """The same endpoints for the relay: rooms instead of conferences, no credentials."""
    return [{"id": f"{tag}-{c}-{name}", "conference": f"{tag}-{c}",
             "ssrc": secrets.randbits(31) | 1 if name.startswith("s") else None}
            for c in range(params.conferences)
            for name in [f"s{i}" for i in range(params.senders)]
            + [f"r{i}" for i in range(params.receivers)]]


# -- one run of the load -----------------------------------------------------------------------


async def read_event(stream: asyncio.StreamReader, timeout: float) -> dict[str, Any]:
    line = await asyncio.wait_for(stream.readline(), timeout)
    if not line:
        raise RuntimeError("the load generator exited early; see its stderr above")
    return json.loads(line)


async def run_load(spec: dict[str, Any], directory: Path, target: psutil.Process,
                   stats: Any = None, profile: Path | None = None) -> dict[str, Any]:
    """Start bench/bridge_load.py, say go once it is connected, meter ``target`` meanwhile."""
    path = directory / f"spec-{spec['tag']}.json"
    path.write_text(json.dumps(spec))
    load = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "bridge_load.py"), str(path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        preexec_fn=(lambda: os.sched_setaffinity(0, PIN["load"])) if PIN else None)
    assert load.stdin is not None and load.stdout is not None
    recorder = None
    try:
        ready = await read_event(load.stdout, 60)
        if profile is not None:
            recorder = await asyncio.create_subprocess_exec(
                str(BIN / "py-spy"), "record", "--pid", str(target.pid), "--rate", "200",
                "--nonblocking", "--format", "raw", "-o", str(profile),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            await asyncio.sleep(1.0)  # let py-spy attach
        before = stats() if stats else None
        cpu0, wall0 = cpu_seconds(target), time.perf_counter()
        busy0, own0 = machine_busy(), time.process_time()
        load.stdin.write(b"go\n")
        await load.stdin.drain()
        done = await read_event(load.stdout, spec["duration"] + 60)
        (user1, system1), wall = cpu_seconds(target), time.perf_counter() - wall0
        user, system = user1 - cpu0[0], system1 - cpu0[1]
        cpu = user + system
        machine, own = machine_busy(), time.process_time() - own0
        busy, softirq, steal = (after_ - before_ for after_, before_ in zip(machine, busy0,
                                                                            strict=True))
        after = stats() if stats else None
    finally:
        if recorder is not None:
            with contextlib.suppress(ProcessLookupError):
                recorder.send_signal(signal.SIGINT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(recorder.wait(), 30)
        with contextlib.suppress(ProcessLookupError):
            load.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(load.wait(), 20)
        if load.returncode is None:
            load.kill()
            await load.wait()
    if done["received"] == 0 or cpu <= 0:
        raise RuntimeError(f"nothing measurable was forwarded: {done}")
    result = {**{k: v for k, v in done.items() if k != "event"}, "setup_s": ready["setup_s"],
              "srtp_profiles": ready["srtp_profiles"],
              "server_cpu_s": cpu, "server_system_s": system, "window_s": wall,
              "forwarded_per_cpu_s": done["received"] / cpu,
              "server_cpu_share": cpu / wall,
              # what the rest of the machine (other users, py-spy) took meanwhile, in cores
              "others_cpu_cores": max(0.0, busy - softirq - cpu - done["load_cpu_s"] - own) / wall,
              "softirq_cores": softirq / wall,
              "steal_cores": steal / wall}
    if before is not None and after is not None:
        result["bridge_stats"] = {k: after[k] - before[k] for k in (
            "packets_received", "packets_sent", "dropped_unannounced", "dropped_srtp",
            "dropped_stun", "dropped_unknown")}
    return result


def load_spec(params: Params, tag: str, mode: str, server: tuple[str, int],
              endpoints: list[dict[str, Any]], certificate: dict[str, str] | None = None,
              fingerprint: str = "", duration: float | None = None) -> dict[str, Any]:
    return {"tag": tag, "mode": mode, "server": server, "endpoints": endpoints,
            "certificate": certificate, "bridge_fingerprint": fingerprint,
            "rate": params.rate, "duration": duration or params.duration,
            "payload": params.payload, "drain": 0.5}


def summary(result: dict[str, Any]) -> str:
    return (f"{result['received']:,} forwarded in {result['sending_s']:.1f} s, "
            f"{result['server_cpu_s']:.2f} CPU s -> {result['forwarded_per_cpu_s']:,.0f}/CPU s; "
            f"p50 {result['delay_us']['p50']:.0f} us, p99 {result['delay_us']['p99']:.0f} us, "
            f"loss {100 * result['loss']:.2f}%, load generator {result['load_cpu_s']:.1f} CPU s, "
            f"others {result['others_cpu_cores']:.2f} cores, softirq "
            f"{result['softirq_cores']:.2f}, steal {result['steal_cores']:.2f}")


# -- the profile -------------------------------------------------------------------------------


#: Where a sample's time goes, by its innermost frame and the frames above it.
CATEGORIES = (
    "UDP sendto (Twisted Port.write)",
    "Twisted address checks per write (isIPAddress, isIPv6Address)",
    "UDP recvfrom loop (Twisted Port.doRead)",
    "SRTP protect (libsrtp via pylibsrtp, vw.rtp.srtp)",
    "SRTP unprotect (libsrtp via pylibsrtp, vw.rtp.srtp)",
    "vw bridge Python (demux, routing, stats)",
    "Twisted reactor and dispatch, unattributed",
)


def category(frames: list[str]) -> str:
    """One of CATEGORIES for a sample (frames from the outermost to the innermost)."""
    leaf = frames[-1]
    if leaf.startswith("Port.write "):
        return CATEGORIES[0]
    if leaf.startswith(("isIPAddress ", "isIPv6Address ")):
        return CATEGORIES[1]
    if leaf.startswith("Port.doRead "):
        return CATEGORIES[2]
    if "pylibsrtp/" in leaf or "vw/rtp/srtp.py" in leaf:
        unprotect = any(f.startswith("SrtpContext.unprotect") for f in frames)
        return CATEGORIES[4 if unprotect else 3]
    if "vw/" in leaf:
        return CATEGORIES[5]
    return CATEGORIES[6]


# -- the report --------------------------------------------------------------------------------


def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median packets per CPU-second (the upper one of an even count).

    Not the best: a round in which other processes starve the forwarder batches more work
    per wake-up, so it looks more efficient while it loses packets.
    """
    return sorted(runs, key=lambda r: r["forwarded_per_cpu_s"])[len(runs) // 2]


def build_table(bridge: dict[str, Any], floor: dict[str, Any]) -> list[dict[str, Any]]:
    def row(metric: str, key: str, scale: float = 1, fmt: str = "{:,.0f}",
            target: str = "") -> dict[str, Any]:
        def get(result: dict[str, Any]) -> float:
            value: Any = result
            for part in key.split("."):
                value = value[part]
            return float(value) * scale

        b, f = get(bridge), get(floor)
        return {"metric": metric, "key": key, "bridge": b, "floor": f,
                "bridge_over_floor": b / f if f else None, "format": fmt,
                "target": target}

    per_cpu = bridge["forwarded_per_cpu_s"]
    verdict = f">= {TARGET:,}: {'met' if per_cpu >= TARGET else 'not met'} " \
              f"({per_cpu / TARGET:.2f}x)"
    return [
        row("packets forwarded (received)", "received"),
        row("offered load, packets/s out", "offered_per_s"),
        row("loss %", "loss", 100, "{:.2f}"),
        row("forwarder CPU s", "server_cpu_s", 1, "{:.2f}"),
        row("forwarder CPU share of the window", "server_cpu_share", 100, "{:.0f}%"),
        row("... of which system (kernel) CPU s", "server_system_s", 1, "{:.2f}"),
        row("forwarded packets per CPU-second", "forwarded_per_cpu_s", target=verdict),
        row("CPU us per forwarded packet", "us_per_packet", 1, "{:.1f}"),
        row("delay p50 (us)", "delay_us.p50"),
        row("delay p99 (us)", "delay_us.p99"),
        row("load generator CPU s", "load_cpu_s", 1, "{:.2f}"),
        row("machine softirq, uncharged (cores)", "softirq_cores", 1, "{:.2f}"),
        row("other processes' CPU (cores)", "others_cpu_cores", 1, "{:.2f}"),
    ]


def print_table(table: list[dict[str, Any]]) -> None:
    print(f"\n{'metric':<36} {'vw-bridge':>12} {'plain relay':>12} {'bridge/floor':>13}  target")
    for r in table:
        fmt = r["format"]
        ratio = r["bridge_over_floor"]
        ratio_text = "-" if ratio is None else f"{ratio:.2f}x"
        print(f"{r['metric']:<36} {fmt.format(r['bridge']):>12} {fmt.format(r['floor']):>12} "
              f"{ratio_text:>13}  {r['target']}")


def print_profile(profile: dict[str, Any]) -> None:
    where = f": {profile['file']}" if profile["file"] else ""
    print(f"\nprofile of the bridge ({profile['busy_samples']} busy samples, "
          f"{profile['idle_samples']} idle){where}")
    for title in ("categories", "self", "inclusive"):
        print(f"-- top {title} --")
        for frame, percent in profile[title]:
            print(f"{percent:6.1f}%  {frame}")


# -- main --------------------------------------------------------------------------------------


def write_certificate(directory: Path) -> tuple[dict[str, str], str]:
    """The load generator's DTLS certificate (one for every endpoint) and its fingerprint."""
    certificate = DtlsCertificate.generate()
    key, cert = directory / "load.key", directory / "load.pem"
    key.write_bytes(certificate.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    cert.write_bytes(certificate.certificate.public_bytes(serialization.Encoding.PEM))
    return {"key": str(key), "cert": str(cert)}, certificate.fingerprint


async def bench(params: Params, directory: Path,
                profile_out: Path | None = None) -> dict[str, Any]:
    print(f"load: {params.conferences} conferences x ({params.senders} senders + "
          f"{params.receivers} receivers), {params.rate:.0f} packets/s per sender, "
          f"{params.payload}-byte payloads, {params.duration:.0f} s per run; "
          f"{params.offered:,.0f} packets/s to forward")
    stack = Stack(directory / "vw")
    relay = Relay(directory)
    focus = await focus_client(stack)
    certificate, fingerprint = write_certificate(directory)
    runs: dict[str, list[dict[str, Any]]] = {"bridge": [], "floor": []}
    profile: dict[str, Any] | None = None
    try:
        for number in range(params.rounds):
            order = ["bridge", "floor"] if number % 2 == 0 else ["floor", "bridge"]
            for system in order:
                tag = f"{system[0]}{number}"
                if system == "bridge":
                    allocation = await allocate(focus, params, tag, fingerprint)
                    spec = load_spec(params, tag, "srtp", (HOST, stack.udp),
                                     allocation.endpoints, certificate,
                                     allocation.bridge_fingerprint)
                    result = await run_load(spec, directory, stack.process, stack.stats)
                    await expire(focus, allocation)
                else:
                    spec = load_spec(params, tag, "plain", (HOST, relay.port),
                                     plain_endpoints(params, tag))
                    result = await run_load(spec, directory, relay.process)
                result["round"] = number
                result["offered_per_s"] = params.offered
                result["us_per_packet"] = 1e6 * result["server_cpu_s"] / max(
                    result["received"], 1)
                runs[system].append(result)
                print(f"  round {number + 1} {system:>6}: {summary(result)}", flush=True)
        if params.profile_duration:
            allocation = await allocate(focus, params, "profile", fingerprint)
            spec = load_spec(params, "profile", "srtp", (HOST, stack.udp), allocation.endpoints,
                             certificate, allocation.bridge_fingerprint,
                             params.profile_duration)
            out = profile_out or directory / "bridge-profile.txt"
            result = await run_load(spec, directory, stack.process, stack.stats, profile=out)
            await expire(focus, allocation)
            print(f"  profiled bridge run: {summary(result)}")
            profile = {**summarise_profile(out, category), "run": result}
            profile["file"] = str(profile_out) if profile_out else None
    finally:
        focus.disconnect(wait=0.1)
        await asyncio.sleep(0.2)
        stop(relay.popen)
        stack.stop()
    bridge, floor = median(runs["bridge"]), median(runs["floor"])
    return {"runs": runs, "median": {"bridge": bridge, "floor": floor},
            "table": build_table(bridge, floor), "profile": profile}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test of ~30 s")
    parser.add_argument("--conferences", type=int)
    parser.add_argument("--senders", type=int)
    parser.add_argument("--receivers", type=int)
    parser.add_argument("--rate", type=float, help="packets per second per sender")
    parser.add_argument("--duration", type=float, help="seconds of sending per run")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy run")
    parser.add_argument("--profile-out", type=Path,
                        help="keep py-spy's raw profile (collapsed stacks) in this file")
    parser.add_argument("--pin", action="store_true",
                        help="forwarder on the last core, load generator on the others")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    params = Params.make(args)
    if args.pin:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            parser.error("--pin needs two cores")
        PIN.update(forwarder={cores[-1]}, load=set(cores[:-1]))
        os.sched_setaffinity(0, PIN["load"])
    started = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="vw-bench-bridge-"))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        outcome = asyncio.run(bench(params, directory, args.profile_out))
    finally:
        if args.keep:
            print(f"kept {directory}")
        else:
            subprocess.run(["rm", "-rf", str(directory)], check=False)
    print_table(outcome["table"])
    if outcome["profile"]:
        print_profile(outcome["profile"])
    report = {
        "benchmark": "bench/bridge.py",
        "quick": args.quick,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_at_end": os.getloadavg()},
        "parameters": {**asdict(params), "fanout": params.fanout,
                       "offered_per_s": params.offered, "target_per_cpu_s": TARGET},
        **outcome,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{report['duration_s']} s; results in {args.output}")


if __name__ == "__main__":
    main()
