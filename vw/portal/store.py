"""The portal's durable state, synchronously (run it off the reactor thread: see threads.py).

Secrets (session ids, refresh tokens, invitation codes, reset tokens) are kept as their
SHA-256 only: the store is given and compares hashes, never the secrets themselves.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Select

from vw.portal import schema
from vw.portal.records import (
    MAX_USER_ID,
    AuditEvent,
    Meeting,
    MeetingPlan,
    Person,
    Session,
    User,
)

#: Meeting ids as :meth:`Store.create_meeting` makes them; other text names no meeting.
MEETING_ID = re.compile(r"[A-Za-z0-9_-]{22}")

When = Literal["upcoming", "past"]
#: Where a page of meetings starts after: (start, id) of the last one shown.
Cursor = tuple[datetime, str]
Refresh = Literal["ok", "expired", "reused"]
T = TypeVar("T")
#: What :meth:`Store.joins` records of a join: (event, user_id, address, detail).
Audited = tuple[str, int | None, str, str]


@dataclass(frozen=True)
class JoinRequest(Generic[T]):
    """A join for :meth:`Store.joins`: who (a user id), which meeting, when, and how to
    decide it once the account and the meeting are read (either None when missing)."""

    user_id: int
    meeting_id: str
    now: datetime
    decide: Callable[[User | None, Meeting | None], tuple[T, Audited]]


#: The statements of every API request and every join, built once (building a statement
#: costs more than SQLite running it).
_USER_BY_ID = select(schema.users).where(schema.users.c.id == bindparam("user_id"))
_MEETING_BY_ID = select(schema.meetings).where(schema.meetings.c.id == bindparam("meeting_id"))
_USERS_BY_IDS = select(schema.users).where(schema.users.c.id.in_(bindparam("user_ids",
                                                                           expanding=True)))
_MEETINGS_BY_IDS = select(schema.meetings).where(schema.meetings.c.id.in_(
    bindparam("meeting_ids", expanding=True)))
#: Rows by id: the statement for one id, and for several (a list expanded at every call).
_BY_ID = {"user_id": (_USER_BY_ID, _USERS_BY_IDS),
          "meeting_id": (_MEETING_BY_ID, _MEETINGS_BY_IDS)}
_PEOPLE = (select(schema.cohosts.c.meeting_id, schema.users.c.id, schema.users.c.email,
                  schema.users.c.display_name)
           .join(schema.users, schema.users.c.id == schema.cohosts.c.user_id)
           .order_by(schema.users.c.id))
_COHOSTS = _PEOPLE.where(schema.cohosts.c.meeting_id.in_(bindparam("meeting_ids",
                                                                    expanding=True)))
#: One meeting's co-hosts: no list to expand into the statement at every execution.
_COHOSTS_OF_ONE = _PEOPLE.where(schema.cohosts.c.meeting_id == bindparam("meeting_id"))
_AUDIT = insert(schema.audit)
#: The audit event of a password reset request (what the reset limit counts).
RESET_REQUESTED = "password.reset_requested"
#: The meetings table's columns are a Meeting's fields, in order (its co-hosts aside): a row
#: becomes a Meeting by position, which costs half as much as by name.
_MEETING_FIELDS = len(schema.meetings.c)


def _meetings_of(when: When, paged: bool, everyone: bool = False) -> Select[Any]:
    """The meetings of user_id (of every owner, with the owner's e-mail address as
    ``owner_email``, when ``everyone``), upcoming or past at ``now``, a page of ``limit``,
    after the one at (``start``, ``last``) when ``paged``."""
    meetings, cohosts, users = schema.meetings, schema.cohosts, schema.users
    ended = or_(meetings.c.cancelled, and_(meetings.c.ends.is_not(None),
                                           meetings.c.ends < bindparam("now")))
    if everyone:
        query = (select(meetings, users.c.email.label("owner_email"))
                 .join(users, users.c.id == meetings.c.owner_id))
    else:
        query = select(meetings).where(or_(
            meetings.c.owner_id == bindparam("user_id"), meetings.c.id.in_(
                select(cohosts.c.meeting_id).where(cohosts.c.user_id == bindparam("user_id")))))
    query = query.where(ended if when == "past" else ~ended)
    start, last = bindparam("start"), bindparam("last")
    if when == "past":
        query = query.order_by(meetings.c.start.desc(), meetings.c.id.desc())
        later = or_(meetings.c.start < start, and_(meetings.c.start == start,
                                                   meetings.c.id < last))
    else:
        query = query.order_by(meetings.c.start, meetings.c.id)
        later = or_(meetings.c.start > start, and_(meetings.c.start == start,
                                                   meetings.c.id > last))
    if paged:
        query = query.where(later)
    return query.limit(bindparam("limit"))


_MEETINGS_OF = {(when, paged): _meetings_of(when, paged) for when in ("upcoming", "past")
                for paged in (False, True)}
_ALL_MEETINGS = {(when, paged): _meetings_of(when, paged, everyone=True)
                 for when in ("upcoming", "past") for paged in (False, True)}


@dataclass(frozen=True)
class MeetingPage:
    """A page of one user's meetings, for :meth:`Store.meeting_pages`: see
    :meth:`Store.meetings_of`."""

    user_id: int
    when: When
    now: datetime
    limit: int
    after: Cursor | None = None


class EmailTaken(Exception):
    """Another account has this e-mail address (compared case-insensitively)."""


class RoomTaken(Exception):
    """Another meeting has this room name."""


class UnknownUsers(Exception):
    """Co-hosts named by e-mail addresses that have no account."""

    def __init__(self, emails: Sequence[str]) -> None:
        super().__init__(", ".join(emails))
        self.emails = list(emails)


class InvalidInvitation(Exception):
    """The invitation code is unknown, used or expired."""


def _with_ids(db: Connection, key: str, ids: set[Any]) -> list[Row[Any]]:
    """The users (``key`` "user_id") or meetings ("meeting_id") with these ids, in one
    statement, whose list of ids is expanded only when there are several."""
    one, several = _BY_ID[key]
    if not ids:
        return []
    if len(ids) == 1:
        return list(db.execute(one, {key: next(iter(ids))}).all())
    return list(db.execute(several, {f"{key}s": list(ids)}).all())


def _user(row: Row[Any]) -> User:
    return User(id=row.id, email=row.email, display_name=row.display_name, role=row.role,
                avatar_url=row.avatar_url, created=row.created, password_hash=row.password_hash)


class Store:
    """Users, sessions, meetings, tokens, the audit log and sign-in failures."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- users --------------------------------------------------------------------------

    def create_user(self, email: str, display_name: str, password_hash: str, role: str,
                    now: datetime, invitation: str | None = None) -> User:
        """A new account; with ``invitation`` (a code's hash) it is used up and sets the role."""
        users = schema.users
        try:
            with self._engine.begin() as db:
                if invitation is not None:
                    role = self._take_invitation(db, invitation, now)
                user_id = db.execute(insert(users).values(
                    email=email, display_name=display_name, password_hash=password_hash,
                    role=role, avatar_url="", created=now)).inserted_primary_key[0]
                if invitation is not None:
                    db.execute(update(schema.invitations).where(
                        schema.invitations.c.code_hash == invitation).values(used_by=user_id))
                return _user(db.execute(select(users).where(users.c.id == user_id)).one())
        except IntegrityError:
            raise EmailTaken(email) from None

    def _take_invitation(self, db: Connection, code_hash: str, now: datetime) -> str:
        table = schema.invitations
        row = db.execute(select(table.c.role).where(
            table.c.code_hash == code_hash, table.c.used_by.is_(None),
            table.c.expires > now)).first()
        if row is None:
            raise InvalidInvitation()
        # Claimed at once with a placeholder: a concurrent sign-up finds it used.
        claimed = db.execute(update(table).where(
            table.c.code_hash == code_hash, table.c.used_by.is_(None)).values(used_by=0))
        if claimed.rowcount != 1:
            raise InvalidInvitation()
        return str(row.role)

    def user(self, user_id: int) -> User | None:
        if not 0 < user_id <= MAX_USER_ID:
            return None
        with self._engine.connect() as db:
            row = db.execute(_USER_BY_ID, {"user_id": user_id}).first()
        return None if row is None else _user(row)

    def users_with_ids(self, user_ids: Sequence[int]) -> list[User | None]:
        """The account of each id, in order (None for ids no account has): one statement
        for many requests' callers."""
        wanted = {user_id for user_id in user_ids if 0 < user_id <= MAX_USER_ID}
        with self._engine.connect() as db:
            found = {row.id: _user(row) for row in _with_ids(db, "user_id", wanted)}
        return [found.get(user_id) for user_id in user_ids]

    def user_by_email(self, email: str) -> User | None:
        users = schema.users
        with self._engine.connect() as db:
            row = db.execute(select(users).where(
                func.lower(users.c.email) == email.lower())).first()
        return None if row is None else _user(row)

    def users(self, limit: int, after: int = 0) -> list[User]:
        """A page of users by id, those with an id above ``after``."""
        users = schema.users
        if after >= MAX_USER_ID:
            return []
        with self._engine.connect() as db:
            rows = db.execute(select(users).where(users.c.id > after)
                              .order_by(users.c.id).limit(limit))
            return [_user(row) for row in rows]

    def has_admin(self) -> bool:
        users = schema.users
        with self._engine.connect() as db:
            return db.execute(select(users.c.id).where(users.c.role == "admin")).first() \
                is not None

    def update_user(self, user_id: int, **values: str) -> User | None:
        """Change ``display_name``, ``avatar_url``, ``role`` or ``password_hash``."""
        users = schema.users
        assert values.keys() <= {"display_name", "avatar_url", "role", "password_hash"}
        if not 0 < user_id <= MAX_USER_ID:
            return None
        with self._engine.begin() as db:
            if values:
                db.execute(update(users).where(users.c.id == user_id).values(**values))
            row = db.execute(select(users).where(users.c.id == user_id)).first()
        return None if row is None else _user(row)

    # -- browser sessions ---------------------------------------------------------------

    def create_session(self, id_hash: str, user_id: int | None, csrf: str, now: datetime,
                       expires: datetime) -> None:
        with self._engine.begin() as db:
            db.execute(insert(schema.sessions).values(id_hash=id_hash, user_id=user_id,
                                                      csrf=csrf, created=now, expires=expires))

    def session(self, id_hash: str, now: datetime) -> Session | None:
        """The unexpired session with this id hash, and its user."""
        sessions, users = schema.sessions, schema.users
        with self._engine.connect() as db:
            row = db.execute(select(sessions.c.csrf, sessions.c.expires, sessions.c.user_id)
                             .where(sessions.c.id_hash == id_hash,
                                    sessions.c.expires > now)).first()
            if row is None:
                return None
            user = None
            if row.user_id is not None:
                found = db.execute(select(users).where(users.c.id == row.user_id)).first()
                user = None if found is None else _user(found)
        return Session(id_hash=id_hash, csrf=row.csrf, expires=row.expires, user=user)

    def delete_session(self, id_hash: str) -> None:
        with self._engine.begin() as db:
            db.execute(delete(schema.sessions).where(schema.sessions.c.id_hash == id_hash))

    # -- meetings -----------------------------------------------------------------------

    def create_meeting(self, owner_id: int, plan: MeetingPlan, now: datetime) -> Meeting:
        meeting_id = secrets.token_urlsafe(16)
        try:
            with self._engine.begin() as db:
                cohost_ids = self._cohost_ids(db, plan.cohosts)
                db.execute(insert(schema.meetings).values(
                    id=meeting_id, owner_id=owner_id, cancelled=False, created=now,
                    **self._plan_values(plan)))
                self._set_cohosts(db, meeting_id, cohost_ids, owner_id)
        except IntegrityError:
            raise RoomTaken(plan.room) from None
        meeting = self.meeting(meeting_id)
        assert meeting is not None
        return meeting

    def update_meeting(self, meeting_id: str, plan: MeetingPlan) -> Meeting | None:
        try:
            with self._engine.begin() as db:
                cohost_ids = self._cohost_ids(db, plan.cohosts)
                owner = db.execute(select(schema.meetings.c.owner_id).where(
                    schema.meetings.c.id == meeting_id)).scalar()
                if owner is None:
                    return None
                db.execute(update(schema.meetings).where(schema.meetings.c.id == meeting_id)
                           .values(**self._plan_values(plan)))
                self._set_cohosts(db, meeting_id, cohost_ids, owner)
        except IntegrityError:
            raise RoomTaken(plan.room) from None
        return self.meeting(meeting_id)

    def cancel_meeting(self, meeting_id: str) -> Meeting | None:
        with self._engine.begin() as db:
            db.execute(update(schema.meetings).where(schema.meetings.c.id == meeting_id)
                       .values(cancelled=True))
        return self.meeting(meeting_id)

    def meeting(self, meeting_id: str) -> Meeting | None:
        if not MEETING_ID.fullmatch(meeting_id):
            return None
        with self._engine.connect() as db:
            row = db.execute(_MEETING_BY_ID, {"meeting_id": meeting_id}).first()
            return None if row is None else self._meetings(db, [row])[0]

    def joins(self, requests: Sequence[JoinRequest[T]]) -> list[T | Exception]:
        """Joins in one call and one transaction: the accounts and the meetings are read,
        each request's ``decide(user, meeting)`` (either None when missing) raises its refusal
        or gives its answer and the audit record of the join; the records are written before
        the commit. The answers come in order, a refusal as its exception. ``decide`` runs on
        the calling thread (the store's): it must not block."""
        user_ids = {request.user_id for request in requests
                    if 0 < request.user_id <= MAX_USER_ID}
        meeting_ids = {request.meeting_id for request in requests
                       if MEETING_ID.fullmatch(request.meeting_id)}
        answers: list[T | Exception] = []
        with self._engine.begin() as db:
            users = {row.id: _user(row) for row in _with_ids(db, "user_id", user_ids)}
            rows = _with_ids(db, "meeting_id", meeting_ids)
            meetings = {meeting.id: meeting for meeting in self._meetings(db, rows)}
            records = []
            for request in requests:
                try:
                    answer, (event, who, address, detail) = request.decide(
                        users.get(request.user_id), meetings.get(request.meeting_id))
                except Exception as refusal:  # noqa: BLE001 - the request's answer
                    answers.append(refusal)
                    continue
                answers.append(answer)
                records.append({"time": request.now, "event": event, "user_id": who,
                                "address": address[:64], "detail": detail})
            if records:
                db.execute(_AUDIT, records)
        return answers

    def meetings_of(self, user_id: int, when: When, now: datetime, limit: int,
                    after: Cursor | None = None) -> list[Meeting]:
        """A page of the meetings ``user_id`` owns or co-hosts: upcoming ones soonest first,
        past (ended or cancelled) ones latest first."""
        with self._engine.connect() as db:
            return self._meetings(db, self._page(db, MeetingPage(user_id, when, now, limit,
                                                                 after)))

    def meeting_pages(self, pages: Sequence[MeetingPage]) -> list[tuple[User | None,
                                                                         list[Meeting]]]:
        """For each page, in order, the account of its user and, when there is one, the
        page (see :meth:`meetings_of`); the accounts and the co-hosts of every page are read
        with one statement each."""
        wanted = {page.user_id for page in pages if 0 < page.user_id <= MAX_USER_ID}
        with self._engine.connect() as db:
            users = {row.id: _user(row) for row in _with_ids(db, "user_id", wanted)}
            rows = [self._page(db, page) if page.user_id in users else [] for page in pages]
            meetings = iter(self._meetings(db, [row for page in rows for row in page]))
        return [(users.get(page.user_id), [next(meetings) for _ in found])
                for page, found in zip(pages, rows, strict=True)]

    @staticmethod
    def _page(db: Connection, page: MeetingPage) -> list[Row[Any]]:
        start, last = page.after or (None, None)
        return list(db.execute(_MEETINGS_OF[page.when, page.after is not None], {
            "user_id": page.user_id, "now": page.now, "limit": page.limit, "start": start,
            "last": last}).all())

    def all_meetings(self, when: When, now: datetime, limit: int,
                     after: Cursor | None = None) -> list[tuple[Meeting, str]]:
        """A page of every owner's meetings, each with its owner's e-mail address, in the
        order of :meth:`meetings_of`."""
        start, last = after or (None, None)
        values = {"now": now, "limit": limit, "start": start, "last": last}
        with self._engine.connect() as db:
            rows = list(db.execute(_ALL_MEETINGS[when, after is not None], values).all())
            return list(zip(self._meetings(db, rows), [row.owner_email for row in rows],
                            strict=True))

    @staticmethod
    def _plan_values(plan: MeetingPlan) -> dict[str, Any]:
        return {"title": plan.title, "start": plan.start, "duration": plan.duration,
                "recurrence": plan.recurrence, "ends": plan.ends, "room": plan.room,
                "password": plan.password, "lobby": plan.lobby,
                "guests_allowed": plan.guests_allowed, "max_participants": plan.max_participants}

    @staticmethod
    def _cohost_ids(db: Connection, emails: Sequence[str]) -> list[int]:
        users = schema.users
        if not emails:
            return []
        wanted = {email.lower() for email in emails}
        found = {row[0]: row[1] for row in db.execute(
            select(func.lower(users.c.email), users.c.id).where(
                func.lower(users.c.email).in_(wanted)))}
        missing = sorted(wanted - found.keys())
        if missing:
            raise UnknownUsers(missing)
        return sorted(set(found.values()))

    @staticmethod
    def _set_cohosts(db: Connection, meeting_id: str, user_ids: list[int], owner: int) -> None:
        db.execute(delete(schema.cohosts).where(schema.cohosts.c.meeting_id == meeting_id))
        rows = [{"meeting_id": meeting_id, "user_id": user_id}
                for user_id in user_ids if user_id != owner]
        if rows:
            db.execute(insert(schema.cohosts), rows)

    @staticmethod
    def _meetings(db: Connection, rows: list[Row[Any]]) -> list[Meeting]:
        people: dict[str, list[Person]] = {row.id: [] for row in rows}
        if people:
            found_people = (db.execute(_COHOSTS_OF_ONE, {"meeting_id": rows[0].id})
                            if len(rows) == 1 else
                            db.execute(_COHOSTS, {"meeting_ids": list(people)}))
            for found in found_people:
                people[found.meeting_id].append(Person(found.id, found.email,
                                                       found.display_name))
        return [Meeting.from_row(row[:_MEETING_FIELDS], tuple(people[row.id])) for row in rows]

    # -- API refresh tokens -------------------------------------------------------------

    def add_refresh_token(self, token_hash: str, user_id: int, now: datetime,
                          expires: datetime) -> None:
        with self._engine.begin() as db:
            db.execute(insert(schema.refresh_tokens).values(
                token_hash=token_hash, user_id=user_id, created=now, expires=expires,
                revoked=False))

    def use_refresh_token(self, token_hash: str, now: datetime) -> tuple[int, Refresh] | None:
        """Revoke the token (each is used once) and say whose it was and how it stood.

        A revoked token presented again means it was copied: every token of its user is
        revoked ("reused"). Unknown tokens give None.
        """
        tokens = schema.refresh_tokens
        with self._engine.begin() as db:
            row = db.execute(select(tokens.c.user_id, tokens.c.expires)
                             .where(tokens.c.token_hash == token_hash)).first()
            if row is None:
                return None
            used = db.execute(update(tokens).where(tokens.c.token_hash == token_hash,
                                                   tokens.c.revoked.is_(False))
                              .values(revoked=True)).rowcount
            if not used:
                db.execute(update(tokens).where(tokens.c.user_id == row.user_id)
                           .values(revoked=True))
                return row.user_id, "reused"
            return row.user_id, "ok" if row.expires > now else "expired"

    def revoke_refresh_token(self, token_hash: str) -> int | None:
        """Revoke one token; its user, or None when unknown."""
        tokens = schema.refresh_tokens
        with self._engine.begin() as db:
            user_id = db.execute(select(tokens.c.user_id).where(
                tokens.c.token_hash == token_hash)).scalar()
            db.execute(update(tokens).where(tokens.c.token_hash == token_hash)
                       .values(revoked=True))
        return user_id

    # -- invitations and password resets ------------------------------------------------

    def add_invitation(self, code_hash: str, role: str, created_by: int | None, now: datetime,
                       expires: datetime) -> None:
        with self._engine.begin() as db:
            db.execute(insert(schema.invitations).values(
                code_hash=code_hash, role=role, created_by=created_by, created=now,
                expires=expires))

    def invitation_role(self, code_hash: str, now: datetime) -> str | None:
        """The role an unused, unexpired invitation gives."""
        table = schema.invitations
        with self._engine.connect() as db:
            return db.execute(select(table.c.role).where(
                table.c.code_hash == code_hash, table.c.used_by.is_(None),
                table.c.expires > now)).scalar()

    def add_password_reset(self, token_hash: str, user_id: int, expires: datetime) -> None:
        with self._engine.begin() as db:
            db.execute(insert(schema.password_resets).values(
                token_hash=token_hash, user_id=user_id, expires=expires, used=False))

    def password_reset_user(self, token_hash: str, now: datetime) -> int | None:
        resets = schema.password_resets
        with self._engine.connect() as db:
            return db.execute(select(resets.c.user_id).where(
                resets.c.token_hash == token_hash, resets.c.used.is_(False),
                resets.c.expires > now)).scalar()

    def reset_password(self, token_hash: str, password_hash: str, now: datetime) -> int | None:
        """Use a reset token: set the password, end every session and revoke every refresh
        token of the user. Returns the user, or None for a bad token."""
        resets = schema.password_resets
        with self._engine.begin() as db:
            user_id = db.execute(select(resets.c.user_id).where(
                resets.c.token_hash == token_hash, resets.c.used.is_(False),
                resets.c.expires > now)).scalar()
            if user_id is None or not db.execute(update(resets).where(
                    resets.c.token_hash == token_hash, resets.c.used.is_(False))
                    .values(used=True)).rowcount:
                return None
            db.execute(update(schema.users).where(schema.users.c.id == user_id)
                       .values(password_hash=password_hash))
            db.execute(delete(schema.sessions).where(schema.sessions.c.user_id == user_id))
            db.execute(update(schema.refresh_tokens).where(
                schema.refresh_tokens.c.user_id == user_id).values(revoked=True))
        return int(user_id)

    # -- audit log and sign-in failures -------------------------------------------------

    def audit(self, event: str, user_id: int | None, address: str, detail: str,
              now: datetime) -> None:
        with self._engine.begin() as db:
            db.execute(_AUDIT, {"time": now, "event": event, "user_id": user_id,
                                "address": address[:64], "detail": detail})

    def audit_events(self, limit: int) -> list[AuditEvent]:
        """The latest events, newest first."""
        table = schema.audit
        with self._engine.connect() as db:
            rows = db.execute(select(table).order_by(table.c.id.desc()).limit(limit))
            return [AuditEvent(time=row.time, event=row.event, user_id=row.user_id,
                               address=row.address, detail=row.detail) for row in rows]

    def add_failure(self, account: str, address: str, now: datetime) -> None:
        with self._engine.begin() as db:
            db.execute(insert(schema.login_failures).values(
                time=now, account=account.lower()[:254], address=address[:64]))

    def failures_since(self, account: str, address: str, since: datetime) -> tuple[int, int]:
        """Failed sign-ins after ``since``: for this account, and from this address."""
        table = schema.login_failures
        count = select(func.count()).select_from(table).where(table.c.time > since)
        with self._engine.connect() as db:
            by_account = db.execute(count.where(table.c.account == account.lower())).scalar()
            by_address = db.execute(count.where(table.c.address == address)).scalar()
        return int(by_account or 0), int(by_address or 0)

    def reset_requests_since(self, email: str, address: str,
                             since: datetime) -> tuple[int, int]:
        """Password resets asked for after ``since``: for this address, from this source."""
        table = schema.audit
        count = select(func.count()).select_from(table).where(
            table.c.event == RESET_REQUESTED, table.c.time > since)
        with self._engine.connect() as db:
            by_account = db.execute(count.where(func.lower(table.c.detail) == email.lower())
                                    ).scalar()
            by_address = db.execute(count.where(table.c.address == address[:64])).scalar()
        return int(by_account or 0), int(by_address or 0)

    def purge(self, now: datetime, failures_before: datetime) -> None:
        """Forget expired sessions, tokens, invitations and failures older than the window."""
        with self._engine.begin() as db:
            db.execute(delete(schema.sessions).where(schema.sessions.c.expires <= now))
            db.execute(delete(schema.refresh_tokens).where(
                schema.refresh_tokens.c.expires <= now))
            db.execute(delete(schema.password_resets).where(
                schema.password_resets.c.expires <= now))
            db.execute(delete(schema.invitations).where(schema.invitations.c.expires <= now))
            db.execute(delete(schema.login_failures).where(
                schema.login_failures.c.time <= failures_before))
