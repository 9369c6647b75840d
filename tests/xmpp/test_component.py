"""XEP-0114 components: when the connection ends, the rooms they sat in see them leave."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.words.xish.domish import Element

from tests.xmpp.helpers import Client, make_server
from vw.xmpp.component import ComponentProtocol, handshake_digest
from vw.xmpp.server import XMPPServer

SECRET = "component-secret"
BREWERY = "jvbbrewery@internal.auth.localhost"
MUC = "<x xmlns='http://jabber.org/protocol/muc'/>"


def connect_component(server: XMPPServer, domain: str = "jvb.localhost") -> ComponentProtocol:
    component = ComponentProtocol(server)
    component.makeConnection(StringTransport())
    component.dataReceived(
        f"<stream:stream xmlns='jabber:component:accept' "
        f"xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>".encode())
    digest = handshake_digest(component.stream_id, SECRET)
    component.dataReceived(f"<handshake>{digest}</handshake>".encode())
    assert component.authenticated
    return component


def watcher(server: XMPPServer, room: str = BREWERY) -> Client:
    """A client sitting in ``room`` as ``focus``, its join presences already read."""
    client = Client(server)
    client.login_anonymous()
    client.send(f"<presence to='{room}/focus'>{MUC}</presence>")
    return client


def presences_from(client: Client, occupant: str) -> list[Element]:
    return [p for p in client.transport.take()
            if p.name == "presence" and p.getAttribute("from") == occupant]


def lost(component: ComponentProtocol) -> None:
    component.connectionLost(Failure(ConnectionError("gone")))


def test_a_disconnected_component_leaves_its_rooms(tmp_path: Path) -> None:
    server = make_server(tmp_path, components={"jvb.localhost": SECRET})
    focus = watcher(server)
    other = watcher(server, "elsewhere@conference.localhost")
    component = connect_component(server)
    component.dataReceived(
        f"<presence from='jvb.localhost' to='{BREWERY}/b1'>{MUC}</presence>"
        f"<presence from='jvb.localhost' to='elsewhere@conference.localhost/b1'>{MUC}"
        f"</presence>".encode())
    (joined,) = presences_from(focus, f"{BREWERY}/b1")
    assert joined.getAttribute("type") is None
    presences_from(other, "elsewhere@conference.localhost/b1")
    written = component.transport.value()

    lost(component)

    (left,) = presences_from(focus, f"{BREWERY}/b1")
    assert left.getAttribute("type") == "unavailable"
    (left,) = presences_from(other, "elsewhere@conference.localhost/b1")
    assert left.getAttribute("type") == "unavailable"
    room = next(s for s in server.muc_services if s.domain == "internal.auth.localhost")
    assert [o.nick for o in room.room("jvbbrewery").occupants.values()] == ["focus"]
    assert "jvb.localhost" not in server.router.components
    assert component.transport.value() == written    # nothing written to a closed connection


def test_a_component_that_left_is_not_made_to_leave_again(tmp_path: Path) -> None:
    server = make_server(tmp_path, components={"jvb.localhost": SECRET})
    focus = watcher(server)
    component = connect_component(server)
    component.dataReceived(
        f"<presence from='jvb.localhost' to='{BREWERY}/b1'>{MUC}</presence>"
        f"<presence from='jvb.localhost' to='{BREWERY}/b1' type='unavailable'/>".encode())
    assert [p.getAttribute("type") for p in presences_from(focus, f"{BREWERY}/b1")] == [
        None, "unavailable"]

    lost(component)

    assert presences_from(focus, f"{BREWERY}/b1") == []


def test_an_unauthenticated_connection_owes_nothing(tmp_path: Path) -> None:
    server = make_server(tmp_path, components={"jvb.localhost": SECRET})
    focus = watcher(server)
    component = ComponentProtocol(server)
    component.makeConnection(StringTransport())
    component.dataReceived(b"<stream:stream xmlns='jabber:component:accept' "
                           b"xmlns:stream='http://etherx.jabber.org/streams' to='jvb.localhost'>"
                           b"<presence from='jvb.localhost' to='" + BREWERY.encode() + b"/b1'/>")
    lost(component)
    assert presences_from(focus, f"{BREWERY}/b1") == []
