"""Waiting for conditions with deadlines (never a bare sleep)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# One Event nobody sets: waiting on it is an interruptible pause between polls
# of a condition, not a sleep the test relies on.
_NEVER = threading.Event()


class ConditionTimeout(AssertionError):
    """A condition did not become true before its deadline."""


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    message: str | Callable[[], str],
    interval: float = 0.05,
) -> T:
    """Poll ``predicate`` until it returns a truthy value; return that value.

    Raises :class:`ConditionTimeout` with ``message`` (plus the last
    exception the predicate raised, if any) once ``timeout`` seconds passed.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except Exception as exc:
            last_error = exc
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            if last_error is not None:
                text += f" (last error: {last_error!r})"
            raise ConditionTimeout(f"after {timeout:.1f}s: {text}")
        _NEVER.wait(interval)


def stays_true(predicate: Callable[[], bool], duration: float, interval: float = 0.05) -> bool:
    """Return True if ``predicate`` holds at every poll for ``duration`` seconds."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not predicate():
            return False
        _NEVER.wait(interval)
    return predicate()


def sample(observe: Callable[[], T], duration: float, interval: float = 0.2) -> list[T]:
    """Call ``observe`` every ``interval`` s for ``duration`` s; return what it saw.

    Calls that raise (e.g. Consul briefly without a leader) are skipped.
    """
    seen: list[T] = []
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        # A call that raises (Consul briefly without a leader) observes nothing.
        with contextlib.suppress(Exception):
            seen.append(observe())
        _NEVER.wait(interval)
    return seen
