"""Who may join a meeting, and as what: the rule the pages and the API share."""

from __future__ import annotations

import hmac

from vw.portal.joining import Participant
from vw.portal.records import Meeting, User


class NotAdmitted(Exception):
    """Refused: ``status`` is the HTTP answer, ``str(exc)`` the reason, ``field`` the form
    field to fix, if any."""

    def __init__(self, status: int, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.field = field


def admit(meeting: Meeting, user: User | None, password: str) -> bool:
    """Whether ``user`` (None: a guest without an account) joins as a moderator; raises
    NotAdmitted. Hosts skip the meeting password; guests need ``guests_allowed``."""
    if meeting.cancelled:
        raise NotAdmitted(410, "The meeting is cancelled.")
    host = meeting.is_host(user)
    if not host and (user is None or user.role == "guest") and not meeting.guests_allowed:
        raise NotAdmitted(403, "The meeting is not open to guests.")
    if meeting.password and not host and not hmac.compare_digest(password.encode(),
                                                                 meeting.password.encode()):
        raise NotAdmitted(403, "That is not the meeting's password.", field="password")
    return host


def participant(user: User) -> Participant:
    return Participant(id=str(user.id), name=user.display_name, email=user.email,
                       avatar=user.avatar_url)
