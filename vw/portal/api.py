"""The REST API under /api/v1, for apps: bearer tokens, meetings, joining, user admin.

Documented by :mod:`vw.portal.openapi`; errors are problem details (:mod:`.problems`).
A meeting is visible (GET, PATCH, DELETE) to its hosts only; to anyone else it does not
exist (404). Joining needs only its id, which is the invitation.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException

from vw.config import Config
from vw.portal.accounts import Accounts, BadCredentials, Throttled
from vw.portal.admission import NotAdmitted, admit, participant
from vw.portal.bearer import AccessTokens, InvalidToken
from vw.portal.checks import Invalid, avatar_problem, name_problem, whole_number
from vw.portal.handlers import Handlers, NoSuchMeeting, NotOwner
from vw.portal.http import form
from vw.portal.joining import Joins
from vw.portal.meetings import plan_from_json
from vw.portal.openapi import DOCUMENT
from vw.portal.problems import Problem, invalid
from vw.portal.records import MAX_USER_ID, ROLES, Meeting, User
from vw.portal.store import (
    MEETING_ID,
    Audited,
    Cursor,
    JoinRequest,
    MeetingPage,
    RoomTaken,
    Store,
    When,
)
from vw.portal.threads import Batches, Runner
from vw.portal.tokens import digest, new_secret

OPENAPI_JSON = json.dumps(DOCUMENT).encode()
MAX_BODY = 64 * 1024
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
#: Meetings whose JSON is kept, by value (every field, co-hosts included): a listing polled
#: again encodes only the meetings that changed.
MEETING_DOCUMENTS = 4096
#: The challenge of a 401 for a bearer token that is not (or no longer) good.
INVALID_TOKEN = {b"www-authenticate": b'Bearer realm="vw", error="invalid_token"'}


def iso(moment: datetime) -> str:
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat()[:-6] + "Z"



def user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "email": user.email, "display_name": user.display_name,
            "role": user.role, "avatar_url": user.avatar_url, "created": iso(user.created)}


def encode_cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


def decode_cursor(text: str, length: int) -> list[str]:
    try:
        parts = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error):
        parts = None
    if not (isinstance(parts, list) and len(parts) == length
            and all(isinstance(part, str) for part in parts)):
        raise Problem(400, "The cursor is not one this API gave.")
    return parts


def json_body(request: IRequest, *, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object; with ``optional``, an empty body is an empty object."""
    data = request.content.read(MAX_BODY + 1)
    if optional and not data:
        return {}
    kind = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if kind != b"application/json":
        raise Problem(415, "Send the body as application/json.")
    if len(data) > MAX_BODY:
        raise Problem(413, f"The body may have at most {MAX_BODY} bytes.")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise Problem(400, "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise Problem(400, "The body must be a JSON object.")
    if _has_nul(body):
        raise Problem(400, "Text in the body may not contain NUL characters (\\u0000).")
    return body


def _has_nul(value: object) -> bool:
    """Whether a string in the JSON ``value`` holds NUL, which no database column keeps."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _account_gone() -> Problem:
    return Problem(401, "The access token's account is gone.", headers=INVALID_TOKEN)


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise invalid({name: "Required, as a string."})
    return value


class Api(Handlers):
    app = Klein()

    def __init__(self, store: Store, run: Runner, accounts: Accounts, access: AccessTokens,
                 joins: Joins, config: Config, clock: IReactorTime) -> None:
        super().__init__(store, run, accounts, joins, config, clock)
        self.access = access
        self.callers: Batches[int, User | None] = Batches(run, store.users_with_ids)
        self.paging: Batches[MeetingPage, tuple[User | None, list[Meeting]]] = Batches(
            run, store.meeting_pages)
        self.joining: Batches[JoinRequest[dict[str, Any]], dict[str, Any]] = Batches(
            run, store.joins)
        self.meeting_document: Callable[[Meeting], bytes] = lru_cache(MEETING_DOCUMENTS)(
            self._meeting_document)

    # -- plumbing -----------------------------------------------------------------------

    @classmethod
    def reply(cls, request: IRequest, payload: object, status: int = 200) -> bytes:
        return cls.reply_encoded(request, json.dumps(payload).encode(), status)

    @staticmethod
    def reply_encoded(request: IRequest, document: bytes, status: int = 200) -> bytes:
        """Answer with ``document``, JSON already encoded."""
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return document

    @staticmethod
    def no_content(request: IRequest) -> bytes:
        request.setResponseCode(204)
        return b""

    def bearer(self, request: IRequest) -> int:
        """The user id the request's bearer token names (checked: no database needed)."""
        scheme, _, token = (request.getHeader(b"authorization") or b"").partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            raise Problem(401, "Send an access token: Authorization: Bearer TOKEN.",
                          headers={b"www-authenticate": b'Bearer realm="vw"'})
        try:
            return self.access.verify(token.decode("latin-1").strip(), self.clock.seconds())
        except InvalidToken:
            raise Problem(401, "The access token is invalid or has expired.",
                          headers=INVALID_TOKEN) from None

    async def caller(self, request: IRequest) -> User:
        """The user whose bearer token the request carries (read with other requests')."""
        user = await self.callers(self.bearer(request))
        if user is None:
            raise _account_gone()
        return user

    async def admin(self, request: IRequest) -> User:
        user = await self.caller(request)
        if not user.is_admin:
            raise Problem(403, "Only administrators may do this.")
        return user

    @staticmethod
    def limit(request: IRequest) -> int:
        limit = whole_number(form(request).get("limit", str(DEFAULT_LIMIT)), 1, MAX_LIMIT)
        if limit is None:
            raise Problem(400, f"limit must be a whole number from 1 to {MAX_LIMIT}.")
        return limit

    def _meeting_document(self, meeting: Meeting) -> bytes:
        """The meeting's JSON (see :attr:`meeting_document`, which keeps it)."""
        return json.dumps({
            "id": meeting.id, "owner_id": meeting.owner_id, "title": meeting.title,
            "start": iso(meeting.start), "duration": meeting.duration,
            "recurrence": meeting.recurrence,
            "ends": None if meeting.ends is None else iso(meeting.ends),
            "room": meeting.room, "password": meeting.password, "lobby": meeting.lobby,
            "guests_allowed": meeting.guests_allowed,
            "max_participants": meeting.max_participants, "cancelled": meeting.cancelled,
            "cohosts": [person.email for person in meeting.cohosts],
            "invitation_url": self.invitation_url(meeting),
            "created": iso(meeting.created)}).encode()

    async def token_pair(self, user: User) -> dict[str, Any]:
        now = self.clock.seconds()
        refresh = new_secret()
        ttl = self.config.portal.refresh_token_ttl
        issued = datetime.fromtimestamp(now, UTC)
        await self.run(self.store.add_refresh_token, digest(refresh), user.id, issued,
                       issued + timedelta(seconds=ttl))
        return {"access_token": self.access.issue(user.id, now), "token_type": "Bearer",
                "expires_in": self.access.ttl, "refresh_token": refresh,
                "refresh_expires_in": ttl}

    @app.handle_errors(Problem)
    def problem(self, request: IRequest, failure: Failure) -> bytes:
        return failure.value.render(request)

    @app.handle_errors(HTTPException)
    def http_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        return Problem(error.code or 500, error.description or "").render(request)

    @app.handle_errors(Invalid)
    def invalid_fields(self, request: IRequest, failure: Failure) -> bytes:
        return invalid(failure.value.errors).render(request)

    @app.handle_errors(NoSuchMeeting)
    def no_such_meeting(self, request: IRequest, failure: Failure) -> bytes:
        return Problem(404, str(failure.value)).render(request)

    @app.handle_errors(NotOwner)
    def not_owner(self, request: IRequest, failure: Failure) -> bytes:
        return Problem(403, str(failure.value)).render(request)

    @app.handle_errors(RoomTaken)
    def room_taken(self, request: IRequest, failure: Failure) -> bytes:
        return Problem(409, "Another meeting has this room name.").render(request)

    # -- the document -------------------------------------------------------------------

    @app.route("/openapi.json", methods=["GET"])
    def openapi(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return OPENAPI_JSON

    # -- tokens -------------------------------------------------------------------------

    @app.route("/auth/token", methods=["POST"])
    async def token(self, request: IRequest) -> bytes:
        body = json_body(request)
        try:
            user = await self.accounts.sign_in(_string(body, "email").strip(),
                                               _string(body, "password"),
                                               self.address(request))
        except BadCredentials:
            raise Problem(401, "Wrong e-mail address or password.") from None
        except Throttled as throttled:
            raise Problem(429, "Too many failed sign-ins; try again later.", headers={
                b"retry-after": str(throttled.retry_after).encode()}) from None
        return self.reply(request, await self.token_pair(user))

    @app.route("/auth/refresh", methods=["POST"])
    async def refresh(self, request: IRequest) -> bytes:
        token = _string(json_body(request), "refresh_token")
        used = await self.run(self.store.use_refresh_token, digest(token), self.now())
        if used is not None and used[1] == "reused":
            await self.accounts.audit("token.reused", used[0], self.address(request))
        user = None if used is None or used[1] != "ok" else await self.run(self.store.user,
                                                                             used[0])
        if user is None:
            raise Problem(401, "The refresh token is unknown, used, revoked or expired.")
        return self.reply(request, await self.token_pair(user))

    @app.route("/auth/revoke", methods=["POST"])
    async def revoke(self, request: IRequest) -> bytes:
        token = _string(json_body(request), "refresh_token")
        user_id = await self.run(self.store.revoke_refresh_token, digest(token))
        if user_id is not None:
            await self.accounts.audit("token.revoked", user_id, self.address(request))
        return self.no_content(request)

    # -- the caller ---------------------------------------------------------------------

    @app.route("/me", methods=["GET"])
    async def me(self, request: IRequest) -> bytes:
        return self.reply(request, user_json(await self.caller(request)))

    @app.route("/me", methods=["PATCH"])
    async def change_me(self, request: IRequest) -> bytes:
        user = await self.caller(request)
        body = json_body(request)
        errors = {name: "Unknown field." for name in body.keys() - {"display_name",
                                                                     "avatar_url"}}
        values = {name: body[name] for name in ("display_name", "avatar_url") if name in body}
        for name, value in values.items():
            check = name_problem if name == "display_name" else avatar_problem
            problem = check(value) if isinstance(value, str) else "Must be a string."
            if problem:
                errors[name] = problem
        if errors:
            raise invalid(errors)
        changed = await self.run(self.store.update_user, user.id, **values)
        return self.reply(request, user_json(changed or user))

    # -- meetings -----------------------------------------------------------------------

    @app.route("/meetings", methods=["GET"])
    async def list_meetings(self, request: IRequest) -> bytes:
        # The caller's account and the page in one call to the store, with other requests'.
        user_id = self.bearer(request)
        try:
            when, limit, after = self.page_wanted(request)
        except Problem:
            await self.caller(request)  # a gone account is told so first
            raise
        user, found = await self.paging(MeetingPage(user_id, when, self.now(), limit + 1,
                                                    after))
        if user is None:
            raise _account_gone()
        page = found[:limit]
        cursor = encode_cursor(iso(page[-1].start), page[-1].id) if len(found) > limit else None
        return self.reply_encoded(request, b'{"items": [' + b", ".join(
            [self.meeting_document(meeting) for meeting in page]) + b'], "next_cursor": '
            + json.dumps(cursor).encode() + b"}")

    def page_wanted(self, request: IRequest) -> tuple[When, int, Cursor | None]:
        """Which meetings, how many and after which, as the query asks for them."""
        args = form(request)
        wanted = args.get("when", "upcoming")
        if wanted not in ("upcoming", "past"):
            raise Problem(400, 'when must be "upcoming" or "past".')
        when: When = "past" if wanted == "past" else "upcoming"
        limit = self.limit(request)
        if "cursor" not in args:
            return when, limit, None
        start, last = decode_cursor(args["cursor"], 2)
        try:
            after = (datetime.fromisoformat(start), last)
            given = iso(after[0]) == start and MEETING_ID.fullmatch(last) is not None
        except (ValueError, OverflowError):
            given = False
        if not given:
            raise Problem(400, "The cursor is not one this API gave.")
        return when, limit, after

    @app.route("/meetings", methods=["POST"])
    async def create_meeting(self, request: IRequest) -> bytes:
        user = await self.caller(request)
        if not user.can_schedule:
            raise Problem(403, "Only hosts may schedule meetings.")
        meeting = await self.save_meeting(request, user, plan_from_json(json_body(request)))
        request.setHeader(b"location", f"/api/v1/meetings/{meeting.id}".encode())
        return self.reply_encoded(request, self.meeting_document(meeting), 201)

    @app.route("/meetings/<meeting_id>", methods=["GET"])
    async def get_meeting(self, request: IRequest, meeting_id: str) -> bytes:
        user = await self.caller(request)
        return self.reply_encoded(request, self.meeting_document(await self.hosted(user,
                                                                                   meeting_id)))

    @app.route("/meetings/<meeting_id>", methods=["PATCH"])
    async def change_meeting(self, request: IRequest, meeting_id: str) -> bytes:
        user = await self.caller(request)
        meeting = await self.editable(user, meeting_id)
        if meeting.cancelled:
            raise Problem(409, "The meeting is cancelled.")
        plan = plan_from_json(json_body(request), meeting.plan())
        return self.reply_encoded(request, self.meeting_document(
            await self.save_meeting(request, user, plan, meeting)))

    @app.route("/meetings/<meeting_id>", methods=["DELETE"])
    async def cancel_meeting(self, request: IRequest, meeting_id: str) -> bytes:
        user = await self.caller(request)
        await self.call_off(request, user, await self.editable(user, meeting_id))
        return self.no_content(request)

    @app.route("/meetings/<meeting_id>/join", methods=["POST"])
    async def join(self, request: IRequest, meeting_id: str) -> bytes:
        # One call to the store, with the joins that came meanwhile: the accounts and the
        # meetings are read, admission decided, the grants minted and their audit records
        # written in one transaction (refusals are raised in the order the checks had when
        # they were separate calls).
        user_id = self.bearer(request)
        body: dict[str, Any] = {}
        bad_body = None
        try:
            body = json_body(request, optional=True)
        except Problem as problem:
            bad_body = problem
        address, now = self.address(request), self.clock.seconds()

        def decide(user: User | None, meeting: Meeting | None) -> tuple[dict[str, Any],
                                                                         Audited]:
            if user is None:
                raise _account_gone()
            if bad_body is not None:
                raise bad_body
            if meeting is None:
                raise NoSuchMeeting()
            password = body.get("password", "")
            if not isinstance(password, str):
                raise invalid({"password": "Must be a string."})
            try:
                host = admit(meeting, user, password)
            except NotAdmitted as refused:
                raise Problem(refused.status, str(refused)) from None
            who = participant(user)
            grant = self.joins.grant(meeting.join_room(), who, host, now)
            return ({**grant.document(), "moderator": host},
                    ("meeting.joined", user.id, address, f"{meeting.id} as {who.id}"))

        joined = await self.joining(JoinRequest(user_id, meeting_id,
                                                datetime.fromtimestamp(now, UTC), decide))
        return self.reply(request, joined)

    # -- administration -----------------------------------------------------------------

    @app.route("/users", methods=["GET"])
    async def list_users(self, request: IRequest) -> bytes:
        await self.admin(request)
        limit = self.limit(request)
        cursor = form(request).get("cursor")
        after = 0 if cursor is None else whole_number(decode_cursor(cursor, 1)[0], 0,
                                                      MAX_USER_ID)
        if after is None:
            raise Problem(400, "The cursor is not one this API gave.")
        found = await self.run(self.store.users, limit + 1, after)
        page = found[:limit]
        return self.reply(request, {
            "items": [user_json(user) for user in page],
            "next_cursor": encode_cursor(str(page[-1].id)) if len(found) > limit else None})

    @app.route("/users/<int:user_id>", methods=["GET"])
    async def get_user(self, request: IRequest, user_id: int) -> bytes:
        await self.admin(request)
        user = await self.run(self.store.user, user_id)
        if user is None:
            raise Problem(404, "There is no such user.")
        return self.reply(request, user_json(user))

    @app.route("/users/<int:user_id>", methods=["PATCH"])
    async def change_user(self, request: IRequest, user_id: int) -> bytes:
        admin = await self.admin(request)
        body = json_body(request)
        errors = {name: "Unknown field." for name in body.keys() - {"role", "display_name"}}
        if "role" in body and body["role"] not in ROLES:
            errors["role"] = "One of " + ", ".join(ROLES) + "."
        if "display_name" in body:
            name = body["display_name"]
            problem = name_problem(name) if isinstance(name, str) else "Must be a string."
            if problem:
                errors["display_name"] = problem
        if errors:
            raise invalid(errors)
        if "role" in body and user_id == admin.id:
            raise Problem(409, "Administrators cannot change their own role.")
        changed = await self.run(self.store.update_user, user_id, **body)
        if changed is None:
            raise Problem(404, "There is no such user.")
        await self.accounts.audit("user.changed", admin.id, self.address(request),
                                  f"{user_id}: {sorted(body)}")
        return self.reply(request, user_json(changed))
