"""XEP-0045 against slixmpp clients: a 20-occupant room, kick and ban."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import XMPPServerProcess
from tests.e2e.slix import Inbox, connect, disconnect

OCCUPANTS = 20


@pytest.fixture(scope="module")
def server(xmpp_server: XMPPServerProcess) -> XMPPServerProcess:
    for n in range(OCCUPANTS):
        xmpp_server.add_account(f"m{n}@localhost", f"m{n}-password")
    return xmpp_server


async def member(server: XMPPServerProcess, n: int):
    return await connect(f"m{n}@localhost/muc", f"m{n}-password", server.c2s_port, server.ca)


def test_twenty_occupants_exchange_messages(server: XMPPServerProcess) -> None:
    room = "big@conference.localhost"

    async def scenario() -> None:
        clients = await asyncio.gather(*(member(server, n) for n in range(OCCUPANTS)))
        inboxes = [Inbox(c, "groupchat_message") for c in clients]
        for n, client in enumerate(clients):
            await client.plugin["xep_0045"].join_muc_wait(room, f"nick{n}", timeout=15)
        for _ in range(100):  # the others' presences may still be on their way to the first
            roster = clients[0].plugin["xep_0045"].get_roster(room)
            if len(roster) == OCCUPANTS:
                break
            await asyncio.sleep(0.05)
        assert len(roster) == OCCUPANTS
        # Every occupant's presence carries the real JID (Jitsi rooms are non-anonymous).
        jid = clients[0].plugin["xep_0045"].get_jid_property(room, "nick5", "jid")
        assert str(jid) == "m5@localhost/muc"
        for n, client in enumerate(clients[:5]):
            client.send_message(mto=room, mbody=f"hello from {n}", mtype="groupchat")
        for inbox in inboxes:
            bodies = set()
            while len(bodies) < 5:
                message = await inbox.next(15)
                if message["body"].startswith("hello from"):
                    bodies.add(message["body"])
            assert bodies == {f"hello from {n}" for n in range(5)}
        await disconnect(*clients)

    asyncio.run(scenario())


def test_kick_and_ban(server: XMPPServerProcess) -> None:
    room = "strict@conference.localhost"

    async def scenario() -> None:
        owner, victim, witness = await asyncio.gather(*(member(server, n) for n in (0, 1, 2)))
        await owner.plugin["xep_0045"].join_muc_wait(room, "owner", timeout=10)
        await witness.plugin["xep_0045"].join_muc_wait(room, "witness", timeout=10)
        await victim.plugin["xep_0045"].join_muc_wait(room, "victim", timeout=10)
        victim_presence = Inbox(victim, f"muc::{room}::presence")
        witness_presence = Inbox(witness, f"muc::{room}::presence")

        await owner.plugin["xep_0045"].set_role(room, "victim", "none", reason="behave")
        kicked = await victim_presence.until(lambda p: p["type"] == "unavailable")
        assert {307, 110} <= set(kicked["muc"]["status_codes"])
        seen = await witness_presence.until(lambda p: p["type"] == "unavailable")
        assert 307 in seen["muc"]["status_codes"] and seen["muc"]["nick"] == "victim"

        await victim.plugin["xep_0045"].join_muc_wait(room, "victim", timeout=10)
        await owner.plugin["xep_0045"].set_affiliation(room, "outcast",
                                                       jid="m1@localhost", reason="gone")
        banned = await victim_presence.until(lambda p: p["type"] == "unavailable")
        assert 301 in set(banned["muc"]["status_codes"])
        with pytest.raises(Exception, match="forbidden"):
            await victim.plugin["xep_0045"].join_muc_wait(room, "again", timeout=10)
        await disconnect(owner, victim, witness)

    asyncio.run(scenario())
