"""The session rules: a session is believed for one TTL after its last renewal, and
ending it is a check-and-set that exactly one thread wins."""

from __future__ import annotations

import threading
import time

from vip_elector.renewer import Session


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
