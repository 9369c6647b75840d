"""The synchronous store on SQLite and PostgreSQL: accounts, sessions, meetings, tokens, audit,
failures."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from vw.portal.database import VERSION_TABLE, open_database
from vw.portal.records import Meeting, MeetingPlan, Person, User
from vw.portal.schema import meetings, metadata
from vw.portal.store import (
    Audited,
    EmailTaken,
    InvalidInvitation,
    JoinRequest,
    MeetingPage,
    RoomTaken,
    Store,
    UnknownUsers,
)

NOW = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def plan(title: str = "Standup", start: datetime = NOW + HOUR, **changes: object) -> MeetingPlan:
    values: dict[str, object] = {"title": title, "start": start, "duration": 30,
                                 "room": title.lower().replace(" ", "-"),
                                 "ends": start + timedelta(minutes=30)}
    values.update(changes)
    return MeetingPlan(**values)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_the_migrations_build_exactly_the_schema(empty_database_url: str) -> None:
    engine = open_database(empty_database_url)
    with engine.connect() as db:
        context = MigrationContext.configure(db, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, metadata) == []
        assert context.get_current_revision() == "0001"
    engine.dispose()


def test_opening_twice_keeps_the_data(empty_database_url: str) -> None:
    first = open_database(empty_database_url)
    Store(first).create_user("ann@example.org", "Ann", "hash", "host", NOW)
    first.dispose()
    again = open_database(empty_database_url)
    assert Store(again).user_by_email("ann@example.org") is not None
    again.dispose()


def test_emails_are_unique_whatever_their_case(store: Store) -> None:
    ann = store.create_user("Ann@Example.org", "Ann", "hash", "host", NOW)
    assert ann.email == "Ann@Example.org" and ann.role == "host" and ann.created == NOW
    assert store.user_by_email("ann@example.ORG") == ann
    with pytest.raises(EmailTaken):
        store.create_user("ANN@example.org", "Other Ann", "hash", "member", NOW)


def test_users_page_by_id_and_update(store: Store) -> None:
    made = [store.create_user(f"u{i}@example.org", f"U{i}", "h", "member", NOW) for i in range(5)]
    assert store.users(2) == made[:2]
    assert store.users(2, after=made[1].id) == made[2:4]
    changed = store.update_user(made[0].id, display_name="Zed", role="admin")
    assert changed is not None and (changed.display_name, changed.role) == ("Zed", "admin")
    assert store.has_admin()
    assert store.update_user(9999, role="host") is None


def test_an_invitation_gives_its_role_once(store: Store) -> None:
    store.add_invitation("code-hash", "admin", None, NOW, NOW + HOUR)
    assert store.invitation_role("code-hash", NOW) == "admin"
    user = store.create_user("a@example.org", "A", "h", "member", NOW, invitation="code-hash")
    assert user.role == "admin"
    assert store.invitation_role("code-hash", NOW) is None
    with pytest.raises(InvalidInvitation):
        store.create_user("b@example.org", "B", "h", "member", NOW, invitation="code-hash")
    assert store.user_by_email("b@example.org") is None


def test_an_expired_invitation_is_refused(store: Store) -> None:
    store.add_invitation("old", "host", None, NOW - 2 * HOUR, NOW - HOUR)
    with pytest.raises(InvalidInvitation):
        store.create_user("a@example.org", "A", "h", "member", NOW, invitation="old")


def test_sessions_expire_and_carry_their_user(store: Store) -> None:
    ann = store.create_user("ann@example.org", "Ann", "h", "host", NOW)
    store.create_session("s1", ann.id, "csrf1", NOW, NOW + HOUR)
    store.create_session("s2", None, "csrf2", NOW, NOW + HOUR)
    session = store.session("s1", NOW)
    assert session is not None and session.user == ann and session.csrf == "csrf1"
    anonymous = store.session("s2", NOW)
    assert anonymous is not None and anonymous.user is None
    assert store.session("s1", NOW + HOUR) is None
    store.delete_session("s2")
    assert store.session("s2", NOW) is None


def test_meetings_with_cohosts(store: Store) -> None:
    ann = store.create_user("ann@example.org", "Ann", "h", "host", NOW)
    bob = store.create_user("bob@example.org", "Bob", "h", "member", NOW)
    meeting = store.create_meeting(ann.id, plan(cohosts=("BOB@example.org",)), NOW)
    assert len(meeting.id) >= 22
    assert [person.email for person in meeting.cohosts] == ["bob@example.org"]
    assert meeting.is_host(bob) and not meeting.may_edit(bob) and meeting.may_edit(ann)
    assert store.meeting(meeting.id) == meeting
    changed = store.update_meeting(meeting.id, plan(title="Retro", room="retro"))
    assert changed is not None and changed.title == "Retro" and changed.cohosts == ()
    cancelled = store.cancel_meeting(meeting.id)
    assert cancelled is not None and cancelled.cancelled


def test_unknown_cohosts_and_taken_rooms_are_refused(store: Store) -> None:
    ann = store.create_user("ann@example.org", "Ann", "h", "host", NOW)
    store.create_meeting(ann.id, plan(room="one"), NOW)
    with pytest.raises(RoomTaken):
        store.create_meeting(ann.id, plan(room="one"), NOW)
    with pytest.raises(UnknownUsers) as unknown:
        store.create_meeting(ann.id, plan(room="two", cohosts=("nobody@example.org",)), NOW)
    assert unknown.value.emails == ["nobody@example.org"]
    assert store.meeting("two") is None


def test_meetings_of_lists_owned_and_cohosted_upcoming_and_past(store: Store) -> None:
    ann = store.create_user("ann@example.org", "Ann", "h", "host", NOW)
    bob = store.create_user("bob@example.org", "Bob", "h", "host", NOW)
    later = store.create_meeting(ann.id, plan("Later", NOW + 3 * HOUR), NOW)
    soon = store.create_meeting(ann.id, plan("Soon", NOW + HOUR), NOW)
    store.create_meeting(ann.id, plan("Ended", NOW - 3 * HOUR), NOW)
    cancelled = store.create_meeting(ann.id, plan("Called off", NOW + 2 * HOUR), NOW)
    store.cancel_meeting(cancelled.id)
    forever = store.create_meeting(ann.id, plan("Weekly", NOW - 30 * HOUR,
                                                recurrence="FREQ=WEEKLY", ends=None), NOW)
    bobs = store.create_meeting(bob.id, plan("Bob's", NOW + HOUR, cohosts=(ann.email,)), NOW)
    store.create_meeting(bob.id, plan("Bob alone", NOW + HOUR), NOW)

    upcoming = [m.title for m in store.meetings_of(ann.id, "upcoming", NOW, 10)]
    # Soonest first; the weekly meeting started before and goes on.
    assert upcoming[0] == "Weekly" and upcoming[-1] == "Later"
    assert set(upcoming[1:3]) == {"Soon", "Bob's"}
    assert {forever.id, soon.id, later.id, bobs.id} == {
        m.id for m in store.meetings_of(ann.id, "upcoming", NOW, 10)}
    past = store.meetings_of(ann.id, "past", NOW, 10)
    assert [m.title for m in past] == ["Called off", "Ended"]
    assert [m.title for m in store.meetings_of(bob.id, "upcoming", NOW, 10)] in (
        ["Bob's", "Bob alone"], ["Bob alone", "Bob's"])


def test_meetings_page_with_a_cursor(store: Store) -> None:
    ann = store.create_user("ann@example.org", "Ann", "h", "host", NOW)
    made = [store.create_meeting(ann.id, plan(f"M{i}", NOW + (i % 3) * HOUR, room=f"m{i}"), NOW)
            for i in range(7)]
    expected = sorted(made, key=lambda m: (m.start, m.id))
    seen, after = [], None
    while True:
        page = store.meetings_of(ann.id, "upcoming", NOW, 3, after)
        seen += page
        if len(page) < 3:
            break
        after = (page[-1].start, page[-1].id)
    assert seen == expected
    first_past = store.meetings_of(ann.id, "past", NOW + 10 * HOUR, 4)
    rest = store.meetings_of(ann.id, "past", NOW + 10 * HOUR, 4,
                             (first_past[-1].start, first_past[-1].id))
    assert first_past + rest == expected[::-1]


def test_meeting_pages_give_each_pages_account_and_meetings_in_one_call(store: Store) -> None:
    ann = store.create_user("ann@example.org", "Ann", "h", "host", NOW)
    bob = store.create_user("bob@example.org", "Bob", "h", "host", NOW)
    for i in range(3):
        store.create_meeting(ann.id, plan(f"A{i}", NOW + i * HOUR, room=f"a{i}",
                                          cohosts=(bob.email,)), NOW)
    store.create_meeting(bob.id, plan("Ended", NOW - 3 * HOUR), NOW)
    first = store.meetings_of(ann.id, "upcoming", NOW, 2)
    pages = [MeetingPage(ann.id, "upcoming", NOW, 2), MeetingPage(4242, "upcoming", NOW, 2),
             MeetingPage(bob.id, "past", NOW, 5),
             MeetingPage(ann.id, "upcoming", NOW, 2, (first[-1].start, first[-1].id)),
             MeetingPage(bob.id, "upcoming", NOW, 5)]
    assert store.meeting_pages(pages) == [
        (ann, first), (None, []), (bob, store.meetings_of(bob.id, "past", NOW, 5)),
        (ann, store.meetings_of(ann.id, "upcoming", NOW, 2, (first[-1].start, first[-1].id))),
        (bob, store.meetings_of(bob.id, "upcoming", NOW, 5))]
    assert [m.cohosts[0].email for m in store.meeting_pages(pages[-1:])[0][1]] == [
        bob.email] * 3
    assert store.meeting_pages([MeetingPage(0, "past", NOW, 1)]) == [(None, [])]


def test_users_with_ids_answer_in_order(store: Store) -> None:
    ann = store.create_user("ann@example.org", "Ann", "h", "host", NOW)
    bob = store.create_user("bob@example.org", "Bob", "h", "member", NOW)
    assert store.users_with_ids([bob.id, 4242, ann.id, bob.id, 0]) == [bob, None, ann, bob,
                                                                         None]
    assert store.users_with_ids([ann.id]) == [ann]
    assert store.users_with_ids([]) == []


def test_joins_are_decided_in_order_and_only_grants_are_audited(store: Store) -> None:
    ann = store.create_user("ann@example.org", "Ann", "h", "host", NOW)
    one = store.create_meeting(ann.id, plan("One", room="one"), NOW)
    two = store.create_meeting(ann.id, plan("Two", room="two"), NOW)
    seen: list[tuple[int | None, str | None]] = []

    def decide(user: User | None, meeting: Meeting | None) -> tuple[str, Audited]:
        seen.append((user and user.id, meeting and meeting.id))
        if user is None or meeting is None:
            raise LookupError("refused")
        return f"{meeting.room} for {user.id}", ("meeting.joined", user.id, "192.0.2.1",
                                                 meeting.id)

    answers = store.joins([JoinRequest(ann.id, one.id, NOW, decide),
                           JoinRequest(4242, one.id, NOW, decide),
                           JoinRequest(ann.id, "no-such-meeting", NOW, decide),
                           JoinRequest(ann.id, two.id, NOW + HOUR, decide)])
    assert answers[0] == f"one for {ann.id}" and answers[3] == f"two for {ann.id}"
    assert all(isinstance(answer, LookupError) for answer in answers[1:3])
    assert seen == [(ann.id, one.id), (None, one.id), (ann.id, None), (ann.id, two.id)]
    assert [(e.time, e.detail) for e in store.audit_events(10)] == [(NOW + HOUR, two.id),
                                                                    (NOW, one.id)]
    assert store.joins([JoinRequest(ann.id, one.id, NOW, decide)]) == [f"one for {ann.id}"]


def test_a_meeting_row_becomes_a_meeting_field_by_field() -> None:
    assert [column.name for column in meetings.c] == [
        item.name for item in fields(Meeting) if item.name != "cohosts"]
    row = ("m1", 7, "Standup", NOW, 30, "FREQ=DAILY", None, "standup", "pw", True, False, 8,
           False, NOW)
    cohosts = (Person(8, "bob@example.org", "Bob"),)
    made = Meeting.from_row(row, cohosts)
    assert made == Meeting(*row, cohosts=cohosts) and hash(made) == hash(Meeting(*row,
                                                                              cohosts=cohosts))
    with pytest.raises(FrozenInstanceError):
        made.title = "Changed"  # type: ignore[misc]
    with pytest.raises(ValueError):
        Meeting.from_row(row[:-1], ())


def test_all_meetings_lists_every_owner_with_the_owners_address(store: Store) -> None:
    ann = store.create_user("ann@example.org", "Ann", "h", "host", NOW)
    bob = store.create_user("bob@example.org", "Bob", "h", "host", NOW)
    anns = store.create_meeting(ann.id, plan("Ann's", NOW + 2 * HOUR), NOW)
    bobs = store.create_meeting(bob.id, plan("Bob's", NOW + HOUR, cohosts=(ann.email,)), NOW)
    ended = store.create_meeting(bob.id, plan("Ended", NOW - 3 * HOUR), NOW)
    cancelled = store.create_meeting(ann.id, plan("Called off", NOW + 3 * HOUR), NOW)
    store.cancel_meeting(cancelled.id)

    upcoming = store.all_meetings("upcoming", NOW, 10)
    assert [(m.id, email) for m, email in upcoming] == [(bobs.id, bob.email),
                                                        (anns.id, ann.email)]
    assert [p.id for p in upcoming[0][0].cohosts] == [ann.id]
    assert [(m.id, email) for m, email in store.all_meetings("past", NOW, 10)] == [
        (cancelled.id, ann.email), (ended.id, bob.email)]
    first = store.all_meetings("upcoming", NOW, 1)
    assert [m.id for m, _ in first] == [bobs.id]
    rest = store.all_meetings("upcoming", NOW, 10, (first[0][0].start, first[0][0].id))
    assert [m.id for m, _ in rest] == [anns.id]
    assert store.all_meetings("upcoming", NOW, 10, (anns.start, anns.id)) == []


def test_refresh_tokens_are_used_once_and_reuse_revokes_all(store: Store) -> None:
    ann = store.create_user("ann@example.org", "Ann", "h", "host", NOW)
    store.add_refresh_token("t1", ann.id, NOW, NOW + HOUR)
    store.add_refresh_token("t2", ann.id, NOW, NOW + HOUR)
    store.add_refresh_token("old", ann.id, NOW - 2 * HOUR, NOW - HOUR)
    assert store.use_refresh_token("nope", NOW) is None
    assert store.use_refresh_token("old", NOW) == (ann.id, "expired")
    assert store.use_refresh_token("t1", NOW) == (ann.id, "ok")
    assert store.use_refresh_token("t1", NOW) == (ann.id, "reused")
    # The copy's use revoked every token of the account, t2 too.
    assert store.use_refresh_token("t2", NOW) == (ann.id, "reused")


def test_revoking_a_refresh_token(store: Store) -> None:
    ann = store.create_user("ann@example.org", "Ann", "h", "host", NOW)
    store.add_refresh_token("t", ann.id, NOW, NOW + HOUR)
    assert store.revoke_refresh_token("t") == ann.id
    assert store.revoke_refresh_token("unknown") is None
    assert store.use_refresh_token("t", NOW) == (ann.id, "reused")


def test_a_password_reset_works_once_and_ends_everything(store: Store) -> None:
    ann = store.create_user("ann@example.org", "Ann", "old-hash", "host", NOW)
    store.create_session("s", ann.id, "c", NOW, NOW + HOUR)
    store.add_refresh_token("t", ann.id, NOW, NOW + HOUR)
    store.add_password_reset("r", ann.id, NOW + HOUR)
    assert store.password_reset_user("r", NOW) == ann.id
    assert store.reset_password("r", "new-hash", NOW) == ann.id
    assert store.user(ann.id).password_hash == "new-hash"  # type: ignore[union-attr]
    assert store.session("s", NOW) is None
    assert store.use_refresh_token("t", NOW) == (ann.id, "reused")
    assert store.reset_password("r", "again", NOW) is None
    store.add_password_reset("late", ann.id, NOW + HOUR)
    assert store.reset_password("late", "x", NOW + HOUR) is None


def test_failures_count_in_a_window_by_account_and_address(store: Store) -> None:
    for minute in range(3):
        store.add_failure("Ann@example.org", "192.0.2.1", NOW + timedelta(minutes=minute))
    store.add_failure("bob@example.org", "192.0.2.1", NOW)
    store.add_failure("ann@example.org", "198.51.100.7", NOW)
    assert store.failures_since("ann@example.org", "192.0.2.1", NOW - HOUR) == (4, 4)
    assert store.failures_since("ann@example.org", "203.0.113.9", NOW) == (2, 0)
    store.purge(NOW + 2 * HOUR, NOW + timedelta(minutes=1))
    assert store.failures_since("ann@example.org", "192.0.2.1", NOW - HOUR) == (1, 1)


def test_purge_forgets_what_expired(store: Store) -> None:
    ann = store.create_user("ann@example.org", "Ann", "h", "host", NOW)
    store.create_session("gone", ann.id, "c", NOW, NOW + HOUR)
    store.create_session("kept", ann.id, "c", NOW, NOW + 3 * HOUR)
    store.add_refresh_token("gone", ann.id, NOW, NOW + HOUR)
    store.purge(NOW + 2 * HOUR, NOW)
    assert store.session("kept", NOW) is not None
    assert store.session("gone", NOW) is None
    assert store.use_refresh_token("gone", NOW) is None


def test_the_audit_log_newest_first(store: Store) -> None:
    store.audit("signin", 1, "192.0.2.1", "", NOW)
    store.audit("signout", 1, "192.0.2.1", "bye", NOW + HOUR)
    events = store.audit_events(10)
    assert [(e.event, e.time, e.detail) for e in events] == [
        ("signout", NOW + HOUR, "bye"), ("signin", NOW, "")]


def test_ids_no_record_can_have_find_nothing(store: Store) -> None:
    """Numbers past PostgreSQL's INTEGER and text unlike a meeting id are not looked up."""
    ann = store.create_user("ann@example.org", "Ann", "hash", "host", NOW)
    assert store.create_meeting(ann.id, plan(), NOW).id.isascii()
    for user_id in (0, -1, 2**31, 10**30):
        assert store.user(user_id) is None
        assert store.update_user(user_id, display_name="X") is None
    assert store.users(10, after=2**31 - 1) == [] and store.users(10, after=10**30) == []
    for meeting_id in ("", "x" * 40, "\x00", "a b"):
        assert store.meeting(meeting_id) is None
