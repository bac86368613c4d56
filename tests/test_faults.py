"""Faults between one vip-elector and its agent (a TCP fault proxy at the
adapter boundary): what a real agent cannot be made to do on demand."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from datetime import datetime

import pytest
import requests

from tests.conftest import Candidate, Election
from tests.testbed.agents import ConsulAgent, free_port
from tests.testbed.fault_proxy import FaultProxy
from tests.testbed.scrape import scrape, status_url
from tests.testbed.waiting import sample, wait_until

ProxyFactory = Callable[[ConsulAgent], FaultProxy]

pytestmark = pytest.mark.faults


TTL = 10.0  # the default --ttl


def log_time(line: str) -> float:
    """The wall-clock time of a text log line."""
    stamp = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})", line)
    assert stamp, line
    return datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def leader_behind_proxy(
    election: Election, fault_proxy: ProxyFactory, args: tuple[str, ...] = ()
) -> tuple[Candidate, Candidate, FaultProxy]:
    proxy = fault_proxy(election.agent)
    leader = election.add("node-a", addr=proxy.address, args=list(args))
    election.wait_holder()
    follower = election.add("node-b")
    wait_until(lambda: election.sessions_of(follower), 20, "node-b has a session")
    return leader, follower, proxy


def test_leader_cut_off_from_consul_steps_down_after_one_ttl_before_anyone_takes_over(
    election: Election,
    fault_proxy: ProxyFactory,
) -> None:
    port = free_port()
    leader, follower, proxy = leader_behind_proxy(
        election, fault_proxy, ("--status-addr", f":{port}")
    )
    session = election.api.kv_get(election.key)
    assert session is not None

    cut = time.time()
    proxy.set("blackhole")

    lost = leader.elector.wait_log(r"\*\*\* LOCK LOST \*\*\*", 15)
    assert "renew_timeout" in lost
    stepped_down = log_time(lost) - cut
    # The last renewal was at most 0.6 TTL before the cut; the rule is one TTL.
    assert 10 - 10 * 0.6 - 0.5 <= stepped_down <= 10 + 1.0, stepped_down

    # Consul still sees the session until 2 x TTL, then deletes the key and the
    # follower takes it: strictly after the old leader stopped believing in it.
    election.wait_holder(30, among=["node-b"])
    acquired = follower.elector.wait_log(r"LOCK ACQUIRED", 5)
    assert log_time(acquired) > log_time(lost)

    # Without a session node-a cannot take the VIP: its status and metrics say
    # so (an operator checking redundancy must not count it).
    def status() -> dict[str, object]:
        return dict(requests.get(status_url(port, "/status"), timeout=2).json())

    cut_off = status()
    assert (cut_off["state"], cut_off["session"]) == ("follower", None), cut_off
    assert (cut_off["candidate"], cut_off["eligible"]) == (False, False), cut_off
    assert scrape(port)[("vip_elector_candidate", ())] == 0

    # Reconnected, the old leader competes again with a fresh session.
    proxy.set("pass")
    wait_until(lambda: election.sessions_of(leader), 30, "node-a competes again")
    assert election.holder() == "node-b"
    wait_until(lambda: status()["candidate"] is True, 10, "node-a a candidate again")
    assert scrape(port)[("vip_elector_candidate", ())] == 1


@pytest.mark.parametrize(
    ("mode", "latency"), [("http500", 0.0), ("reset", 0.0), ("latency", 0.5), ("blackhole", 0.0)]
)
def test_short_consul_trouble_is_not_a_loss(
    election: Election, fault_proxy: ProxyFactory, mode: str, latency: float
) -> None:
    leader, _, proxy = leader_behind_proxy(election, fault_proxy, ("--log-level", "DEBUG"))
    before = election.api.kv_get(election.key)
    assert before is not None
    # The worst moment: just before a renewal is due (0.6 TTL after the last
    # one), leaving 0.4 TTL (4 s) to retry, once a second, before the TTL rule.
    renewals = leader.elector.count(r"session \S+ renewed\n")
    line = leader.elector.wait_log(r"session \S+ renewed$", 15, count=renewals + 1)
    due = log_time(line) + TTL * 0.6
    wait_until(lambda: time.time() >= due - 0.5, 10, "just before the next renewal")

    with proxy.fault(mode, latency):
        # 2.5 s: the renewal due and the retry after it fail; one a second
        # later succeeds with a second of the TTL to spare.
        seen = set(sample(lambda: election.api.kv_get(election.key), 2.5))

    assert {(e.session, e.text) for e in seen if e} == {(before.session, "node-a")}
    # Back to normal: renewals succeed again and it never reported a loss.
    if "renewal failed" in leader.elector.log():
        leader.elector.wait_log("renewed again after", 10)
    assert leader.elector.count("LOCK LOST") == 0
    entry = election.api.kv_get(election.key)
    assert entry is not None
    assert entry.session == before.session
    if mode == "http500":
        assert proxy.requests_answered_500 > 0
        assert "no leader" in leader.elector.log().lower()


def test_a_second_signal_exits_at_once(election: Election, fault_proxy: ProxyFactory) -> None:
    leader, _, proxy = leader_behind_proxy(election, fault_proxy)
    proxy.set("blackhole")  # the clean release now waits for its timeouts
    leader.elector.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping as leader" in leader.elector.log(), 5, "shutdown started")
    started = time.monotonic()
    leader.elector.process.send_signal(signal.SIGTERM)
    code = leader.elector.process.wait(5)
    assert time.monotonic() - started < 0.5
    assert code == 128 + signal.SIGTERM
    assert "second signal" in leader.elector.log()


def test_shutdown_is_bounded_when_consul_does_not_answer(
    election: Election, fault_proxy: ProxyFactory
) -> None:
    leader, _, proxy = leader_behind_proxy(election, fault_proxy)
    proxy.set("blackhole")
    started = time.monotonic()
    code = leader.elector.terminate(timeout=5)
    assert time.monotonic() - started < 2.0
    assert code == 0
    assert "could not" in leader.elector.log()  # says what it could not clean up
