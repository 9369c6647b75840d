"""The portal in headless Chromium, on the all-in-one: a host signs up, signs in, schedules a
meeting and joins it; a guest in another browser context joins from the invitation link; each
decodes the other's video and audio through vw's XMPP server, focus and bridge; an
administrator sees the conference on the page of services."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from tests.e2e.conftest import Stack, run_stack
from tests.e2e.test_meeting_page import Participant, chromium, everyone_sees_everyone
from vw.portal.database import open_database
from vw.portal.passwords import Passwords
from vw.portal.store import Store

PASSWORD = "a long enough password"
ADMIN = "root@example.org"


@pytest.fixture(scope="module")
def portal_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``twistd vw`` with open sign-up, as a small organisation might run it, and an
    administrator (put straight into its database)."""
    with contextmanager(run_stack)(tmp_path_factory.mktemp("portal"),
                                   portal='signup = "open"') as stack:
        engine = open_database(f"sqlite:///{stack.directory / 'var' / 'portal.sqlite'}")
        Store(engine).create_user(ADMIN, "Root", Passwords().hash(PASSWORD), "admin",
                                  datetime.now(UTC))
        engine.dispose()
        yield stack


async def services_table(browser, stack: Stack) -> list[list[str]]:
    """The rows of the two tables of the admin page of services (live conferences, then
    health), as the administrator sees them."""
    page = await (await browser.new_context()).new_page()
    await page.goto(stack.portal_url("signin?next=/admin/services"))
    await page.fill("#email", ADMIN)
    await page.fill("#password", PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/admin/services")
    return await page.evaluate("""[...document.querySelectorAll('table')].map(table =>
        [...table.querySelectorAll('tbody tr')].map(row =>
            [...row.cells].map(cell => cell.textContent.trim())))""")


def join_claims(stack: Stack, url: str) -> dict:
    """The claims of the ``?jwt=`` of a meeting page address, checked with the all-in-one's
    token secret (the one its XMPP server checks them with)."""
    token = parse_qs(urlsplit(url).query)["jwt"][0]
    secret = (stack.directory / "var" / "token-secret").read_text().strip()
    return jwt.decode(token, secret, algorithms=["HS256"], audience="*")


async def in_meeting(name: str, page) -> Participant:
    """The meeting page ``page`` was sent to, once it has joined."""
    participant = Participant(name, page)
    await participant.until_state("joined")
    participant.id = await page.evaluate("vwMeeting.myId()")
    assert participant.id, f"{name} joined without a participant id"
    return participant


async def schedule(host, stack: Stack, title: str, room: str, lobby: bool = False) -> str:
    """Schedule a meeting from the host's page of meetings; its invitation link."""
    await host.get_by_role("link", name="Schedule", exact=True).click()
    await host.fill("#title", title)
    await host.fill("#room", room)
    assert await host.is_checked("#guests_allowed")
    if lobby:
        await host.check("#lobby")
    await host.get_by_role("button", name="Schedule", exact=True).click()
    await host.wait_for_url("**/meetings/*")
    invitation = await host.get_attribute("dd a[href*='/m/']", "href")
    assert invitation and invitation.startswith(stack.portal_url("m/"))
    return invitation


async def open_invitation(browser, invitation: str, title: str, name: str) -> Any:
    """A guest in a browser context of its own follows the invitation link with a name."""
    guest = await (await browser.new_context()).new_page()
    await guest.goto(invitation)
    assert title in await guest.text_content("h1")
    await guest.fill("#name", name)
    await guest.get_by_role("button", name="Join", exact=True).click()
    return guest


def test_a_host_and_a_guest_meet_through_the_portal(portal_stack: Stack) -> None:
    meeting_page = f"http://localhost:{portal_stack.http_port}/"

    async def scenario() -> tuple[str, str]:
        async with chromium() as browser:
            host = await (await browser.new_context()).new_page()
            await host.goto(portal_stack.portal_url("signup"))
            await host.fill("#email", "hana@example.org")
            await host.fill("#display_name", "Hana Host")
            await host.fill("#password", PASSWORD)
            await host.get_by_role("button", name="Create account").click()
            await host.wait_for_url("**/meetings")
            await host.get_by_role("button", name="Sign out Hana Host").click()
            await host.wait_for_url("**/signin")

            await host.fill("#email", "hana@example.org")
            await host.fill("#password", PASSWORD)
            await host.get_by_role("button", name="Sign in").click()
            await host.wait_for_url("**/meetings")

            invitation = await schedule(host, portal_stack, "Portal standup", "portal-standup")
            await host.get_by_role("button", name="Join now").click()
            await host.wait_for_url(f"{meeting_page}portal-standup?jwt=*")
            hana = await in_meeting("hana", host)

            guest = await open_invitation(browser, invitation, "Portal standup", "Gus Guest")
            await guest.wait_for_url(f"{meeting_page}portal-standup?jwt=*")
            gus = await in_meeting("gus", guest)

            await everyone_sees_everyone([hana, gus])
            return host.url, guest.url, await services_table(browser, portal_stack)

    try:
        host_url, guest_url, (live, health) = asyncio.run(scenario())
    except BaseException:
        print(portal_stack.log_tail())
        raise
    host, guest = join_claims(portal_stack, host_url), join_claims(portal_stack, guest_url)
    assert host["room"] == guest["room"] == "portal-standup"
    assert host["context"]["user"]["name"] == "Hana Host"
    assert host["context"]["user"]["email"] == "hana@example.org"
    assert host["context"]["user"]["moderator"] is True
    assert guest["context"]["user"]["name"] == "Gus Guest"
    assert guest["context"]["user"]["moderator"] is False
    assert guest["context"]["user"]["id"].startswith("guest-")
    # One conference of two, on the focus and on the one bridge; their health.
    assert [row[0] for row in live] == ["focus", "bridge"]
    assert [row[2:] for row in live] == [["1", "2", "ok"], ["1", "2", "ok"]]
    healthy = {row[0] for row in health if row[2] == "healthy: ok"}
    assert {"xmpp", "focus", "bridge"} <= healthy, health


def test_with_a_lobby_the_host_lets_the_guest_in(portal_stack: Stack) -> None:
    """The meeting's lobby setting travels in the join tokens: the guest from the
    invitation link waits in the lobby under its name until the host admits it."""
    meeting_page = f"http://localhost:{portal_stack.http_port}/"

    async def scenario() -> tuple[str, str]:
        async with chromium() as browser:
            host = await (await browser.new_context()).new_page()
            await host.goto(portal_stack.portal_url("signup"))
            await host.fill("#email", "lea@example.org")
            await host.fill("#display_name", "Lea Host")
            await host.fill("#password", PASSWORD)
            await host.get_by_role("button", name="Create account").click()
            await host.wait_for_url("**/meetings")
            invitation = await schedule(host, portal_stack, "Lobby review", "lobby-review",
                                        lobby=True)
            await host.get_by_role("button", name="Join now").click()
            await host.wait_for_url(f"{meeting_page}lobby-review?jwt=*")
            lea = await in_meeting("lea", host)

            page = await open_invitation(browser, invitation, "Lobby review", "Gil Guest")
            await page.wait_for_url(f"{meeting_page}lobby-review?jwt=*")
            gil = Participant("gil", page)
            await gil.until_state("in the lobby")
            assert await page.input_value("#knock-name") == "Gil Guest"
            await page.click("#knock-ask")
            await host.locator("#lobby-waiting li", has_text="Gil Guest").get_by_role(
                "button", name="Admit").click()
            await gil.until_state("joined")
            gil.id = await page.evaluate("vwMeeting.myId()")
            await everyone_sees_everyone([lea, gil])
            return host.url, page.url

    try:
        host_url, guest_url = asyncio.run(scenario())
    except BaseException:
        print(portal_stack.log_tail())
        raise
    for url in (host_url, guest_url):
        assert join_claims(portal_stack, url)["context"]["room"] == {
            "lobby": True, "max_participants": 0}
