"""The portal's pages: sign-up, sign-in, password reset, profile, meetings, joining, admin.

Every POST goes through :func:`posted`, which refuses it (403) without the session's CSRF
token; every page through :func:`viewed`, which gives new visitors a session for that token.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from importlib.resources import files
from typing import Any
from urllib.parse import quote

from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException

from vw.config import Config
from vw.portal.accounts import Accounts, BadCredentials, SignupRefused, Throttled
from vw.portal.admission import NotAdmitted, admit, participant
from vw.portal.checks import Invalid, avatar_problem, name_problem, safe_next, whole_number
from vw.portal.handlers import Handlers, NoSuchMeeting, NotOwner
from vw.portal.http import add_headers, form, security_headers
from vw.portal.ical import calendar
from vw.portal.joining import Joins, Participant
from vw.portal.meetings import next_start, plan_from_form
from vw.portal.monitor import Monitor
from vw.portal.records import MAX_USER_ID, ROLES, Meeting, MeetingPlan, Session, User
from vw.portal.rendering import render
from vw.portal.sessions import Sessions, csrf_ok
from vw.portal.store import MEETING_ID, Cursor, RoomTaken, Store, When
from vw.portal.threads import Runner
from vw.portal.tokens import digest, new_secret

STYLESHEET = files("vw.portal").joinpath("static/portal.css").read_bytes()
PAGE_SIZE = 50


class PageError(Exception):
    """Answer with an error page: ``code`` and a sentence for the visitor."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SignInFirst(Exception):
    """The page needs a signed-in visitor: send them to sign in, then back."""


Handler = Callable[..., Awaitable[bytes]]


def viewed(handler: Handler) -> Handler:
    """A page: the handler gets the visitor's session, new if they have none."""

    @wraps(handler)
    async def view(self: Pages, request: IRequest, **kwargs: Any) -> bytes:
        session = await self.sessions.load(request)
        if session is None:
            session = await self.sessions.start(request, None, None)
        return await handler(self, request, session, **kwargs)

    return view


def posted(handler: Handler) -> Handler:
    """A form's POST: refused unless it carries its session's CSRF token."""

    @wraps(handler)
    async def post(self: Pages, request: IRequest, **kwargs: Any) -> bytes:
        session = await self.sessions.load(request)
        if session is None or not csrf_ok(session, form(request).get("csrf", "")):
            raise PageError(403, "This form has expired or was sent from another site. "
                                 "Go back, reload the page and try again.")
        return await handler(self, request, session, **kwargs)

    return post


def _signed_in(session: Session) -> User:
    if session.user is None:
        raise SignInFirst()
    return session.user


def _form_values(plan: MeetingPlan) -> dict[str, Any]:
    return {"title": plan.title, "start": plan.start.strftime("%Y-%m-%dT%H:%M"),
            "duration": plan.duration, "recurrence": plan.recurrence, "room": plan.room,
            "password": plan.password, "max_participants": plan.max_participants,
            "cohosts": " ".join(plan.cohosts), "guests_allowed": plan.guests_allowed,
            "lobby": plan.lobby}


