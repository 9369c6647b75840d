"""vw-balancer against HAProxy, side by side in one run, in front of the same backend.

Run: ``.venv/bin/python bench/balancer.py [--quick]``. Needs Debian's ``haproxy`` and
``wrk``. Everything runs on loopback from a temporary directory:

* the backend: a second HAProxy (nbthread 1) answering every request itself with a 2-byte
  body (``http-request return``), so that the backend costs little next to the proxies; it
  listens on two ports, which every proxy takes for two shards (as in the issue's setting
  and etc/haproxy.cfg), so that a proxy chooses between shards for each room;
  and, for WebSocket, a small asyncio server (a subprocess) that answers the upgrade with 101
  and echoes every byte after it;
* vw-balancer: ``twistd vw-balancer`` with those two shards (and the echo server as its
  bridge, for the WebSocket phase), plain HTTP listener;
* HAProxy as the proxy under comparison, twice:

  - ``haproxy``: the project's ``etc/haproxy.cfg`` (``nbthread 1``), the routing
    vw-balancer does, written for HAProxy, with this run's ports and the two shards: client
    forwarding headers removed and set, hostile room names refused, the room taken from
    ``?room=`` or the path, percent-decoded and lowercased, hashed to a shard, the shard
    named in ``X-VW-Shard`` on the response, health checks every 2 s. The same job, so
    the main comparison.
  - ``haproxy-bare``: the least a proxy does here (``nbthread 1``, ``option forwardfor``,
    ``balance hash url_param(room)``, ``http-reuse always``, health checks every 2 s): what
    this benchmark compared against before, for continuity.

Phases, for each proxy in turn (who goes first alternates between rounds):

(1) throughput: ``wrk -t1 -c50 -d D --latency`` on ``/xmpp-websocket?room=benchN`` for N = 1,
    2, ... ``--rooms`` (20,000) in turn (a wrk script), so that no proxy can answer from what
    it worked out for an earlier request (keep-alive,
    50 connections): requests per second, and the proxy's CPU seconds (user + system, from
    ``/proc/PID/stat``) per 10,000 requests;
(2) latency: ``wrk -t1 -c1`` (one request at a time) for D seconds through the proxy and
    straight to the backend: the added p99 is p99(proxy) - p99(direct);
(3) WebSocket: C tunnels at once, each upgrading through the proxy and echoing M MiB in
    64 KiB writes; MiB per second (both ways counted once).

Each figure's median over the rounds is reported (ratios are of medians); every round is
in bench/results/balancer-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from processes import cpu_seconds, free_port, stop

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
RESULTS = HERE / "results" / "balancer-latest.json"
HOST = "127.0.0.1"
TARGET = "/xmpp-websocket?room=bench"
#: wrk's script for the throughput phase: each request for the next of ROOMS rooms, so that
#: no proxy answers from what it worked out for an earlier request.
ROOMS_SCRIPT = """
local rooms, n = {rooms}, 0
request = function()
  n = n % rooms + 1
  return wrk.format(nil, "{target}" .. n)
end
"""
CHUNK = 65536

WEBSOCKET_BACKEND = """
import asyncio, base64, hashlib, re, sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

async def serve(reader, writer):
    head = await reader.readuntil(b"\\r\\n\\r\\n")
    if b"/about/health" in head:
        writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: 0\\r\\nconnection: close\\r\\n\\r\\n")
        await writer.drain()
        writer.close()
        return
    key = re.search(rb"(?i)sec-websocket-key: *([^\\r]+)", head).group(1)
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\\r\\nupgrade: websocket\\r\\n"
                 b"connection: upgrade\\r\\nsec-websocket-accept: " + accept + b"\\r\\n\\r\\n")
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

