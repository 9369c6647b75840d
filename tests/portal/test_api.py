"""The REST API through StubTreq: tokens, meetings, joining, user admin, problem details."""

from __future__ import annotations

import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.portal.helpers import (
    APP_SECRET,
    PASSWORD,
    Client,
    Portal,
    Response,
    make_portal,
    response_json,
    verify_join,
)
from vw.portal.api import Api
from vw.portal.joining import Participant, turn_secret
from vw.portal.openapi import DOCUMENT
from vw.portal.problems import VALIDATION
from vw.portal.records import JoinRoom, User
from vw.portal.store import Store
from vw.turn.auth import rest_password
from vw.xmpp.token import TokenRejected, TokenVerifier

MEETING = {"title": "Standup", "start": "2027-02-01T10:00:00Z", "duration": 30}


def problem(response: Response, status: int) -> dict[str, Any]:
    """The response's problem details, checked for shape and status."""
    assert response.code == status, response.text
    assert response.header("content-type") == "application/problem+json"
    document = response_json(response)
    assert {"type", "title", "status", "detail"} <= document.keys()
    assert document["status"] == status and document["detail"]
    return document


def tokens(portal: Portal, user: User) -> dict[str, Any]:
    response = portal.client().api("POST", "/auth/token",
                                   json={"email": user.email, "password": PASSWORD})
    assert response.code == 200, response.text
    return response_json(response)


def create(client: Client, token: str, **fields: Any) -> dict[str, Any]:
    response = client.api("POST", "/meetings", token, json={**MEETING, **fields})
    assert response.code == 201, response.text
    body = response_json(response)
    assert response.header("location") == f"/api/v1/meetings/{body['id']}"
    return body


@pytest.fixture
def api(portal: Portal) -> Client:
    return portal.client()


def test_token_pair_for_email_and_password(portal: Portal, api: Client) -> None:
    user = portal.user("ann@example.org")
    response = api.api("POST", "/auth/token", json={"email": "ANN@example.org",
                                                     "password": PASSWORD})
    assert response.code == 200 and response.header("cache-control") == "no-store"
    pair = response_json(response)
    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == portal.config.portal.access_token_ttl
    assert pair["refresh_expires_in"] == portal.config.portal.refresh_token_ttl
    me = api.api("GET", "/me", pair["access_token"])
    assert response_json(me) == {"id": user.id, "email": user.email,
                                 "display_name": user.display_name, "role": "host",
                                 "avatar_url": "", "created": "2027-01-15T08:00:00Z"}


@pytest.mark.parametrize("body, status", [
    ({"email": "ann@example.org", "password": "wrong password"}, 401),
    ({"email": "nobody@example.org", "password": PASSWORD}, 401),
    ({"email": "ann@example.org"}, 422),
    ({"email": "ann@example.org", "password": 12345678}, 422),
])
def test_token_refusals_are_problems(portal: Portal, api: Client, body: dict[str, Any],
                                     status: int) -> None:
    portal.user("ann@example.org")
    problem(api.api("POST", "/auth/token", json=body), status)


def test_bodies_must_be_json_objects(portal: Portal, api: Client) -> None:
    problem(api.api("POST", "/auth/token", data={"email": "x"}), 415)
    json_type = {"content-type": "application/json"}
    problem(api.request("POST", "/api/v1/auth/token", data=b"{nope", headers=json_type), 400)
    problem(api.request("POST", "/api/v1/auth/token", data=b"[1]", headers=json_type), 400)
    problem(api.request("POST", "/api/v1/auth/token", data=b" " * 70000, headers=json_type),
            413)


def test_sign_in_through_the_api_is_throttled_too(store: Store, tmp_path: Path) -> None:
    portal = make_portal(store, tmp_path, max_failures_per_hour=3)
    user = portal.user("ann@example.org")
    api = portal.client()
    for _ in range(3):
        problem(api.api("POST", "/auth/token", json={"email": user.email, "password": "no"}),
                401)
    response = api.api("POST", "/auth/token", json={"email": user.email, "password": PASSWORD})
    problem(response, 429)
    assert response.header("retry-after") == "3600"


def test_requests_without_a_good_bearer_token_are_refused(portal: Portal, api: Client) -> None:
    user = portal.user("ann@example.org")
    missing = api.api("GET", "/me")
    problem(missing, 401)
    assert str(missing.header("www-authenticate")).startswith("Bearer")
    problem(api.api("GET", "/me", "not.a.token"), 401)
    forged = jwt.encode({"iss": "vw-portal", "aud": "vw-portal-api", "sub": str(user.id),
                         "iat": 0, "exp": 2**40}, "another secret of 32 bytes or more!",
                        algorithm="HS256")
    problem(api.api("GET", "/me", forged), 401)
    # A join token is not an API token, although both are JWTs.
    grant_like = jwt.encode({"sub": str(user.id), "iat": 0, "exp": 2**40}, APP_SECRET,
                            algorithm="HS256")
    problem(api.api("GET", "/me", grant_like), 401)


