"""One way for every long step (build, fetch, pack-env, verify) to say what it is doing.

Library functions take a `Progress` and call `step(name, detail)`; they never print. The caller chooses what
becomes of it: `TextProgress` writes one line per step with the elapsed time to stderr (the CLI), `QUIET`
drops it (`--quiet`, `--json`, library default), `EventLog` keeps typed events for a program or a JSON report.
`task(label)` gives a reporter for one part of the work (one Python's build) timed from its own start.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TextIO

__all__ = ["QUIET", "Event", "EventLog", "Progress", "QuietProgress", "TextProgress", "reporter"]


class Progress(Protocol):
    def step(self, name: str, detail: str = "") -> None:
        """A step started (or something the user should see happened): `name` is a short verb or noun."""

    def task(self, label: str) -> Progress:
        """A reporter for one part of the work, named `label` and timed from now."""


@dataclass(frozen=True)
class Event:
    task: str  # the label of the reporter that saw it ("" for the top level)
    step: str
    detail: str
    elapsed: float  # seconds since that reporter's task started

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class QuietProgress:
    """Drops everything: the default of every library function."""

    def step(self, name: str, detail: str = "") -> None:
        pass

    def task(self, label: str) -> QuietProgress:
        return self


QUIET = QuietProgress()


class TextProgress:
    """`[label  elapsed] step detail` lines on stderr (or `stream`)."""

    def __init__(self, label: str = "", stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream
        self.started = time.monotonic()
        self._last = ""

    def step(self, name: str, detail: str = "") -> None:
        elapsed = time.monotonic() - self.started
        # The same line twice in a row (a step re-announced) is shown once.
        message = f"{name} {detail}".rstrip()
        if message == self._last:
            return
        self._last = message
        prefix = f"{self.label} " if self.label else ""
        stream = self.stream or sys.stderr  # looked up late: pytest's capsys swaps sys.stderr
        stream.write(f"[{prefix}{elapsed:6.1f}s] {message}\n")
        stream.flush()

    def task(self, label: str) -> TextProgress:
        return TextProgress(label, self.stream)


@dataclass
class EventLog:
    """Collects events (for tests, programs, or a JSON report); `task()` children share one list."""

    label: str = ""
    events: list[Event] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def step(self, name: str, detail: str = "") -> None:
        self.events.append(Event(self.label, name, detail, round(time.monotonic() - self.started, 3)))

    def task(self, label: str) -> EventLog:
        return EventLog(label, self.events)

    def steps(self) -> list[str]:
        return [e.step for e in self.events]

    def to_list(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.events]


def reporter(*, quiet: bool = False, label: str = "") -> Progress:
    """What a command line shows: text on stderr, or nothing with --quiet/--json."""
    return QUIET if quiet else TextProgress(label)
