"""vw-xmpp against Prosody, side by side on the same load: logins, MUC fan-out, memory.

Run: ``.venv/bin/python bench/xmpp.py [--quick]``. Both servers run on loopback from a
temporary directory, configured alike (STARTTLS required, SASL ANONYMOUS, a MUC
service, per-connection rate limits lifted). The load comes from one asyncio process
speaking raw XML (bench/xmpp_client.py). Every phase is bounded in count and time.

Measured on each server, with the same parameters:

(a) logins: full connect + STARTTLS + SASL ANONYMOUS + bind + close, N at a time;
(b) MUC fan-out: occupants in one room, a few of them sending groupchat messages with a
    window of outstanding messages each; deliveries counted at every occupant;
(c) memory: server RSS growth per idle authenticated connection;
(d) server CPU seconds (user + system, psutil) around every phase.

Order: (c) on freshly started servers; restart; (b) for ``rounds`` rounds; (a) for
``rounds`` rounds; then one informative (b) with a fifth of the messages, to show how each
server copes after the login churn. The two servers take turns within each phase, and the
best round of each is reported. ``--only``, ``--phases`` and ``--profile-vw`` help profiling.

Results are printed as a table and written to bench/results/xmpp-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import resource
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmpp_client import MarkerCounter, RawClient, XMPPError, client_tls_context
from xmpp_servers import (
    DOMAIN,
    HOST,
    MUC_DOMAIN,
    Server,
    prosody_server,
    prosody_version,
    vw_server,
    write_certificate,
)

RESULTS = Path(__file__).resolve().parent / "results" / "xmpp-latest.json"
FAILURES = (OSError, XMPPError, TimeoutError)


@dataclass(frozen=True)
class Params:
    """The load, identical for both servers."""

    logins: int
    login_concurrency: int
    occupants: int
    senders: int
    messages: int
    window: int
    idle_connections: int
    rounds: int
    phase_timeout: float

    @classmethod
    def make(cls, quick: bool, rounds: int | None) -> Params:
        if quick:
            return cls(logins=100, login_concurrency=20, occupants=50, senders=10, messages=400,
                       window=10, idle_connections=300, rounds=rounds or 1, phase_timeout=60)
        return cls(logins=2000, login_concurrency=20, occupants=50, senders=10, messages=10000,
                   window=10, idle_connections=1000, rounds=rounds or 3, phase_timeout=120)


class Meter:
    """Wall time, server CPU and bench CPU between ``start`` and ``stop``."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def start(self) -> None:
        self.wall0 = time.perf_counter()
        self.cpu0 = self.server.cpu_seconds()
        self.bench0 = time.process_time()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall0
        return {"wall_s": wall, "server_cpu_s": self.server.cpu_seconds() - self.cpu0,
                "bench_cpu_s": time.process_time() - self.bench0}