def test_access_tokens_expire(portal: Portal, api: Client) -> None:
    access = tokens(portal, portal.user("ann@example.org"))["access_token"]
    portal.clock.advance(portal.config.portal.access_token_ttl - 1)
    assert api.api("GET", "/me", access).code == 200
    portal.clock.advance(1)
    expired = api.api("GET", "/me", access)
    assert "expired" in problem(expired, 401)["detail"]
    assert 'error="invalid_token"' in str(expired.header("www-authenticate"))


def test_refresh_rotates_and_a_replayed_token_revokes_the_family(portal: Portal,
                                                                 api: Client) -> None:
    user = portal.user("ann@example.org")
    first = tokens(portal, user)
    portal.clock.advance(60)
    second = response_json(api.api("POST", "/auth/refresh",
                                   json={"refresh_token": first["refresh_token"]}))
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert api.api("GET", "/me", second["access_token"]).code == 200
    # The first refresh token again: someone copied it. Both are dead now.
    problem(api.api("POST", "/auth/refresh", json={"refresh_token": first["refresh_token"]}),
            401)
    problem(api.api("POST", "/auth/refresh", json={"refresh_token": second["refresh_token"]}),
            401)
    assert "token.reused" in [event.event for event in portal.store.audit_events(5)]


def test_revoked_and_expired_refresh_tokens_are_refused(portal: Portal, api: Client) -> None:
    user = portal.user("ann@example.org")
    revoked = tokens(portal, user)["refresh_token"]
    assert api.api("POST", "/auth/revoke", json={"refresh_token": revoked}).code == 204
    assert api.api("POST", "/auth/revoke", json={"refresh_token": "unknown"}).code == 204
    problem(api.api("POST", "/auth/refresh", json={"refresh_token": revoked}), 401)
    old = tokens(portal, user)["refresh_token"]
    portal.clock.advance(portal.config.portal.refresh_token_ttl)
    problem(api.api("POST", "/auth/refresh", json={"refresh_token": old}), 401)


def test_change_your_profile(portal: Portal, api: Client) -> None:
    access = tokens(portal, portal.user("ann@example.org"))["access_token"]
    changed = api.api("PATCH", "/me", access, json={"display_name": "Ann",
                                                    "avatar_url": "https://img.example/a"})
    assert response_json(changed)["display_name"] == "Ann"
    wrong = api.api("PATCH", "/me", access, json={"avatar_url": "javascript:x", "role": "admin"})
    document = problem(wrong, 422)
    assert document["type"] == VALIDATION
    assert set(document["errors"]) == {"avatar_url", "role"}


def test_meetings_create_read_update_cancel(portal: Portal, api: Client) -> None:
    ann, bob = portal.user("ann@example.org"), portal.user("bob@example.org", role="member")
    access = tokens(portal, ann)["access_token"]
    made = create(api, access, title="Plan <b>", room="plan", cohosts=[bob.email],
                  recurrence="FREQ=WEEKLY;COUNT=2")
    assert made["owner_id"] == ann.id and made["cohosts"] == [bob.email]
    assert made["ends"] == "2027-02-08T10:30:00Z"
    assert made["invitation_url"] == f"https://portal.test/m/{made['id']}"
    assert response_json(api.api("GET", f"/meetings/{made['id']}", access)) == made
    changed = response_json(api.api("PATCH", f"/meetings/{made['id']}", access,
                                    json={"title": "Plan", "cohosts": []}))
    assert (changed["title"], changed["room"], changed["cohosts"]) == ("Plan", "plan", [])
    assert api.api("DELETE", f"/meetings/{made['id']}", access).code == 204
    assert response_json(api.api("GET", f"/meetings/{made['id']}", access))["cancelled"]
    problem(api.api("PATCH", f"/meetings/{made['id']}", access, json={"title": "x"}), 409)
    past = response_json(api.api("GET", "/meetings?when=past", access))
    assert [m["id"] for m in past["items"]] == [made["id"]]


