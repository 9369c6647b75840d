"""RFC 6120/6121 and XEP-0198/0199 against slixmpp clients over TCP with STARTTLS and SCRAM."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import XMPPServerProcess
from tests.e2e.slix import Inbox, connect, disconnect


@pytest.fixture(scope="module")
def server(xmpp_server: XMPPServerProcess) -> XMPPServerProcess:
    for name in ("alice", "bob", "carol", "dave"):
        xmpp_server.add_account(f"{name}@localhost", f"{name}-password")
    return xmpp_server


def login(server: XMPPServerProcess, name: str, resource: str = "test",
          mechanism: str | None = None):
    return connect(f"{name}@localhost/{resource}", f"{name}-password", server.c2s_port,
                   server.ca, mechanism)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
def test_login_and_ping(server: XMPPServerProcess, mechanism: str) -> None:
    async def scenario() -> None:
        client = await login(server, "alice", mechanism=mechanism)
        assert str(client.boundjid) == "alice@localhost/test"
        rtt = await client.plugin["xep_0199"].ping("localhost", timeout=5)
        assert rtt is not None
        info = await client.plugin["xep_0030"].get_info("localhost")
        features = info["disco_info"]["features"]
        assert "urn:xmpp:ping" in features and "urn:xmpp:extdisco:2" in features
        await disconnect(client)

    asyncio.run(scenario())


def test_wrong_password_is_refused(server: XMPPServerProcess) -> None:
    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="auth failed"):
            await connect("alice@localhost/x", "wrong", server.c2s_port, server.ca)

    asyncio.run(scenario())


def test_subscription_roster_and_presence(server: XMPPServerProcess) -> None:
    async def scenario() -> None:
        alice = await login(server, "alice")
        bob = await login(server, "bob")
        bob_presence = Inbox(bob, "presence_available")
        bob.send_presence()
        alice.send_presence()
        # slixmpp answers subscription requests itself (auto_authorize, auto_subscribe).
        alice.send_presence_subscription(pto="bob@localhost")
        seen = await bob_presence.until(lambda p: p["from"].bare == "alice@localhost")
        assert seen["type"] == "available"
        for _ in range(50):
            roster = await alice.get_roster()
            items = roster["roster"]["items"]
            if items.get("bob@localhost", {}).get("subscription") == "both":
                break
            await asyncio.sleep(0.1)
        assert items["bob@localhost"]["subscription"] == "both"
        roster = await bob.get_roster()
        assert roster["roster"]["items"]["alice@localhost"]["subscription"] == "both"
        # A roster set is pushed to the other resources and survives a new login.
        alice.update_roster("carol@localhost", name="Carol", groups=["friends"])
        await asyncio.sleep(0.3)
        await disconnect(alice)
        alice = await login(server, "alice", resource="second")
        items = (await alice.get_roster())["roster"]["items"]
        assert items["carol@localhost"]["name"] == "Carol"
        assert items["carol@localhost"]["groups"] == ["friends"]
        await disconnect(alice, bob)

    asyncio.run(scenario())


def test_messages_to_bare_and_full_jids(server: XMPPServerProcess) -> None:
    async def scenario() -> None:
        carol = await login(server, "carol", resource="phone")
        dave = await login(server, "dave")
        inbox = Inbox(dave, "message")
        errors = Inbox(carol, "message_error")
        carol.send_presence()
        dave.send_presence()
        # A ping answered on dave's stream means his presence before it was processed.
        await dave.plugin["xep_0199"].ping("localhost", timeout=5)
        carol.send_message(mto="dave@localhost", mbody="to the bare JID", mtype="chat")
        assert (await inbox.next())["body"] == "to the bare JID"
        carol.send_message(mto="dave@localhost/test", mbody="to the full JID", mtype="chat")
        message = await inbox.next()
        assert message["body"] == "to the full JID"
        assert message["from"] == carol.boundjid
        carol.send_message(mto="nobody@localhost", mbody="lost", mtype="chat")
        error = await errors.next()
        assert error["error"]["condition"] == "service-unavailable"
        carol.send_message(mto="someone@remote.example", mbody="far", mtype="chat")
        error = await errors.next()
        assert error["error"]["condition"] == "remote-server-not-found"
        await disconnect(carol, dave)

    asyncio.run(scenario())


def test_stream_management_resumes_after_the_connection_is_cut(
        server: XMPPServerProcess) -> None:
    async def scenario() -> None:
        alice = await login(server, "alice", resource="mobile")
        bob = await login(server, "bob", resource="desk")
        resumed = asyncio.get_running_loop().create_future()
        alice.add_event_handler("session_resumed", lambda _: resumed.done()
                                or resumed.set_result(True))
        inbox = Inbox(alice, "message")
        for _ in range(50):
            if alice.plugin["xep_0198"].sm_id:
                break
            await asyncio.sleep(0.1)
        assert alice.plugin["xep_0198"].sm_id
        old_jid = str(alice.boundjid)
        gone = asyncio.get_running_loop().create_future()
        alice.add_event_handler("disconnected", lambda _: gone.done() or gone.set_result(True))
        alice.transport.abort()  # the TCP connection dies without a closing handshake
        await asyncio.wait_for(gone, 5)
        for n in range(3):
            bob.send_message(mto=old_jid, mbody=f"while away {n}", mtype="chat")
        await asyncio.sleep(0.3)
        alice.connect("127.0.0.1", server.c2s_port)  # slixmpp resumes with its sm id
        await asyncio.wait_for(resumed, 20)
        assert str(alice.boundjid) == old_jid
        bodies = [(await inbox.next(15))["body"] for _ in range(3)]
        assert bodies == ["while away 0", "while away 1", "while away 2"]
        await disconnect(alice, bob)

    asyncio.run(scenario())
