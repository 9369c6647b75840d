"""The portal (vw-portal): join tokens per CPU-second, API latency under load, the meeting list.

Run: ``.venv/bin/python bench/portal.py [--quick] [--rounds N] [--duration S] [--database
URL] [--workers N]``; each figure is the median of the rounds (3, of 5 s per load).
``twistd vw-portal`` runs on loopback from a temporary directory (SQLite unless
``--database`` names another SQLAlchemy URL) with ``[portal] workers`` processes (one per core
unless ``--workers`` says otherwise), with a host who has 100 meetings, 49 past. The load comes from
Debian's ``wrk`` (a Lua script adds the Authorization header or the session cookie); every
figure comes with the CPU seconds the server's processes spent meanwhile, read from
``/proc/PID/stat`` (all their threads: the reactors and the database pools).

**Join tokens.** ``POST /api/v1/meetings/ID/join`` (bearer token check, the account and the
meeting read, admission, a JWT for the room and TURN credentials minted, an audit record
written) from ``--connections`` clients: grants per CPU-second of the server (target: 2,000).
Beside it, the minting alone (``Joins.grant``) in this process, per CPU-second.

**API latency.** ``GET /api/v1/meetings`` (a page of 20) and ``GET /api/v1/me`` from 100
concurrent clients, each sending its next request when the last is answered: p50 and p99
(target: p99 under 50 ms), requests per second, server CPU per request.

**Floor.** ``GET /api/v1/me`` without a token from 100 clients: a 401 problem document, no
token to check, no database; what Twisted, Klein and the portal's routing cost alone.

**Meeting list page.** ``GET /meetings`` (HTML: the next 50 and the 49 past) for a signed-in
browser, one at a time: p50 and p99 and the server's CPU per page.

There is no anchor: the Laravel portal this replaces is not packaged in Debian.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bridge import wait_until
from processes import free_port, tree_cpu_seconds

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vw.config import Config, GeneralConfig, PortalConfig  # noqa: E402
from vw.portal.database import open_database  # noqa: E402
from vw.portal.joining import Joins, Participant, turn_secret, with_join_tokens  # noqa: E402
from vw.portal.passwords import Passwords  # noqa: E402
from vw.portal.records import JoinRoom, MeetingPlan  # noqa: E402
from vw.portal.store import Store  # noqa: E402

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent
RESULTS = Path(__file__).parent / "results" / "portal-latest.json"
EMAIL = "host@example.org"
PASSWORD = "a benchmark password"
TOKENS_TARGET = 2000
P99_TARGET_MS = 50.0
#: wrk prints one JSON line of its summary when it is done.
SUMMARY = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "status_errors": %d, "socket_errors": %d, '
    .. '"p50_ms": %f, "p99_ms": %f}\\n', summary.requests, summary.duration / 1e6, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50) / 1e3,
    latency:percentile(99) / 1e3))
end
"""


@dataclass
class Load:
    """One wrk run and what the server spent on it."""

    requests: int
    seconds: float
    status_errors: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    server_cpu: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def per_cpu_second(self) -> float:
        return self.requests / self.server_cpu

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.server_cpu / self.requests


def listeners(port: int) -> int:
    """How many sockets listen on TCP ``port`` (IPv4)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines
               if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A")


class Portal:
    """``twistd vw-portal`` on a free port, with a host, their meetings, a bearer token and
    a signed-in session."""

    def __init__(self, directory: Path, database: str, workers: int) -> None:
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        state = directory / "var"
        state.mkdir()
        self.config = Config(general=GeneralConfig(state_dir=str(state)),
                             portal=PortalConfig(http_port=self.port, public_url=self.base,
                                                 database=database))
        url = database or f"sqlite:///{state / 'portal.sqlite'}"
        self.meeting = self._seed(url)
        (directory / "vw.toml").write_text(f"""
