"""A domain served by an ordinary client: stanzas to ``focus.DOMAIN`` reach the focus account.

As Prosody's client_proxy does for Jitsi, the focus logs in as ``focus@auth.DOMAIN`` and
anything addressed to its service domain is handed to its newest connected resource, with
``to`` rewritten to that full JID. With no resource online, IQs get service-unavailable.
"""

from __future__ import annotations

from twisted.words.xish.domish import Element

from vw.xmpp.errors import StanzaError
from vw.xmpp.router import Router


class ClientProxy:
    """Serves ``domain`` by forwarding to a resource of the bare JID ``account``."""

    def __init__(self, router: Router, domain: str, account: str) -> None:
        self.router = router
        self.domain = domain
        self.account = account

    def receive(self, stanza: Element) -> None:
        resources = self.router.resources(self.account)
        if not resources:
            if stanza.name == "iq" and stanza.getAttribute("type") in ("get", "set"):
                self.router.bounce(stanza, StanzaError(
                    "service-unavailable", text=f"{self.domain} is not connected"))
            return
        stanza["to"] = resources[-1].jid.full()
        self.router.route(stanza)