def test_listings_show_changes_made_by_another_portal_process(portal: Portal,
                                                             api: Client) -> None:
    ann, bob = portal.user("ann@example.org"), portal.user("bob@example.org")
    access = tokens(portal, ann)["access_token"]
    made = create(api, access, title="Standup")
    listed = response_json(api.api("GET", "/meetings", access))["items"]
    assert listed == [made]
    stored = portal.store.meeting(made["id"])
    assert stored is not None
    # Written straight to the database, as another worker would.
    portal.store.update_meeting(made["id"], replace(stored.plan(), title="Retro",
                                                    cohosts=(bob.email,)))
    listed = response_json(api.api("GET", "/meetings", access))["items"]
    assert [(m["title"], m["cohosts"]) for m in listed] == [("Retro", [bob.email])]
    assert response_json(api.api("GET", f"/meetings/{made['id']}", access))["title"] == "Retro"
    portal.store.cancel_meeting(made["id"])
    assert response_json(api.api("GET", "/meetings", access))["items"] == []


def test_meeting_refusals(portal: Portal, api: Client) -> None:
    access = tokens(portal, portal.user("ann@example.org"))["access_token"]
    create(api, access, room="taken")
    problem(api.api("POST", "/meetings", access, json={**MEETING, "room": "taken"}), 409)
    document = problem(api.api("POST", "/meetings", access,
                               json={"title": "x", "start": "soon", "room": "No!"}), 422)
    assert document["type"] == VALIDATION and set(document["errors"]) == {"start", "room"}
    unknown = problem(api.api("POST", "/meetings", access,
                              json={**MEETING, "cohosts": ["ghost@example.org"]}), 422)
    assert "ghost@example.org" in unknown["errors"]["cohosts"]
    member = tokens(portal, portal.user("mia@example.org", role="member"))["access_token"]
    problem(api.api("POST", "/meetings", member, json=MEETING), 403)


def test_meetings_page_with_cursors(portal: Portal, api: Client) -> None:
    access = tokens(portal, portal.user("ann@example.org"))["access_token"]
    made = [create(api, access, title=f"M{i}", start=f"2027-02-0{1 + i % 3}T10:00:00Z")
            for i in range(5)]
    seen, path = [], "/meetings?limit=2"
    while True:
        page = response_json(api.api("GET", path, access))
        assert len(page["items"]) <= 2
        seen += [meeting["id"] for meeting in page["items"]]
        if page["next_cursor"] is None:
            break
        path = f"/meetings?limit=2&cursor={page['next_cursor']}"
    expected = [m["id"] for m in sorted(made, key=lambda m: (m["start"], m["id"]))]
    assert seen == expected
    for query in ("limit=0", "limit=101", "limit=x", "cursor=abc", "when=later",
                  "cursor=WyJ4IiwieSJd"):
        problem(api.api("GET", f"/meetings?{query}", access), 400)


def test_other_peoples_meetings_do_not_exist_for_them(portal: Portal, api: Client) -> None:
    ann, bob, cid = (portal.user("ann@example.org"), portal.user("bob@example.org"),
                     portal.user("cid@example.org", role="member"))
    made = create(api, tokens(portal, ann)["access_token"], cohosts=[cid.email])
    intruder = tokens(portal, bob)["access_token"]
    for method, body in (("GET", None), ("PATCH", {"title": "mine"}), ("DELETE", None)):
        problem(api.api(method, f"/meetings/{made['id']}", intruder, json=body), 404)
    assert response_json(api.api("GET", "/meetings", intruder))["items"] == []
    cohost = tokens(portal, cid)["access_token"]
    assert api.api("GET", f"/meetings/{made['id']}", cohost).code == 200
    problem(api.api("PATCH", f"/meetings/{made['id']}", cohost, json={"title": "x"}), 403)
    problem(api.api("DELETE", f"/meetings/{made['id']}", cohost), 403)
    stored = portal.store.meeting(made["id"])
    assert stored is not None and stored.title == "Standup" and not stored.cancelled


