"""A meeting as an iCalendar (RFC 5545) event, for calendar applications."""

from __future__ import annotations

from datetime import UTC, datetime

from vw.portal.records import Meeting

#: Longest content line in octets, before folding (RFC 5545 section 3.1).
LINE_OCTETS = 75


def _text(value: str) -> str:
    """TEXT escaping (section 3.3.11)."""
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _fold(line: str) -> bytes:
    """The line in chunks of at most 75 octets, never splitting a UTF-8 sequence; each
    continuation starts with a space."""
    data = line.encode()
    chunks: list[bytes] = []
    while len(data) > LINE_OCTETS - (1 if chunks else 0):
        cut = LINE_OCTETS - (1 if chunks else 0)
        while data[cut] & 0xC0 == 0x80:
            cut -= 1
        chunks.append(data[:cut])
        data = data[cut:]
    chunks.append(data)
    return b"\r\n ".join(chunks) + b"\r\n"


def calendar(meeting: Meeting, invitation_url: str, domain: str, now: datetime) -> bytes:
    """A VCALENDAR with the meeting's one VEVENT (its recurrence rule, when it has one)."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//vw//portal//EN", "METHOD:PUBLISH",
             "BEGIN:VEVENT", f"UID:{meeting.id}@{domain}", f"DTSTAMP:{_stamp(now)}",
             f"DTSTART:{_stamp(meeting.start)}", f"DURATION:PT{meeting.duration}M",
             f"SUMMARY:{_text(meeting.title)}", f"URL:{invitation_url}",
             f"LOCATION:{_text(invitation_url)}",
             f"DESCRIPTION:{_text('Join the meeting: ' + invitation_url)}"]
    if meeting.recurrence:
        lines.append(f"RRULE:{meeting.recurrence}")
    lines += [f"STATUS:{'CANCELLED' if meeting.cancelled else 'CONFIRMED'}", "END:VEVENT",
              "END:VCALENDAR"]
    return b"".join(_fold(line) for line in lines)
