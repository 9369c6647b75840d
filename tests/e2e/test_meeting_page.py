"""The meeting page in headless Chromium: lib-jitsi-meet joins through vw's XMPP server, focus
and bridge; everyone sees and hears everyone; a participant who leaves disappears."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import jwt
import pytest

from tests.e2e.conftest import (
    BIN,
    Stack,
    XMPPServerProcess,
    free_port,
    run_stack,
    stop,
    wait_for_health,
)
from tests.e2e.test_bridge_media import CHROMIUM_ARGS

#: Chromium's fake devices; remote audio must play without a click for its stats to count.
ARGS = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]
ROOM = "testroom"
#: Seconds to wait for each step (joins, first frames, a departure).
STEP = 45


TOKEN_APP = "vw-meeting-test"
TOKEN_SECRET = "a-shared-secret-for-the-meeting-page-test"


@pytest.fixture(scope="module")
def meeting_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``twistd vw`` (XMPP server, focus, bridge) on free ports, ready for conferences."""
    yield from run_stack(tmp_path_factory.mktemp("meeting"))


@pytest.fixture(scope="module")
def token_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The same with token authentication required."""
    yield from run_stack(tmp_path_factory.mktemp("tokens"), f"""
[xmpp.token]
app_id = "{TOKEN_APP}"
app_secret = "{TOKEN_SECRET}"
""")


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator:
    """Headless Chromium (Debian's) with fake devices, closed afterwards."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                  args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds, or fail naming ``what``."""
    deadline = asyncio.get_running_loop().time() + STEP
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out: {what}")
        await asyncio.sleep(0.25)


class Participant:
    """One meeting page and the hooks it exposes as ``window.vwMeeting``."""

    def __init__(self, name: str, page) -> None:
        self.name = name
        self.page = page
        self.id = ""
        page.on("console", self._console)
        page.on("pageerror", lambda error: print(f"[{name}] page error: {error}"))

    def _console(self, message) -> None:
        """Warnings and errors land in the test's captured output."""
        if message.type in ("error", "warning"):
            print(f"[{self.name}] {message.type}: {message.text[:400]}")

    @classmethod
    async def join(cls, browser, name: str, url: str) -> Participant:
        participant = cls(name, await browser.new_page())
        await participant.page.goto(url)
        await participant.until_state("joined")
        participant.id = await participant.page.evaluate("vwMeeting.myId()")
        assert participant.id, f"{name} joined without a participant id"
        return participant

    async def state(self) -> str:
        """The page's state ("loading" until its script has run)."""
        return await self.page.evaluate("window.vwMeeting ? vwMeeting.state : 'loading'")

    async def until_state(self, wanted: str) -> None:
        async def reached() -> bool:
            state = await self.state()
            assert not state.startswith("failed"), f"{self.name}: {state}"
            return state == wanted

        await until(reached, f"{self.name} reaches {wanted!r}")

    async def remote_participants(self) -> set[str]:
        return set(await self.page.evaluate("vwMeeting.remoteParticipants()"))

    async def remote_video_tracks(self) -> int:
        return await self.page.evaluate("vwMeeting.remoteVideoTracks()")

    async def video_tiles(self) -> set[str]:
        return set(await self.page.evaluate(
            "[...document.querySelectorAll('.tile.remote')].map(t => t.dataset.participant)"))

    async def received_from(self, other: Participant) -> tuple[int, float]:
        """Video frames decoded and audio energy received from ``other`` so far."""
        stats = [s for s in await self.page.evaluate("vwMeeting.stats()")
                 if s["participant"] == other.id]
        return (sum(s["framesDecoded"] for s in stats if s["type"] == "video"),
                sum(s["totalAudioEnergy"] for s in stats if s["type"] == "audio"))

    async def until_media_from(self, other: Participant) -> None:
        """Both counters of ``other``'s media rise, twice, so the media keeps flowing."""
        first = await self.received_from(other)

        async def rising() -> bool:
            frames, energy = await self.received_from(other)
            return frames > first[0] and energy > first[1] and frames > 0 and energy > 0

        await until(rising, f"{self.name} decodes {other.name}'s video and audio")
        second = await self.received_from(other)

        async def still_rising() -> bool:
            frames, energy = await self.received_from(other)
            return frames > second[0] and energy > second[1]

        await until(still_rising, f"{self.name} keeps decoding {other.name}'s media")


async def everyone_sees_everyone(people: list[Participant]) -> None:
    for person in people:
        others = [other for other in people if other is not person]
        expected = {other.id for other in others}

        async def sees_all(person: Participant = person, expected: set[str] = expected) -> bool:
            return (await person.remote_participants() == expected
                    and await person.video_tiles() == expected
                    and await person.remote_video_tracks() == len(expected))

        await until(sees_all, f"{person.name} sees {sorted(expected)}")
        for other in others:
            await person.until_media_from(other)


def test_meeting_page_is_served_with_its_libraries(meeting_stack: Stack) -> None:
    status, body = fetch(meeting_stack.url(ROOM))
    assert status == 200 and b'"muc":"conference.localhost"' in body
    status, body = fetch(meeting_stack.url("libs/lib-jitsi-meet.min.js"))
    assert status == 200, f"run `npm ci --prefix vw/meeting`: {body[:200]!r}"
    assert fetch(meeting_stack.url("Not%20A%20Room"))[0] == 404
    assert fetch(meeting_stack.url("about/health"))[0] == 200


def test_three_browsers_meet_and_one_leaves(meeting_stack: Stack) -> None:
    url = meeting_stack.url(ROOM)

    async def scenario() -> None:
        async with chromium() as browser:
            anna, bert = await asyncio.gather(Participant.join(browser, "anna", url),
                                              Participant.join(browser, "bert", url))
            await everyone_sees_everyone([anna, bert])

            cleo = await Participant.join(browser, "cleo", url)
            await everyone_sees_everyone([anna, bert, cleo])

            await cleo.page.click("#leave")
            await cleo.until_state("left")
            await everyone_sees_everyone([anna, bert])
            for person in (anna, bert):
                assert cleo.id not in await person.video_tiles()

    try:
        asyncio.run(scenario())
    except BaseException:
        print(meeting_stack.log_tail())
        raise


def test_mute_buttons_reach_the_other_side(meeting_stack: Stack) -> None:
    url = meeting_stack.url("mutetest")

    async def scenario() -> None:
        async with chromium() as browser:
            anna, bert = await asyncio.gather(Participant.join(browser, "anna", url),
                                              Participant.join(browser, "bert", url))
            await everyone_sees_everyone([anna, bert])
            tile = f".tile.remote[data-participant='{anna.id}']"

            async def anna_video_muted_for_bert(muted: bool) -> bool:
                classes = await bert.page.get_attribute(tile, "class") or ""
                return ("muted" in classes.split()) == muted

            for button, kind in (("#mute-audio", "audio"), ("#mute-video", "video")):
                await anna.page.click(button)
                await until(lambda kind=kind: anna.page.evaluate(
                    f"vwMeeting.localMuted().{kind}"), f"anna's {kind} mutes")
                assert await anna.page.get_attribute(button, "aria-pressed") == "true"
            await until(lambda: anna_video_muted_for_bert(True), "bert sees anna's mute")

            for button in ("#mute-audio", "#mute-video"):
                await anna.page.click(button)
            await until(lambda: anna_video_muted_for_bert(False), "bert sees anna unmute")
            assert await anna.page.evaluate("vwMeeting.localMuted()") == {
                "audio": False, "video": False}
            await bert.until_media_from(anna)

    try:
        asyncio.run(scenario())
    except BaseException:
        print(meeting_stack.log_tail())
        raise


def test_a_refused_token_shows_in_the_status_line(xmpp_server: XMPPServerProcess) -> None:
    """vw-xmpp alone serves the page too; its token check refuses a forged ``?jwt=``."""
    url = f"http://127.0.0.1:{xmpp_server.http_port}/{ROOM}?jwt=not.a.token"

    async def scenario() -> str:
        async with chromium() as browser:
            page = await browser.new_page()
            await page.goto(url)

            async def failed() -> bool:
                return (await page.evaluate("vwMeeting.state")).startswith("failed: ")

            await until(failed, "the page reports the refusal")
            return await page.text_content("#status")

    status = asyncio.run(scenario())
    # lib-jitsi-meet reports SASL <not-allowed/> as PASSWORD_REQUIRED, with the server's text.
    assert status.startswith("failed: connection.passwordRequired"), status
    assert "sign in" in status, status


def test_a_token_joins_its_room_and_is_refused_in_another(token_stack: Stack) -> None:
    now = int(time.time())
    token = jwt.encode({"iss": TOKEN_APP, "aud": TOKEN_APP, "sub": "localhost", "room": "alpha",
                        "exp": now + 600, "context": {"user": {"name": "Ada"}}},
                       TOKEN_SECRET, algorithm="HS256")

    async def scenario() -> tuple[list[str], str]:
        async with chromium() as browser:
            await Participant.join(browser, "ada", token_stack.url(f"alpha?jwt={token}"))
            page = await browser.new_page()
            refusals: list[str] = []
            page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: (
                refusals.append(frame) if "reservation-error" in str(frame) else None)))
            await page.goto(token_stack.url(f"beta?jwt={token}"))

            async def refused() -> bool:
                return bool(refusals)

            await until(refused, "the focus request for beta is refused")
            await asyncio.sleep(2)
            return refusals, await page.evaluate("vwMeeting.state")

    try:
        refusals, state = asyncio.run(scenario())
    except BaseException:
        print(token_stack.log_tail())
        raise
    assert "beta@conference.localhost" in refusals[0] and "not-allowed" in refusals[0]
    assert state == ("failed: conference.reservationError the token does not allow this room"
                     ), state


