"""The focus's XMPP connection: a client login as focus@auth.DOMAIN, IQ requests with answers.

:class:`XMPPLink` is what the focus logic talks through: ``send`` a stanza, ``request`` an IQ
and get a Deferred firing with the result (or failing with :class:`IQFailed` on an error
reply, a timeout or a lost connection). It sits on a Twisted ``XmlStream`` authenticated by
``twisted.words.protocols.jabber.client`` (STARTTLS, SASL PLAIN, bind).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish.domish import Element

log = Logger()

#: Seconds an IQ request waits for its answer.
IQ_TIMEOUT = 15.0


class IQFailed(Exception):
    """An IQ request got an error reply, no reply in time, or lost its connection."""

    def __init__(self, condition: str, text: str = "", reply: Element | None = None) -> None:
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text
        self.reply = reply


def error_condition(reply: Element) -> tuple[str, str]:
    """The defined condition and text of an error stanza."""
    error = next((c for c in reply.elements() if c.name == "error"), None)
    if error is None:
        return "undefined-condition", ""
    condition = next((c.name for c in error.elements() if c.name != "text"),
                     "undefined-condition")
    text = next((str(c) for c in error.elements() if c.name == "text"), "")
    return condition, text


class XMPPLink:
    """Send stanzas and IQ requests over the current stream, if any."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.jid = ""
        self.stream: xmlstream.XmlStream | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, tuple[Deferred[Element], IDelayedCall, str | None]] = {}
        #: Called with every stanza that is not the answer to one of our requests.
        self.received: Callable[[Element], None] = lambda stanza: None

    def connected(self, stream: xmlstream.XmlStream, jid: str) -> None:
        self.stream = stream
        self.jid = jid
        stream.addObserver("/*", self._element)

    def disconnected(self) -> None:
        self.stream = None
        for deferred, timer, _ in list(self._pending.values()):
            timer.cancel()
            deferred.errback(IQFailed("remote-server-timeout", "the XMPP connection was lost"))
        self._pending.clear()

    def send(self, stanza: Element) -> None:
        if self.stream is None:
            log.warn("not connected: dropped a {name}", name=stanza.name)
            return
        self.stream.send(stanza)

    def request(self, iq: Element, timeout: float = IQ_TIMEOUT) -> Deferred[Element]:
        """Send the IQ ``iq`` (an id is added); fires with the result stanza."""
        iq["id"] = f"vwf{next(self._ids)}"
        deferred: Deferred[Element] = Deferred()
        if self.stream is None:
            deferred.errback(IQFailed("remote-server-timeout", "not connected"))
            return deferred
        timer = self.clock.callLater(timeout, self._timed_out, iq["id"])
        self._pending[iq["id"]] = (deferred, timer, iq.getAttribute("to"))
        self.stream.send(iq)
        return deferred

    def _timed_out(self, iq_id: str) -> None:
        deferred, _, _ = self._pending.pop(iq_id)
        deferred.errback(IQFailed("remote-server-timeout", "no answer in time"))

    def _element(self, stanza: Element) -> None:
        if stanza.name == "iq" and stanza.getAttribute("type") in ("result", "error"):
            pending = self._pending.get(stanza.getAttribute("id", ""))
            if pending is None or stanza.getAttribute("from") != pending[2]:
                return
            del self._pending[stanza["id"]]
            deferred, timer, _ = pending
            timer.cancel()
            if stanza["type"] == "result":
                deferred.callback(stanza)
            else:
                condition, text = error_condition(stanza)
                deferred.errback(IQFailed(condition, text, stanza))
            return
        self.received(stanza)
