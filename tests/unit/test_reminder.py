"""A lasting problem is logged at once, again when it changes, and then only every
so often: never silent, never a flood (the health gate, a refused candidacy)."""

from __future__ import annotations

import time

from vip_elector.logs import Reminder


def test_a_problem_is_logged_at_once_and_then_only_every_so_often() -> None:
    reminder = Reminder(every=30.0)
    assert reminder.due("check critical")
    assert not reminder.due("check critical")
    assert reminder.due("check missing")  # changed: at once


def test_an_unchanged_problem_is_logged_again_after_the_interval() -> None:
    reminder = Reminder(every=0.2)
    started = time.monotonic()
    assert reminder.due("check critical")
    while time.monotonic() < started + 0.15:  # well inside the interval
        assert not reminder.due("check critical")
    deadline = started + 2.0
    while not reminder.due("check critical"):
        assert time.monotonic() < deadline, "never due again"


def test_a_problem_that_ended_is_logged_at_once_when_it_comes_back() -> None:
    reminder = Reminder(every=30.0)
    assert reminder.due("check critical")
    reminder.clear()
    assert reminder.due("check critical")
