"""Meeting plans from forms and JSON: room names, RFC 5545 recurrence rules, limits."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from dateutil.rrule import rrule, rrulestr

from vw.portal.checks import Invalid, email_problem, name_problem
from vw.portal.records import Meeting, MeetingPlan

#: A Jitsi room name as vw serves it: lowercase letters, digits, "-" and "_".
ROOM_NAME = re.compile(r"[a-z0-9_-]{1,64}")
FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
RULE_PARTS = frozenset({"FREQ", "UNTIL", "COUNT", "INTERVAL", "BYSECOND", "BYMINUTE", "BYHOUR",
                        "BYDAY", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYMONTH", "BYSETPOS",
                        "WKST"})
#: A rule that ends may have at most this many occurrences.
MAX_OCCURRENCES = 1000
MAX_DURATION = 24 * 60
MAX_PARTICIPANTS = 1000
FIELDS = frozenset({"title", "start", "duration", "recurrence", "room", "password", "lobby",
                    "guests_allowed", "max_participants", "cohosts"})


def generate_room(title: str) -> str:
    """A room name from the title, made unguessable by a random suffix."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].rstrip("-")
    suffix = "".join(secrets.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(8))
    return f"{slug}-{suffix}" if slug else suffix


def _rule(text: str, start: datetime) -> rrule:
    return rrulestr(text, dtstart=start)  # type: ignore[no-any-return]


def check_recurrence(text: str, start: datetime) -> tuple[str, str | None]:
    """The normalised RRULE value and a problem (or None); rules yield DAILY and slower."""
    rule = text.strip().upper().removeprefix("RRULE:")
    if not rule:
        return "", None
    parts: dict[str, str] = {}
    for part in rule.split(";"):
        name, _, value = part.partition("=")
        if name not in RULE_PARTS or not value or name in parts:
            return rule, f"{name or part!r} is not an RRULE part (RFC 5545 section 3.3.10)."
        parts[name] = value
    if parts.get("FREQ") not in FREQUENCIES:
        return rule, "FREQ must be one of " + ", ".join(FREQUENCIES) + "."
    if len(rule) > 500:
        return rule, "At most 500 characters."
    try:
        occurrences = list(islice(_rule(rule, start), MAX_OCCURRENCES + 1))
    except (ValueError, TypeError, OverflowError) as error:
        return rule, f"Not a valid rule: {error}."
    if not occurrences:
        return rule, "The rule has no occurrence."
    if ("COUNT" in parts or "UNTIL" in parts) and len(occurrences) > MAX_OCCURRENCES:
        return rule, f"At most {MAX_OCCURRENCES} occurrences."
    return rule, None


def ends_of(plan: MeetingPlan) -> datetime | None:
    """When the last occurrence ends; None when the rule goes on forever."""
    last = plan.start
    if plan.recurrence:
        if "COUNT=" not in plan.recurrence and "UNTIL=" not in plan.recurrence:
            return None
        *_, last = _rule(plan.recurrence, plan.start)
    return last + timedelta(minutes=plan.duration)


def next_start(meeting: Meeting, now: datetime) -> datetime | None:
    """The start of the occurrence in progress or next to come, if any."""
    if not meeting.recurrence:
        return meeting.start if meeting.start + timedelta(minutes=meeting.duration) > now \
            else None
    found: datetime | None = _rule(meeting.recurrence, meeting.start).after(
        now - timedelta(minutes=meeting.duration))
    return found


