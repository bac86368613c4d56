"""The daemon against the real dev agent: sessions, election, failover, shutdown."""

from __future__ import annotations

import json
import signal
import time
from functools import partial

import pytest

from tests.conftest import Election
from tests.testbed.consul_http import LOCK_FLAG
from tests.testbed.waiting import stays_true, wait_until


def test_the_lock_is_held_by_a_session_with_our_ttl_lock_delay_behavior_and_check(
    election: Election,
) -> None:
    node = election.add("node-a", ttl="15s", lock_delay="2s")
    assert node.check is not None
    assert election.wait_holder() is node

    entry = election.api.kv_get(election.key)
    assert entry is not None
    assert entry.value == b"node-a"  # byte for byte what vip-manager compares
    assert entry.flags == LOCK_FLAG
    assert entry.session is not None
    info = election.api.session_info(entry.session)
    assert info is not None
    assert info["TTL"] == "15s"
    assert info["LockDelay"] == 2_000_000_000
    assert info["Behavior"] == "delete"
    assert info["Checks"] == ["serfHealth", node.check.check_id]

    log = node.elector.wait_log(r"\*\*\* LOCK ACQUIRED \*\*\*")
    assert f"session={entry.session}" in log
    assert "value=node-a" in log
    created = node.elector.wait_log("Session created:")
    assert "ttl=15s lock-delay=2s behavior=delete" in created
    assert f"checks=serfHealth,{node.check.check_id}" in created


@pytest.mark.parametrize("count", [2, 3])
def test_exactly_one_of_several_electors_leads(election: Election, count: int) -> None:
    nodes = [election.add(f"node-{i}") for i in range(count)]
    leader = election.wait_holder()
    for node in nodes:
        wait_until(partial(election.sessions_of, node), 20, f"{node.name} has its session")

    def one_leader() -> bool:
        acquired = [n for n in nodes if n.elector.count(r"LOCK ACQUIRED") > 0]
        return election.holder() == leader.value and acquired == [leader]

    assert stays_true(one_leader, 3.0)
    for node in nodes:
        assert len(election.sessions_of(node)) == 1


@pytest.mark.parametrize("failure", ["500", "hang"])
def test_failing_health_check_moves_the_key(election: Election, failure: str) -> None:
    first = election.add("node-a")
    election.wait_holder()
    second = election.add("node-b")
    wait_until(lambda: election.sessions_of(second), 20, "node-b has a session")
    assert first.check is not None

    first.check.set(failure)

    assert election.wait_holder(30, among=["node-b"]) is second
    lost = first.elector.wait_log(r"\*\*\* LOCK LOST \*\*\*", 10)
    assert "session_lost" in lost
    assert "invalidated our session" in lost
    # The unhealthy node does not compete: no session of its own exists.
    first.elector.wait_log("Health check verification failed", 10)
    assert election.sessions_of(first) == []

    # Healthy again: it competes again (as a follower, the key stays with node-b).
    first.check.set("200")
    wait_until(lambda: election.sessions_of(first), 20, "node-a competes again")
    assert election.holder() == "node-b"


def test_nobody_takes_the_key_before_the_invalidated_sessions_lock_delay(
    election: Election,
) -> None:
    first = election.add("node-a", lock_delay="3s")
    election.wait_holder()
    second = election.add("node-b", lock_delay="3s")
    wait_until(lambda: election.sessions_of(second), 20, "node-b has a session")
    assert first.check is not None

    first.check.set("500")
    wait_until(
        lambda: election.api.kv_get(election.key) is None,
        20,
        "Consul deletes the key with the invalidated session",
    )
    freed = time.monotonic()
    wait_until(lambda: election.holder() == "node-b", 10, "node-b takes over")
    took = time.monotonic() - freed
    # Consul refuses the key to everybody for the invalidated session's lock-delay.
    # When we try again after it (at its end, not a fixed 5 s later) is a rule of
    # ours: tests/unit/test_decisions.py, the lock-delay tests.
    assert took >= 2.8, took


def test_sigterm_of_the_leader_deletes_the_key_and_hands_over_without_lock_delay(
    election: Election,
) -> None:
    first = election.add("node-a", lock_delay="15s")
    election.wait_holder()
    second = election.add("node-b", lock_delay="15s")
    wait_until(lambda: election.sessions_of(second), 20, "node-b has a session")

    started = time.monotonic()
    code = first.elector.terminate()
    stopped = time.monotonic() - started
    handed_over = election.wait_holder(5, among=["node-b"])

    assert code == 0
    assert stopped < 2.0
    assert handed_over is second
    assert time.monotonic() - started < 5  # far below the 15 s lock-delay
    assert "released the lock: deleted" in first.elector.log()
    assert election.sessions_of(first) == []