class Pages(Handlers):
    app = Klein()

    def __init__(self, store: Store, run: Runner, accounts: Accounts, sessions: Sessions,
                 joins: Joins, monitor: Monitor, config: Config, clock: IReactorTime) -> None:
        super().__init__(store, run, accounts, joins, config, clock)
        self.sessions = sessions
        self.monitor = monitor
        self.security_headers = security_headers(config.portal.meeting_base_url)

    # -- plumbing -----------------------------------------------------------------------

    def page(self, request: IRequest, session: Session | None, template: str,
             status: int = 200, **context: Any) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        add_headers(request, self.security_headers)
        context.setdefault("notice", None)
        context.setdefault("problem", None)
        context.setdefault("errors", {})
        context["values"] = defaultdict(str, context.get("values", {}))
        return render(template, user=session.user if session else None,
                      csrf=session.csrf if session else "", signup=self.config.portal.signup,
                      **context)

    @staticmethod
    def see_other(request: IRequest, location: str) -> bytes:
        request.setResponseCode(303)
        request.setHeader(b"location", location.encode())
        request.setHeader(b"cache-control", b"no-store")
        return b""

    @app.handle_errors(PageError)
    def page_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        return self.error_page(request, error.code, error.message)

    @app.handle_errors(NoSuchMeeting)
    def no_such_meeting(self, request: IRequest, failure: Failure) -> bytes:
        return self.error_page(request, 404, f"{failure.value} Check the link you followed.")

    @app.handle_errors(NotOwner)
    def not_owner(self, request: IRequest, failure: Failure) -> bytes:
        return self.error_page(request, 403, str(failure.value))

    def error_page(self, request: IRequest, code: int, message: str) -> bytes:
        return self.page(request, None, "error.html", status=code,
                         heading="Not found" if code == 404 else "Sorry", message=message)

    @app.handle_errors(SignInFirst)
    def sign_in_first(self, request: IRequest, failure: Failure) -> bytes:
        target = request.uri.decode("latin-1") if request.method == b"GET" else "/meetings"
        return self.see_other(request, "/signin?next=" + quote(safe_next(target), safe="/"))

    @app.handle_errors(HTTPException)
    def http_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        return self.page(request, None, "error.html", status=error.code or 500,
                         heading=error.name, message=error.description or "")

    # -- start, style -------------------------------------------------------------------

    @app.route("/", methods=["GET"])
    @viewed
    async def home(self, request: IRequest, session: Session) -> bytes:
        return self.see_other(request, "/meetings" if session.user else "/signin")

    @app.route("/static/portal.css", methods=["GET"])
    def stylesheet(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", b"text/css; charset=utf-8")
        request.setHeader(b"cache-control", b"public, max-age=3600")
        return STYLESHEET

    # -- signing in and out -------------------------------------------------------------

    @app.route("/signin", methods=["GET"])
    @viewed
    async def signin_form(self, request: IRequest, session: Session) -> bytes:
        return self.page(request, session, "signin.html", email="",
                         next=safe_next(form(request).get("next", "")))

    @app.route("/signin", methods=["POST"])
    @posted
    async def signin(self, request: IRequest, session: Session) -> bytes:
        fields = form(request)
        email = fields.get("email", "").strip()
        target = safe_next(fields.get("next", ""))
        try:
            user = await self.accounts.sign_in(email, fields.get("password", ""),
                                               self.address(request))
        except BadCredentials:
            return self.page(request, session, "signin.html", status=401, email=email,
                             next=target, problem="Wrong e-mail address or password.")
        except Throttled as throttled:
            request.setHeader(b"retry-after", str(throttled.retry_after).encode())
            return self.page(request, session, "signin.html", status=429, email=email,
                             next=target, problem="Too many failed attempts. Try again in an "
                                                  "hour, or reset your password.")
        await self.sessions.start(request, user, session)
        return self.see_other(request, target)

    @app.route("/signout", methods=["POST"])
    @posted
    async def signout(self, request: IRequest, session: Session) -> bytes:
        await self.sessions.end(request, session)
        if session.user is not None:
            await self.accounts.audit("signout", session.user.id, self.address(request))
        return self.see_other(request, "/signin")

    @app.route("/signup", methods=["GET"])
    @viewed
    async def signup_form(self, request: IRequest, session: Session) -> bytes:
        invite = form(request).get("invite", "")
        if self.config.portal.signup == "closed" and not invite:
            raise PageError(403, "This portal does not take sign-ups. Ask its administrator.")
        return self.page(request, session, "signup.html", values={"invite": invite})

    @app.route("/signup", methods=["POST"])
    @posted
    async def signup(self, request: IRequest, session: Session) -> bytes:
        fields = form(request)
        password = fields.pop("password", "")
        try:
            user = await self.accounts.sign_up(
                fields.get("email", "").strip(), fields.get("display_name", ""), password,
                fields.get("invite", "").strip(), self.address(request))
        except Invalid as invalid:
            return self.page(request, session, "signup.html", status=422, values=fields,
                             errors=invalid.errors)
        except SignupRefused:
            return self.page(request, session, "signup.html", status=403, values=fields,
                             problem="This sign-up needs a valid invitation code.")
        await self.sessions.start(request, user, session)
        return self.see_other(request, "/meetings")

    # -- password reset -----------------------------------------------------------------

    @app.route("/password/forgot", methods=["GET"])
    @viewed
    async def forgot_form(self, request: IRequest, session: Session) -> bytes:
        return self.page(request, session, "forgot.html")

    @app.route("/password/forgot", methods=["POST"])
    @posted
    async def forgot(self, request: IRequest, session: Session) -> bytes:
        await self.accounts.request_reset(form(request).get("email", "").strip(),
                                          self.address(request))
        return self.page(request, session, "message.html", heading="Check your mail",
                         message="If an account has this address, a link to choose a new "
                                 "password is on its way. It works for an hour.", link=None)

    @app.route("/password/reset", methods=["GET"])
    @viewed
    async def reset_form(self, request: IRequest, session: Session) -> bytes:
        token = form(request).get("token", "")
        if await self.run(self.store.password_reset_user, digest(token), self.now()) is None:
            raise PageError(400, "This link has expired or was used. Ask for a new one.")
        return self.page(request, session, "reset.html", token=token)

    @app.route("/password/reset", methods=["POST"])
    @posted
    async def reset(self, request: IRequest, session: Session) -> bytes:
        fields = form(request)
        token = fields.get("token", "")
        try:
            done = await self.accounts.reset_password(token, fields.get("password", ""),
                                                      self.address(request))
        except Invalid as invalid:
            return self.page(request, session, "reset.html", status=422, token=token,
                             errors=invalid.errors)
        if not done:
            raise PageError(400, "This link has expired or was used. Ask for a new one.")
        return self.page(request, session, "message.html", heading="Password changed",
                         message="Sign in with your new password.", link="/signin",
                         link_text="Sign in")

    # -- profile ------------------------------------------------------------------------

    @app.route("/profile", methods=["GET"])
    @viewed
    async def profile_form(self, request: IRequest, session: Session) -> bytes:
        user = _signed_in(session)
        return self.page(request, session, "profile.html",
                         values={"display_name": user.display_name,
                                 "avatar_url": user.avatar_url})

    @app.route("/profile", methods=["POST"])
    @posted
    async def profile(self, request: IRequest, session: Session) -> bytes:
        user = _signed_in(session)
        fields = form(request)
        values = {"display_name": fields.get("display_name", "").strip(),
                  "avatar_url": fields.get("avatar_url", "").strip()}
        errors = {key: problem for key, problem in (
            ("display_name", name_problem(values["display_name"])),
            ("avatar_url", avatar_problem(values["avatar_url"]))) if problem}
        if errors:
            return self.page(request, session, "profile.html", status=422, values=values,
                             errors=errors)
        await self.run(self.store.update_user, user.id, **values)
        await self.accounts.audit("profile", user.id, self.address(request))
        return self.see_other(request, "/profile")

    # -- meetings -----------------------------------------------------------------------

    @app.route("/meetings", methods=["GET"])
    @viewed
    async def meetings(self, request: IRequest, session: Session) -> bytes:
        user = _signed_in(session)
        now = self.now()
        upcoming = await self.run(self.store.meetings_of, user.id, "upcoming", now, PAGE_SIZE)
        past = await self.run(self.store.meetings_of, user.id, "past", now, PAGE_SIZE)
        return self.page(request, session, "meetings.html", upcoming=upcoming, past=past)

    def _scheduler(self, session: Session) -> User:
        user = _signed_in(session)
        if not user.can_schedule:
            raise PageError(403, "Only hosts can schedule meetings.")
        return user

    @app.route("/meetings/new", methods=["GET"])
    @viewed
    async def schedule_form(self, request: IRequest, session: Session) -> bytes:
        self._scheduler(session)
        start = self.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        values = _form_values(MeetingPlan(title="", start=start, duration=60, room=""))
        return self.page(request, session, "meeting_form.html", values=values,
                         heading="Schedule a meeting", action="/meetings/new",
                         button="Schedule")

    @app.route("/meetings/new", methods=["POST"])
    @posted
    async def schedule(self, request: IRequest, session: Session) -> bytes:
        user = self._scheduler(session)
        meeting = await self._save(request, session, None, user)
        if isinstance(meeting, bytes):
            return meeting
        return self.see_other(request, f"/meetings/{meeting.id}")

    async def _save(self, request: IRequest, session: Session, meeting: Meeting | None,
                    user: User) -> Meeting | bytes:
        """Create or change a meeting from the form; the form again (as bytes) when wrong."""
        fields = form(request)
        values: dict[str, Any] = {**fields, "lobby": "lobby" in fields,
                                  "guests_allowed": "guests_allowed" in fields}
        action = f"/meetings/{meeting.id}/edit" if meeting else "/meetings/new"
        again = {"heading": "Edit the meeting" if meeting else "Schedule a meeting",
                 "action": action, "button": "Save" if meeting else "Schedule",
                 "values": values}
        try:
            return await self.save_meeting(request, user, plan_from_form(fields), meeting)
        except Invalid as invalid:
            return self.page(request, session, "meeting_form.html", status=422,
                             errors=invalid.errors, **again)
        except RoomTaken:
            return self.page(request, session, "meeting_form.html", status=409,
                             errors={"room": "Another meeting has this room name."}, **again)

    @app.route("/meetings/<meeting_id>", methods=["GET"])
    @viewed
    async def meeting(self, request: IRequest, session: Session, meeting_id: str) -> bytes:
        meeting = await self.hosted(_signed_in(session), meeting_id)
        return self.page(request, session, "meeting.html", meeting=meeting,
                         invitation=self.invitation_url(meeting),
                         next_start=next_start(meeting, self.now()))

    @app.route("/meetings/<meeting_id>/edit", methods=["GET"])
    @viewed
    async def edit_form(self, request: IRequest, session: Session, meeting_id: str) -> bytes:
        meeting = await self.editable(_signed_in(session), meeting_id)
        return self.page(request, session, "meeting_form.html",
                         values=_form_values(meeting.plan()), heading="Edit the meeting",
                         action=f"/meetings/{meeting.id}/edit", button="Save")

    @app.route("/meetings/<meeting_id>/edit", methods=["POST"])
    @posted
    async def edit(self, request: IRequest, session: Session, meeting_id: str) -> bytes:
        user = _signed_in(session)
        meeting = await self.editable(user, meeting_id)
        saved = await self._save(request, session, meeting, user)
        if isinstance(saved, bytes):
            return saved
        return self.see_other(request, f"/meetings/{meeting.id}")

    @app.route("/meetings/<meeting_id>/cancel", methods=["POST"])
    @posted
    async def cancel(self, request: IRequest, session: Session, meeting_id: str) -> bytes:
        user = _signed_in(session)
        meeting = await self.editable(user, meeting_id)
        await self.call_off(request, user, meeting)
        return self.see_other(request, f"/meetings/{meeting.id}")

    # -- invitations and joining --------------------------------------------------------

    @app.route("/m/<meeting_id>", methods=["GET"])
    @viewed
    async def invitation(self, request: IRequest, session: Session, meeting_id: str) -> bytes:
        meeting = await self.invited(meeting_id)
        return self.page(request, session, "invitation.html", meeting=meeting,
                         status=410 if meeting.cancelled else 200)

    @app.route("/m/<meeting_id>/meeting.ics", methods=["GET"])
    async def ics(self, request: IRequest, meeting_id: str) -> bytes:
        meeting = await self.invited(meeting_id)
        request.setHeader(b"content-type", b"text/calendar; charset=utf-8")
        request.setHeader(b"content-disposition", b'attachment; filename="meeting.ics"')
        return calendar(meeting, self.invitation_url(meeting), self.config.general.domain,
                        self.now())

    @app.route("/m/<meeting_id>", methods=["POST"])
    @posted
    async def join(self, request: IRequest, session: Session, meeting_id: str) -> bytes:
        """Mint a JWT for this meeting's room and send the browser to the meeting page."""
        meeting = await self.invited(meeting_id)
        user, fields = session.user, form(request)
        if user is None and not meeting.guests_allowed and not meeting.cancelled:
            raise SignInFirst()
        name = fields.get("name", "").strip()
        try:
            host = admit(meeting, user, fields.get("password", ""))
        except NotAdmitted as refused:
            if refused.field is None:
                raise PageError(refused.status, str(refused)) from None
            return self.page(request, session, "invitation.html", status=refused.status,
                             meeting=meeting, values={"name": name},
                             errors={refused.field: str(refused)})
        if user is None:
            if problem := name_problem(name):
                return self.page(request, session, "invitation.html", status=422,
                                 meeting=meeting, values={"name": name},
                                 errors={"name": problem})
            who = Participant(id=f"guest-{new_secret()[:16]}", name=name)
        else:
            who = participant(user)
        grant = await self.grant(request, meeting, user, who, host)
        return self.see_other(request, grant.meeting_url)

    # -- administration -----------------------------------------------------------------

    def _admin(self, session: Session) -> User:
        user = _signed_in(session)
        if not user.is_admin:
            raise PageError(403, "Only administrators can see this page.")
        return user

    async def _admin_page(self, request: IRequest, session: Session, **context: Any) -> bytes:
        after = whole_number(form(request).get("after", "0"), 0, MAX_USER_ID) or 0
        users = await self.run(self.store.users, PAGE_SIZE + 1, after)
        events = await self.run(self.store.audit_events, PAGE_SIZE)
        return self.page(request, session, "admin_users.html", users=users[:PAGE_SIZE],
                         more=len(users) > PAGE_SIZE, events=events, roles=ROLES,
                         invitation=context.pop("invitation", None), **context)

    @app.route("/admin/users", methods=["GET"])
    @viewed
    async def admin_users(self, request: IRequest, session: Session) -> bytes:
        self._admin(session)
        return await self._admin_page(request, session)

    @app.route("/admin/users/<int:user_id>/role", methods=["POST"])
    @posted
    async def admin_role(self, request: IRequest, session: Session, user_id: int) -> bytes:
        admin = self._admin(session)
        role = form(request).get("role", "")
        if role not in ROLES:
            raise PageError(400, "There is no such role.")
        if user_id == admin.id:
            raise PageError(409, "You cannot change your own role.")
        if await self.run(self.store.update_user, user_id, role=role) is None:
            raise PageError(404, "There is no such user.")
        await self.accounts.audit("user.role", admin.id, self.address(request),
                                  f"{user_id} -> {role}")
        return self.see_other(request, "/admin/users")

    @app.route("/admin/invitations", methods=["POST"])
    @posted
    async def admin_invite(self, request: IRequest, session: Session) -> bytes:
        admin = self._admin(session)
        role = form(request).get("role", "")
        if role not in ROLES:
            raise PageError(400, "There is no such role.")
        code = await self.accounts.invite(role, admin, self.address(request))
        return await self._admin_page(request, session,
                                      invitation=self.accounts.signup_link(code))

    @app.route("/admin/services", methods=["GET"])
    @viewed
    async def admin_services(self, request: IRequest, session: Session) -> bytes:
        """The live conferences and participants, and the health of every service."""
        self._admin(session)
        return self.page(request, session, "admin_services.html",
                         overview=await self.monitor.overview())

    @app.route("/admin/meetings", methods=["GET"])
    @viewed
    async def admin_meetings(self, request: IRequest, session: Session) -> bytes:
        """Every owner's meetings: upcoming ones soonest first, then past ones; the link to
        more of one list (``when``, with the ``start`` and ``last`` id of the last shown) shows
        that list alone."""
        self._admin(session)
        fields = form(request)
        now = self.now()
        if "when" not in fields:
            lists = {when: await self.run(self.store.all_meetings, when, now, PAGE_SIZE + 1)
                     for when in ("upcoming", "past")}
        else:
            when, after = _meetings_cursor(fields)
            lists = {when: await self.run(self.store.all_meetings, when, now, PAGE_SIZE + 1,
                                          after)}
        pages = {when: (found[:PAGE_SIZE], len(found) > PAGE_SIZE)
                 for when, found in lists.items()}
        return self.page(request, session, "admin_meetings.html", pages=pages)


def _meetings_cursor(fields: dict[str, str]) -> tuple[When, Cursor | None]:
    """The list and the place in it that a "more" link of the admin meetings page names."""
    lists: dict[str, When] = {"upcoming": "upcoming", "past": "past"}
    when = lists.get(fields.get("when", ""))
    if when is None:
        raise PageError(400, "There is no such list of meetings.")
    if "start" not in fields and "last" not in fields:
        return when, None
    last = fields.get("last", "")
    try:
        start = datetime.fromisoformat(fields.get("start", ""))
        valid = start.tzinfo is not None and MEETING_ID.fullmatch(last) is not None
        if valid:
            start = start.astimezone(UTC)
    except (ValueError, OverflowError):
        valid = False
    if not valid:
        raise PageError(400, "This link to more meetings is not one this page gave.")
    return when, (start, last)
