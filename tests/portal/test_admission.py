"""Who joins a meeting, and as what."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from vw.portal.admission import NotAdmitted, admit
from vw.portal.records import Meeting, Person, User

WHEN = datetime(2030, 1, 1, tzinfo=UTC)
OWNER = User(1, "own@example.org", "Own", "host", "", WHEN, "h")
COHOST = User(2, "co@example.org", "Co", "member", "", WHEN, "h")
ADMIN = User(3, "root@example.org", "Root", "admin", "", WHEN, "h")
MEMBER = User(4, "mia@example.org", "Mia", "member", "", WHEN, "h")
GUEST_ACCOUNT = User(5, "gia@example.org", "Gia", "guest", "", WHEN, "h")
MEETING = Meeting(id="m", owner_id=OWNER.id, title="T", start=WHEN, duration=30, recurrence="",
                  ends=None, room="r", password="", lobby=False, guests_allowed=True,
                  max_participants=0, cancelled=False, created=WHEN,
                  cohosts=(Person(COHOST.id, COHOST.email, COHOST.display_name),))


@pytest.mark.parametrize("user, moderator", [
    (OWNER, True), (COHOST, True), (ADMIN, True), (MEMBER, False), (GUEST_ACCOUNT, False),
    (None, False)])
def test_hosts_are_moderators(user: User | None, moderator: bool) -> None:
    assert admit(MEETING, user, "") is moderator


@pytest.mark.parametrize("user, admitted", [
    (OWNER, True), (COHOST, True), (MEMBER, True), (GUEST_ACCOUNT, False), (None, False)])
def test_guests_need_a_meeting_open_to_them(user: User | None, admitted: bool) -> None:
    closed = replace(MEETING, guests_allowed=False)
    if admitted:
        admit(closed, user, "")
    else:
        with pytest.raises(NotAdmitted) as refused:
            admit(closed, user, "")
        assert (refused.value.status, refused.value.field) == (403, None)


def test_the_password_is_for_everyone_but_hosts() -> None:
    locked = replace(MEETING, password="letmein")
    assert admit(locked, OWNER, "") and admit(locked, COHOST, "wrong")
    assert not admit(locked, MEMBER, "letmein")
    for user in (MEMBER, None):
        with pytest.raises(NotAdmitted) as refused:
            admit(locked, user, "LETMEIN")
        assert (refused.value.status, refused.value.field) == (403, "password")


def test_nobody_joins_a_cancelled_meeting() -> None:
    with pytest.raises(NotAdmitted) as refused:
        admit(replace(MEETING, cancelled=True), OWNER, "")
    assert refused.value.status == 410
