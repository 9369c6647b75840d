"""An in-memory portal (StubTreq, SQLite in a temporary directory, a fake clock) and clients."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from argon2 import PasswordHasher
from prometheus_client import CollectorRegistry
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from vw.common.ops import add_ops_resources
from vw.config import Config, GeneralConfig, PortalConfig, TokenConfig, XMPPConfig
from vw.portal.passwords import Passwords
from vw.portal.records import User
from vw.portal.site import PortalSite, build_site
from vw.portal.store import Store
from vw.portal.threads import run_inline
from vw.xmpp.token import TokenIdentity, TokenVerifier

T = TypeVar("T")
BASE = "https://portal.test"
PASSWORD = "correct horse battery"
APP_SECRET = "a shared secret for the portal tests"
#: 2027-01-15 08:00 UTC.
START = 1_800_000_000.0
#: Cheap argon2id parameters: these tests are about the portal's rules, not hashing cost.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def resolved(deferred: Deferred[T]) -> T:
    """The result of a Deferred that has already fired (everything here is synchronous)."""
    results: list[Any] = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


@dataclass
class Mail:
    to: str
    subject: str
    body: str


@dataclass
class Outbox:
    sent: list[Mail] = field(default_factory=list)

    def send(self, to: str, subject: str, body: str) -> Deferred[object]:
        self.sent.append(Mail(to, subject, body))
        return succeed(None)


@dataclass
class Services:
    """The other services as the admin page asks them: answers by URL; the rest refuse."""

    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)

    async def fetch(self, url: str) -> tuple[int, bytes]:
        if url not in self.answers:
            raise ConnectionRefusedError(url)
        return self.answers[url]


@dataclass
class Response:
    code: int
    headers: dict[str, list[str]]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[-1] if values else None

    def cookie(self, name: str) -> str | None:
        """The value a Set-Cookie header gives ``name``."""
        for value in self.headers.get("set-cookie", []):
            key, _, rest = value.partition("=")
            if key == name:
                return rest.split(";")[0]
        return None


class Client:
    """One browser or app: its own StubTreq, so its own cookie jar."""

    def __init__(self, site: PortalSite) -> None:
        self.treq = StubTreq(site.resource())

    def request(self, method: str, path: str, **kwargs: Any) -> Response:
        deferred = self.treq.request(method, BASE + path, allow_redirects=False, **kwargs)
        self.treq.flush()
        response = resolved(deferred)
        body = resolved(self.treq.content(response))
        headers = {name.decode().lower(): [v.decode() for v in values]
                   for name, values in response.headers.getAllRawHeaders()}
        return Response(response.code, headers, body)

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def csrf(self, path: str) -> str:
        """The CSRF token in the form of the page at ``path``."""
        page = self.get(path)
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found, f"no form on {path}: {page.code}"
        return found.group(1)

    def submit(self, path: str, fields: dict[str, str], *, form_at: str | None = None) -> Response:
        """POST ``fields`` to ``path`` with the CSRF token of the form at ``form_at``."""
        token = self.csrf(form_at or path)
        return self.request("POST", path, data={**fields, "csrf": token})

    def api(self, method: str, path: str, token: str | None = None,
            **kwargs: Any) -> Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return self.request(method, "/api/v1" + path, headers=headers, **kwargs)


@dataclass
class Portal:
    config: Config
    store: Store
    clock: Clock
    outbox: Outbox
    site: PortalSite
    passwords: Passwords
    services: Services

    def client(self) -> Client:
        return Client(self.site)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), UTC)

    def user(self, email: str, role: str = "host", name: str = "", password: str = PASSWORD
             ) -> User:
        return self.store.create_user(email, name or email.split("@")[0],
                                      self.passwords.hash(password), role, self.now())

    def signed_in(self, user: User, password: str = PASSWORD) -> Client:
        browser = self.client()
        response = browser.submit("/signin", {"email": user.email, "password": password})
        assert response.code == 303, response.text
        return browser

    def token(self, user: User, password: str = PASSWORD) -> str:
        response = self.client().api("POST", "/auth/token",
                                     json={"email": user.email, "password": password})
        assert response.code == 200, response.text
        return str(response_json(response)["access_token"])


def response_json(response: Response) -> Any:
    return json.loads(response.body)


def portal_config(state_dir: Path, **settings: Any) -> Config:
    return Config(general=GeneralConfig(domain="meet.example.org", state_dir=str(state_dir)),
                  xmpp=XMPPConfig(token=TokenConfig(app_secret=APP_SECRET, app_id="vw-tests")),
                  portal=PortalConfig(public_url=BASE,
                                      meeting_base_url="https://meet.example.org", **settings))


def make_portal(store: Store, state_dir: Path, **settings: Any) -> Portal:
    config = portal_config(state_dir, **settings)
    clock = Clock()
    clock.advance(START)
    outbox = Outbox()
    passwords = Passwords(FAST_HASHER)
    services = Services()
    ops = Resource()
    add_ops_resources(ops, [], CollectorRegistry())
    site = build_site(config, store, run_inline, clock, passwords, outbox, services.fetch, ops)
    return Portal(config, store, clock, outbox, site, passwords, services)


def verify_join(portal: Portal, token: str) -> TokenIdentity:
    """Check a join token as vw-xmpp does, at the portal's clock."""
    verifier = TokenVerifier(portal.config.xmpp.token, portal.clock.seconds)
    return verifier.verify(token, portal.config.general.domain)
