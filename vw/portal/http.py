"""HTTP details the pages and the API share: client addresses, form fields, headers."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from twisted.web.iweb import IRequest


def security_headers(meeting_base_url: str) -> dict[bytes, bytes]:
    """Pages are never framed, load nothing from elsewhere and run no script; their forms post
    to the portal, whose answer to joining redirects to the meeting page (form-action covers
    redirects too)."""
    parts = urlsplit(meeting_base_url)
    meeting = f" {parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    policy = ("default-src 'none'; style-src 'self'; img-src 'self' https:; "
              f"form-action 'self'{meeting}; frame-ancestors 'none'; base-uri 'none'")
    return {b"content-security-policy": policy.encode("ascii"),
            b"x-content-type-options": b"nosniff",
            b"referrer-policy": b"no-referrer",
            b"x-frame-options": b"DENY",
            b"cache-control": b"no-store"}


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
    """The request's fields (query and url-encoded body), first value of each, as text.
    NUL, which no database column keeps, becomes U+FFFD as undecodable bytes do."""
    return {_text(key): _text(values[0]) for key, values in (request.args or {}).items()
            if values}


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace").replace("\x00", "\ufffd")


def add_headers(request: IRequest, headers: dict[bytes, bytes]) -> None:
    for name, value in headers.items():
        request.setHeader(name, value)
