"""Passwords (argon2id), sign-in throttling, sign-up modes and password resets."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from argon2 import PasswordHasher
from twisted.internet.defer import ensureDeferred

from tests.portal.helpers import PASSWORD, Portal, make_portal, resolved
from vw.portal.accounts import (
    FAILURE_WINDOW,
    Accounts,
    BadCredentials,
    SignupRefused,
    Throttled,
)
from vw.portal.checks import Invalid
from vw.portal.passwords import MEMORY_COST, TIME_COST, Passwords
from vw.portal.store import Store

LIMIT = 100
T = TypeVar("T")


def accounts_of(portal: Portal) -> Accounts:
    return portal.site.pages.accounts


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    return resolved(ensureDeferred(coroutine))


def test_the_default_hash_is_argon2id_at_owasp_cost() -> None:
    assert MEMORY_COST >= 19456 and TIME_COST >= 2
    passwords = Passwords()
    hashed = passwords.hash("s3cret password")
    assert hashed.startswith(f"$argon2id$v=19$m={MEMORY_COST},t={TIME_COST},p=1$")
    assert passwords.verify(hashed, "s3cret password")
    assert not passwords.verify(hashed, "s3cret passworD")
    assert not passwords.verify(None, "s3cret password")
    assert not passwords.verify("not a hash", "s3cret password")


def test_a_weaker_hash_is_upgraded_at_sign_in(portal: Portal) -> None:
    weak = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, salt_len=8))
    user = portal.store.create_user("ann@example.org", "Ann", weak.hash(PASSWORD), "host",
                                    portal.now())
    assert portal.passwords.needs_rehash(user.password_hash)
    _run(accounts_of(portal).sign_in("ann@example.org", PASSWORD, "192.0.2.1"))
    upgraded = portal.store.user(user.id)
    assert upgraded is not None and upgraded.password_hash != user.password_hash
    assert not portal.passwords.needs_rehash(upgraded.password_hash)


def test_sign_in_any_case_of_the_address(portal: Portal) -> None:
    user = portal.user("Ann@Example.org")
    accounts = accounts_of(portal)
    assert _run(accounts.sign_in("ann@example.ORG", PASSWORD, "192.0.2.1")) == user
    with pytest.raises(BadCredentials):
        _run(accounts.sign_in("ann@example.org", "wrong password", "192.0.2.1"))
    with pytest.raises(BadCredentials):
        _run(accounts.sign_in("nobody@example.org", PASSWORD, "192.0.2.1"))
    events = [(e.event, e.user_id, e.detail) for e in portal.store.audit_events(10)]
    assert events == [("signin.failed", None, "nobody@example.org"),
                      ("signin.failed", user.id, "ann@example.org"),
                      ("signin", user.id, "")]


def test_an_account_locks_after_the_limit_from_any_addresses(portal: Portal) -> None:
    user = portal.user("ann@example.org")
    accounts = accounts_of(portal)
    for attempt in range(LIMIT):
        with pytest.raises(BadCredentials):
            _run(accounts.sign_in(user.email, f"guess {attempt}", f"198.51.100.{attempt}"))
    # Even the right password, from a fresh address, is refused now.
    with pytest.raises(Throttled):
        _run(accounts.sign_in(user.email, PASSWORD, "203.0.113.1"))
    assert portal.store.audit_events(1)[0].event == "signin.throttled"
    # Others are not affected.
    other = portal.user("bob@example.org")
    assert _run(accounts.sign_in(other.email, PASSWORD, "203.0.113.1")) == other
    # The window slides: an hour after the failures, the account opens again.
    portal.clock.advance(FAILURE_WINDOW.total_seconds())
    assert _run(accounts.sign_in(user.email, PASSWORD, "203.0.113.1")) == user


def test_an_address_locks_after_the_limit_over_any_accounts(portal: Portal) -> None:
    user = portal.user("ann@example.org")
    accounts = accounts_of(portal)
    for attempt in range(LIMIT):
        with pytest.raises(BadCredentials):
            _run(accounts.sign_in(f"user{attempt}@example.org", PASSWORD, "192.0.2.66"))
    with pytest.raises(Throttled):
        _run(accounts.sign_in(user.email, PASSWORD, "192.0.2.66"))
    assert _run(accounts.sign_in(user.email, PASSWORD, "192.0.2.67")) == user


def test_the_limit_comes_from_the_config(store: Store, tmp_path: Path) -> None:
    portal = make_portal(store, tmp_path, max_failures_per_hour=3)
    user = portal.user("ann@example.org")
    accounts = accounts_of(portal)
    for _ in range(3):
        with pytest.raises(BadCredentials):
            _run(accounts.sign_in(user.email, "nope", "192.0.2.1"))
    with pytest.raises(Throttled):
        _run(accounts.sign_in(user.email, PASSWORD, "192.0.2.2"))


@pytest.mark.parametrize("mode, code, allowed", [
    ("open", None, True), ("invite", None, False), ("invite", "host", True),
    ("closed", None, False), ("closed", "host", False), ("closed", "admin", True)])
def test_sign_up_modes(store: Store, tmp_path: Path, mode: str, code: str | None,
                       allowed: bool) -> None:
    portal = make_portal(store, tmp_path, signup=mode)
    accounts = accounts_of(portal)
    invitation = "" if code is None else _run(accounts.invite(code, None, "test"))
    attempt = accounts.sign_up("new@example.org", "New", PASSWORD, str(invitation), "x")
    if allowed:
        user = _run(attempt)
        assert user.role == (code or portal.config.portal.signup_role)
    else:
        with pytest.raises(SignupRefused):
            _run(attempt)
        assert store.user_by_email("new@example.org") is None


def test_closed_sign_up_takes_an_admin_invitation_only_while_there_is_no_admin(
        store: Store, tmp_path: Path) -> None:
    portal = make_portal(store, tmp_path, signup="closed")
    accounts = accounts_of(portal)
    portal.user("root@example.org", role="admin")
    code = _run(accounts.invite("admin", None, "test"))
    with pytest.raises(SignupRefused):
        _run(accounts.sign_up("new@example.org", "New", PASSWORD, str(code), "x"))


def test_sign_up_checks_its_fields(store: Store, tmp_path: Path) -> None:
    portal = make_portal(store, tmp_path, signup="open")
    portal.user("taken@example.org")
    accounts = accounts_of(portal)
    with pytest.raises(Invalid) as caught:
        _run(accounts.sign_up("not-an-address", " ", "short", "", "x"))
    assert set(caught.value.errors) == {"email", "display_name", "password"}
    with pytest.raises(Invalid) as caught:
        _run(accounts.sign_up("TAKEN@example.org", "Taken", PASSWORD, "", "x"))
    assert set(caught.value.errors) == {"email"}


def test_a_reset_link_is_mailed_and_works_once(portal: Portal) -> None:
    user = portal.user("ann@example.org")
    accounts = accounts_of(portal)
    _run(accounts.request_reset("nobody@example.org", "x"))
    assert portal.outbox.sent == []
    _run(accounts.request_reset("ANN@example.org", "x"))
    (mail,) = portal.outbox.sent
    assert mail.to == user.email
    token = mail.body.split("/password/reset?token=")[1].split()[0]
    assert _run(accounts.reset_password(token, "a brand new password", "x"))
    assert not _run(accounts.reset_password(token, "another new password", "x"))
    assert _run(accounts.sign_in(user.email, "a brand new password", "x")).id == user.id


def test_a_reset_link_expires_after_an_hour(portal: Portal) -> None:
    portal.user("ann@example.org")
    accounts = accounts_of(portal)
    _run(accounts.request_reset("ann@example.org", "x"))
    token = portal.outbox.sent[0].body.split("token=")[1].split()[0]
    portal.clock.advance(3600)
    assert not _run(accounts.reset_password(token, "a brand new password", "x"))


def test_reset_mails_are_limited_per_account_and_per_address(portal: Portal) -> None:
    portal.user("ann@example.org")
    portal.user("bob@example.org")
    accounts = accounts_of(portal)
    limit = portal.config.portal.max_resets_per_hour
    for number in range(limit + 2):
        _run(accounts.request_reset("ann@example.org", f"198.51.100.{number}"))
    assert len(portal.outbox.sent) == limit  # the account's limit, whatever the address
    for number in range(limit + 2):
        _run(accounts.request_reset(f"nobody{number}@example.org", "203.0.113.9"))
    _run(accounts.request_reset("bob@example.org", "203.0.113.9"))
    assert len(portal.outbox.sent) == limit  # the address's limit, whatever the account
    _run(accounts.request_reset("bob@example.org", "203.0.113.10"))
    assert portal.outbox.sent[-1].to == "bob@example.org"
    events = [e.event for e in portal.store.audit_events(100)]
    assert events.count("password.reset_throttled") == 2 + 2 + 1
    portal.clock.advance(FAILURE_WINDOW.total_seconds())
    _run(accounts.request_reset("ANN@example.org", "198.51.100.1"))
    assert portal.outbox.sent[-1].to == "ann@example.org"