def test_join_grant_a_token_for_that_room_only_and_turn_credentials(portal: Portal,
                                                                    api: Client) -> None:
    ann = portal.user("ann@example.org", name="Ann")
    mia = portal.user("mia@example.org", role="member", name="Mia")
    made = create(api, tokens(portal, ann)["access_token"], room="standup", lobby=True,
                  max_participants=12)
    grant = response_json(api.api("POST", f"/meetings/{made['id']}/join",
                                  tokens(portal, mia)["access_token"]))
    assert grant["room"] == "standup" and not grant["moderator"]
    assert grant["meeting_url"] == f"https://meet.example.org/standup?jwt={grant['jwt']}"
    assert grant["websocket_url"] == "ws://localhost:5280/xmpp-websocket?room=standup"
    claims = jwt.decode(grant["jwt"], APP_SECRET, algorithms=["HS256"], audience="vw-tests",
                        options={"verify_exp": False, "verify_nbf": False,
                                 "verify_iat": False})
    now = int(portal.clock.seconds())
    assert claims["iss"] == "vw-tests" and claims["sub"] == "meet.example.org"
    assert claims["exp"] == now + portal.config.portal.join_token_ttl and claims["nbf"] <= now
    assert claims["context"]["user"] == {"id": str(mia.id), "name": "Mia",
                                         "email": mia.email, "avatar": "", "moderator": False}
    assert claims["context"]["room"] == {"lobby": True, "max_participants": 12}
    identity = verify_join(portal, grant["jwt"])
    assert (identity.lobby, identity.max_participants) == (True, 12)
    verifier = TokenVerifier(portal.config.xmpp.token, portal.clock.seconds)
    assert verifier.room_allowed(identity, "standup")
    assert not verifier.room_allowed(identity, "another-room")
    turn = grant["turn"]
    ttl = portal.config.xmpp.turn.credential_ttl
    assert turn["username"] == f"{now + ttl}:{mia.id}" and turn["ttl"] == ttl
    assert turn["password"] == rest_password(turn_secret(portal.config), turn["username"])
    assert turn["uris"] == ["turn:meet.example.org:3478?transport=udp",
                            "turn:meet.example.org:3478?transport=tcp",
                            "turns:meet.example.org:5349?transport=tcp"]
    portal.clock.advance(portal.config.portal.join_token_ttl)
    with pytest.raises(TokenRejected, match="expired"):
        verify_join(portal, grant["jwt"])


def test_join_rules(portal: Portal, api: Client) -> None:
    ann = portal.user("ann@example.org")
    host = tokens(portal, ann)["access_token"]
    member = tokens(portal, portal.user("mia@example.org", role="member"))["access_token"]
    guest = tokens(portal, portal.user("gia@example.org", role="guest"))["access_token"]
    locked = create(api, host, password="letmein", guests_allowed=False)
    path = f"/meetings/{locked['id']}/join"
    assert response_json(api.api("POST", path, host))["moderator"]
    problem(api.api("POST", path, member), 403)
    problem(api.api("POST", path, member, json={"password": "guess"}), 403)
    assert api.api("POST", path, member, json={"password": "letmein"}).code == 200
    problem(api.api("POST", path, guest, json={"password": "letmein"}), 403)
    problem(api.api("POST", "/meetings/no-such-meeting/join", member), 404)
    api.api("DELETE", f"/meetings/{locked['id']}", host)
    problem(api.api("POST", path, host), 410)


def test_a_join_is_audited_with_its_grant_and_a_refusal_is_not(portal: Portal,
                                                               api: Client) -> None:
    host = tokens(portal, portal.user("ann@example.org"))["access_token"]
    mia = portal.user("mia@example.org", role="member")
    member = tokens(portal, mia)["access_token"]
    made = create(api, host, password="letmein")
    path = f"/meetings/{made['id']}/join"
    problem(api.api("POST", path, member), 403)
    problem(api.api("POST", path, member, json={"password": 1}), 422)
    problem(api.api("POST", path, member, json=[]), 400)
    assert api.api("POST", path, member, json={"password": "letmein"}).code == 200
    joins = [(event.user_id, event.detail) for event in portal.store.audit_events(50)
             if event.event == "meeting.joined"]
    assert joins == [(mia.id, f"{made['id']} as {mia.id}")]


def test_user_administration_is_for_admins(portal: Portal, api: Client) -> None:
    root = portal.user("root@example.org", role="admin")
    ann = portal.user("ann@example.org")
    for i in range(3):
        portal.user(f"user{i}@example.org", role="member")
    problem(api.api("GET", "/users", tokens(portal, ann)["access_token"]), 403)
    problem(api.api("PATCH", f"/users/{ann.id}", tokens(portal, ann)["access_token"],
                    json={"role": "admin"}), 403)
    admin = tokens(portal, root)["access_token"]
    first = response_json(api.api("GET", "/users?limit=3", admin))
    rest = response_json(api.api("GET", f"/users?cursor={first['next_cursor']}", admin))
    assert [u["email"] for u in first["items"] + rest["items"]] == [
        "root@example.org", "ann@example.org", "user0@example.org", "user1@example.org",
        "user2@example.org"]
    assert rest["next_cursor"] is None
    changed = api.api("PATCH", f"/users/{ann.id}", admin, json={"role": "member"})
    assert response_json(changed)["role"] == "member"
    assert response_json(api.api("GET", f"/users/{ann.id}", admin))["role"] == "member"
    problem(api.api("PATCH", f"/users/{root.id}", admin, json={"role": "host"}), 409)
    assert set(problem(api.api("PATCH", f"/users/{ann.id}", admin,
                               json={"role": "king", "email": "x"}), 422)["errors"]) == {
        "role", "email"}
    problem(api.api("GET", "/users/999", admin), 404)
    # The role is read from the store on each request: the demotion counts at once.
    problem(api.api("POST", "/meetings", tokens(portal, ann)["access_token"], json=MEETING),
            403)