asyncio.run(main())
"""


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open")


class Setup:
    """The backend, vw-balancer and HAProxy, started in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[subprocess.Popen] = []
        self.backend = free_port()
        self.backend2 = free_port()
        self.websocket = free_port()
        self.vw = free_port()
        self.haproxy = free_port()
        self.haproxy_bare = free_port()

    def start(self, command: list[str], port: int, name: str) -> subprocess.Popen:
        log = open(self.directory / f"{name}.log", "w")
        process = subprocess.Popen(command, cwd=self.directory, stdout=log,
                                   stderr=subprocess.STDOUT)
        self.processes.append(process)
        wait_for_port(port, process)
        return process

    def haproxy_config(self, name: str, body: str) -> list[str]:
        path = self.directory / f"{name}.cfg"
        path.write_text(f"""
global
    nbthread 1
    maxconn 2000
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
{body}""")
        return ["haproxy", "-db", "-f", str(path)]

    def run(self) -> None:
        self.start(self.haproxy_config("backend", f"""
frontend backend
    bind {HOST}:{self.backend}
    bind {HOST}:{self.backend2}
    http-request return status 200 content-type text/plain string ok
"""), self.backend, "backend")
        self.start([sys.executable, "-c", WEBSOCKET_BACKEND, str(self.websocket)],
                   self.websocket, "websocket")
        config = self.directory / "vw.toml"
        config.write_text(f"""
[general]
state_dir = "{self.directory / 'var'}"
[balancer]
http_port = {self.vw}
tls_port = {free_port()}
admin_port = {free_port()}
bridges = {{ "jvb1" = "{HOST}:{self.websocket}" }}
connection_rate = 100000.0
connection_burst = 100000
[[balancer.shards]]
name = "s1"
address = "{HOST}:{self.backend}"
[[balancer.shards]]
name = "s2"
address = "{HOST}:{self.backend2}"
""")
        self.vw_process = self.start(
            [str(BIN / "twistd"), "--nodaemon", "--pidfile=", "vw-balancer", "--config",
             str(config)], self.vw, "vw-balancer")
        self.haproxy_process = self.start(["haproxy", "-db", "-f", str(self.example_config())],
                                          self.haproxy, "haproxy")
        self.haproxy_bare_process = self.start(self.haproxy_config("bare", f"""
frontend proxy
    bind {HOST}:{self.haproxy_bare}
    option forwardfor
    use_backend ws if {{ path_beg /colibri-ws/ }}
    default_backend shards
backend shards
    balance hash url_param(room)
    hash-type consistent
    http-reuse always
    option httpchk GET /about/health
    server s1 {HOST}:{self.backend} check inter 2s
    server s2 {HOST}:{self.backend2} check inter 2s
backend ws
    server ws {HOST}:{self.websocket}
"""), self.haproxy_bare, "haproxy-bare")

    def example_config(self) -> Path:
        """etc/haproxy.cfg with this run's ports, the backend's two ports as its two shards
        and the echo process as bridge jvb1; plain HTTP only."""
        text = (HERE.parent / "etc" / "haproxy.cfg").read_text()
        for old, new in [
                ("/run/haproxy/admin.sock", str(self.directory / "admin.sock")),
                ("    bind :8443 ssl crt /etc/vw/balancer.pem alpn http/1.1\n", ""),
                ("bind :8080", f"bind {HOST}:{self.haproxy}"),
                ("127.0.0.1:8081", f"{HOST}:{free_port()}"),
                ("10.0.0.11:5280", f"{HOST}:{self.backend}"),
                ("10.0.0.12:5280", f"{HOST}:{self.backend2}"),
                ("10.0.0.21:9090", f"{HOST}:{self.websocket}"),
                ("10.0.0.31:8000", f"{HOST}:{self.backend}"),
                ("bind :5222", f"bind {HOST}:{free_port()}"),
                ("10.0.0.11:5222", f"{HOST}:{self.backend}"),
                ("10.0.0.12:5222", f"{HOST}:{self.backend}")]:
            if old not in text:
                raise RuntimeError(f"etc/haproxy.cfg no longer has {old!r}")
            text = text.replace(old, new)
        path = self.directory / "example.cfg"
        path.write_text(text)
        return path

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop(process)


def wrk(port: int, connections: int, seconds: float,
        script: Path | None = None) -> dict[str, float]:
    """wrk's requests per second and latency percentiles (ms)."""
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency",
         *(["-s", str(script)] if script else []), f"http://{HOST}:{port}{TARGET}"],
        capture_output=True, text=True, timeout=seconds + 30)
    out = result.stdout
    figures: dict[str, float] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)",
                                                         out).group(1))}
    for percent, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
        figures[f"p{percent}"] = float(value) * scale
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["errors"] = float(errors.group(1)) if errors else 0.0
    return figures


async def websocket_throughput(port: int, tunnels: int, mebibytes: int) -> float:
    """MiB per second echoed through ``tunnels`` WebSocket tunnels at once."""
    total = mebibytes * 1024 * 1024

    async def one(index: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(f"GET /colibri-ws/jvb1/c/e{index} HTTP/1.1\r\nHost: bench\r\n"
                     "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        payload = os.urandom(CHUNK)
        received = 0

        async def drain() -> None:
            nonlocal received
            while received < total:
                data = await reader.read(1 << 20)
                if not data:
                    raise ConnectionError("tunnel closed")
                received += len(data)

        reading = asyncio.create_task(drain())
        for _ in range(total // CHUNK):
            writer.write(payload)
            await writer.drain()
        await reading
        writer.close()

    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(tunnels))), 120)
    return tunnels * mebibytes / (time.monotonic() - started)


