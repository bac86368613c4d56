"""The leader removes the member entry of a node gone for good (stopped, or silent,
for longer than MEMBER_REAP: 72 h, Consul's own reconnect_timeout), so that a
decommissioned node's row leaves `vip-elector status`; the entries of live
nodes, and of one silent for an hour, stay. Real Consul."""

from __future__ import annotations

import json
import time

from tests.conftest import Election
from tests.test_cluster_view import row
from tests.testbed.waiting import wait_until
from vip_elector.key_entries import MEMBER_REAP


def left_behind(election: Election, value: str, age: float, state: str) -> str:
    """A member entry as a daemon last wrote it ``age`` seconds ago (its node was
    taken out of service since); returns its key."""
    body = {
        "v": 1,
        "state": state,
        "priority": 100,
        "eligible": state == "follower",
        "why": "stopped cleanly" if state == "stopped" else "",
        "node": value,
        "host": value,
        "session": "",
        "at": round(time.time() - age, 3),
        # Its daemon reported every 2 s: the leader removes the entry once it has
        # seen it unchanged for 2.5 of those (5 s), not 2.5 minutes.
        "heartbeat": 2.0,
    }
    key = f"{election.key}/members/{value}"
    assert election.api.kv_put(key, json.dumps(body))
    return key


def test_the_leader_removes_the_entries_of_nodes_gone_for_good(election: Election) -> None:
    silent = left_behind(election, "node-gone", MEMBER_REAP + 3600, "follower")
    stopped = left_behind(election, "node-retired", MEMBER_REAP + 60, "stopped")
    recent = left_behind(election, "node-rebooting", 3600, "follower")
    for name in ("node-a", "node-b"):
        election.add(name)
    leader = election.wait_holder()
    follower = election.candidates["node-b" if leader.name == "node-a" else "node-a"]
    wait_until(
        lambda: election.api.kv_get(f"{election.key}/members/{follower.value}") is not None,
        20,
        "the follower reported",
    )

    wait_until(
        lambda: election.api.kv_get(silent) is None and election.api.kv_get(stopped) is None,
        30,
        "the leader removed the entries of node-gone and node-retired",
    )
    line = leader.elector.wait_log("removed the member entry of node node-gone", 5)
    assert "INFO" in line
    assert "silent since" in line
    assert "stopped since" in leader.elector.wait_log(
        "removed the member entry of node node-retired", 5
    )
    assert row(election, "node-gone") is None

    # Silent for an hour (a reboot, a repair): kept, listed as not reporting.
    assert election.api.kv_get(recent) is not None
    rebooting = row(election, "node-rebooting")
    assert rebooting is not None
    assert rebooting["reporting"] is False
    # The live nodes keep theirs; each removal was said once, by the leader only.
    for candidate in election.candidates.values():
        assert election.api.kv_get(f"{election.key}/members/{candidate.value}") is not None
    assert follower.elector.count("removed the member entry") == 0
    assert leader.elector.count("removed the member entry") == 2