def token_page(stack: Stack, room: str, name: str, moderator: bool, lobby: bool,
               max_participants: int = 0) -> str:
    """The meeting page of ``room`` with a token for ``name``."""
    now = int(time.time())
    token = jwt.encode({"iss": TOKEN_APP, "aud": TOKEN_APP, "sub": "localhost", "room": room,
                        "exp": now + 600, "context": {"user": {"name": name,
                                                                "moderator": moderator},
                                                       "room": {"lobby": lobby,
                                                                "max_participants":
                                                                    max_participants}}},
                       TOKEN_SECRET, algorithm="HS256")
    return stack.url(f"{room}?jwt={token}")


def test_a_lobby_guest_knocks_and_the_host_admits_one_and_denies_another(
        token_stack: Stack) -> None:
    """The host's token turns the lobby on; guests knock from the page's form with the name
    of their token; the host sees them in its lobby list, admits one (the two decode each
    other's media) and denies the other (whose page says so)."""
    def page_for(name: str, moderator: bool) -> str:
        return token_page(token_stack, "lobbyroom", name, moderator, lobby=True)

    async def knock(browser, name: str) -> Participant:
        guest = Participant(name, await browser.new_page())
        await guest.page.goto(page_for(name, False))
        await guest.until_state("in the lobby")
        assert await guest.page.input_value("#knock-name") == name
        await guest.page.click("#knock-ask")
        await guest.until_state("waiting for a moderator")
        return guest

    async def scenario() -> None:
        async with chromium() as browser:
            host = await Participant.join(browser, "host", page_for("Host", True))
            ada = await knock(browser, "Ada")
            bob = await knock(browser, "Bob")

            async def both_waiting() -> bool:
                names = {w["name"] for w in await host.page.evaluate("vwMeeting.lobbyWaiting()")}
                return names == {"Ada", "Bob"}

            await until(both_waiting, "the host sees Ada and Bob in the lobby")
            assert await host.page.evaluate("vwMeeting.membersOnly()")
            await host.page.click("#lobby-waiting li:has-text('Ada') >> text=Admit")
            await ada.until_state("joined")
            ada.id = await ada.page.evaluate("vwMeeting.myId()")
            await host.page.click("#lobby-waiting li:has-text('Bob') >> text=Deny")

            async def bob_denied() -> bool:
                return "accessDenied" in await bob.state()

            await until(bob_denied, "Bob's page says access was denied")

            async def lobby_empty() -> bool:
                return await host.page.evaluate("vwMeeting.lobbyWaiting()") == []

            await until(lobby_empty, "the host's lobby list empties")
            await everyone_sees_everyone([host, ada])

    try:
        asyncio.run(scenario())
    except BaseException:
        print(token_stack.log_tail())
        raise


