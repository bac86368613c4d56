"""The session rules: a session is believed for one TTL after its last renewal,
ending it is a check-and-set that exactly one thread wins, and renewals come late
enough to be cheap and time out soon enough to be retried."""

from __future__ import annotations

import threading
import time

import pytest

from vip_elector.renewer import Session, renew_timeout, renewal_due


def test_a_session_is_alive_for_one_ttl_after_its_last_renewal() -> None:
    now = time.monotonic()
    assert Session("s", ttl=10.0, renewed_at=now - 9.5).alive()
    assert not Session("s", ttl=10.0, renewed_at=now - 10.01).alive()


def test_an_ended_session_is_not_alive_however_fresh() -> None:
    session = Session("s", ttl=10.0)
    assert session.end() is True
    assert session.ended
    assert not session.alive()
    assert session.end() is False  # the second end is not "the" end


def ends_by_racing_threads(session: Session, threads: int) -> list[bool]:
    start = threading.Barrier(threads)
    results: list[bool] = []

    def end() -> None:
        start.wait()
        results.append(session.end())

    racers = [threading.Thread(target=end) for _ in range(threads)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    return results


def test_exactly_one_of_many_threads_ends_a_session() -> None:
    for _ in range(50):
        assert ends_by_racing_threads(Session("s", ttl=10.0), 8).count(True) == 1


# -- when to renew, and how long a renewal may take ----------------------------------


def test_a_session_is_renewed_when_six_tenths_of_its_ttl_have_passed() -> None:
    # 10 renewals a minute with the default 10 s TTL, and 4 s left to retry in.
    assert renewal_due(100.0, 10.0) == pytest.approx(106.0)
    assert 60 / (renewal_due(0.0, 10.0)) == pytest.approx(10.0)


def test_the_renewal_timeout_follows_the_renewals_own_latency() -> None:
    assert renew_timeout([], 0, cap=2.5) == 2.5  # nothing known yet: the cap
    assert renew_timeout([0.004, 0.010], 0, cap=2.5) == 1.0  # fast: the 1 s floor
    assert renew_timeout([0.4, 0.1], 0, cap=2.5) == pytest.approx(1.6)  # 4x the slowest
    assert renew_timeout([2.0], 0, cap=2.5) == 2.5  # never past TTL/4


def test_a_renewal_that_timed_out_gets_twice_as_long_next_time() -> None:
    # A Consul that became slow (1.2 s a renewal) is still waited for.
    assert renew_timeout([0.005], 1, cap=2.5) == 2.0
    assert renew_timeout([0.005], 2, cap=2.5) == 2.5
