"""What the pages and the API stand on: their dependencies, and the rules about meetings that
both apply. Refusals are exceptions, which each answers in its own way (an error page, or
problem details)."""

from __future__ import annotations

from datetime import UTC, datetime

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from vw.config import Config
from vw.portal.accounts import Accounts
from vw.portal.checks import Invalid
from vw.portal.http import client_address
from vw.portal.joining import JoinGrant, Joins, Participant
from vw.portal.records import Meeting, MeetingPlan, User
from vw.portal.store import Store, UnknownUsers
from vw.portal.threads import Runner


class NoSuchMeeting(Exception):
    """No meeting has this id or, to someone who does not host it, it is not theirs to see."""

    def __init__(self) -> None:
        super().__init__("There is no such meeting.")


class NotOwner(Exception):
    """Co-hosts moderate a meeting; only its owner (or an admin) changes or cancels it."""

    def __init__(self) -> None:
        super().__init__("Only the meeting's owner may change it.")


class Handlers:
    """The base of :class:`vw.portal.web.Pages` and :class:`vw.portal.api.Api`."""

    def __init__(self, store: Store, run: Runner, accounts: Accounts, joins: Joins,
                 config: Config, clock: IReactorTime) -> None:
        self.store = store
        self.run = run
        self.accounts = accounts
        self.joins = joins
        self.config = config
        self.clock = clock

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), UTC)

    def address(self, request: IRequest) -> str:
        return client_address(request, self.config.portal.trusted_proxies)

    def invitation_url(self, meeting: Meeting) -> str:
        return f"{self.config.portal.public_url.rstrip('/')}/m/{meeting.id}"

    async def invited(self, meeting_id: str) -> Meeting:
        """The meeting of this invitation: the meeting with this id, whoever asks."""
        meeting = await self.run(self.store.meeting, meeting_id)
        if meeting is None:
            raise NoSuchMeeting()
        return meeting

    async def hosted(self, user: User, meeting_id: str) -> Meeting:
        """The meeting, when ``user`` hosts it; to anyone else it does not exist."""
        meeting = await self.run(self.store.meeting, meeting_id)
        if meeting is None or not meeting.is_host(user):
            raise NoSuchMeeting()
        return meeting

    async def editable(self, user: User, meeting_id: str) -> Meeting:
        """The meeting, when ``user`` may change it."""
        meeting = await self.hosted(user, meeting_id)
        if not meeting.may_edit(user):
            raise NotOwner()
        return meeting

    async def save_meeting(self, request: IRequest, user: User, plan: MeetingPlan,
                           meeting: Meeting | None = None) -> Meeting:
        """Schedule a meeting (``meeting`` None) or change one, audited; raises Invalid (co-hosts
        without an account too) and RoomTaken."""
        try:
            if meeting is None:
                saved = await self.run(self.store.create_meeting, user.id, plan, self.now())
            else:
                saved = await self.run(self.store.update_meeting, meeting.id, plan)
        except UnknownUsers as unknown:
            raise Invalid({"cohosts": "No account has the address "
                                      + ", ".join(unknown.emails) + "."}) from None
        if saved is None:
            raise NoSuchMeeting()
        event = "meeting.updated" if meeting else "meeting.created"
        await self.accounts.audit(event, user.id, self.address(request), saved.id)
        return saved

    async def call_off(self, request: IRequest, user: User, meeting: Meeting) -> None:
        """Cancel the meeting, audited."""
        await self.run(self.store.cancel_meeting, meeting.id)
        await self.accounts.audit("meeting.cancelled", user.id, self.address(request),
                                  meeting.id)

    async def grant(self, request: IRequest, meeting: Meeting, user: User | None,
                    who: Participant, moderator: bool) -> JoinGrant:
        """What ``who`` (``user``'s account, or a guest) needs to join the meeting, audited."""
        grant = self.joins.grant(meeting.join_room(), who, moderator,
                                 self.clock.seconds())
        await self.accounts.audit("meeting.joined", None if user is None else user.id,
                                  self.address(request), f"{meeting.id} as {who.id}")
        return grant
