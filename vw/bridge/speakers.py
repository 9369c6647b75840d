"""Dominant speaker identification from RFC 6464 audio levels (sans-IO).

Algorithm (a simplified take on what Jitsi Videobridge does with Volfin & Cohen's method):

1. **Per packet, O(1).** The level (0 = loudest, 127 = silence, in -dBov) becomes a loudness
   ``L = 127 - level``. Each endpoint keeps an adaptive *noise floor* (starting at its first
   packet's loudness): it drops at once to any quieter packet and otherwise rises by at most
   ``floor_rise_db_per_s`` while packets flow (gaps in the stream don't count). A constant hum (a
   fan) is thus learnt as background (at once if it is there from the start, within seconds if
   it starts later), while speech, which always has gaps between words, keeps the floor low.
   A packet's *score* is ``max(0, L - floor - floor_margin_db)``; it is 0 when the packet is
   quieter than ``speech_level_dbov`` or when the sender's voice-activity flag says "no speech".
2. **Bins.** Scores are averaged into bins of ``bin_seconds`` (100 ms). A finished bin's mean is
   kept in a ring of ``window_bins`` (10 → the last ~1 s) with a running sum (*energy*) and a
   running count of *active* bins (mean score >= ``active_score``). Bins without packets (DTX,
   mute, gone) count as 0.
3. **Decision, on poll.** A *challenger* is the loudest (highest energy) other endpoint that has at
   least ``min_active_bins`` active bins in the window, i.e. sustained speech (400 ms of the last
   second by default); a click or a cough of a bin or two never qualifies. With no current
   speaker the challenger wins at once. Otherwise it wins only when the current speaker has held
   the floor for ``hold_seconds`` and the challenger's energy exceeds ``ratio`` times the current
   speaker's. Silence never produces a challenger, so the last speaker keeps the floor.
4. When the current speaker is removed, the next poll hands the floor to a qualifying challenger,
   or else to the most recent previous speaker still present.
"""

from __future__ import annotations

import math
from collections import deque

#: Bins of audio-level history.
BIN_SECONDS = 0.1
#: Bins in the comparison window (BIN_SECONDS * WINDOW_BINS = ~1 s).
WINDOW_BINS = 10


class _Speaker:
    """One endpoint's audio-level history."""

    __slots__ = ("active", "bin_count", "bin_index", "bin_sum", "bins", "energy", "floor",
                 "last_packet")

    def __init__(self, bin_index: int, window_bins: int) -> None:
        self.bins: deque[int] = deque(maxlen=window_bins)
        self.energy = 0
        self.active = 0
        self.bin_index = bin_index
        self.bin_sum = 0.0
        self.bin_count = 0
        self.floor = 0.0
        self.last_packet: float | None = None