async def bounded_map(count: int, concurrency: int, deadline: float,
                      job: Callable[[int], Awaitable[None]]) -> None:
    """Run ``job(i)`` for i < count, ``concurrency`` at a time, starting none after ``deadline``."""
    indexes = iter(range(count))

    async def worker() -> None:
        for i in indexes:
            if time.monotonic() > deadline:
                return
            await job(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def login_many(server: Server, count: int, concurrency: int,
                     deadline: float) -> tuple[list[RawClient], int]:
    """Open ``count`` authenticated connections; return them and the number of failures."""
    tls = client_tls_context()
    clients: list[RawClient] = []
    failed = 0

    async def job(_: int) -> None:
        nonlocal failed
        client = RawClient(HOST, server.c2s_port, DOMAIN, tls)
        try:
            await client.login()
            clients.append(client)
        except FAILURES:
            failed += 1
            client.abort()

    await bounded_map(count, concurrency, deadline, job)
    return clients, failed


async def close_all(clients: list[RawClient]) -> None:
    """Close connections politely, at most 100 at a time, aborting stragglers."""
    for i in range(0, len(clients), 100):
        await asyncio.gather(*(c.close(wait=3) for c in clients[i:i + 100]))


# -- (a) logins ------------------------------------------------------------------------


async def phase_logins(server: Server, p: Params) -> dict[str, Any]:
    """Full logins and polite closes, ``login_concurrency`` at a time."""
    tls = client_tls_context()
    done = failed = 0

    async def job(_: int) -> None:
        nonlocal done, failed
        client = RawClient(HOST, server.c2s_port, DOMAIN, tls)
        try:
            await client.login()
            await client.close()
            done += 1
        except FAILURES:
            failed += 1
            client.abort()

    meter = Meter(server)
    meter.start()
    await bounded_map(p.logins, p.login_concurrency, time.monotonic() + p.phase_timeout, job)
    m = meter.stop()
    return {**m, "logins": done, "failed": failed,
            "logins_per_s": done / m["wall_s"],
            "server_cpu_s_per_100": 100 * m["server_cpu_s"] / max(done, 1)}


# -- (b) MUC fan-out ---------------------------------------------------------------------


class Occupant:
    """A joined client whose received bytes are counted in the background."""

    def __init__(self, client: RawClient, index: int, sender: bool, window: int,
                 totals: FanoutTotals) -> None:
        self.client = client
        self.index = index
        self.tag = f"bm:s{index}:"
        markers = [b"<presence", b"bm:"] + ([self.tag.encode()] if sender else [])
        self.counter = MarkerCounter(*markers)
        self.window = asyncio.Semaphore(window)
        self.totals = totals
        self.task: asyncio.Task[None] | None = None
        self.sent = 0

    @property
    def presences(self) -> int:
        return self.counter.counts[0]

    def feed(self, data: bytes) -> None:
        added = self.counter.feed(data)
        if added[1]:
            self.totals.delivered += added[1]
            if self.totals.delivered >= self.totals.target:
                self.totals.complete.set()
        if len(added) > 2:
            for _ in range(added[2]):
                self.window.release()

    async def read_forever(self) -> None:
        reader = self.client.reader
        assert reader is not None
        self.feed(self.client.take_buffer())
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while chunk := await reader.read(262144):
                self.feed(chunk)

    async def send_all(self, room: str, count: int) -> None:
        """Send ``count`` groupchat messages, never more than the window unanswered."""
        for i in range(count):
            await self.window.acquire()
            self.client.send(f"<message to='{room}' type='groupchat' id='m{self.index}-{i}'>"
                             f"<body>{self.tag}{i}</body></message>".encode())
            self.sent += 1


@dataclass
class FanoutTotals:
    target: int
    complete: asyncio.Event
    delivered: int = 0


async def phase_fanout(server: Server, p: Params, room_name: str) -> dict[str, Any]:
    """Occupants join one room; senders send ``messages`` in total; count deliveries."""
    deadline = time.monotonic() + p.phase_timeout
    room = f"{room_name}@{MUC_DOMAIN}"
    clients, failed = await login_many(server, p.occupants, p.login_concurrency, deadline)
    totals = FanoutTotals(target=p.messages * p.occupants, complete=asyncio.Event())
    occupants: list[Occupant] = []
    result: dict[str, Any] = {"occupants": 0, "login_failures": failed}
    try:
        if failed:
            raise XMPPError(f"{failed} occupant logins failed")
        for i, client in enumerate(clients):
            await client.join_room(room, f"o{i}")
            occupants.append(Occupant(client, i, i < p.senders, p.window, totals))
        result["occupants"] = len(occupants)
        for occupant in occupants:
            occupant.task = asyncio.create_task(occupant.read_forever())
        # every occupant sees one presence per occupant once all joins have been broadcast
        while any(o.presences < len(occupants) for o in occupants):
            if time.monotonic() > deadline:
                raise XMPPError("join presences did not all arrive")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        totals.target = p.messages * len(occupants)
        per_sender = [p.messages // p.senders + (i < p.messages % p.senders)
                      for i in range(p.senders)]
        meter = Meter(server)
        meter.start()
        send_deadline = time.monotonic() + p.phase_timeout
        sends = asyncio.gather(*(occupants[i].send_all(room, n)
                                 for i, n in enumerate(per_sender)))
        # wait for every delivery, or give up after 10 s without progress or at the deadline
        last, last_change = -1, time.monotonic()
        while not totals.complete.is_set():
            now = time.monotonic()
            if totals.delivered != last:
                last, last_change = totals.delivered, now
            if now - last_change > 10 or now > send_deadline:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(totals.complete.wait(), 0.1)
        m = meter.stop()
        sends.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sends
        sent = sum(o.sent for o in occupants)
        result.update(m)
        result.update({
            "messages_sent": sent, "deliveries": totals.delivered,
            "expected_deliveries": sent * len(occupants),
            "complete": totals.delivered >= sent * len(occupants),
            "deliveries_per_s": totals.delivered / m["wall_s"],
            "messages_per_s": sent / m["wall_s"],
            "server_cpu_s_per_10k": 10000 * m["server_cpu_s"] / max(totals.delivered, 1),
        })
    finally:
        for occupant in occupants:
            if occupant.task is not None:
                occupant.task.cancel()
        await asyncio.gather(*(o.task for o in occupants if o.task), return_exceptions=True)
        await close_all(clients)
    return result


# -- (c) memory ----------------------------------------------------------------------------


async def phase_memory(server: Server, p: Params) -> dict[str, Any]:
    """RSS growth of the server for ``idle_connections`` authenticated idle connections."""
    await asyncio.sleep(1.0)
    rss0 = server.rss()
    meter = Meter(server)
    meter.start()
    clients, failed = await login_many(server, p.idle_connections, p.login_concurrency,
                                       time.monotonic() + p.phase_timeout)
    m = meter.stop()
    await asyncio.sleep(2.0)
    rss1 = server.rss()
    await close_all(clients)
    n = len(clients)
    return {**m, "connections": n, "failed": failed, "rss_before_kib": rss0 / 1024,
            "rss_after_kib": rss1 / 1024, "kib_per_connection": (rss1 - rss0) / 1024 / max(n, 1)}


# -- report -----------------------------------------------------------------------------------

#: (label, phase, key, higher is better)
METRICS = [
    ("(a) logins per second", "logins", "logins_per_s", True),
    ("(a) server CPU s per 100 logins", "logins", "server_cpu_s_per_100", False),
    ("(b) MUC deliveries per second", "fanout", "deliveries_per_s", True),
    ("(d) server CPU s per 10k deliveries", "fanout", "server_cpu_s_per_10k", False),
    ("(b) deliveries/s after the login rounds", "fanout_after_logins", "deliveries_per_s", True),
    ("(c) KiB per idle connection", "memory", "kib_per_connection", False),
    ("    server RSS before (MiB)", "memory", "rss_before_kib", False),
]
#: (phase, metric key) -> required vw advantage, from the issue
TARGETS = {("logins", "logins_per_s"): 1.5, ("fanout", "deliveries_per_s"): 1.5,
           ("memory", "kib_per_connection"): 1.0}


def best(rounds: list[dict[str, Any]], key: str, higher: bool) -> float:
    """The best value of ``key`` over complete rounds (all rounds if none is complete)."""
    usable = [r for r in rounds if r.get("complete", True) and key in r] or \
        [r for r in rounds if key in r]
    if not usable:
        return float("nan")
    values = [r[key] for r in usable]
    return max(values) if higher else min(values)


def advantage(vw: float, prosody: float, higher: bool) -> float:
    """How many times better vw is (>1: vw better) for either direction of metric."""
    try:
        return vw / prosody if higher else prosody / vw
    except ZeroDivisionError:
        return float("nan")


def summarise(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    rows = []
    for label, phase, key, higher in METRICS:
        vw = best(runs["vw"][phase], key, higher)
        pr = best(runs["prosody"][phase], key, higher)
        if key == "rss_before_kib":
            vw, pr = vw / 1024, pr / 1024
        rows.append({"metric": label.strip(), "phase": phase, "key": key,
                     "higher_is_better": higher,
                     "vw": vw, "prosody": pr, "vw_advantage": advantage(vw, pr, higher),
                     "target": TARGETS.get((phase, key))})
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print()
    print(f"{'metric':<42}{'vw':>12}{'prosody':>12}{'vw advantage':>15}  target")
    print("-" * 90)
    for row in rows:
        target = row["target"]
        verdict = ""
        if target is not None:
            ok = row["vw_advantage"] >= target
            verdict = f">= {target:g}x {'met' if ok else 'MISSED'}"
        label = row["metric"] if not row["key"] == "rss_before_kib" else "  " + row["metric"]
        print(f"{label:<42}{row['vw']:>12.4g}{row['prosody']:>12.4g}"
              f"{row['vw_advantage']:>14.2f}x  {verdict}")
    print("-" * 90)
    print("vw advantage = vw/prosody when higher is better, prosody/vw when lower is better;")
    print("above 1.00x means vw is better.")


def summary_lines(rows: list[dict[str, Any]], runs: dict[str, Any]) -> list[str]:
    lines = []
    for row in rows:
        if row["target"] is None:
            continue
        ok = row["vw_advantage"] >= row["target"]
        lines.append(f"{'met   ' if ok else 'MISSED'} {row['metric']}: "
                     f"{row['vw_advantage']:.2f}x (target {row['target']:g}x)")
    for name in ("vw", "prosody"):
        for r in runs[name]["fanout"]:
            if not r.get("complete", False):
                lines.append(f"warning: {name} fan-out round incomplete: "
                             f"{r.get('deliveries')} of {r.get('expected_deliveries')} "
                             f"({r.get('error', '')})")
        for phase in ("logins", "memory"):
            for r in runs[name][phase]:
                if r.get("failed"):
                    lines.append(f"warning: {name} {phase}: {r['failed']} logins failed")
    return lines


# -- main -------------------------------------------------------------------------------------


def raise_fd_limit(need: int) -> None:
    """Raise the soft open-files limit (servers started later inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, need)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        sys.exit(f"open-files limit {soft} is below the {need} this benchmark needs")


async def guarded(name: str, phase: str, coro: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """Run a phase; a failure becomes an error entry instead of ending the benchmark."""
    print(f"  {name:<8} {phase} ...", end="", flush=True)
    try:
        result = await coro
    except Exception as e:  # noqa: BLE001 - report and carry on with the other phases
        result = {"error": f"{e.__class__.__name__}: {e}", "complete": False}
        print(f" FAILED: {result['error'][:300]}")
        return result
    brief = {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
    print(" " + ", ".join(f"{k}={v}" for k, v in brief.items()))
    return result


class Profiler:
    """Optionally records vw with py-spy during each of its phases (``--profile-vw DIR``)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    @contextlib.asynccontextmanager
    async def phase(self, server: Server, phase: str) -> AsyncIterator[None]:
        if self.directory is None or server.name != "vw" or server.process is None:
            yield
            return
        spy = Path(sys.executable).parent / "py-spy"
        out = self.directory / f"vw-{phase}-{time.strftime('%H%M%S')}"
        command = [str(spy), "record", "--pid", str(server.process.pid), "--rate", "250",
                   "--nonblocking", "--format", "raw", "-o", f"{out}.txt"]
        recorder = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await asyncio.sleep(0.5)  # let py-spy attach
        try:
            yield
        finally:
            recorder.send_signal(signal.SIGINT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(recorder.wait(), 30)
            print(f"    py-spy profile: {out}.txt (collapsed stacks)")


async def restart(servers: dict[str, Server]) -> None:
    """Stop and start every server, so that the next phase sees a fresh process."""
    for server in servers.values():
        server.stop()
        server.start()
    for server in servers.values():
        await server.wait_ready()
    for server in servers.values():  # warm-up: code paths, JIT-less caches, TLS context
        await phase_logins(server, WARMUP)


WARMUP = Params(logins=20, login_concurrency=10, occupants=0, senders=0, messages=0, window=1,
                idle_connections=0, rounds=1, phase_timeout=60)


async def run(p: Params, base: Path, only: str | None, phases: set[str],
              profiler: Profiler) -> dict[str, Any]:
    """Every phase on every server; returns the raw results by server and phase."""
    cert, key = write_certificate(base)
    servers = {"vw": vw_server(base, cert, key), "prosody": prosody_server(base, cert, key)}
    if only is not None:
        servers = {only: servers[only]}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {"logins": [], "fanout": [], "memory": [], "fanout_after_logins": []}
        for name in servers}

    async def measure(name: str, phase: str, label: str,
                      make: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        server = servers[name]
        async with profiler.phase(server, phase):
            result = await guarded(name, label, make())
        with contextlib.suppress(Exception):
            result["server_rss_kib_after"] = server.rss() / 1024
        runs[name][phase].append(result)

    try:
        if "memory" in phases:
            await restart(servers)
            print("(c) memory per idle connection, fresh servers")
            for name, server in servers.items():
                await measure(name, "memory", "memory", lambda s=server: phase_memory(s, p))
        order = list(servers)
        if "fanout" in phases:
            await restart(servers)
            print(f"(b) MUC fan-out, fresh servers, {p.rounds} rounds")
            for r in range(p.rounds):
                for name in order:
                    await measure(name, "fanout", f"fan-out {r + 1}",
                                  lambda s=servers[name], r=r: phase_fanout(s, p, f"bench{r}"))
                order.reverse()  # alternate who goes first, against drift in machine load
        if "logins" in phases:
            print(f"(a) logins, {p.rounds} rounds")
            for r in range(p.rounds):
                for name in order:
                    await measure(name, "logins", f"logins {r + 1}",
                                  lambda s=servers[name]: phase_logins(s, p))
                order.reverse()
        if "fanout" in phases and "logins" in phases:
            churn = dataclasses.replace(p, messages=max(p.messages // 5, 1))
            print(f"(b) MUC fan-out again after {p.rounds * p.logins} logins, "
                  f"{churn.messages} messages (informative)")
            for name in order:
                await measure(name, "fanout_after_logins", "fan-out",
                              lambda s=servers[name]: phase_fanout(s, churn, "churned"))
        for name, server in servers.items():
            assert server.popen is not None
            if server.popen.poll() is not None:
                raise RuntimeError(f"{name} died during the run\n{server.log_tail()}")
    finally:
        for server in servers.values():
            server.stop()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller loads, one round")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of (a) and (b); best round is reported (default 3, quick 1)")
    parser.add_argument("--only", choices=["vw", "prosody"], default=None,
                        help="run one server only (no ratios; for profiling)")
    for name in ("logins", "messages", "senders", "window", "occupants", "idle_connections"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                            help=f"override the {name} parameter")
    parser.add_argument("--phases", default="memory,logins,fanout",
                        help="comma-separated subset of memory,logins,fanout")
    parser.add_argument("--profile-vw", type=Path, default=None, metavar="DIR",
                        help="record vw with py-spy during each phase into DIR")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (configs and server logs)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()
    p = Params.make(args.quick, args.rounds)
    overrides = {k: v for k, v in vars(args).items() if k in Params.__dataclass_fields__
                 and k != "rounds" and v is not None}
    p = dataclasses.replace(p, **overrides)
    raise_fd_limit(2 * p.idle_connections + 1000)
    started = datetime.datetime.now(datetime.UTC)
    base = Path(tempfile.mkdtemp(prefix="vw-bench-xmpp-"))
    print(f"vw-xmpp vs Prosody {prosody_version()} on {os.cpu_count()} CPUs; work dir {base}")
    print(f"parameters: {p}")
    try:
        runs = asyncio.run(run(p, base, args.only, set(args.phases.split(",")),
                                   Profiler(args.profile_vw)))
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(base, ignore_errors=True)
    if len(runs) < 2:
        print(json.dumps(runs, indent=1, default=str))
        return
    rows = summarise(runs)
    print_table(rows)
    lines = summary_lines(rows, runs)
    print()
    print("summary:")
    for line in lines:
        print("  " + line)
    report = {
        "benchmark": "bench/xmpp.py", "quick": args.quick,
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round((datetime.datetime.now(datetime.UTC) - started).total_seconds(), 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "prosody": prosody_version(),
                    "loadavg_at_end": os.getloadavg()},
        "parameters": p.__dict__, "table": rows, "summary": lines, "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
