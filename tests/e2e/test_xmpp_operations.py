"""Operating vw-xmpp: plugins, health and metrics, JSON logs, SIGTERM, restarts, components."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import slixmpp

from tests.e2e.conftest import XMPPServerProcess, start_xmpp, stop
from tests.e2e.slix import Inbox, connect, disconnect

BIN = Path(sys.executable).parent


def test_twistd_lists_the_plugins() -> None:
    result = subprocess.run([BIN / "twistd", "--help"], capture_output=True, text=True,
                            timeout=60, check=True)
    commands = {line.split()[0] for line in result.stdout.splitlines()
                if line.startswith("    ") and line.split()}
    assert {"vw", "vw-xmpp", "vw-bridge", "vw-focus", "vw-turn"} <= commands


def test_health_and_metrics(xmpp_server: XMPPServerProcess) -> None:
    base = f"http://127.0.0.1:{xmpp_server.http_port}"
    with urllib.request.urlopen(f"{base}/about/health", timeout=10) as response:
        assert response.status == 200
        assert json.load(response) == {"status": "ok"}
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert "vw_xmpp_sessions" in text and "vw_xmpp_logins_total" in text


def test_json_logs_and_graceful_sigterm(tmp_path: Path) -> None:
    server = start_xmpp(tmp_path, extra="", general="log_format = \"json\"")
    server.process.send_signal(signal.SIGTERM)
    # twistd shuts down cleanly, then re-raises SIGTERM so the exit status tells why
    # (systemd counts that as a clean stop).
    assert server.process.wait(20) in (0, -signal.SIGTERM)
    lines = [line for line in server.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert any(r.get("log_format") == "Server Shut Down." for r in records)


def test_accounts_rosters_and_rooms_survive_a_restart(tmp_path: Path) -> None:
    server = start_xmpp(tmp_path)
    server.add_account("erin@localhost", "erin-password")

    async def before() -> None:
        erin = await connect("erin@localhost/a", "erin-password", server.c2s_port, server.ca)
        erin.update_roster("frank@localhost", name="Frank", groups=["work"])
        room = "keep@conference.localhost"
        await erin.plugin["xep_0045"].join_muc_wait(room, "erin", timeout=10)
        form = await erin.plugin["xep_0045"].get_room_config(room)
        form.set_values({"muc#roomconfig_persistentroom": True,
                         "muc#roomconfig_roomname": "Kept"})
        await erin.plugin["xep_0045"].set_room_config(room, form)
        await disconnect(erin)

    asyncio.run(before())
    stop(server.process)
    server = start_xmpp(tmp_path, reuse=server)

    async def after() -> None:
        erin = await connect("erin@localhost/b", "erin-password", server.c2s_port, server.ca)
        items = (await erin.get_roster())["roster"]["items"]
        assert items["frank@localhost"]["name"] == "Frank"
        info = await erin.plugin["xep_0030"].get_info("keep@conference.localhost")
        assert "muc_persistent" in info["disco_info"]["features"]
        await disconnect(erin)

    try:
        asyncio.run(after())
    finally:
        stop(server.process)


class Echo(slixmpp.ComponentXMPP):
    """An XEP-0114 component (slixmpp's) that echoes messages back."""

    def __init__(self, domain: str, secret: str, port: int) -> None:
        super().__init__(domain, secret, "127.0.0.1", port)
        self.add_event_handler("message", self.echo)

    def echo(self, message: slixmpp.Message) -> None:
        message.reply(f"echo: {message['body']}").send()


def test_external_component(xmpp_server: XMPPServerProcess) -> None:
    async def scenario() -> None:
        component = Echo("echo.localhost", xmpp_server.component_secret,
                         xmpp_server.component_port)
        started = asyncio.get_running_loop().create_future()
        component.add_event_handler("session_start", lambda _: started.set_result(True))
        component.connect()
        await asyncio.wait_for(started, 10)
        xmpp_server.add_account("gina@localhost", "gina-password")
        gina = await connect("gina@localhost/c", "gina-password", xmpp_server.c2s_port,
                             xmpp_server.ca)
        inbox = Inbox(gina, "message")
        gina.send_message(mto="echo.localhost", mbody="ping", mtype="chat")
        reply = await inbox.next()
        assert reply["body"] == "echo: ping" and reply["from"] == "echo.localhost"
        await disconnect(gina)
        component.disconnect()
        await asyncio.sleep(0.2)

    asyncio.run(scenario())


def test_wrong_component_secret_is_refused(xmpp_server: XMPPServerProcess) -> None:
    async def scenario() -> None:
        component = Echo("echo.localhost", "wrong", xmpp_server.component_port)
        ended = asyncio.get_running_loop().create_future()
        component.add_event_handler("disconnected", lambda _: ended.done()
                                    or ended.set_result(True))
        component.add_event_handler("session_start", lambda _: ended.done()
                                    or ended.set_exception(AssertionError("accepted")))
        component.connect()
        await asyncio.wait_for(ended, 10)

    asyncio.run(scenario())


@pytest.mark.parametrize("path", ["/xmpp-websocket", "/http-bind"])
def test_http_endpoints_answer_plain_get(xmpp_server: XMPPServerProcess, path: str) -> None:
    url = f"http://127.0.0.1:{xmpp_server.http_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as e:
        status = e.code
    assert status in (200, 400)