class DominantSpeakerIdentifier:
    """Tracks who is speaking in one conference; see the module docstring for the algorithm."""

    def __init__(self, *, bin_seconds: float = BIN_SECONDS, window_bins: int = WINDOW_BINS,
                 min_active_bins: int = 4, active_score: int = 8, hold_seconds: float = 1.5,
                 ratio: float = 1.5, speech_level_dbov: int = 70,
                 floor_margin_db: float = 6.0, floor_rise_db_per_s: float = 5.0,
                 max_previous: int = 10) -> None:
        self._bin_seconds = bin_seconds
        self._window_bins = window_bins
        self._min_active_bins = min_active_bins
        self._active_score = active_score
        self._hold = hold_seconds
        self._ratio = ratio
        self._speech_level = speech_level_dbov
        self._floor_margin = floor_margin_db
        self._floor_rise = floor_rise_db_per_s
        self._max_previous = max_previous
        self._speakers: dict[str, _Speaker] = {}
        self._dominant: str | None = None
        self._since = -math.inf
        self._previous: list[str] = []

    # -- input -------------------------------------------------------------------------

    def audio_level(self, endpoint_id: str, level_dbov: int, voice_activity: bool | None,
                    now: float) -> None:
        """Record one audio packet's level (RFC 6464: 0 = loudest, 127 = silence)."""
        speaker = self._speakers.get(endpoint_id)
        index = self._bin(now)
        if speaker is None:
            speaker = self._speakers[endpoint_id] = _Speaker(index, self._window_bins)
        else:
            self._advance(speaker, index)
        level = min(max(int(level_dbov), 0), 127)
        loudness = 127 - level
        if speaker.last_packet is None:
            speaker.floor = float(loudness)
        else:
            elapsed = min(max(now - speaker.last_packet, 0.0), self._bin_seconds)
            speaker.floor = min(float(loudness), speaker.floor + self._floor_rise * elapsed)
        speaker.last_packet = now
        score = 0.0
        if voice_activity is not False and level <= self._speech_level:
            score = max(0.0, loudness - speaker.floor - self._floor_margin)
        speaker.bin_sum += score
        speaker.bin_count += 1

    def remove(self, endpoint_id: str) -> None:
        """Forget an endpoint (it left); the floor passes on at the next poll."""
        self._speakers.pop(endpoint_id, None)
        if endpoint_id in self._previous:
            self._previous.remove(endpoint_id)
        if self._dominant == endpoint_id:
            self._dominant = None

    # -- output ------------------------------------------------------------------------

    @property
    def dominant(self) -> str | None:
        """The current dominant speaker, if any."""
        return self._dominant

    def previous_speakers(self) -> list[str]:
        """Earlier dominant speakers still present, most recent first (without the current)."""
        return list(self._previous)

    def speaker_ranks(self) -> dict[str, int]:
        """Speech recency: 0 for the dominant speaker, then 1, 2, … for previous speakers."""
        order = ([self._dominant] if self._dominant is not None else []) + self._previous
        return {endpoint: rank for rank, endpoint in enumerate(order)}

    def poll(self, now: float) -> str | None:
        """The new dominant speaker if it changed since the last poll, else None."""
        index = self._bin(now)
        challenger: str | None = None
        best = -1
        for endpoint, speaker in self._speakers.items():
            self._advance(speaker, index)
            if (endpoint != self._dominant and speaker.active >= self._min_active_bins
                    and speaker.energy > best):
                challenger, best = endpoint, speaker.energy
        if self._dominant is None:
            if challenger is None and self._previous:
                challenger = self._previous[0]
            if challenger is None:
                return None
        else:
            if challenger is None or now - self._since < self._hold:
                return None
            if best <= self._ratio * self._speakers[self._dominant].energy:
                return None
        self._switch(challenger, now)
        return challenger

    # -- internals ---------------------------------------------------------------------

    def _switch(self, endpoint: str, now: float) -> None:
        if endpoint in self._previous:
            self._previous.remove(endpoint)
        if self._dominant is not None:
            self._previous.insert(0, self._dominant)
            del self._previous[self._max_previous:]
        self._dominant = endpoint
        self._since = now

    def _bin(self, now: float) -> int:
        return math.floor(now / self._bin_seconds)

    def _advance(self, speaker: _Speaker, index: int) -> None:
        """Close the speaker's bins up to (not including) bin ``index``."""
        if index <= speaker.bin_index:
            return
        mean = speaker.bin_sum / speaker.bin_count if speaker.bin_count else 0.0
        self._push(speaker, round(mean))
        for _ in range(min(index - speaker.bin_index - 1, self._window_bins)):
            self._push(speaker, 0)
        speaker.bin_index = index
        speaker.bin_sum = 0.0
        speaker.bin_count = 0

    def _push(self, speaker: _Speaker, value: int) -> None:
        bins = speaker.bins
        if len(bins) == bins.maxlen:
            old = bins[0]
            speaker.energy -= old
            if old >= self._active_score:
                speaker.active -= 1
        bins.append(value)
        speaker.energy += value
        if value >= self._active_score:
            speaker.active += 1
