"""The retry policy, with a fake wait: backoff caps, who logs what, stop and give-up."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from vip_elector.consul_adapter import PermissionDenied, SessionGone, Unavailable
from vip_elector.retrying import NEEDS_A_PERSON_MAX_WAIT, Interrupted, Retrier


class FakeWait(threading.Event):
    """An Event whose wait() records the delay and returns at once (no real time)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return self.is_set()


def failing(times: int, error: Exception, result: str = "ok") -> Callable[[], str]:
    calls = {"n": 0}

    def call() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise error
        return result

    return call


def test_transient_errors_are_retried_with_capped_jittered_backoff() -> None:
    wake = FakeWait()
    retrier = Retrier(wake, "http://127.0.0.1:8500", "k")
    call = failing(12, Unavailable("refused", "unreachable"))
    assert retrier.call("reading", call, lambda: False, initial=0.5, maximum=4.0) == "ok"
    assert len(wake.waits) == 12
    assert all(0 < w <= 4.0 for w in wake.waits)
    assert max(wake.waits) > 2.0  # it did back off


def test_errors_that_need_a_person_back_off_to_thirty_seconds_and_log_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wake = FakeWait()
    retrier = Retrier(wake, "http://127.0.0.1:8500", "service/x/vip")
    call = failing(10, PermissionDenied("permission denied: ACL not found"))
    with caplog.at_level(logging.DEBUG, logger="vip_elector"):
        retrier.call("creating", call, lambda: False, maximum=2.0)
    assert max(wake.waits) > 2.0
    assert max(wake.waits) <= NEEDS_A_PERSON_MAX_WAIT
    assert {r.levelno for r in caplog.records} == {logging.ERROR}
    assert 'key_prefix "service/x/vip"' in caplog.records[0].getMessage()  # what to grant


def test_the_first_quiet_retries_are_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    retrier = Retrier(FakeWait(), "a", "k")
    with caplog.at_level(logging.DEBUG, logger="vip_elector"):
        retrier.call("reading", failing(2, Unavailable("x")), lambda: False, quiet_first=1)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.WARNING]


def test_give_up_errors_reach_the_caller_at_once() -> None:
    wake = FakeWait()
    with pytest.raises(SessionGone):
        Retrier(wake, "a", "k").call("renewing", failing(1, SessionGone("gone")), lambda: False)
    assert wake.waits == []


def test_a_caller_that_no_longer_wants_the_result_is_interrupted() -> None:
    stopped = {"now": False}
    wake = FakeWait()

    def call() -> str:
        stopped["now"] = True  # e.g. the stop came while the request ran
        raise Unavailable("x")

    with pytest.raises(Interrupted):
        Retrier(wake, "a", "k").call("reading", call, lambda: stopped["now"])
    with pytest.raises(Interrupted):
        Retrier(wake, "a", "k").call("reading", lambda: "never", lambda: True)


def test_every_wait_is_reported_for_the_heartbeat() -> None:
    reported: list[float] = []
    wake = FakeWait()
    retrier = Retrier(wake, "a", "k", on_wait=reported.append)
    retrier.call("reading", failing(3, Unavailable("x")), lambda: False)
    assert reported == wake.waits
