"""Browser sessions: a random id in the ``__Host-vw_session`` cookie, its digest in the store.

Every visitor who gets a form gets a session (anonymous until sign-in) so that every form
carries the session's CSRF token. Sign-in and sign-out replace the session, so an id planted
before sign-in is worthless after it.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from vw.portal.records import Session, User
from vw.portal.store import Store
from vw.portal.threads import Runner
from vw.portal.tokens import digest, new_secret

COOKIE = b"__Host-vw_session"
#: How long a session lasts before anyone signs in with it.
ANONYMOUS_LIFETIME = timedelta(hours=2)


class Sessions:
    def __init__(self, store: Store, run: Runner, clock: IReactorTime, lifetime: int) -> None:
        self.store = store
        self.run = run
        self.clock = clock
        self.lifetime = timedelta(seconds=lifetime)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), UTC)

    async def load(self, request: IRequest) -> Session | None:
        """The request's unexpired session, if its cookie names one."""
        cookie = request.getCookie(COOKIE)
        if not cookie:
            return None
        return await self.run(self.store.session, digest(cookie.decode("latin-1")), self.now())

    async def start(self, request: IRequest, user: User | None,
                    previous: Session | None) -> Session:
        """A new session (for ``user``, or anonymous) in place of ``previous``."""
        if previous is not None:
            await self.run(self.store.delete_session, previous.id_hash)
        now = self.now()
        lifetime = self.lifetime if user is not None else ANONYMOUS_LIFETIME
        token, csrf = new_secret(), new_secret()
        session = Session(id_hash=digest(token), csrf=csrf, expires=now + lifetime, user=user)
        await self.run(self.store.create_session, session.id_hash,
                       None if user is None else user.id, csrf, now, session.expires)
        self._cookie(request, token, int(lifetime.total_seconds()))
        return session

    async def end(self, request: IRequest, session: Session) -> None:
        await self.run(self.store.delete_session, session.id_hash)
        self._cookie(request, "", 0)

    @staticmethod
    def _cookie(request: IRequest, value: str, max_age: int) -> None:
        request.addCookie(COOKIE, value.encode(), path=b"/", max_age=str(max_age).encode(),
                          secure=True, httpOnly=True, sameSite="lax")


def csrf_ok(session: Session | None, sent: str) -> bool:
    """True when ``sent`` is the session's CSRF token."""
    return session is not None and hmac.compare_digest(sent.encode(), session.csrf.encode())
