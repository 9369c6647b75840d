"""The portal's records: plain dataclasses the store returns and the pages and API show."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime

#: Account roles, most powerful first. Admins manage users; hosts (and admins) schedule
#: meetings; members join them; guest accounts join only meetings open to guests.
ROLES = ("admin", "host", "member", "guest")
#: Account ids are INTEGER, of 32 bits on PostgreSQL: larger numbers name no account.
MAX_USER_ID = 2**31 - 1


@dataclass(frozen=True)
class User:
    id: int
    email: str
    display_name: str
    role: str
    avatar_url: str
    created: datetime
    password_hash: str = field(repr=False)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def can_schedule(self) -> bool:
        return self.role in ("admin", "host")


@dataclass(frozen=True)
class Person:
    """Another user, as a meeting shows them (its co-hosts)."""

    id: int
    email: str
    display_name: str


@dataclass(frozen=True)
class Session:
    """A browser session: anonymous until sign-in, which replaces it with a new one."""

    id_hash: str
    csrf: str
    expires: datetime
    user: User | None


@dataclass(frozen=True)
class MeetingPlan:
    """What a host decides about a meeting; validated by :mod:`vw.portal.meetings`."""

    title: str
    start: datetime
    duration: int
    room: str
    recurrence: str = ""
    password: str = ""
    lobby: bool = False
    guests_allowed: bool = True
    #: 0: no limit.
    max_participants: int = 0
    #: Co-hosts' e-mail addresses.
    cohosts: tuple[str, ...] = ()
    #: When the last occurrence ends; None for a rule that never ends.
    ends: datetime | None = None


@dataclass(frozen=True)
class JoinRoom:
    """The room a join token is for, with the meeting's settings vw-xmpp applies to it."""

    name: str
    lobby: bool = False
    #: The meeting's participant limit; 0: none.
    max_participants: int = 0


@dataclass(frozen=True)
class Meeting:
    id: str
    owner_id: int
    title: str
    start: datetime
    duration: int
    recurrence: str
    ends: datetime | None
    room: str
    password: str
    lobby: bool
    guests_allowed: bool
    max_participants: int
    cancelled: bool
    created: datetime
    cohosts: tuple[Person, ...] = ()

    @classmethod
    def from_row(cls, row: Sequence[object], cohosts: tuple[Person, ...]) -> Meeting:
        """The meeting whose fields but its co-hosts are ``row``, in order. Made without the
        frozen dataclass's ``object.__setattr__`` for each field, which costs five times as
        much: meeting lists make many."""
        meeting = object.__new__(cls)
        meeting.__dict__.update(zip(_ROW_FIELDS, row, strict=True), cohosts=cohosts)
        return meeting

    def is_host(self, user: User | None) -> bool:
        """The owner, a co-host or an admin: moderators, who may see and change it."""
        if user is None:
            return False
        return (user.is_admin or user.id == self.owner_id
                or any(person.id == user.id for person in self.cohosts))

    def may_edit(self, user: User | None) -> bool:
        """The owner or an admin (co-hosts moderate but do not reschedule)."""
        return user is not None and (user.is_admin or user.id == self.owner_id)

    def join_room(self) -> JoinRoom:
        return JoinRoom(self.room, self.lobby, self.max_participants)

    def plan(self) -> MeetingPlan:
        return MeetingPlan(title=self.title, start=self.start, duration=self.duration,
                           room=self.room, recurrence=self.recurrence, password=self.password,
                           lobby=self.lobby, guests_allowed=self.guests_allowed,
                           max_participants=self.max_participants,
                           cohosts=tuple(person.email for person in self.cohosts),
                           ends=self.ends)


#: A meeting's fields as a row of the meetings table has them: all but its co-hosts.
_ROW_FIELDS = tuple(item.name for item in fields(Meeting) if item.name != "cohosts")


@dataclass(frozen=True)
class AuditEvent:
    time: datetime
    event: str
    user_id: int | None
    address: str
    detail: str