def test_a_full_room_turns_the_next_one_away(token_stack: Stack) -> None:
    """The meeting's participant limit, carried by its tokens: with two in the room (the
    focus takes no seat) the third page fails as full."""
    def page_for(name: str) -> str:
        return token_page(token_stack, "smallroom", name, False, lobby=False,
                          max_participants=2)

    async def scenario() -> str:
        async with chromium() as browser:
            ann = await Participant.join(browser, "ann", page_for("Ann"))
            bob = await Participant.join(browser, "bob", page_for("Bob"))
            cat = Participant("cat", await browser.new_page())
            await cat.page.goto(page_for("Cat"))

            async def turned_away() -> bool:
                return (await cat.state()).startswith("failed")

            await until(turned_away, "the third participant is turned away")
            assert await ann.remote_participants() == {bob.id}
            return await cat.state()

    try:
        state = asyncio.run(scenario())
    except BaseException:
        print(token_stack.log_tail())
        raise
    assert state == "failed: conference.max_users", state  # CONFERENCE_MAX_USERS: "full"


def test_the_host_turns_the_lobby_on_and_off_from_the_page(token_stack: Stack) -> None:
    """lib-jitsi-meet's own enableLobby and disableLobby behind the page's button: a guest
    who comes while the lobby is on waits; when it goes off, the guest enters by itself."""
    def page_for(name: str, moderator: bool) -> str:
        return token_page(token_stack, "togglelobby", name, moderator, lobby=False)

    async def scenario() -> None:
        async with chromium() as browser:
            host = await Participant.join(browser, "host", page_for("Host", True))
            toggle = host.page.locator("#lobby-toggle")
            await toggle.wait_for(state="visible")
            await toggle.click()

            async def lobby_on() -> bool:
                return (await host.page.evaluate("vwMeeting.membersOnly()")
                        and await toggle.get_attribute("aria-pressed") == "true")

            await until(lobby_on, "the host's button turns the lobby on")
            guest = Participant("guest", await browser.new_page())
            await guest.page.goto(page_for("Guest", False))
            await guest.until_state("in the lobby")
            await guest.page.click("#knock-ask")

            async def seen() -> bool:
                return [w["name"] for w in await host.page.evaluate("vwMeeting.lobbyWaiting()")
                        ] == ["Guest"]

            await until(seen, "the host sees the guest knocking")
            await toggle.click()
            await guest.until_state("joined")
            assert not await host.page.evaluate("vwMeeting.membersOnly()")

    try:
        asyncio.run(scenario())
    except BaseException:
        print(token_stack.log_tail())
        raise