def test_unknown_paths_and_methods_are_problems(portal: Portal, api: Client) -> None:
    problem(api.api("GET", "/nothing-here"), 404)
    problem(api.api("PUT", "/me"), 405)


def test_the_openapi_document_lists_exactly_the_routes(api: Client) -> None:
    response = api.api("GET", "/openapi.json")
    assert response.code == 200 and response_json(response) == DOCUMENT
    routes = set()
    for rule in Api.app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        routes |= {(path, method.lower()) for method in rule.methods or ()
                   if method not in ("HEAD", "OPTIONS")}
    documented = {(path, method) for path, item in DOCUMENT["paths"].items()
                  for method in item}
    assert documented == routes
    schemas = DOCUMENT["components"]["schemas"]
    for name in re.findall(r'"#/components/schemas/(\w+)"', response.text):
        assert name in schemas
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            variables = set(re.findall(r"{(\w+)}", path))
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert variables == declared, (path, method)


def test_ids_and_numbers_no_record_has_are_not_found(portal: Portal, api: Client) -> None:
    admin = tokens(portal, portal.user("root@example.org", role="admin"))["access_token"]
    for path in (f"/users/{2**31}", f"/users/{10**30}", "/meetings/" + "x" * 40,
                 "/meetings/%00"):
        problem(api.api("GET", path, admin), 404)
    problem(api.api("PATCH", f"/users/{2**63}", admin, json={"display_name": "X"}), 404)
    problem(api.api("POST", "/meetings/%00/join", admin), 404)
    for query in ("limit=%C2%B2", "limit=" + "9" * 5000, "cursor=" + "9" * 100):
        problem(api.api("GET", f"/users?{query}", admin), 400)


def test_text_with_nul_characters_is_refused(portal: Portal, api: Client) -> None:
    """No database column holds NUL (PostgreSQL refuses it): it is the client's mistake."""
    user = portal.user("ann@example.org")
    access = tokens(portal, user)["access_token"]
    problem(api.api("POST", "/auth/token", json={"email": "ann\x00@example.org",
                                                 "password": PASSWORD}), 400)
    problem(api.api("POST", "/meetings", access, json={**MEETING, "password": "a\x00b"}), 400)
    problem(api.api("POST", "/meetings", access, json={**MEETING, "cohosts": ["\x00@a.org"]}),
            400)
    problem(api.api("GET", "/meetings?when=past&cursor=%00", access), 400)


def test_a_token_whose_account_is_gone_is_refused_before_anything_else(portal: Portal,
                                                                      api: Client) -> None:
    ann = tokens(portal, portal.user("ann@example.org"))["access_token"]
    made = create(api, ann)
    gone = portal.site.api.access.issue(4242, portal.clock.seconds())
    for method, path, body in [("GET", "/me", None), ("GET", "/meetings", None),
                               ("GET", "/meetings?when=never", None),
                               ("GET", "/meetings?cursor=bad", None),
                               ("POST", f"/meetings/{made['id']}/join", None),
                               ("POST", f"/meetings/{made['id']}/join", [])]:
        refused = api.api(method, path, gone, json=body)
        assert problem(refused, 401)["detail"] == "The access token's account is gone."
        assert 'error="invalid_token"' in refused.header("www-authenticate")
    problem(api.api("GET", "/meetings?when=never", ann), 400)
    problem(api.api("GET", "/meetings?cursor=bad", ann), 400)


def test_paths_the_api_branch_does_not_take_go_the_routes_way(portal: Portal,
                                                              api: Client) -> None:
    token = tokens(portal, portal.user("ann@example.org"))["access_token"]
    assert response_json(api.api("GET", "/me", token))["email"] == "ann@example.org"
    moved = api.api("GET", "", token)
    assert moved.code == 308 and moved.header("location").endswith("/api/v1/")
    for path in ("/", "//me", "/me/"):
        assert api.api("GET", path, token).code == 404


def test_a_grants_document_has_every_field_of_the_grant(portal: Portal) -> None:
    grant = portal.site.api.joins.grant(JoinRoom("standup"), Participant(id="7", name="Ann"), True,
                                        portal.clock.seconds())
    assert grant.document() == asdict(grant)