def measure(name: str, port: int, pid: int, args: argparse.Namespace,
            direct_p99: float, script: Path | None) -> dict[str, Any]:
    before = cpu_seconds(pid)
    load = wrk(port, args.connections, args.seconds, script)
    cpu = cpu_seconds(pid) - before
    latency = wrk(port, 1, args.seconds)
    mib = asyncio.run(websocket_throughput(port, args.tunnels, args.mebibytes))
    requests = load["rps"] * int(args.seconds)
    figures = {"rps": load["rps"], "p99_loaded_ms": load.get("p99", 0.0),
               "errors": load["errors"], "cpu_per_10k": 10000 * cpu / requests,
               "p50_ms": latency.get("p50", 0.0), "p99_ms": latency.get("p99", 0.0),
               "added_p99_ms": latency.get("p99", 0.0) - direct_p99,
               "websocket_mib_s": mib}
    print(f"  {name:12} {figures['rps']:9.0f} req/s ({load['errors']:.0f} not 2xx)  "
          f"cpu/10k {figures['cpu_per_10k']:.3f} s  "
          f"p99(c=1) {figures['p99_ms']:.3f} ms (+{figures['added_p99_ms']:.3f})  "
          f"ws {mib:.0f} MiB/s", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round (smoke test)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--tunnels", type=int, default=4)
    parser.add_argument("--mebibytes", type=int, default=64, help="per tunnel")
    parser.add_argument("--rooms", type=int, default=20000,
                        help="rooms the throughput phase goes through in turn (1: one URL)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.mebibytes = 1, 3.0, 16
    for tool in ("haproxy", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/balancer.py needs {tool} (make os-deps)")
    directory = Path(tempfile.mkdtemp(prefix="vw-bench-balancer-"))
    setup = Setup(directory)
    script = None
    if args.rooms > 1:
        script = directory / "rooms.lua"
        script.write_text(ROOMS_SCRIPT.format(rooms=args.rooms, target=TARGET))
    rounds: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        setup.run()
        urllib.request.urlopen(f"http://{HOST}:{setup.vw}/about/health", timeout=10).read()
        time.sleep(2.5)  # HAProxy's first health check
        wrk(setup.vw, args.connections, 1)  # warm up
        for number in range(args.rounds):
            print(f"round {number + 1}/{args.rounds}", flush=True)
            direct = wrk(setup.backend, 1, args.seconds)
            print(f"  direct       p99(c=1) {direct.get('p99', 0.0):.3f} ms", flush=True)
            order = [("vw", setup.vw, setup.vw_process.pid),
                     ("haproxy", setup.haproxy, setup.haproxy_process.pid),
                     ("haproxy-bare", setup.haproxy_bare, setup.haproxy_bare_process.pid)]
            order = order[number % 3:] + order[:number % 3]  # each goes first in turn
            result: dict[str, Any] = {"direct_p99_ms": direct.get("p99", 0.0)}
            for name, port, pid in order:
                result[name] = measure(name, port, pid, args, result["direct_p99_ms"], script)
            rounds.append(result)
    finally:
        setup.stop()
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)

    def median(side: str, key: str) -> float:
        return statistics.median(r[side][key] for r in rounds)

    proxies = ("vw", "haproxy", "haproxy-bare")
    summary = {key: {name: median(name, key) for name in proxies}
               for key in ("rps", "cpu_per_10k", "p99_ms", "added_p99_ms", "p99_loaded_ms",
                           "websocket_mib_s", "errors")}
    ratios = {f"{key}_vw_over_{anchor}": summary[key]["vw"] / summary[key][anchor]
              for key in ("rps", "cpu_per_10k", "websocket_mib_s")
              for anchor in proxies[1:]}
    print("\nmedian of rounds          vw-balancer     HAProxy  vw/HAProxy  HAProxy-bare  vw/bare")
    for key, label in (("rps", "requests/s (c=50)"), ("cpu_per_10k", "CPU s per 10k req"),
                       ("p99_ms", "p99 ms (c=1)"), ("added_p99_ms", "added p99 ms (c=1)"),
                       ("p99_loaded_ms", "p99 ms (c=50)"),
                       ("websocket_mib_s", "WebSocket MiB/s")):
        vw, haproxy, bare = (summary[key][name] for name in proxies)
        print(f"{label:24} {vw:12.3f} {haproxy:11.3f} {vw / haproxy if haproxy else 0:11.2f}"
              f" {bare:13.3f} {vw / bare if bare else 0:8.2f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "kernel": platform.release()},
        "haproxy": subprocess.run(["haproxy", "-v"], capture_output=True,
                                  text=True).stdout.split("\n")[0],
        "params": vars(args), "seconds": round(time.monotonic() - started, 1),
        "summary": summary, "ratios": ratios, "rounds": rounds}, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
