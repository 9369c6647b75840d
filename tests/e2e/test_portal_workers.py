"""vw-portal with worker processes: they share the HTTP port, a worker that dies is started
again, a second portal cannot take the port, and stopping the portal stops them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import BIN, free_port, stop, wait_for_health


def tcp_rows(port: int, state: str) -> list[list[str]]:
    """/proc/net/tcp rows of local ``port`` in ``state`` (0A listening, 01 established)."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in list(table)[1:]]
    return [row for row in rows if row[1].endswith(f":{port:04X}") and row[3] == state]


def socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


def children(pid: int) -> list[int]:
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not {what} after {timeout} s"
        time.sleep(0.1)


def start_portal(directory: Path, port: int) -> subprocess.Popen:
    directory.mkdir()
    config = directory / "vw.toml"
    config.write_text(f"[general]\nstate_dir = '{directory / 'var'}'\n"
                      f"[portal]\nhttp_port = {port}\nworkers = 2\n")
    with open(directory / "twistd.log", "wb") as log:
        return subprocess.Popen([BIN / "twistd", "--nodaemon", "--pidfile=", "vw-portal",
                                 "--config", str(config)], cwd=directory, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def test_workers_share_the_port_are_restarted_and_stop_with_the_portal(
        tmp_path: Path) -> None:
    port = free_port()
    portal = start_portal(tmp_path / "one", port)
    try:
        wait_for_health(f"http://127.0.0.1:{port}/about/health", portal)
        eventually(lambda: len(tcp_rows(port, "0A")) == 2, "two processes listening")
        [worker] = children(portal.pid)

        # Connections are spread over both processes by the kernel.
        held = []
        for _ in range(40):
            connection = socket.create_connection(("127.0.0.1", port), timeout=5)
            connection.sendall(b"GET /about/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert connection.recv(100).startswith(b"HTTP/1.1 200")
            held.append(connection)
        established = {row[9] for row in tcp_rows(port, "01")}
        assert established & socket_inodes(portal.pid)
        assert established & socket_inodes(worker)
        for connection in held:
            connection.close()

        # A second portal on the same port fails instead of sharing it.
        second = start_portal(tmp_path / "two", port)
        assert second.wait(30) != 0
        assert "Address already in use" in (tmp_path / "two" / "twistd.log").read_text()

        # A worker that dies is started again.
        os.kill(worker, signal.SIGKILL)
        eventually(lambda: children(portal.pid) not in ([], [worker]), "a new worker")
        eventually(lambda: len(tcp_rows(port, "0A")) == 2, "two processes listening again")
        [replacement] = children(portal.pid)
        log_file = tmp_path / "one" / "twistd.log"
        eventually(lambda: log_file.read_text().count("Runner#info] Starting reactor") == 2,
                   "the worker and its replacement logging to the portal's output")
    finally:
        portal.terminate()
        portal.wait(30)
    eventually(lambda: not Path(f"/proc/{replacement}").exists(), "the worker stopped", 15)
    assert tcp_rows(port, "0A") == []
    assert "portal-worker-1 ended" in (tmp_path / "one" / "twistd.log").read_text()


def test_a_worker_ends_when_its_main_process_is_killed(tmp_path: Path) -> None:
    port = free_port()
    portal = start_portal(tmp_path / "one", port)
    try:
        eventually(lambda: len(tcp_rows(port, "0A")) == 2, "two processes listening")
        [worker] = children(portal.pid)
        portal.kill()  # no SIGTERM handling: the kernel tells the worker (PR_SET_PDEATHSIG)
        portal.wait(10)
        eventually(lambda: not Path(f"/proc/{worker}").exists()
                   or Path(f"/proc/{worker}/stat").read_text().split(") ")[1][0] == "Z",
                   "the worker ended", 15)
        eventually(lambda: tcp_rows(port, "0A") == [], "the port free again", 15)
    finally:
        stop(portal)
