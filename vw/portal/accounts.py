"""Accounts: sign-up, sign-in with throttling, invitations and password resets.

The rules the pages and the API share. Sign-in failures are kept in the store, so the limit
(``portal.max_failures_per_hour`` per account and per address, over a sliding hour) holds
across restarts and across portal processes on one database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from twisted.internet.interfaces import IReactorTime

from vw.config import PortalConfig
from vw.portal.checks import Invalid, email_problem, name_problem, password_problem
from vw.portal.mail import Mailer
from vw.portal.passwords import Passwords
from vw.portal.records import ROLES, User
from vw.portal.store import RESET_REQUESTED, EmailTaken, InvalidInvitation, Store
from vw.portal.threads import Runner
from vw.portal.tokens import digest, new_secret

#: The sliding window of the sign-in failure limit.
FAILURE_WINDOW = timedelta(hours=1)
RESET_LIFETIME = timedelta(hours=1)
INVITATION_LIFETIME = timedelta(days=7)


class BadCredentials(Exception):
    """Wrong e-mail address or password (which one is not said)."""


class Throttled(Exception):
    """Too many failed sign-ins for this account or from this address: try again later."""

    retry_after = int(FAILURE_WINDOW.total_seconds())


class SignupRefused(Exception):
    """Sign-up is closed, or needs an invitation that was not given or is not valid."""


class Accounts:
    def __init__(self, store: Store, run: Runner, passwords: Passwords, config: PortalConfig,
                 clock: IReactorTime, mailer: Mailer) -> None:
        self.store = store
        self.run = run
        self.passwords = passwords
        self.config = config
        self.clock = clock
        self.mailer = mailer

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), UTC)

    async def audit(self, event: str, user_id: int | None, address: str,
                    detail: str = "") -> None:
        await self.run(self.store.audit, event, user_id, address, detail, self.now())

    async def sign_in(self, email: str, password: str, address: str) -> User:
        """The account, when the password is right and neither limit has been reached."""
        now = self.now()
        by_account, by_address = await self.run(self.store.failures_since, email, address,
                                                now - FAILURE_WINDOW)
        limit = self.config.max_failures_per_hour
        if by_account >= limit or by_address >= limit:
            await self.audit("signin.throttled", None, address, email)
            raise Throttled()
        user = await self.run(self.store.user_by_email, email)
        hashed = None if user is None else user.password_hash
        if user is None or not await self.run(self.passwords.verify, hashed, password):
            await self.run(self.store.add_failure, email, address, now)
            await self.audit("signin.failed", None if user is None else user.id, address, email)
            raise BadCredentials()
        if self.passwords.needs_rehash(user.password_hash):
            await self.run(self.store.update_user, user.id,
                           password_hash=await self.run(self.passwords.hash, password))
        await self.audit("signin", user.id, address)
        return user

    async def sign_up(self, email: str, display_name: str, password: str, invitation: str,
                      address: str) -> User:
        """A new account. "open" sign-up gives ``signup_role``; an invitation gives its own
        role and is needed in "invite" mode; "closed" takes only the first admin's."""
        mode = self.config.signup
        now = self.now()
        code = digest(invitation) if invitation else None
        if code is None and mode != "open":
            raise SignupRefused()
        if mode == "closed":
            role = await self.run(self.store.invitation_role, code or "", now)
            if role != "admin" or await self.run(self.store.has_admin):
                raise SignupRefused()
        errors = {key: problem for key, problem in (
            ("email", email_problem(email)), ("display_name", name_problem(display_name)),
            ("password", password_problem(password))) if problem}
        if errors:
            raise Invalid(errors)
        hashed = await self.run(self.passwords.hash, password)
        try:
            user = await self.run(self.store.create_user, email, display_name.strip(), hashed,
                                  self.config.signup_role, now, code)
        except InvalidInvitation:
            raise SignupRefused() from None
        except EmailTaken:
            raise Invalid({"email": "An account with this address exists."}) from None
        await self.audit("signup", user.id, address, user.role)
        return user

    async def invite(self, role: str, by: User | None, address: str) -> str:
        """A new invitation code for ``role``, good for a week and for one account."""
        assert role in ROLES
        code = new_secret()
        now = self.now()
        await self.run(self.store.add_invitation, digest(code), role,
                       None if by is None else by.id, now, now + INVITATION_LIFETIME)
        await self.audit("invitation", None if by is None else by.id, address, role)
        return code

    async def first_admin_link(self) -> str | None:
        """Without an admin, a one-time sign-up link that makes one (for the operator)."""
        if await self.run(self.store.has_admin):
            return None
        return self.signup_link(await self.invite("admin", None, "startup"))

    def signup_link(self, code: str) -> str:
        """The sign-up page with an invitation code filled in."""
        return f"{self.config.public_url.rstrip('/')}/signup?invite={code}"

    async def request_reset(self, email: str, address: str) -> None:
        """Mail a reset link if the account exists and neither it nor the address has asked
        ``max_resets_per_hour`` times in the last hour (the caller says the same either
        way, so the answer tells nothing about accounts or limits)."""
        by_account, by_address = await self.run(self.store.reset_requests_since, email,
                                                address, self.now() - FAILURE_WINDOW)
        user = await self.run(self.store.user_by_email, email)
        user_id = None if user is None else user.id
        limit = self.config.max_resets_per_hour
        if by_account >= limit or by_address >= limit:
            await self.audit("password.reset_throttled", user_id, address, email)
            return
        await self.audit(RESET_REQUESTED, user_id, address, email)
        if user is None:
            return
        token = new_secret()
        await self.run(self.store.add_password_reset, digest(token), user.id,
                       self.now() + RESET_LIFETIME)
        link = f"{self.config.public_url.rstrip('/')}/password/reset?token={token}"
        await self.mailer.send(user.email, "Reset your password", (
            f"Hello {user.display_name},\n\nTo choose a new password, open this link within "
            f"an hour:\n\n{link}\n\nIf you did not ask for it, ignore this message.\n"))

    async def reset_password(self, token: str, password: str, address: str) -> bool:
        """Set a new password with a mailed token; every session and API token ends."""
        if problem := password_problem(password):
            raise Invalid({"password": problem})
        hashed = await self.run(self.passwords.hash, password)
        user_id = await self.run(self.store.reset_password, digest(token), hashed, self.now())
        if user_id is not None:
            await self.audit("password.reset", user_id, address)
        return user_id is not None