class _Fields:
    """Collects typed values and problems, field by field."""

    def __init__(self, from_text: bool) -> None:
        #: Form fields are all text; JSON ones must have their own types.
        self.from_text = from_text
        self.errors: dict[str, str] = {}

    def text(self, name: str, value: Any, limit: int) -> str:
        if not isinstance(value, str):
            self.errors[name] = "Must be a string."
            return ""
        if len(value) > limit:
            self.errors[name] = f"At most {limit} characters."
        return value.strip()

    def integer(self, name: str, value: Any, low: int, high: int) -> int:
        if self.from_text and isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int):
            self.errors[name] = "Must be a whole number."
            return low
        if not low <= value <= high:
            self.errors[name] = f"Must be between {low} and {high}."
        return value

    def boolean(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            self.errors[name] = "Must be true or false."
            return False
        return value

    def instant(self, name: str, value: Any, *, naive_is_utc: bool) -> datetime:
        fallback = datetime(2000, 1, 1, tzinfo=UTC)
        problem = "Must be a date and time such as 2030-01-31T09:30:00Z."
        try:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            moment = None
        if moment is None:
            self.errors[name] = problem
            return fallback
        if moment.tzinfo is None:
            if not naive_is_utc:
                self.errors[name] = "Must include a time zone offset, such as Z for UTC."
                return fallback
            moment = moment.replace(tzinfo=UTC)
        if not 2000 <= moment.year <= 2200:
            self.errors[name] = "Must be between the years 2000 and 2200."
            return fallback
        return moment.astimezone(UTC)

    def emails(self, name: str, values: Any) -> tuple[str, ...]:
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            self.errors[name] = "Must be a list of e-mail addresses."
            return ()
        for value in values:
            if problem := email_problem(value):
                self.errors[name] = f"{value!r}: {problem}"
        return tuple(dict.fromkeys(value.lower() for value in values))


def _finish(fields: _Fields, plan: MeetingPlan) -> MeetingPlan:
    errors = fields.errors
    if "title" not in errors and (problem := name_problem(plan.title, 200)):
        errors["title"] = problem
    if not plan.room:
        plan = replace(plan, room=generate_room(plan.title))
    elif not ROOM_NAME.fullmatch(plan.room):
        errors["room"] = "1 to 64 lowercase letters, digits, '-' or '_'."
    if "start" not in errors and "recurrence" not in errors:
        rule, problem = check_recurrence(plan.recurrence, plan.start)
        if problem:
            errors["recurrence"] = problem
        plan = replace(plan, recurrence=rule)
    if errors:
        raise Invalid(errors)
    return replace(plan, ends=ends_of(plan))


def plan_from_json(body: Mapping[str, Any], base: MeetingPlan | None = None) -> MeetingPlan:
    """A plan from an API body; with ``base`` (PATCH) absent fields keep their values."""
    fields = _Fields(from_text=False)
    for name in body.keys() - FIELDS:
        fields.errors[name] = "Unknown field."
    if base is None:
        for name in ("title", "start"):
            if name not in body:
                fields.errors[name] = "Required."
        base = MeetingPlan(title="", start=datetime(2000, 1, 1, tzinfo=UTC), duration=60,
                           room="")
    values: dict[str, Any] = {}
    for name, value in body.items():
        if name in ("title", "recurrence"):
            values[name] = fields.text(name, value, 500 if name == "recurrence" else 200)
        elif name in ("room", "password"):
            values[name] = fields.text(name, value, 100)
        elif name == "start":
            values[name] = fields.instant(name, value, naive_is_utc=False)
        elif name == "duration":
            values[name] = fields.integer(name, value, 1, MAX_DURATION)
        elif name == "max_participants":
            values[name] = fields.integer(name, value, 0, MAX_PARTICIPANTS)
        elif name in ("lobby", "guests_allowed"):
            values[name] = fields.boolean(name, value)
        elif name == "cohosts":
            values[name] = fields.emails(name, value)
    return _finish(fields, replace(base, **values))


def plan_from_form(form: Mapping[str, str]) -> MeetingPlan:
    """A plan from the schedule form: start in UTC, check boxes present when ticked."""
    fields = _Fields(from_text=True)
    plan = MeetingPlan(
        title=fields.text("title", form.get("title", ""), 200),
        start=fields.instant("start", form.get("start", ""), naive_is_utc=True),
        duration=fields.integer("duration", form.get("duration", ""), 1, MAX_DURATION),
        room=fields.text("room", form.get("room", ""), 100),
        recurrence=fields.text("recurrence", form.get("recurrence", ""), 500),
        password=fields.text("password", form.get("password", ""), 100),
        lobby="lobby" in form,
        guests_allowed="guests_allowed" in form,
        max_participants=fields.integer("max_participants", form.get("max_participants") or "0",
                                        0, MAX_PARTICIPANTS),
        cohosts=fields.emails("cohosts", form.get("cohosts", "").replace(",", " ").split()),
    )
    return _finish(fields, plan)
