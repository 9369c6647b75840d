"""Summarise a py-spy ``--format raw`` (collapsed stacks) profile: top self and total frames.

Usage: ``.venv/bin/python bench/pyspy_top.py PROFILE.txt [-n 25] [--idle] [--match vw/]``
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Frames where the reactor waits for events: idle time, not work.
IDLE = re.compile(r"\b(poll|select|epoll|_doReadOrWrite_wait|doPoll)\b")
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    """``func (path:line)`` with the path cut to the package-relative part, line dropped."""
    match = FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"]
    for cut in ("site-packages/", "/work/main/", "lib/python3."):
        if cut in path:
            path = path.split(cut, 1)[1]
            break
    return f"{match['func']} ({path})"


def summarise_profile(path: Path, category: Callable[[list[str]], str],
                      rows: int = 15) -> dict[str, Any]:
    """Busy samples; time by ``category`` (of a stack's frames, leaf last); the top frames by
    own time and by inclusive time (vw/ frames), in percent of the busy samples."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    samples = idle = 0
    if not path.exists():
        return {"file": str(path), "error": "py-spy wrote nothing"}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [short(f) for f in stack.split(";")]
        count = int(count_text)
        if IDLE.search(frames[-1]):
            idle += count
            continue
        samples += count
        own[frames[-1]] += count
        categories[category(frames)] += count
        for frame in set(frames):
            total[frame] += count
    inclusive = Counter({f: c for f, c in total.items() if "vw/" in f})

    def table(counter: Counter[str]) -> list[list[Any]]:
        return [[frame, round(100 * count / max(samples, 1), 1)]
                for frame, count in counter.most_common(rows)]

    return {"file": str(path), "busy_samples": samples, "idle_samples": idle,
            "categories": table(categories), "self": table(own), "inclusive": table(inclusive)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("-n", type=int, default=25, help="rows per table")
    parser.add_argument("--idle", action="store_true", help="keep samples waiting in poll")
    parser.add_argument("--match", default="vw/",
                        help="inclusive table: only frames whose text contains this")
    args = parser.parse_args()
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in args.profile.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [short(f) for f in stack.split(";")]
        if not args.idle and IDLE.search(frames[-1]):
            continue
        count = int(count_text)
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    print(f"{samples} busy samples")
    inclusive = Counter({f: c for f, c in total.items() if args.match in f})
    for title, table in (("self", own), (f"total (inclusive, {args.match!r})", inclusive)):
        print(f"\n-- top {title} --")
        for frame, count in table.most_common(args.n):
            print(f"{100 * count / max(samples, 1):6.1f}%  {frame}")


if __name__ == "__main__":
    main()