[general]
state_dir = "{state}"
[portal]
http_port = {self.port}
public_url = "{self.base}"
database = "{database}"
workers = {workers}
""")
        with open(directory / "twistd.log", "wb") as log:
            self.process = subprocess.Popen(
                [BIN / "twistd", "--nodaemon", "--pidfile=", "vw-portal", "--config",
                 str(directory / "vw.toml")], cwd=directory, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(lambda: urllib.request.urlopen(  # noqa: S310 - loopback
            f"{self.base}/about/health", timeout=5).status == 200, "portal health",
                   self.process, 30)
        wait_until(lambda: listeners(self.port) == workers, "every portal worker listening",
                   self.process, 30)
        self.token = self._bearer()
        self.cookie = self._session()

    @staticmethod
    def _seed(url: str) -> str:
        """The host and their meetings, straight into the database; one meeting's id."""
        engine = open_database(url)
        store = Store(engine)
        now = datetime.datetime.now(datetime.UTC)
        host = store.create_user(EMAIL, "Bench Host", Passwords().hash(PASSWORD), "host", now)
        ids = []
        for n in range(100):
            start = now + datetime.timedelta(days=n - 49)
            plan = MeetingPlan(title=f"Meeting {n}", start=start, duration=60,
                               room=f"bench-room-{n}", ends=start + datetime.timedelta(hours=1))
            ids.append(store.create_meeting(host.id, plan, now).id)
        engine.dispose()
        return ids[-1]

    def _bearer(self) -> str:
        request = urllib.request.Request(
            f"{self.base}/api/v1/auth/token", method="POST",
            data=json.dumps({"email": EMAIL, "password": PASSWORD}).encode(),
            headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return str(json.load(response)["access_token"])

    def _session(self) -> str:
        """The ``Cookie`` header of a signed-in browser (its cookie is Secure: no cookie jar
        of Python's sends it over plain HTTP, so it is carried by hand)."""
        connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
        connection.request("GET", "/signin")
        response = connection.getresponse()
        page = response.read().decode()
        cookie = response.getheader("set-cookie", "").split(";")[0]
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf, "no form on /signin"
        body = urllib.parse.urlencode({"csrf": csrf.group(1), "email": EMAIL,
                                       "password": PASSWORD})
        connection.request("POST", "/signin", body=body, headers={
            "content-type": "application/x-www-form-urlencoded", "cookie": cookie})
        response = connection.getresponse()
        response.read()
        assert response.status == 303, response.status
        signed_in = response.getheader("set-cookie", "").split(";")[0]
        connection.close()
        return signed_in

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def wrk(self, path: str, connections: int, duration: float, directory: Path, *,
            method: str = "GET", headers: dict[str, str] | None = None,
            body: str = "") -> Load:
        """``wrk`` on ``path`` for ``duration`` seconds, with the server's CPU meanwhile."""
        lines = [f'wrk.method = "{method}"']
        lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in
                  (headers or {}).items()]
        if body:
            lines.append(f"wrk.body = {json.dumps(body)}")
        script = directory / "load.lua"
        script.write_text("\n".join(lines) + SUMMARY)
        threads = min(2, connections)
        before = tree_cpu_seconds(self.process.pid)
        done = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s",
             "-s", str(script), f"{self.base}{path}"], check=True, capture_output=True,
            text=True)
        spent = tree_cpu_seconds(self.process.pid) - before
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        return Load(server_cpu=spent, **summary)


def minting(config: Config, seconds: float) -> float:
    """Join grants minted per CPU-second in this process (no HTTP, no database)."""
    config = with_join_tokens(config)
    joins = Joins(config, turn_secret(config))
    who = Participant(id="42", name="Bench Host", email=EMAIL)
    count, start = 0, time.process_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(100):
            joins.grant(JoinRoom("bench-room"), who, True, time.time())
        count += 100
    return count / (time.process_time() - start)


