"""What every benchmark does with the servers it runs: free loopback ports, their CPU time,
stopping them."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

HOST = "127.0.0.1"


def free_port(*kinds: int) -> int:
    """A loopback port free for every socket kind in ``kinds`` (TCP when none is given)."""
    kinds = kinds or (socket.SOCK_STREAM,)
    while True:
        with socket.socket(socket.AF_INET, kinds[0]) as first:
            first.bind((HOST, 0))
            port = int(first.getsockname()[1])
            try:
                for kind in kinds[1:]:
                    with socket.socket(socket.AF_INET, kind) as other:
                        other.bind((HOST, port))
            except OSError:
                continue
            return port


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); the split starts at field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """:func:`cpu_seconds` of process ``pid`` and every process below it still running."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            total += cpu_seconds(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended meanwhile
    return total


def stop(popen: subprocess.Popen | None) -> None:
    """Terminate a server (kill it if it has not gone in 10 s); None or an ended one: no-op."""
    if popen is None or popen.poll() is not None:
        return
    popen.terminate()
    try:
        popen.wait(10)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(5)
