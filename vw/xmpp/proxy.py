"""A domain served by an ordinary client: stanzas to ``focus.DOMAIN`` reach the focus account.

As Prosody's client_proxy does for Jitsi, the focus logs in as ``focus@auth.DOMAIN`` and
anything addressed to its service domain is handed to its resource named ``resource`` (else
its newest), with ``to`` rewritten to that full JID. With no resource online, IQs get
service-unavailable. The account's answers to those IQs go out from the domain, since
clients match an answer to the address they asked.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.words.xish.domish import Element

from vw.xmpp.errors import StanzaError
from vw.xmpp.router import Router
from vw.xmpp.session import Session

#: IQs forwarded and not answered yet that are remembered (the oldest are forgotten).
MAX_PENDING = 10_000


class ClientProxy:
    """Serves ``domain`` by forwarding to a resource of the bare JID ``account``."""

    def __init__(self, router: Router, domain: str, account: str,
                 resource: str = "focus") -> None:
        self.router = router
        self.domain = domain
        self.account = account
        self.resource = resource
        self._pending: OrderedDict[tuple[str, str], None] = OrderedDict()

    def receive(self, stanza: Element) -> None:
        resources = self.router.resources(self.account)
        if not resources:
            if stanza.name == "iq" and stanza.getAttribute("type") in ("get", "set"):
                self.router.bounce(stanza, StanzaError(
                    "service-unavailable", text=f"{self.domain} is not connected"))
            return
        target = next((s for s in resources if s.jid.resource == self.resource), resources[-1])
        if stanza.name == "iq" and stanza.getAttribute("type") in ("get", "set"):
            self._pending[(stanza.getAttribute("from", ""), stanza.getAttribute("id", ""))] = None
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
        stanza["to"] = target.jid.full()
        self.router.route(stanza)

    def answering(self, session: Session, stanza: Element) -> None:
        """Give the account's answer to a forwarded IQ the domain as its sender."""
        if (stanza.name != "iq" or stanza.getAttribute("type") not in ("result", "error")
                or session.bare != self.account):
            return
        key = (stanza.getAttribute("to", ""), stanza.getAttribute("id", ""))
        if key in self._pending:
            del self._pending[key]
            stanza["from"] = self.domain
