"""slixmpp clients for the end-to-end tests (slixmpp is a peer nobody here wrote)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import slixmpp

PLUGINS = ("xep_0030", "xep_0045", "xep_0199", "xep_0198")


async def connect(jid: str, password: str, port: int, ca: Path, mechanism: str | None = None,
                  timeout: float = 15) -> slixmpp.ClientXMPP:
    """A slixmpp client, logged in over STARTTLS, with the plugins the tests use."""
    client = slixmpp.ClientXMPP(jid, password, sasl_mech=mechanism)
    client.enable_direct_tls = False
    client.ssl_context.load_verify_locations(str(ca))
    for plugin in PLUGINS:
        client.register_plugin(plugin)
    started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def done(result: bool | Exception) -> None:
        if not started.done():
            if isinstance(result, Exception):
                started.set_exception(result)
            else:
                started.set_result(result)

    client.add_event_handler("session_start", lambda _: done(True))
    client.add_event_handler("failed_auth", lambda _: done(RuntimeError("auth failed")))
    client.connect("127.0.0.1", port)
    await asyncio.wait_for(started, timeout)
    return client


class Inbox:
    """Collects one kind of stanza a client receives, to await them in order."""

    def __init__(self, client: slixmpp.ClientXMPP, event: str) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        client.add_event_handler(event, self.queue.put_nowait)

    async def next(self, timeout: float = 10):
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def until(self, predicate, timeout: float = 10):
        async with asyncio.timeout(timeout):
            while True:
                item = await self.queue.get()
                if predicate(item):
                    return item


async def disconnect(*clients: slixmpp.ClientXMPP) -> None:
    for client in clients:
        client.disconnect(wait=0.1)
    await asyncio.sleep(0.2)
