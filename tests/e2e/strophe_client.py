"""Run a real third-party XMPP client (strophe.js under Node) against a server.

The client lives in ``tests/e2e/js/scenario.mjs``; its dependencies are pinned in
``tests/e2e/js/package-lock.json`` and installed with ``npm ci --prefix tests/e2e/js``.

A scenario is a dict, passed to the script as JSON; see the header of
``scenario.mjs`` for every key. The common ones::

    {
        "url": "ws://127.0.0.1:5280/xmpp-websocket?room=r1&token=...",  # or http://.../http-bind
        "transport": "websocket",            # or "bosh"
        "domain": "localhost",
        "muc": "r1@conference.localhost",     # optional room to join
        "nick": "alice",                      # optional
        "wait_occupants": 2,                  # optional: wait for N occupants before sending
        "message": "hello",                   # optional groupchat body
        "expect_messages": 1,                 # optional: live messages from others to wait for
        "hold_seconds": 0,                    # optional
        "timeout": 20,                        # seconds
    }

The result is the script's JSON line as a dict (``connected``, ``status``, ``jid``,
``joined``, ``occupants``, ``messages``, ``ping_ok``, ``error``, ``auth_failure``, ...)
plus two harness keys: ``_returncode`` (0 = ran to the end, 2 = timed out,
3 = harness error) and ``_stderr``. Set ``VW_XMPP_TRACE=1`` to get the raw XML
traffic in ``_stderr`` (it is also copied to this process's stderr).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

JS_DIR: Path = Path(__file__).resolve().parent / "js"
SCENARIO_JS: Path = JS_DIR / "scenario.mjs"

_REQUIRED_MODULES = ("strophe.js", "ws", "@xmldom/xmldom")
# Head-room between the scenario's own timeout and the wall-clock limit we put on
# the node process: node start-up plus the script's leave/disconnect grace (6 s).
_WALL_MARGIN = 10.0
_MIN_NODE_MAJOR = 18


class StropheHarnessError(RuntimeError):
    """The node process did not produce a result line (harness bug or hang)."""


def _node() -> str | None:
    return shutil.which("node")


def _node_major(node: str) -> int:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout
        return int(out.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return 0


def strophe_available() -> bool:
    """True when node (>= 18) is on PATH and ``npm ci`` has been run in JS_DIR."""
    node = _node()
    if node is None:
        return False
    modules = JS_DIR / "node_modules"
    if not all((modules / name / "package.json").is_file() for name in _REQUIRED_MODULES):
        return False
    return _node_major(node) >= _MIN_NODE_MAJOR


def _prepare(scenario: dict, timeout: float) -> tuple[list[str], float]:
    node = _node()
    if node is None:
        raise StropheHarnessError("node is not installed")
    scenario = dict(scenario)
    if "timeout" not in scenario:
        scenario["timeout"] = max(1.0, timeout - _WALL_MARGIN)
    wall = max(float(timeout), float(scenario["timeout"]) + _WALL_MARGIN)
    return [node, str(SCENARIO_JS), json.dumps(scenario)], wall


def _parse(returncode: int, stdout: str, stderr: str) -> dict[str, Any]:
    if stderr and os.environ.get("VW_XMPP_TRACE", "").lower() in ("1", "true", "yes"):
        sys.stderr.write(stderr)
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except ValueError:
                continue
            result["_returncode"] = returncode
            result["_stderr"] = stderr
            return result
    raise StropheHarnessError(
        f"scenario.mjs exited {returncode} without a JSON result\n"
        f"--- stdout ---\n{stdout[-4000:]}\n--- stderr ---\n{stderr[-4000:]}"
    )


def run_scenario(scenario: dict, timeout: float = 30) -> dict[str, Any]:
    """Run one client scenario to completion and return its result dict.

    ``timeout`` bounds the whole node process; it is also the scenario's own
    timeout (less a margin) unless the scenario sets ``timeout`` itself.
    """
    argv, wall = _prepare(scenario, timeout)
    try:
        proc = subprocess.run(
            argv, cwd=JS_DIR, capture_output=True, text=True, timeout=wall, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as e:
        out = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise StropheHarnessError(
            f"scenario.mjs hung for {wall}s\n--- stderr ---\n{out[-4000:]}"
        ) from e
    return _parse(proc.returncode, proc.stdout, proc.stderr)


async def run_scenario_async(scenario: dict, timeout: float = 30) -> dict[str, Any]:
    """Like run_scenario, on an asyncio subprocess, so clients can run concurrently.

    For example ``await asyncio.gather(run_scenario_async(s1), run_scenario_async(s2))``.
    """
    argv, wall = _prepare(scenario, timeout)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=JS_DIR,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=wall)
    except TimeoutError as e:
        proc.kill()
        await proc.wait()
        raise StropheHarnessError(f"scenario.mjs hung for {wall}s") from e
    except BaseException:
        # Cancelled (e.g. a sibling in gather failed): do not leave node running.
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return _parse(proc.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))