def test_browsers_and_a_python_jitsi_client_meet(meeting_stack: Stack) -> None:
    """The protocol from a second implementation: the aiortc Jitsi client in tests/e2e/jitsi
    joins two browsers; each side decodes the other's media."""
    from tests.e2e.jitsi.client import JitsiClient

    room = "mixed"

    async def scenario() -> None:
        python = JitsiClient(f"ws://127.0.0.1:{meeting_stack.http_port}/xmpp-websocket", room,
                             display_name="py", video_size=(320, 240))
        async with chromium() as browser:
            try:
                anna, bert = await asyncio.gather(
                    Participant.join(browser, "anna", meeting_stack.url(room)),
                    Participant.join(browser, "bert", meeting_stack.url(room)))
                await python.join()
                browsers = [anna.id, bert.id]
                tracks = await python.wait_for_tracks(browsers, timeout=STEP)
                for endpoint in browsers:  # Chromium's fake camera is 640x480
                    frame = await asyncio.wait_for(tracks[endpoint]["video"].track.recv(), STEP)
                    assert frame.width > 0 and frame.height > 0
                    await asyncio.wait_for(tracks[endpoint]["audio"].track.recv(), STEP)

                class Peer:  # the Python client as the browsers' stats name it
                    id = python.endpoint_id
                    name = "py"

                for person in (anna, bert):
                    await person.until_media_from(Peer)
            finally:
                await python.leave()

    try:
        asyncio.run(scenario())
    except BaseException:
        print(meeting_stack.log_tail())
        raise


def test_two_browsers_meet_through_the_balancer(meeting_stack: Stack, tmp_path: Path) -> None:
    """vw-balancer in front of the stack (its one shard, bridge and portal from the stack's
    own ports): the meeting page and the XMPP WebSocket go through it."""
    http, tls, admin = free_port(), free_port(), free_port()
    config = tmp_path / "vw.toml"
    config.write_text((meeting_stack.directory / "vw.toml").read_text() + f"""
[balancer]
http_port = {http}
tls_port = {tls}
admin_port = {admin}
health_interval = 0.5
""")
    with open(tmp_path / "balancer.log", "w") as log:
        balancer = subprocess.Popen([BIN / "twistd", "--nodaemon", "--pidfile=", "vw-balancer",
                                     "--config", str(config)], cwd=tmp_path, stdout=log,
                                    stderr=subprocess.STDOUT)
    try:
        wait_for_health(f"http://127.0.0.1:{admin}/about/health", balancer)
        url = f"http://127.0.0.1:{http}/Balanced-Room"

        async def scenario() -> None:
            async with chromium() as browser:
                people = await asyncio.gather(Participant.join(browser, "anna", url),
                                              Participant.join(browser, "bert", url))
                await everyone_sees_everyone(list(people))

        asyncio.run(scenario())
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats", timeout=10) as answer:
            stats = json.load(answer)
        assert stats["routed"]["local"] >= 4  # two pages and two XMPP WebSockets at least
        assert stats["connections"] >= 2 and not stats["backend_failures"]
    except BaseException:
        print(meeting_stack.log_tail())
        print((tmp_path / "balancer.log").read_text(errors="replace")[-3000:])
        raise
    finally:
        stop(balancer)
