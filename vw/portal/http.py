"""HTTP details the pages and the API share: client addresses, form fields, headers."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.web.iweb import IRequest

#: Pages are never framed, load nothing from elsewhere and run no script.
SECURITY_HEADERS = {
    b"content-security-policy": b"default-src 'none'; style-src 'self'; img-src 'self' https:; "
                                b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY",
    b"cache-control": b"no-store",
}


def client_address(request: IRequest, trusted_proxies: Sequence[str]) -> str:
    """The client's address: the peer's, or the last X-Forwarded-For hop a trusted proxy
    added."""
    peer = request.getClientAddress()
    host = str(getattr(peer, "host", "unknown"))
    forwarded = request.getHeader(b"x-forwarded-for")
    if host in trusted_proxies and forwarded:
        return forwarded.decode("latin-1").split(",")[-1].strip()[:64] or host
    return host


def form(request: IRequest) -> dict[str, str]:
    """The request's fields (query and url-encoded body), first value of each, as text."""
    return {key.decode("utf-8", "replace"): values[0].decode("utf-8", "replace")
            for key, values in (request.args or {}).items() if values}


def add_headers(request: IRequest, headers: dict[bytes, bytes]) -> None:
    for name, value in headers.items():
        request.setHeader(name, value)
