"""Dominant speaker identification: hysteresis, clicks, silence, removal."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vw.bridge.speakers import DominantSpeakerIdentifier

PACKET = 0.02  # one audio packet every 20 ms


def speech_level(t: float, loud: int = 25, quiet: int = 90) -> int:
    """A talker: syllables (-25 dBov) with short dips (-90 dBov) between words."""
    return quiet if int(t / PACKET) % 12 in (0, 1) else loud


class Room:
    """Feeds packets for every endpoint and polls every 100 ms, collecting changes."""

    def __init__(self, *endpoints: str) -> None:
        self.ids = DominantSpeakerIdentifier()
        self.endpoints = list(endpoints)
        self.now = 0.0
        self.changes: list[tuple[float, str]] = []

    def run(self, seconds: float, levels: dict[str, int | str] | None = None,
            voice: dict[str, bool | None] | None = None) -> None:
        """Everyone silent (127) unless given a constant level, "speech" (-25 dBov) or
        "speech<N>" (syllables at -N dBov)."""
        levels = levels or {}
        voice = voice or {}
        end = self.now + seconds
        while self.now < end - 1e-9:
            for endpoint in self.endpoints:
                level = levels.get(endpoint, 127)
                if isinstance(level, str):
                    level = speech_level(self.now, int(level.removeprefix("speech") or 25))
                self.ids.audio_level(endpoint, int(level), voice.get(endpoint), self.now)
            self.now = round(self.now + PACKET, 6)
            if round(self.now / PACKET) % 5 == 0:
                changed = self.ids.poll(self.now)
                if changed is not None:
                    self.changes.append((self.now, changed))


def test_nobody_speaks_nobody_dominant() -> None:
    room = Room("a", "b")
    room.run(3.0)
    assert room.changes == [] and room.ids.dominant is None


def test_first_sustained_speaker_wins_quickly() -> None:
    room = Room("a", "b", "c")
    room.run(1.0)
    room.run(1.0, {"b": "speech"})
    assert [who for _, who in room.changes] == ["b"]
    assert room.changes[0][0] <= 1.0 + 0.7  # about 400-500 ms of speech
    assert room.ids.dominant == "b"
    assert room.ids.previous_speakers() == []


def test_change_only_after_sustained_speech() -> None:
    room = Room("a", "b")
    room.run(3.0, {"a": "speech"})
    assert room.ids.dominant == "a"
    room.run(0.3, {"b": "speech"})  # a stops; b speaks briefly
    assert room.ids.dominant == "a"
    room.run(1.5, {"b": "speech"})
    assert room.ids.dominant == "b"
    assert room.ids.previous_speakers() == ["a"]
    assert [who for _, who in room.changes] == ["a", "b"]


def test_short_clicks_do_not_steal_the_floor() -> None:
    room = Room("a", "b")
    room.run(3.0, {"a": "speech"})
    for _ in range(5):  # a keeps talking; b clicks (0 dBov) for 100-200 ms every second
        room.run(0.2, {"a": "speech", "b": 0})
        room.run(0.8, {"a": "speech"})
    room.run(1.0)
    for _ in range(5):  # now silence with clicks
        room.run(0.2, {"b": 0})
        room.run(0.8)
    assert [who for _, who in room.changes] == ["a"]


def test_silence_keeps_the_last_speaker() -> None:
    room = Room("a", "b")
    room.run(2.0, {"b": "speech"})
    room.run(10.0)
    assert room.ids.dominant == "b" and [who for _, who in room.changes] == ["b"]


def test_quieter_overtalk_does_not_take_the_floor() -> None:
    room = Room("a", "b")
    room.run(3.0, {"a": "speech"})
    room.run(5.0, {"a": "speech", "b": "speech50"})  # b murmurs under a
    assert room.ids.dominant == "a"


def test_much_louder_overtalk_takes_the_floor_after_the_hold() -> None:
    room = Room("a", "b")
    room.run(3.0, {"a": "speech60"})  # a mumbles
    assert room.ids.dominant == "a"
    room.run(3.0, {"a": "speech60", "b": "speech"})
    assert room.ids.dominant == "b"


def test_hold_time_between_changes() -> None:
    room = Room("a", "b")
    room.run(1.0, {"a": "speech"})
    room.run(3.0, {"b": "speech"})
    times = [t for t, _ in room.changes]
    assert len(times) == 2 and times[1] - times[0] >= 1.5


def test_voice_activity_flag_false_is_not_speech() -> None:
    room = Room("a", "b")
    room.run(3.0, {"a": "speech"}, {"a": False})
    assert room.ids.dominant is None
    room.run(3.0, {"a": "speech"}, {"a": True})
    assert room.ids.dominant == "a"


def test_constant_hum_from_the_start_is_noise() -> None:
    room = Room("a", "fan")
    room.run(2.0, {"a": "speech", "fan": 45})
    room.run(10.0, {"fan": 45})
    assert [who for _, who in room.changes] == ["a"]


def test_hum_starting_later_is_learnt_as_noise() -> None:
    room = Room("a", "b", "fan")
    room.run(2.0, {"a": "speech"})
    room.run(30.0, {"fan": 45})  # the fan may take the floor while it is being learnt
    room.run(2.0, {"b": "speech", "fan": 45})
    assert room.ids.dominant == "b"


def test_removal_hands_back_to_the_previous_speaker() -> None:
    room = Room("a", "b", "c")
    room.run(2.0, {"a": "speech"})
    room.run(2.0, {"b": "speech"})
    room.run(2.0, {"c": "speech"})
    assert room.ids.dominant == "c"
    assert room.ids.previous_speakers() == ["b", "a"]
    assert room.ids.speaker_ranks() == {"c": 0, "b": 1, "a": 2}
    room.ids.remove("b")
    assert room.ids.previous_speakers() == ["a"]
    room.ids.remove("c")
    room.endpoints = ["a"]
    assert room.ids.dominant is None
    assert room.ids.poll(room.now) == "a"
    assert room.ids.previous_speakers() == []
    room.ids.remove("a")
    assert room.ids.poll(room.now + 1) is None and room.ids.dominant is None


def test_previous_speakers_bounded_and_unique() -> None:
    ids = DominantSpeakerIdentifier(max_previous=3, hold_seconds=0.0)
    now = 0.0
    for turn in range(8):
        speaker = f"e{turn % 5}"
        for _ in range(100):
            ids.audio_level(speaker, speech_level(now), None, now)
            now += PACKET
            ids.poll(now)
        assert ids.dominant == speaker
    previous = ids.previous_speakers()
    assert len(previous) == 3 and len(set(previous)) == 3 and ids.dominant not in previous


events = st.lists(st.one_of(
    st.tuples(st.just("level"), st.sampled_from("abcd"), st.integers(-5, 140),
              st.sampled_from([None, True, False]), st.floats(0, 0.5)),
    st.tuples(st.just("poll"), st.floats(0, 3)),
    st.tuples(st.just("remove"), st.sampled_from("abcd")),
), max_size=400)


@settings(max_examples=150, deadline=None)
@given(events)
def test_random_level_streams(events: list[tuple]) -> None:
    ids = DominantSpeakerIdentifier()
    present: set[str] = set()
    now = 0.0
    for event in events:
        if event[0] == "level":
            _, endpoint, level, voice, dt = event
            now += dt
            ids.audio_level(endpoint, level, voice, now)
            present.add(endpoint)
        elif event[0] == "poll":
            now += event[1]
            before = ids.dominant
            changed = ids.poll(now)
            if changed is not None:
                assert changed in present and changed != before
            assert ids.dominant is None or ids.dominant in present
        else:
            ids.remove(event[1])
            present.discard(event[1])
        previous = ids.previous_speakers()
        assert set(previous) <= present and ids.dominant not in previous
        assert len(previous) == len(set(previous)) <= 10
