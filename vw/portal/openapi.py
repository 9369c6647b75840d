"""The OpenAPI 3.1 document of /api/v1, served at /api/v1/openapi.json.

Kept as data beside the handlers in :mod:`vw.portal.api`; a test checks that both list the
same operations.
"""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": _ref("Problem")}}}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _operation(summary: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None,
               parameters: list[dict[str, Any]] | None = None,
               secured: bool = True) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        operation["requestBody"] = body
    if parameters:
        operation["parameters"] = parameters
    if not secured:
        operation["security"] = []
    elif "401" not in responses:
        responses["401"] = _problem("No valid access token.")
    return operation


def _path_parameter(name: str, kind: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


_PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                "maximum": 100, "default": 20}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"},
     "description": "next_cursor of the previous page."},
]
_MEETING_ID = _path_parameter("meeting_id", "string")
_USER_ID = _path_parameter("user_id", "integer")
_STRING = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}

_SCHEMAS: dict[str, Any] = {
    "Problem": {"type": "object", "description": "RFC 9457 problem details.",
                "required": ["type", "title", "status", "detail"],
                "properties": {"type": _STRING, "title": _STRING, "status": {"type": "integer"},
                               "detail": _STRING,
                               "errors": {"type": "object", "additionalProperties": _STRING,
                                          "description": "Per field, for validation "
                                                         "problems (422)."}}},
    "Credentials": {"type": "object", "required": ["email", "password"],
                    "properties": {"email": _STRING, "password": _STRING}},
    "RefreshToken": {"type": "object", "required": ["refresh_token"],
                     "properties": {"refresh_token": _STRING}},
    "TokenPair": {"type": "object",
                  "required": ["access_token", "token_type", "expires_in", "refresh_token",
                               "refresh_expires_in"],
                  "properties": {"access_token": _STRING, "token_type": {"const": "Bearer"},
                                 "expires_in": {"type": "integer"}, "refresh_token": _STRING,
                                 "refresh_expires_in": {"type": "integer"}}},
    "User": {"type": "object",
             "required": ["id", "email", "display_name", "role", "avatar_url", "created"],
             "properties": {"id": {"type": "integer"}, "email": _STRING,
                            "display_name": _STRING,
                            "role": {"enum": ["admin", "host", "member", "guest"]},
                            "avatar_url": _STRING, "created": _TIME}},
    "Profile": {"type": "object", "additionalProperties": False,
                "properties": {"display_name": _STRING, "avatar_url": _STRING}},
    "UserChange": {"type": "object", "additionalProperties": False,
                   "properties": {"display_name": _STRING,
                                  "role": {"enum": ["admin", "host", "member", "guest"]}}},
    "MeetingInput": {
        "type": "object", "additionalProperties": False,
        "description": "title and start are required to create; PATCH changes what it names.",
        "properties": {
            "title": _STRING, "start": _TIME,
            "duration": {"type": "integer", "minimum": 1, "maximum": 1440, "default": 60},
            "recurrence": {"type": "string", "description": "An RFC 5545 RRULE value."},
            "room": {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"},
            "password": _STRING, "lobby": {"type": "boolean"},
            "guests_allowed": {"type": "boolean"},
            "max_participants": {"type": "integer", "minimum": 0, "maximum": 1000},
            "cohosts": {"type": "array", "items": _STRING,
                        "description": "E-mail addresses of accounts."}}},
    "Meeting": {
        "type": "object",
        "properties": {
            "id": _STRING, "owner_id": {"type": "integer"}, "title": _STRING, "start": _TIME,
            "duration": {"type": "integer"}, "recurrence": _STRING,
            "ends": {"oneOf": [_TIME, {"type": "null"}]}, "room": _STRING, "password": _STRING,
            "lobby": {"type": "boolean"}, "guests_allowed": {"type": "boolean"},
            "max_participants": {"type": "integer"}, "cancelled": {"type": "boolean"},
            "cohosts": {"type": "array", "items": _STRING}, "invitation_url": _STRING,
            "created": _TIME}},
    "MeetingPage": {"type": "object", "required": ["items", "next_cursor"],
                    "properties": {"items": {"type": "array", "items": _ref("Meeting")},
                                   "next_cursor": {"type": ["string", "null"]}}},
    "UserPage": {"type": "object", "required": ["items", "next_cursor"],
                 "properties": {"items": {"type": "array", "items": _ref("User")},
                                "next_cursor": {"type": ["string", "null"]}}},
    "JoinRequest": {"type": "object",
                    "properties": {"password": {"type": "string",
                                                "description": "The meeting's, unless a host."}}},
    "Grant": {
        "type": "object",
        "required": ["room", "jwt", "meeting_url", "websocket_url", "turn", "moderator"],
        "properties": {
            "room": _STRING,
            "jwt": {"type": "string", "description": "For this room only (Prosody token auth "
                                                     "claims)."},
            "meeting_url": _STRING, "websocket_url": _STRING, "moderator": {"type": "boolean"},
            "turn": {"type": "object", "required": ["username", "password", "ttl", "uris"],
                     "properties": {"username": _STRING, "password": _STRING,
                                    "ttl": {"type": "integer"},
                                    "uris": {"type": "array", "items": _STRING}}}}},
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Video Window portal API", "version": "1"},
    "servers": [{"url": "/api/v1"}],
    "components": {"schemas": _SCHEMAS,
                   "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                  "bearerFormat": "JWT"}}},
    "security": [{"bearer": []}],
    "paths": {
        "/openapi.json": {"get": _operation("This document.", {
            "200": {"description": "OpenAPI 3.1."}}, secured=False)},
        "/auth/token": {"post": _operation("Sign in: tokens for an e-mail and password.", {
            "200": _json(_ref("TokenPair"), "Signed in."),
            "401": _problem("Wrong e-mail address or password."),
            "422": _problem("A field is missing."),
            "429": _problem("Too many failures for the account or address; see Retry-After.")},
            body=_body(_ref("Credentials")), secured=False)},
        "/auth/refresh": {"post": _operation(
            "New tokens for a refresh token, which is used up.", {
                "200": _json(_ref("TokenPair"), "New tokens."),
                "401": _problem("Unknown, used, revoked or expired; a used one presented "
                                "again revokes all of its account's refresh tokens.")},
            body=_body(_ref("RefreshToken")), secured=False)},
        "/auth/revoke": {"post": _operation("Revoke a refresh token (RFC 7009: 204 always).", {
            "204": {"description": "Revoked, or was not valid."}},
            body=_body(_ref("RefreshToken")), secured=False)},
        "/me": {
            "get": _operation("The signed-in user.", {"200": _json(_ref("User"), "You.")}),
            "patch": _operation("Change your name or avatar.", {
                "200": _json(_ref("User"), "Changed."),
                "422": _problem("A field is not acceptable.")}, body=_body(_ref("Profile")))},
        "/meetings": {
            "get": _operation("Meetings you host or co-host, a page at a time.", {
                "200": _json(_ref("MeetingPage"), "A page; upcoming soonest first, past "
                                                  "latest first."),
                "400": _problem("Bad when, limit or cursor.")},
                parameters=[{"name": "when", "in": "query",
                             "schema": {"enum": ["upcoming", "past"],
                                        "default": "upcoming"}}, *_PAGE]),
            "post": _operation("Schedule a meeting (hosts and admins).", {
                "201": _json(_ref("Meeting"), "Scheduled; Location names it."),
                "403": _problem("Your role cannot schedule."),
                "409": _problem("The room name is taken."),
                "422": _problem("A field is not acceptable.")},
                body=_body(_ref("MeetingInput")))},
        "/meetings/{meeting_id}": {
            "get": _operation("A meeting you host.", {
                "200": _json(_ref("Meeting"), "The meeting."),
                "404": _problem("No such meeting among yours.")}, parameters=[_MEETING_ID]),
            "patch": _operation("Change a meeting you own.", {
                "200": _json(_ref("Meeting"), "Changed."),
                "403": _problem("Co-hosts cannot change it."),
                "404": _problem("No such meeting among yours."),
                "409": _problem("Cancelled, or the room name is taken."),
                "422": _problem("A field is not acceptable.")},
                body=_body(_ref("MeetingInput")), parameters=[_MEETING_ID]),
            "delete": _operation("Cancel a meeting you own.", {
                "204": {"description": "Cancelled."},
                "403": _problem("Co-hosts cannot cancel it."),
                "404": _problem("No such meeting among yours.")}, parameters=[_MEETING_ID])},
        "/meetings/{meeting_id}/join": {"post": _operation(
            "Join: a JWT for the room, where to connect, and TURN credentials.", {
                "200": _json(_ref("Grant"), "Go ahead."),
                "403": _problem("Wrong meeting password, or not open to guest accounts."),
                "404": _problem("No such meeting."),
                "410": _problem("The meeting is cancelled.")},
            body=_body(_ref("JoinRequest"), required=False), parameters=[_MEETING_ID])},
        "/users": {"get": _operation("All accounts, by id (admins).", {
            "200": _json(_ref("UserPage"), "A page."),
            "400": _problem("Bad limit or cursor."),
            "403": _problem("Not an administrator.")}, parameters=_PAGE)},
        "/users/{user_id}": {
            "get": _operation("One account (admins).", {
                "200": _json(_ref("User"), "The account."),
                "403": _problem("Not an administrator."),
                "404": _problem("No such user.")}, parameters=[_USER_ID]),
            "patch": _operation("Change an account's name or role (admins).", {
                "200": _json(_ref("User"), "Changed."),
                "403": _problem("Not an administrator."),
                "404": _problem("No such user."),
                "409": _problem("Administrators cannot change their own role."),
                "422": _problem("A field is not acceptable.")},
                body=_body(_ref("UserChange")), parameters=[_USER_ID])},
    },
}
