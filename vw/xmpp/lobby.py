"""Jitsi's lobby: a members-only room of the conference MUC has a lobby room to knock in.

A room becomes members only (a moderator's lib-jitsi-meet ``enableLobby``, or a token asking
for a lobby) and gets ``ROOM@LOBBY-DOMAIN``, named in its disco#info
(``muc#roominfo_lobbyroom``) and in the 407 a non-member's join gets. The non-member joins
the lobby room; the room's moderators, owners of the lobby room too, are there as well and
see it. A moderator admits it with a mediated invitation to the room (which makes it a
member, and its client joins again) or kicks it from the lobby room. Those waiting see only
themselves. The lobby room closes when the room stops being members only (its occupants are
sent to the room) or closes.
"""

from __future__ import annotations

from twisted.words.protocols.jabber.jid import JID

from vw.xmpp.muc import PRIVILEGED, MUCService, Occupant, Room

#: The disco#info field naming a room's lobby.
LOBBY_FIELD = "muc#roominfo_lobbyroom"


class Lobbies:
    """The lobby rooms of one conference MUC service, in a MUC service of their own."""

    def __init__(self, rooms: MUCService | None = None,
                 lobbies: MUCService | None = None) -> None:
        #: The conference MUC service and the lobby MUC service (set once both exist).
        self.rooms = rooms
        self.lobbies = lobbies

    def lobby_jid(self, room: Room) -> str | None:
        if not room.config.members_only or self.lobbies is None:
            return None
        return f"{room.node}@{self.lobbies.domain}"

    def room_changed(self, room: Room) -> None:
        lobby = self.lobby_jid(room)
        if lobby is None:
            room.extra_info.pop(LOBBY_FIELD, None)
            self._close(room, alternate=room.jid)
        else:
            room.extra_info[LOBBY_FIELD] = lobby
            assert self.lobbies is not None
            self.lobbies.open_kept_room(room.node)

    def room_closed(self, room: Room) -> None:
        self._close(room, alternate=None)

    def _close(self, room: Room, alternate: str | None) -> None:
        """Close ``room``'s lobby room: with ``alternate``, those waiting go there."""
        if self.lobbies is not None and self.lobbies.room(room.node) is not None:
            self.lobbies.destroy_room(room.node, "Lobby room closed.", alternate)

    def affiliation(self, jid: JID, node: str) -> str | None:
        """The lobby room affiliation of ``jid``: owner if it moderates the room."""
        if self.rooms is None:
            return None
        return "owner" if self.rooms.affiliation(node, jid.userhost()) in PRIVILEGED else None


def visible(room: Room, viewer: Occupant, subject: Occupant) -> bool:
    """In a lobby room, the moderators see those waiting, and nobody sees anyone else."""
    return viewer.role == "moderator" and subject.role != "moderator"
