"""How much of a model's history (request times, log records) a Model keeps: a test that sends millions of
requests through one model must not grow its memory without end."""

from __future__ import annotations

from typing import Any

KEPT = 100_000  # the most recent entries kept of each


def keep_recent(entries: list[Any]) -> None:
    """Drop all but the KEPT most recent entries once there are twice as many (one slice per KEPT appends)."""
    if len(entries) > 2 * KEPT:
        del entries[:-KEPT]
