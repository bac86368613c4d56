"""The monitoring kit's thresholds against real daemons: in a healthy fenced
cluster no alert condition of examples/prometheus/vip-elector.rules.yml holds
(the fence stays above half, renewals are never late, one leader, two
eligible), while a --notify hook that fails is counted as the hooks alert
expects. (promtool tests the rules themselves: `make test-rules`.)"""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import Election
from tests.testbed.agents import free_port
from tests.testbed.configs import write_vip_manager_config
from tests.testbed.scrape import Samples
from tests.testbed.scrape import scrape as samples_of
from tests.testbed.waiting import sample, wait_until


def scrape(port: int) -> tuple[float, Samples]:
    """(when, the samples of /metrics by name and labels)."""
    when = time.time()
    return when, samples_of(port)


def test_a_healthy_fenced_cluster_trips_no_alert_and_a_failing_hook_is_counted(
    election: Election, tmp_path: Path
) -> None:
    ports = {"node-a": free_port(), "node-b": free_port()}
    for name, port in ports.items():
        config = write_vip_manager_config(
            tmp_path / f"{name}.yml",
            trigger_key=election.key,
            leader_endpoint=f"http://127.0.0.1:{port}",
        )
        hook = ["--notify", "false"] if name == "node-a" else []
        election.add(
            name,
            config=config,
            addr=election.agent.http_addr,
            lock_delay="5s",
            args=["--status-addr", f"127.0.0.1:{port}", *hook],
        )
        if name == "node-a":
            election.wait_holder()
    wait_until(
        lambda: all(scrape(p)[1][("vip_elector_eligible", ())] == 1 for p in ports.values()),
        20,
        "both nodes eligible",
    )

    seen = sample(lambda: {name: scrape(port) for name, port in ports.items()}, 4.0, 0.25)
    assert len(seen) > 8
    for scrapes in seen:
        leaders = eligible = 0.0
        for name, (when, found) in scrapes.items():
            leader = found[("vip_elector_state", (("state", "leader"),))]
            leaders += leader
            eligible += found[("vip_elector_eligible", ())]
            assert found[("vip_elector_healthy", ())] == 1
            info = [dict(labels) for k, labels in found if k == "vip_elector_build_info"]
            assert [(i["key"], i["value"]) for i in info] == [(election.key, name)]
            assert not [k for k, _ in found if k.endswith("_created")]
            # VipElectorRenewalsLate: a renewal over 0.8 TTL old at a scrape.
            age = when - found[("vip_elector_last_renew_timestamp_seconds", ())]
            assert age / found[("vip_elector_session_ttl_seconds", ())] < 0.8, (name, age)
            # VipElectorFenceExpiring: the fenced leader under half its fence.
            assert found[("vip_elector_fenced_mode", ())] == 1
            bound = found[("vip_elector_fence_bound_seconds", ())]
            assert bound > 3
            left = found[("vip_elector_fence_remaining_seconds", ())]
            if leader:
                assert left >= 0.5 * bound, (name, left, bound)
            else:
                assert left == 0
        assert leaders == 1  # VipElectorNoLeader, VipElectorTwoLeaders
        assert eligible == 2  # VipElectorNoStandby

    _, first = scrape(ports["node-a"])
    assert first[("vip_elector_lock_acquired_total", ())] == 1
    # `false` ran for FOLLOWER and LEADER: VipElectorHooksFailing's outcome.
    failed = ("vip_elector_notify_runs_total", (("outcome", "failed"),))
    wait_until(lambda: scrape(ports["node-a"])[1][failed] >= 2, 10, "the failed hooks counted")
    _, follower = scrape(ports["node-b"])
    assert follower[("vip_elector_lock_acquired_total", ())] == 0
    assert follower[failed] == 0  # no hook there
