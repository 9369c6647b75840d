"""The HTML pages through StubTreq: sessions, CSRF, escaping, redirects, joining, admin."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.portal.helpers import PASSWORD, Client, Portal, make_portal, verify_join
from vw.portal.records import Meeting, User
from vw.portal.sessions import COOKIE
from vw.portal.store import Store
from vw.portal.web import Pages

SESSION = COOKIE.decode()
SCRIPT = "<script>alert(1)</script>"


def schedule(portal: Portal, browser: Client, **fields: str) -> Meeting:
    response = browser.submit("/meetings/new", {
        "title": "Standup", "start": "2027-02-01T10:00", "duration": "30",
        "guests_allowed": "on", **fields}, form_at="/meetings/new")
    assert response.code == 303, response.text
    meeting = portal.store.meeting(str(response.header("location")).rsplit("/", 1)[1])
    assert meeting is not None
    return meeting


def post_rules() -> list[str]:
    """Every POST path of the pages, with sample values in its variables."""
    paths = []
    for rule in Pages.app.url_map.iter_rules():
        if "POST" in (rule.methods or ()):
            paths.append(re.sub(r"<int:\w+>", "1", re.sub(r"<\w+>", "some-id", rule.rule)))
    return sorted(paths)


def test_every_form_post_needs_the_session_csrf_token(portal: Portal) -> None:
    admin = portal.user("root@example.org", role="admin")
    browser = portal.signed_in(admin)
    stranger = portal.client()
    foreign = stranger.csrf("/signin")
    paths = post_rules()
    assert {"/signin", "/signout", "/signup", "/meetings/new", "/m/some-id",
            "/admin/users/1/role"} <= set(paths)
    for path in paths:
        assert browser.request("POST", path, data={"title": "x"}).code == 403, path
        assert browser.request("POST", path, data={"csrf": foreign}).code == 403, path
        assert stranger.request("POST", path, data={"csrf": foreign + "x"}).code == 403, path
    assert [e.event for e in portal.store.audit_events(10)] == ["signin"]


def test_the_session_cookie_is_host_only_secure_and_http_only(portal: Portal) -> None:
    response = portal.client().get("/signin")
    (cookie,) = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION}=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"path", "secure", "httponly", "samesite", "max-age"} == attributes
    assert "Path=/;" in cookie and "SameSite=lax" in cookie and "domain" not in cookie.lower()


def test_sign_in_replaces_the_session(portal: Portal) -> None:
    user = portal.user("ann@example.org")
    browser = portal.client()
    before = browser.get("/signin").cookie(SESSION)
    response = browser.submit("/signin", {"email": user.email, "password": PASSWORD})
    after = response.cookie(SESSION)
    assert response.code == 303 and before and after and before != after
    assert_signed_in_as(browser, user)
    # The id from before sign-in (say, planted by someone) is worth nothing now.
    planted = portal.client().get("/meetings", headers={"cookie": f"{SESSION}={before}"})
    assert planted.code == 303 and planted.header("location") == "/signin?next=/meetings"


def test_sign_out_ends_the_session(portal: Portal) -> None:
    browser = portal.signed_in(portal.user("ann@example.org"))
    cookie = browser.get("/meetings").headers.get("set-cookie")
    assert cookie is None
    response = browser.submit("/signout", {}, form_at="/meetings")
    assert response.code == 303 and response.cookie(SESSION) == ""
    assert browser.get("/meetings").code == 303


@pytest.mark.parametrize("target, expected", [
    ("/profile", "/profile"),
    ("//evil.example/", "/meetings"),
    ("/\\evil.example", "/meetings"),
    ("https://evil.example/", "/meetings"),
])
def test_sign_in_redirects_only_within_the_site(portal: Portal, target: str,
                                                expected: str) -> None:
    user = portal.user("ann@example.org")
    browser = portal.client()
    page = browser.get("/signin?next=" + target.replace("/", "%2F"))
    assert f'name="next" value="{expected}"' in page.text
    response = browser.submit("/signin", {"email": user.email, "password": PASSWORD,
                                          "next": target})
    assert response.header("location") == expected


def test_101_wrong_passwords_lock_the_account(portal: Portal) -> None:
    user = portal.user("ann@example.org")
    browser = portal.client()
    token = browser.csrf("/signin")
    for attempt in range(100):
        response = browser.request("POST", "/signin", data={
            "csrf": token, "email": user.email, "password": f"wrong {attempt}"})
        assert response.code == 401
        assert "Wrong e-mail address or password." in response.text
    locked = browser.request("POST", "/signin", data={
        "csrf": token, "email": user.email, "password": PASSWORD})
    assert locked.code == 429 and locked.header("retry-after") == "3600"
    assert "Too many failed attempts" in locked.text
    assert locked.cookie(SESSION) is None


def test_a_title_with_markup_is_shown_as_text(portal: Portal) -> None:
    browser = portal.signed_in(portal.user("ann@example.org"))
    meeting = schedule(portal, browser, title=SCRIPT)
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for page in (browser.get(f"/meetings/{meeting.id}"), browser.get("/meetings"),
                 portal.client().get(f"/m/{meeting.id}")):
        assert page.code == 200
        assert escaped in page.text and SCRIPT not in page.text


def test_pages_forbid_scripts_and_framing(portal: Portal) -> None:
    page = portal.client().get("/signin")
    assert page.header("content-type") == "text/html; charset=utf-8"
    policy = str(page.header("content-security-policy"))
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src" not in policy
    # Forms post here; joining redirects to the meeting page, which form-action must allow.
    assert "form-action 'self' https://meet.example.org;" in policy
    assert page.header("x-content-type-options") == "nosniff"
    assert page.header("referrer-policy") == "no-referrer"


def test_pages_for_members_send_strangers_to_sign_in(portal: Portal) -> None:
    for path in ("/meetings", "/profile", "/meetings/new", "/admin/users", "/admin/meetings"):
        response = portal.client().get(path)
        assert response.code == 303
        assert response.header("location") == f"/signin?next={path}"


def test_schedule_edit_and_cancel(portal: Portal) -> None:
    ann = portal.user("ann@example.org")
    bob = portal.user("bob@example.org", role="member")
    browser = portal.signed_in(ann)
    meeting = schedule(portal, browser, title="Planning", room="planning", cohosts=bob.email,
                       recurrence="FREQ=WEEKLY;COUNT=4")
    assert (meeting.room, meeting.recurrence) == ("planning", "FREQ=WEEKLY;COUNT=4")
    assert [person.id for person in meeting.cohosts] == [bob.id]
    page = browser.get(f"/meetings/{meeting.id}")
    assert f"{portal.config.portal.public_url}/m/{meeting.id}" in page.text
    edit = browser.submit(f"/meetings/{meeting.id}/edit", {
        "title": "Planning 2", "start": "2027-02-02T11:00", "duration": "45", "room": "planning"})
    assert edit.code == 303
    changed = portal.store.meeting(meeting.id)
    assert changed is not None and (changed.title, changed.duration, changed.cohosts) == (
        "Planning 2", 45, ())
    cancel = browser.submit(f"/meetings/{meeting.id}/cancel", {},
                            form_at=f"/meetings/{meeting.id}")
    assert cancel.code == 303 and portal.store.meeting(meeting.id).cancelled  # type: ignore[union-attr]


def test_a_wrong_form_comes_back_with_its_problems(portal: Portal) -> None:
    browser = portal.signed_in(portal.user("ann@example.org"))
    schedule(portal, browser, room="taken")
    wrong = browser.submit("/meetings/new", {"title": "Bad", "start": "2027-02-01T10:00",
                                             "duration": "0", "room": "Bad Room"})
    assert wrong.code == 422
    assert 'id="duration-error"' in wrong.text and 'id="room-error"' in wrong.text
    assert 'value="Bad"' in wrong.text
    taken = browser.submit("/meetings/new", {"title": "Again", "start": "2027-02-01T10:00",
                                             "duration": "30", "room": "taken"})
    assert taken.code == 409 and "Another meeting has this room name." in taken.text


def test_members_cannot_schedule(portal: Portal) -> None:
    browser = portal.signed_in(portal.user("mia@example.org", role="member"))
    assert browser.get("/meetings/new").code == 403


def test_other_peoples_meetings_do_not_exist_for_them(portal: Portal) -> None:
    ann, bob, cid = (portal.user("ann@example.org"), portal.user("bob@example.org"),
                     portal.user("cid@example.org"))
    meeting = schedule(portal, portal.signed_in(ann), cohosts=cid.email)
    intruder = portal.signed_in(bob)
    assert intruder.get(f"/meetings/{meeting.id}").code == 404
    assert intruder.get(f"/meetings/{meeting.id}/edit").code == 404
    token = intruder.csrf("/meetings")
    for action in ("edit", "cancel"):
        response = intruder.request("POST", f"/meetings/{meeting.id}/{action}",
                                    data={"csrf": token, "title": "Mine now"})
        assert response.code == 404
    cohost = portal.signed_in(cid)
    assert cohost.get(f"/meetings/{meeting.id}").code == 200
    assert cohost.get(f"/meetings/{meeting.id}/edit").code == 403
    assert portal.store.meeting(meeting.id) == meeting


def join_target(response_location: str | None) -> tuple[str, str]:
    """The room and JWT of a meeting page address."""
    assert response_location is not None
    url = urlsplit(response_location)
    return url.path.lstrip("/"), parse_qs(url.query)["jwt"][0]


def test_a_guest_joins_with_a_name_and_a_token_for_that_room_only(portal: Portal) -> None:
    meeting = schedule(portal, portal.signed_in(portal.user("ann@example.org")))
    guest = portal.client()
    invitation = guest.get(f"/m/{meeting.id}")
    assert 'name="name"' in invitation.text
    response = guest.submit(f"/m/{meeting.id}", {"name": "Gus <Guest>"})
    assert response.code == 303
    assert str(response.header("location")).startswith(
        f"{portal.config.portal.meeting_base_url}/{meeting.room}?jwt=")
    room, token = join_target(response.header("location"))
    identity = verify_join(portal, token)
    assert room == identity.room == meeting.room
    assert identity.user["name"] == "Gus <Guest>" and identity.user["id"].startswith("guest-")
    assert not identity.moderator


def test_hosts_join_as_moderators(portal: Portal) -> None:
    ann = portal.user("ann@example.org", name="Ann")
    browser = portal.signed_in(ann)
    meeting = schedule(portal, browser, password="letmein")
    response = browser.submit(f"/m/{meeting.id}", {}, form_at=f"/meetings/{meeting.id}")
    identity = verify_join(portal, join_target(response.header("location"))[1])
    assert identity.moderator
    assert identity.user == {"id": str(ann.id), "name": "Ann", "email": ann.email,
                             "avatar": ""}


def test_the_meeting_password_is_asked_of_everyone_else(portal: Portal) -> None:
    meeting = schedule(portal, portal.signed_in(portal.user("ann@example.org")),
                       password="letmein")
    member = portal.signed_in(portal.user("mia@example.org", role="member"))
    wrong = member.submit(f"/m/{meeting.id}", {"password": "guess"})
    assert wrong.code == 403 and "not the meeting&#39;s password" in wrong.text
    right = member.submit(f"/m/{meeting.id}", {"password": "letmein"})
    assert right.code == 303
    assert not verify_join(portal, join_target(right.header("location"))[1]).moderator


def test_guests_are_sent_to_sign_in_when_not_welcome(portal: Portal) -> None:
    browser = portal.signed_in(portal.user("ann@example.org"))
    meeting = schedule(portal, browser)
    portal.store.update_meeting(meeting.id, replace(meeting.plan(), guests_allowed=False))
    guest = portal.client()
    assert 'name="name"' not in guest.get(f"/m/{meeting.id}").text
    response = guest.submit(f"/m/{meeting.id}", {"name": "Gus"}, form_at="/signin")
    assert response.code == 303 and str(response.header("location")).startswith("/signin")
    guest_account = portal.signed_in(portal.user("gia@example.org", role="guest"))
    assert guest_account.submit(f"/m/{meeting.id}", {}).code == 403


def test_cancelled_meetings_cannot_be_joined(portal: Portal) -> None:
    meeting = schedule(portal, portal.signed_in(portal.user("ann@example.org")))
    portal.store.cancel_meeting(meeting.id)
    guest = portal.client()
    page = guest.get(f"/m/{meeting.id}")
    assert page.code == 410 and "cancelled" in page.text
    token = guest.csrf("/signin")
    response = guest.request("POST", f"/m/{meeting.id}", data={"csrf": token, "name": "G"})
    assert response.code == 410


def test_the_calendar_file(portal: Portal) -> None:
    meeting = schedule(portal, portal.signed_in(portal.user("ann@example.org")))
    response = portal.client().get(f"/m/{meeting.id}/meeting.ics")
    assert response.code == 200
    assert response.header("content-type") == "text/calendar; charset=utf-8"
    assert b"DTSTART:20270201T100000Z\r\n" in response.body
    assert portal.client().get("/m/unknown/meeting.ics").code == 404


def test_profile_changes_and_refuses_script_avatars(portal: Portal) -> None:
    user = portal.user("ann@example.org")
    browser = portal.signed_in(user)
    bad = browser.submit("/profile", {"display_name": "Ann", "avatar_url": "javascript:x"})
    assert bad.code == 422 and 'id="avatar_url-error"' in bad.text
    good = browser.submit("/profile", {"display_name": "Ann B",
                                       "avatar_url": "https://img.example/a.png"})
    assert good.code == 303
    changed = portal.store.user(user.id)
    assert changed is not None
    assert (changed.display_name, changed.avatar_url) == ("Ann B", "https://img.example/a.png")


def test_password_reset_through_the_pages(portal: Portal) -> None:
    user = portal.user("ann@example.org")
    elsewhere = portal.signed_in(user)
    browser = portal.client()
    sent = browser.submit("/password/forgot", {"email": user.email})
    assert sent.code == 200 and "Check your mail" in sent.text
    found = re.search(r"https://portal\.test(/password/reset\?token=\S+)",
                      portal.outbox.sent[0].body)
    assert found is not None
    path = found.group(1)
    token = parse_qs(urlsplit(path).query)["token"][0]
    done = browser.submit("/password/reset", {"token": token, "password": "new password!"},
                          form_at=path)
    assert done.code == 200 and "Password changed" in done.text
    assert browser.get(path).code == 400
    assert elsewhere.get("/meetings").code == 303
    assert portal.signed_in(user, "new password!").get("/meetings").code == 200


def test_admins_manage_roles_and_invite(store: Store, tmp_path: Path) -> None:
    portal = make_portal(store, tmp_path, signup="invite")
    admin = portal.user("root@example.org", role="admin")
    ann = portal.user("ann@example.org")
    assert portal.signed_in(ann).get("/admin/users").code == 403
    browser = portal.signed_in(admin)
    page = browser.get("/admin/users")
    assert page.code == 200 and "ann@example.org" in page.text
    assert browser.submit(f"/admin/users/{ann.id}/role", {"role": "member"},
                          form_at="/admin/users").code == 303
    assert portal.store.user(ann.id).role == "member"  # type: ignore[union-attr]
    assert browser.submit(f"/admin/users/{admin.id}/role", {"role": "member"},
                          form_at="/admin/users").code == 409
    assert browser.submit("/admin/users/999/role", {"role": "host"},
                          form_at="/admin/users").code == 404
    invited = browser.submit("/admin/invitations", {"role": "host"}, form_at="/admin/users")
    link = re.search(r'href="(https://portal\.test/signup\?invite=[^"]+)"', invited.text)
    assert link is not None
    newcomer = portal.client()
    path = link.group(1)[len("https://portal.test"):]
    assert 'name="invite"' in newcomer.get(path).text
    code = parse_qs(urlsplit(path).query)["invite"][0]
    joined = newcomer.submit("/signup", {"email": "new@example.org", "display_name": "New",
                                         "password": PASSWORD, "invite": code}, form_at=path)
    assert joined.code == 303
    user = portal.store.user_by_email("new@example.org")
    assert user is not None and user.role == "host"
    assert_signed_in_as(newcomer, user)
    refused = portal.client().submit("/signup", {"email": "x@example.org", "display_name": "X",
                                                 "password": PASSWORD, "invite": code})
    assert refused.code == 403


def test_admins_see_every_owners_meetings(portal: Portal,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    admin = portal.user("root@example.org", role="admin")
    ann = portal.user("ann@example.org")
    bob = portal.user("bob@example.org")
    anns = schedule(portal, portal.signed_in(ann), title="Ann's planning", room="ann-room")
    bob_browser = portal.signed_in(bob)
    bobs = schedule(portal, bob_browser, title="Bob's review", start="2027-01-20T09:00")
    assert bob_browser.submit(f"/meetings/{bobs.id}/cancel", {},
                              form_at=f"/meetings/{bobs.id}").code == 303
    assert bob_browser.get("/admin/meetings").code == 403
    assert portal.client().get("/admin/meetings").code == 303
    assert 'href="/admin/meetings"' not in bob_browser.get("/meetings").text

    browser = portal.signed_in(admin)
    page = browser.get("/admin/meetings")
    assert page.code == 200 and 'href="/admin/meetings"' in page.text
    for meeting, owner in ((anns, ann), (bobs, bob)):
        assert f'href="/meetings/{meeting.id}"' in page.text and owner.email in page.text
        assert browser.get(f"/meetings/{meeting.id}").code == 200
    assert "ann-room" in page.text and "2027-02-01 10:00 UTC" in page.text
    upcoming, past = page.text.split("<h2>Past</h2>")
    assert "Ann&#39;s planning" in upcoming and "Bob&#39;s review" in past

    monkeypatch.setattr("vw.portal.web.PAGE_SIZE", 1)
    later = schedule(portal, browser, title="Later", start="2027-03-01T10:00")
    first = browser.get("/admin/meetings")
    assert anns.id in first.text and later.id not in first.text
    more = re.search(r'href="(/admin/meetings\?when=upcoming&amp;[^"]+)"', first.text)
    assert more is not None
    rest = browser.get(more.group(1).replace("&amp;", "&"))
    assert rest.code == 200 and later.id in rest.text and anns.id not in rest.text
    assert "<h2>Past</h2>" not in rest.text
    for query in ("when=soon", "when=past&start=2027-01-01T00:00&last=x",
                  f"when=past&start=2027-01-01T00:00&last={anns.id}",
                  f"when=past&start=nonsense&last={anns.id}"):
        assert browser.get(f"/admin/meetings?{query}").code == 400, query


def test_the_admin_meetings_page_shows_markup_as_text(portal: Portal) -> None:
    browser = portal.signed_in(portal.user("root@example.org", role="admin"))
    schedule(portal, browser, title=SCRIPT)
    page = browser.get("/admin/meetings")
    assert page.code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and SCRIPT not in page.text


def assert_signed_in_as(browser: Client, user: User) -> None:
    page = browser.get("/profile")
    assert page.code == 200 and f"Signed in as {user.email}" in page.text


@pytest.mark.parametrize("trusted, expected", [(["127.0.0.1"], "203.0.113.5"),
                                               ([], "127.0.0.1")])
def test_the_client_address_comes_from_trusted_proxies_only(
        store: Store, tmp_path: Path, trusted: list[str], expected: str) -> None:
    portal = make_portal(store, tmp_path, trusted_proxies=trusted)
    browser = portal.client()
    token = browser.csrf("/signin")
    browser.request("POST", "/signin", data={"csrf": token, "email": "x@example.org",
                                             "password": "nope"},
                    headers={"x-forwarded-for": "198.51.100.1, 203.0.113.5"})
    assert portal.store.audit_events(1)[0].address == expected
    assert portal.store.failures_since("x@example.org", expected, portal.now().replace(
        year=2000)) == (1, 1)


def test_operations_and_style_beside_the_pages(portal: Portal) -> None:
    client = portal.client()
    health = client.get("/about/health")
    assert health.code == 200 and health.text == '{"status": "ok"}'
    assert client.get("/metrics").code == 200
    style = client.get("/static/portal.css")
    assert style.code == 200 and style.header("content-type") == "text/css; charset=utf-8"
    assert client.get("/no/such/page").code == 404


def test_nul_in_a_form_is_kept_out_of_the_database(portal: Portal) -> None:
    """PostgreSQL keeps no NUL: form text gets U+FFFD in its place, as for undecodable bytes."""
    user = portal.user("ann@example.org")
    assert portal.client().submit("/signin", {"email": "ann\x00@example.org",
                                              "password": PASSWORD}).code == 401
    browser = portal.signed_in(user)
    assert schedule(portal, browser, password="a\x00b").password == "a\ufffdb"
    assert browser.get("/meetings/%00").code == 404
    assert portal.client().get("/m/%00").code == 404
