"""Meeting plans from forms and JSON, and the iCalendar file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vw.portal.checks import Invalid, safe_next
from vw.portal.ical import LINE_OCTETS, calendar
from vw.portal.meetings import ROOM_NAME, generate_room, next_start, plan_from_form, plan_from_json
from vw.portal.records import Meeting

START = "2030-03-04T09:30:00Z"


def errors_of(body: dict[str, object]) -> dict[str, str]:
    with pytest.raises(Invalid) as caught:
        plan_from_json(body)
    return caught.value.errors


def test_a_plan_from_json_with_defaults() -> None:
    plan = plan_from_json({"title": " Standup ", "start": "2030-03-04T10:30:00+01:00"})
    assert plan.title == "Standup"
    assert plan.start == datetime(2030, 3, 4, 9, 30, tzinfo=UTC)
    assert (plan.duration, plan.guests_allowed, plan.lobby, plan.recurrence) == (60, True,
                                                                                 False, "")
    assert plan.ends == plan.start + timedelta(minutes=60)
    assert ROOM_NAME.fullmatch(plan.room) and plan.room.startswith("standup-")


@pytest.mark.parametrize("room", ["a", "team-42", "x_y", "z" * 64])
def test_jitsi_room_names_are_taken(room: str) -> None:
    assert plan_from_json({"title": "T", "start": START, "room": room}).room == room


@pytest.mark.parametrize("room", ["Team", "a b", "a/b", "a.b", "z" * 65, "été", "a@b"])
def test_other_room_names_are_refused(room: str) -> None:
    assert "room" in errors_of({"title": "T", "start": START, "room": room})


@pytest.mark.parametrize("body, field", [
    ({"start": START}, "title"),
    ({"title": "T"}, "start"),
    ({"title": "", "start": START}, "title"),
    ({"title": "T", "start": "2030-03-04T09:30"}, "start"),
    ({"title": "T", "start": "tomorrow"}, "start"),
    ({"title": "T", "start": START, "duration": 0}, "duration"),
    ({"title": "T", "start": START, "duration": "60"}, "duration"),
    ({"title": "T", "start": START, "duration": True}, "duration"),
    ({"title": "T", "start": START, "lobby": "yes"}, "lobby"),
    ({"title": "T", "start": START, "max_participants": -1}, "max_participants"),
    ({"title": "T", "start": START, "cohosts": "ann@example.org"}, "cohosts"),
    ({"title": "T", "start": START, "cohosts": ["not an address"]}, "cohosts"),
    ({"title": "T", "start": START, "colour": "red"}, "colour"),
    ({"title": "T", "start": START, "recurrence": "FREQ=HOURLY"}, "recurrence"),
    ({"title": "T", "start": START, "recurrence": "FREQ=DAILY;COLOR=RED"}, "recurrence"),
    ({"title": "T", "start": START, "recurrence": "FREQ=DAILY;COUNT=5000"}, "recurrence"),
    ({"title": "T", "start": START, "recurrence": "FREQ=DAILY;UNTIL=20200101T000000Z"},
     "recurrence"),
])
def test_wrong_fields_are_named(body: dict[str, object], field: str) -> None:
    assert field in errors_of(body)


def test_recurrence_sets_when_the_series_ends() -> None:
    plan = plan_from_json({"title": "T", "start": START, "duration": 30,
                           "recurrence": "rrule:freq=weekly;count=3"})
    assert plan.recurrence == "FREQ=WEEKLY;COUNT=3"
    assert plan.ends == datetime(2030, 3, 18, 10, 0, tzinfo=UTC)
    endless = plan_from_json({"title": "T", "start": START, "recurrence": "FREQ=DAILY"})
    assert endless.ends is None


def test_patch_keeps_what_it_does_not_name() -> None:
    base = plan_from_json({"title": "T", "start": START, "room": "keep", "lobby": True,
                           "cohosts": ["Ann@Example.org"]})
    changed = plan_from_json({"duration": 15}, base)
    assert (changed.title, changed.room, changed.lobby, changed.cohosts) == (
        "T", "keep", True, ("ann@example.org",))
    assert changed.ends == changed.start + timedelta(minutes=15)


def test_a_plan_from_the_form() -> None:
    plan = plan_from_form({"title": "Retro", "start": "2030-03-04T09:30", "duration": "45",
                           "guests_allowed": "on", "cohosts": "a@example.org, b@example.org",
                           "max_participants": ""})
    assert plan.start == datetime(2030, 3, 4, 9, 30, tzinfo=UTC)
    assert (plan.duration, plan.guests_allowed, plan.lobby) == (45, True, False)
    assert plan.cohosts == ("a@example.org", "b@example.org")
    with pytest.raises(Invalid) as caught:
        plan_from_form({"title": "x", "start": "", "duration": "many"})
    assert set(caught.value.errors) == {"start", "duration"}


def test_generated_rooms_are_valid_and_differ() -> None:
    rooms = {generate_room("Ünïcode & <b>Title</b>!") for _ in range(20)}
    assert len(rooms) == 20
    assert all(ROOM_NAME.fullmatch(room) for room in rooms)
    assert ROOM_NAME.fullmatch(generate_room("!!!"))


def meeting(**changes: object) -> Meeting:
    values: dict[str, object] = dict(
        id="abc", owner_id=1, title="T", start=datetime(2030, 3, 4, 9, 30, tzinfo=UTC),
        duration=30, recurrence="", ends=None, room="r", password="", lobby=False,
        guests_allowed=True, max_participants=0, cancelled=False,
        created=datetime(2030, 1, 1, tzinfo=UTC))
    values.update(changes)
    return Meeting(**values)  # type: ignore[arg-type]


def test_next_start_of_single_and_repeating_meetings() -> None:
    single = meeting()
    assert next_start(single, single.start - timedelta(days=1)) == single.start
    assert next_start(single, single.start + timedelta(minutes=10)) == single.start
    assert next_start(single, single.start + timedelta(minutes=31)) is None
    weekly = meeting(recurrence="FREQ=WEEKLY")
    assert next_start(weekly, weekly.start + timedelta(days=1)) == weekly.start + timedelta(7)


def test_the_calendar_escapes_folds_and_repeats() -> None:
    title = "Budget; Q3, \\draft\\ — " + "long " * 30
    data = calendar(meeting(title=title, recurrence="FREQ=WEEKLY;COUNT=4"),
                    "https://portal.test/m/abc", "meet.example.org",
                    datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert data.endswith(b"END:VCALENDAR\r\n")
    lines = data.split(b"\r\n")[:-1]
    assert all(len(line) <= LINE_OCTETS and line.decode() for line in lines)
    unfolded = data.replace(b"\r\n ", b"").decode().split("\r\n")
    summary = next(line for line in unfolded if line.startswith("SUMMARY:"))
    assert summary == "SUMMARY:Budget\\; Q3\\, \\\\draft\\\\ — " + "long " * 30
    for expected in ("UID:abc@meet.example.org", "DTSTART:20300304T093000Z", "DURATION:PT30M",
                     "DTSTAMP:20300102T030405Z", "RRULE:FREQ=WEEKLY;COUNT=4",
                     "STATUS:CONFIRMED", "URL:https://portal.test/m/abc"):
        assert expected in unfolded
    cancelled = calendar(meeting(cancelled=True), "u", "d", datetime(2030, 1, 1, tzinfo=UTC))
    assert b"STATUS:CANCELLED\r\n" in cancelled


@pytest.mark.parametrize("target, expected", [
    ("/meetings/abc?x=1", "/meetings/abc?x=1"),
    ("/", "/"),
    ("//evil.example/", "/meetings"),
    ("/\\evil.example/", "/meetings"),
    ("https://evil.example/", "/meetings"),
    ("javascript:alert(1)", "/meetings"),
    ("", "/meetings"),
    ("/ok\r\nSet-Cookie: x=y", "/meetings"),
])
def test_next_targets_stay_on_the_site(target: str, expected: str) -> None:
    assert safe_next(target) == expected
