"""The daemon on a real 3-server cluster, one client agent per node."""

from __future__ import annotations

import time

from tests.conftest import Election
from tests.testbed.agents import ConsulCluster
from tests.testbed.waiting import sample, wait_until


def start_two(race: Election, cluster: ConsulCluster) -> tuple[str, str]:
    for client in cluster.clients[:2]:
        race.add(client.name, agent=client)
    leader = race.wait_holder(30)
    follower = next(name for name in race.candidates if name != leader.name)
    wait_until(lambda: race.sessions_of(race.candidates[follower]), 20, "follower session")
    return leader.name, follower


def test_node_failure_moves_the_key(
    cluster_election: Election, consul_cluster: ConsulCluster
) -> None:
    race = cluster_election
    leader, follower = start_two(race, consul_cluster)
    leader_node = race.candidates[leader]
    assert leader_node.agent is not None

    killed = time.monotonic()
    leader_node.agent.kill()  # the node's Consul agent dies: serfHealth fails

    race.wait_holder(60, among=[follower])
    took = time.monotonic() - killed
    # The orphaned daemon cannot renew: it steps down after one TTL by its own clock.
    lost = leader_node.elector.wait_log(r"\*\*\* LOCK LOST \*\*\*", 20)
    assert "renew_timeout" in lost
    print(f"node failure: key moved after {took:.1f}s")
    assert took < 40, took


def test_killing_the_consul_leader_does_not_move_the_lock(
    cluster_election: Election, consul_cluster: ConsulCluster
) -> None:
    race = cluster_election
    leader, _ = start_two(race, consul_cluster)
    observer = consul_cluster.clients[2].api()
    before = observer.kv_get(race.key)
    assert before is not None

    old_server = consul_cluster.leader_server()
    old_server.kill()
    consul_cluster.wait_leader(30, not_this=old_server)

    # Watch for two TTLs (Consul restarts session timers at 2 x TTL on a new
    # leader): the key must keep the same session and value throughout.
    def holder() -> tuple[str | None, str | None]:
        entry = observer.kv_get(race.key)
        return (entry.session, entry.text) if entry else (None, None)

    seen = set(sample(holder, 22.0))
    assert seen == {(before.session, leader)}, seen

    # The old leader server comes back and rejoins; still no change.
    old_server.start()
    old_server.wait_ready(60)
    entry = observer.kv_get(race.key)
    assert entry is not None
    assert (entry.session, entry.text) == (before.session, leader)
    for candidate in race.candidates.values():
        assert candidate.elector.count("LOCK LOST") == 0
        assert candidate.elector.count("LOCK ACQUIRED") == (1 if candidate.name == leader else 0)


def test_clean_restart_of_the_leaders_agent_moves_the_key_and_the_node_rejoins(
    cluster_election: Election,
    consul_cluster: ConsulCluster,
) -> None:
    race = cluster_election
    leader, follower = start_two(race, consul_cluster)
    leader_node = race.candidates[leader]
    assert leader_node.agent is not None

    leader_node.agent.stop()  # graceful leave: Consul invalidates the node's sessions
    race.wait_holder(30, among=[follower])
    leader_node.agent.start().wait_ready(60)
    # The daemon survived its agent's restart and competes again with a new session.
    wait_until(lambda: race.sessions_of(leader_node), 40, "the restarted node competes again")
    assert leader_node.elector.running()
    assert race.holder() == follower
