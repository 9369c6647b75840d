"""vw-portal as a Twisted service: its database, thread pool, HTTP port, hourly purge and
worker processes."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import text
from twisted.application import internet
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorCore,
    IReactorFromThreads,
    IReactorProcess,
    IReactorTCP,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from twisted.web.http import combinedLogFormatter
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from vw.common.listener import TCPListener
from vw.common.ops import add_ops_resources
from vw.config import Config
from vw.portal.accounts import FAILURE_WINDOW
from vw.portal.database import database_url, open_database
from vw.portal.mail import LogMailer, Mailer, SMTPMailer
from vw.portal.monitor import agent_fetch
from vw.portal.passwords import Passwords
from vw.portal.site import build_site
from vw.portal.store import Store
from vw.portal.threads import PoolRunner
from vw.portal.workers import Workers, worker_command

log = Logger()

#: Seconds between purges of expired sessions, tokens and old sign-in failures.
PURGE_INTERVAL = 3600.0
#: Seconds the access log's lines are gathered for before they are logged.
ACCESS_LOG_INTERVAL = 1.0
#: Characters of access log lines in one event at most: an event is then one write of the
#: log file, which the portal's worker processes share (so their lines never interleave).
ACCESS_LOG_EVENT = 3500


class Reactor(IReactorTime, IReactorFromThreads, IReactorCore, IReactorTCP, IReactorProcess):
    """What the service needs of a reactor."""


def mailer_for(config: Config) -> Mailer:
    portal = config.portal
    if not portal.smtp_host:
        return LogMailer()
    return SMTPMailer(portal.smtp_host, portal.smtp_port,
                      portal.mail_from or f"noreply@{config.general.domain}",
                      portal.smtp_username, portal.smtp_password)


class PortalRequest(Request):
    """A request whose body Twisted parses as a form only outside the API, which takes JSON
    alone (Twisted parses the Content-Type of every POST with the e-mail package's header
    classes to find forms: a tenth of a join's CPU)."""

    @property  # type: ignore[override]
    def _parsePOSTFormSubmission(self) -> bool:
        return self._parse_forms and not self.path.startswith(b"/api/v1/")

    @_parsePOSTFormSubmission.setter
    def _parsePOSTFormSubmission(self, value: bool) -> None:
        self._parse_forms = value


class PortalHTTP(Site):
    """The portal's HTTP factory. Its access log has Twisted's lines (the combined log
    format) but gathers them for a second and logs them a few kilobytes to an event: a log
    event per request cost a quarter of the CPU of the cheapest request."""

    access = Logger()

    def __init__(self, resource: IResource, reactor: IReactorTime) -> None:
        super().__init__(resource, requestFactory=PortalRequest, reactor=reactor)
        self._lines: list[str] = []
        self._flush: IDelayedCall | None = None

    def log(self, request: Request) -> None:
        self._lines.append(combinedLogFormatter(self._logDateTime, request))
        if self._flush is None:
            self._flush = self.reactor.callLater(ACCESS_LOG_INTERVAL, self.flush)

    def flush(self) -> None:
        """Log the lines gathered so far."""
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
        self._flush = None
        lines, self._lines = self._lines, []
        event: list[str] = []
        size = 0
        for line in lines:
            if event and size + len(line) > ACCESS_LOG_EVENT:
                self.access.info("{lines}", lines="\n".join(event))
                event, size = [], 0
            event.append(line)
            size += len(line) + 1
        if event:
            self.access.info("{lines}", lines="\n".join(event))

    def stopFactory(self) -> None:
        self.flush()
        super().stopFactory()


class PortalService(MultiService):
    """vw-portal: pages and API on portal.http_port, the database off the reactor thread.

    With ``portal.workers`` above one, it shares its port with that many processes less one,
    which it starts: each is this service with ``shared_port``, serving that port alone (no
    purges, no workers of its own).
    """

    def __init__(self, config: Config, reactor: Reactor, shared_port: int | None = None) -> None:
        super().__init__()
        self.setName("portal")
        self.config = config
        self.reactor = reactor
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.engine = open_database(database_url(config))
        # SQLite takes one writer at a time; a server database takes a few.
        threads = 1 if self.engine.dialect.name == "sqlite" else 4
        self.pool = ThreadPool(minthreads=1, maxthreads=threads, name="vw-portal")
        self.run = PoolRunner(reactor, self.pool)
        self.store = Store(self.engine)
        self.registry = CollectorRegistry()
        ops = Resource()
        add_ops_resources(ops, [self._database_health], self.registry)
        self.site = build_site(config, self.store, self.run, reactor, Passwords(),
                               mailer_for(config), agent_fetch(reactor), ops)
        waiting = Gauge("vw_portal_queued_calls", "Database and hashing calls waiting for a "
                                                  "thread", registry=self.registry)
        waiting.set_function(lambda: self.pool.q.qsize())
        self.worker = shared_port is not None
        site = PortalHTTP(self.site.resource(), reactor)
        if shared_port is not None:
            TCPListener(reactor, shared_port, site, config.general.bind,
                        shared=True).setServiceParent(self)
            return
        if config.portal.workers > 1:
            listener = TCPListener(reactor, config.portal.http_port, site,
                                   config.general.bind, shared=True, first=True)
            listener.setServiceParent(self)
            Workers(reactor, config.portal.workers - 1,
                    lambda: worker_command(config, listener.port)).setServiceParent(self)
        else:
            internet.TCPServer(config.portal.http_port, site,
                               interface=config.general.bind).setServiceParent(self)
        timer = internet.TimerService(PURGE_INTERVAL, self.purge)
        timer.clock = reactor
        timer.setServiceParent(self)

    def startService(self) -> None:
        self.pool.start()
        super().startService()
        if self.worker:
            return
        ensureDeferred(self.first_admin()).addErrback(
            lambda failure: log.failure("no first-admin invitation", failure))

    def stopService(self) -> Deferred[None]:
        stopped: Deferred[None] = Deferred.fromCoroutine(self._stop())
        return stopped

    async def _stop(self) -> None:
        await super().stopService()
        self.pool.stop()
        self.engine.dispose()

    async def first_admin(self) -> None:
        link = await self.site.pages.accounts.first_admin_link()
        if link is not None:
            log.warn("vw-portal has no administrator yet; create one at {link}", link=link)

    def purge(self) -> Deferred[None]:
        now = datetime.fromtimestamp(self.reactor.seconds(), UTC)
        return self.run(self.store.purge, now, now - FAILURE_WINDOW)

    def _database_health(self) -> str | None:
        try:
            with self.engine.connect() as db:
                db.execute(text("SELECT 1"))
        except Exception as e:  # noqa: BLE001 - any database failure makes us unhealthy
            return f"database: {e.__class__.__name__}"
        return None