def test_sigterm_of_a_follower_leaves_no_session(election: Election) -> None:
    leader = election.add("node-a")
    election.wait_holder()
    follower = election.add("node-b")
    wait_until(lambda: election.sessions_of(follower), 20, "node-b has a session")

    assert follower.elector.terminate() == 0
    assert election.sessions_of(follower) == []
    assert election.holder() == leader.value
    assert len(election.sessions_of(leader)) == 1


def test_sigint_stops_cleanly_too(election: Election) -> None:
    node = election.add("node-a")
    election.wait_holder()
    assert node.elector.process.stop(signal.SIGINT, 5) == 0
    assert election.api.kv_get(election.key) is None
    assert election.sessions_of(node) == []


def test_a_preexisting_plain_key_is_refused_with_the_original_message(election: Election) -> None:
    election.api.kv_put(election.key, "manual")
    node = election.add("node-a")

    assert node.elector.process.wait(20) == 1
    expected = (
        f"trigger-key pre-flight check failed: existing key at '{election.key}' is a regular KV "
        f"entry (Flags=0), not a lock key (expected Flags=3304740253564472344)"
    )
    log = node.elector.log()
    assert expected in log
    assert f"consul kv delete {election.key}" in log
    assert election.sessions_of(node) == []  # nothing half-done in Consul
    assert election.holder() == "manual"


def test_a_missing_check_is_waited_for_then_used(election: Election) -> None:
    node = election.add("node-a", check=False, check_id="vip-http-registered-later")
    line = node.elector.wait_log("Health check verification failed", 15)
    assert "vip-http-registered-later" in line
    assert "not registered" in line
    assert stays_true(lambda: election.holder() is None and not election.sessions_of(node), 2.0)

    check = election.health(election.agent, "later", register=False)
    check.check_id = "vip-http-registered-later"
    check.register()

    assert election.wait_holder(30) is node
    (session,) = election.sessions_of(node)
    assert "vip-http-registered-later" in session["Checks"]


@pytest.mark.parametrize("state", ["waiting-for-check", "follower", "leader", "no-agent"])
def test_exits_within_two_seconds_in_every_state(election: Election, state: str) -> None:
    if state == "waiting-for-check":
        node = election.add("node-a", check=False, check_id="never-registered")
        node.elector.wait_log("Health check verification failed", 15)
    elif state == "no-agent":
        node = election.add("node-a", addr="127.0.0.1:1")
        node.elector.wait_log("pre-flight check failed: cannot reach", 15)
    else:
        leader = election.add("node-a")
        election.wait_holder()
        node = leader
        if state == "follower":
            node = election.add("node-b")
            wait_until(lambda: election.sessions_of(node), 20, "node-b has a session")
            # Let it settle into its blocking query.
            node.elector.wait_log("state starting -> follower", 10)
    started = time.monotonic()
    assert node.elector.terminate(timeout=5) == 0
    assert time.monotonic() - started < 2.0
    assert election.sessions_of(node) == []


def test_fifty_start_stop_cycles_leave_no_session(election: Election) -> None:
    node = election.add("node-a", start=False)
    for cycle in range(50):
        node.elector.start()
        node.elector.wait_log(r"LOCK ACQUIRED", 20, count=cycle + 1)
        assert node.elector.terminate(5) == 0, node.elector.process.tail()
    assert election.sessions_of(node) == []
    assert election.api.kv_get(election.key) is None
    assert node.elector.count("stopped in") == 50


def test_json_logs_are_one_object_per_line_with_stable_fields(election: Election) -> None:
    node = election.add("node-a", args=["--log-format", "json"])
    election.wait_holder()
    node.elector.terminate()
    records = [json.loads(line) for line in node.elector.log().splitlines() if line]
    acquired = [r for r in records if r["event"] == "lock_acquired"]
    assert len(acquired) == 1
    record = acquired[0]
    assert record["state"] == "leader"
    assert record["key"] == election.key
    assert record["session"]
    assert record["cause"] == "acquired"
    assert "LOCK ACQUIRED" in record["message"]
    assert all({"time", "level", "message", "event"} <= set(r) for r in records)