def run_round(portal: Portal, directory: Path, connections: int,
              duration: float) -> dict[str, Load]:
    """Every load once, on the same server."""
    bearer = {"Authorization": f"Bearer {portal.token}"}
    return {
        "join": portal.wrk(f"/api/v1/meetings/{portal.meeting}/join", connections, duration,
                           directory, method="POST", body="{}",
                           headers={**bearer, "Content-Type": "application/json"}),
        "meetings": portal.wrk("/api/v1/meetings", connections, duration, directory,
                               headers=bearer),
        "me": portal.wrk("/api/v1/me", connections, duration, directory, headers=bearer),
        "floor": portal.wrk("/api/v1/me", connections, duration, directory),
        "page": portal.wrk("/meetings", 1, duration, directory,
                           headers={"Cookie": portal.cookie}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of 3 s loads")
    parser.add_argument("--rounds", type=int, help="rounds of every load (default 3)")
    parser.add_argument("--duration", type=float, help="seconds of each load (default 5)")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--database", default="", help="SQLAlchemy URL; default SQLite")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="portal processes ([portal] workers; default: one per core)")
    args = parser.parse_args()
    duration = args.duration or (3.0 if args.quick else 5.0)
    rounds = args.rounds or (1 if args.quick else 3)
    if shutil.which("wrk") is None:
        sys.exit("bench/portal.py needs wrk (Debian package wrk; make os-deps)")
    with tempfile.TemporaryDirectory(prefix="vw-portal-bench-") as name:
        directory = Path(name)
        portal = Portal(directory, args.database, args.workers)
        try:
            minted = minting(portal.config, 3.0)
            portal.wrk("/api/v1/me", 10, 1, directory,  # warm-up
                       headers={"Authorization": f"Bearer {portal.token}"})
            runs = [run_round(portal, directory, args.connections, duration)
                    for _ in range(rounds)]
        finally:
            portal.stop()
    for run in runs:
        for label, load in run.items():
            if label != "floor" and (load.status_errors or load.socket_errors):
                print(f"warning: {label}: {load.status_errors} non-2xx answers, "
                      f"{load.socket_errors} socket errors")

    def median(label: str, figure: str) -> float:
        return statistics.median(getattr(run[label], figure) for run in runs)

    def latency(label: str) -> str:
        return f"{median(label, 'p50_ms'):.1f} / {median(label, 'p99_ms'):.1f}"

    def rate(label: str) -> str:
        return f"{median(label, 'per_second'):,.0f}; {median(label, 'cpu_ms'):.2f}"

    c = args.connections
    per_cpu = median("join", "per_cpu_second")
    rows = [
        (f"Join grants per server CPU-second (POST .../join, {c} clients)",
         f"{per_cpu:,.0f}", f"{TOKENS_TARGET:,}", per_cpu >= TOKENS_TARGET),
        ("... grants per second (wall)", f"{median('join', 'per_second'):,.0f}", "", None),
        ("Minting alone (Joins.grant) per CPU-second", f"{minted:,.0f}", "", None),
        (f"GET /api/v1/meetings, {c} clients: p50 / p99 ms", latency("meetings"),
         f"p99 < {P99_TARGET_MS:g}", median("meetings", "p99_ms") < P99_TARGET_MS),
        ("... requests per second; server CPU ms per request", rate("meetings"), "", None),
        (f"GET /api/v1/me, {c} clients: p50 / p99 ms", latency("me"),
         f"p99 < {P99_TARGET_MS:g}", median("me", "p99_ms") < P99_TARGET_MS),
        ("... requests per second; server CPU ms per request", rate("me"), "", None),
        (f"Floor: GET /api/v1/me without a token (401), {c} clients: p50 / p99 ms",
         latency("floor"), "", None),
        ("... requests per second; server CPU ms per request", rate("floor"), "", None),
        ("Meeting list page (GET /meetings, 100 meetings), one browser: p50 / p99 ms",
         latency("page"), "", None),
        ("... server CPU ms per page", f"{median('page', 'cpu_ms'):.2f}", "", None),
    ]
    print(f"\nmedian of {rounds} round(s) of {duration:g} s per load; "
          f"{args.workers} portal process(es)")
    print(f"{'measure':<78}{'vw':>16}  target")
    for label, value, target, met in rows:
        verdict = "" if met is None else (" met" if met else " NOT met")
        print(f"{label:<78}{value:>16}  {target}{verdict}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "database": "sqlite" if not args.database else args.database.split(":")[0],
        "duration": duration, "connections": c, "workers": args.workers,
        "minted_per_cpu_second": minted,
        "rounds": [{label: {**vars(load), "per_second": load.per_second,
                            "per_cpu_second": load.per_cpu_second}
                    for label, load in run.items()} for run in runs],
    }, indent=2) + "\n")
    print(f"\nresults: {RESULTS}")


if __name__ == "__main__":
    main()
