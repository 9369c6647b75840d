"""RFC 9457 problem details: every API error is one, as application/problem+json."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from twisted.web.iweb import IRequest

#: The type of 422 answers, whose ``errors`` member maps fields to problems.
VALIDATION = "urn:vw:problem:validation"


class Problem(Exception):
    def __init__(self, status: int, detail: str, *, type: str = "about:blank",
                 headers: dict[bytes, bytes] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = type
        self.headers = headers or {}
        self.extra = extra

    def document(self) -> dict[str, Any]:
        return {"type": self.type, "title": HTTPStatus(self.status).phrase,
                "status": self.status, "detail": self.detail, **self.extra}

    def render(self, request: IRequest) -> bytes:
        request.setResponseCode(self.status)
        request.setHeader(b"content-type", b"application/problem+json")
        for name, value in self.headers.items():
            request.setHeader(name, value)
        return json.dumps(self.document()).encode()


def invalid(errors: dict[str, str]) -> Problem:
    return Problem(422, "Some fields are not acceptable.", type=VALIDATION, errors=errors)
