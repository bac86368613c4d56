"""--liveness-ttl: a killed or frozen daemon loses the lock after about that TTL."""

from __future__ import annotations

import signal
import time

from tests.conftest import Election
from tests.testbed.waiting import wait_until
from vip_elector.liveness import liveness_ids


def liveness_service(election: Election, value: str) -> dict[str, object] | None:
    services = election.api.ok("GET", "/v1/agent/services")
    service_id, _ = liveness_ids(election.key, value)
    found = [
        s for s in services.values() if s["Service"] == "vip-elector" and s["ID"] == service_id
    ]
    return found[0] if found else None


def two_nodes_with_liveness(election: Election) -> tuple[str, str]:
    election.add("node-a", args=["--liveness-ttl", "3s"])
    leader = election.wait_holder()
    follower = election.add("node-b", args=["--liveness-ttl", "3s"])
    wait_until(lambda: election.sessions_of(follower), 20, "node-b has a session")
    return leader.name, follower.name


def test_the_session_is_tied_to_the_liveness_check(election: Election) -> None:
    node = election.add("node-a", args=["--liveness-ttl", "3s"])
    election.wait_holder()
    (session,) = election.sessions_of(node)
    service = liveness_service(election, "node-a")
    assert service is not None
    liveness_check = f"{service['ID']}-liveness"
    assert session["Checks"] == [
        "serfHealth",
        node.check.check_id if node.check else "",
        liveness_check,
    ]
    # Passing keeps it alive well past its 3 s TTL.
    wait_until(
        lambda: election.api.catalog_check_status(election.agent.name, liveness_check) == "passing",
        5,
        "",
    )
    assert node.elector.terminate() == 0
    # A clean stop removes the service and its check.
    assert liveness_service(election, "node-a") is None


def test_a_killed_leader_loses_the_lock_after_about_the_liveness_ttl(
    election: Election,
) -> None:
    leader, follower = two_nodes_with_liveness(election)
    killed = time.monotonic()
    election.candidates[leader].elector.kill()
    election.wait_holder(15, among=[follower])
    took = time.monotonic() - killed
    print(f"SIGKILL with --liveness-ttl 3s: new leader after {took:.2f}s")
    assert took < 5.0 + 1.0  # liveness TTL + lock-delay 1s, far below 2 x TTL (20s)


def test_a_frozen_leader_loses_the_lock_too(election: Election) -> None:
    leader, follower = two_nodes_with_liveness(election)
    frozen = election.candidates[leader].elector
    frozen.process.send_signal(signal.SIGSTOP)  # wedged: no thread runs at all
    try:
        election.wait_holder(15, among=[follower])
    finally:
        frozen.process.send_signal(signal.SIGCONT)
    # Thawed, it notices the loss and carries on as a follower.
    frozen.wait_log(r"\*\*\* LOCK LOST \*\*\*", 15)
    assert frozen.running()
