"""The fenced mode: vip-manager v5 in `dcs-type: patroni` follows vip-elector's /leader
(on the real 3-server cluster, hosts in namespaces, the VIP watched on every host)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import requests

from tests.testbed import netns as netns_mod
from tests.testbed.binaries import vip_manager_has_patroni_mode
from tests.testbed.elector import Elector
from tests.testbed.key_watch import KeyWatcher
from tests.testbed.netns import Host, VipLab
from tests.testbed.vip_watch import VipWatcher
from tests.testbed.waiting import wait_until

pytestmark = [pytest.mark.netns, pytest.mark.integration, pytest.mark.slow]

FENCE_MARGIN = 0.2  # vip_elector.settings.FENCE_MARGIN
INTERVAL = 0.1  # the lab's vip-manager interval


class FencedLab:
    def __init__(self, lab: VipLab, vip: VipWatcher, keys: KeyWatcher) -> None:
        self.lab, self.vip, self.keys = lab, vip, keys
        self.electors: dict[str, Elector] = {}

    def start(self, name: str, lock_delay: str) -> Elector:
        node = self.lab.nodes[name]
        elector = Elector(
            name,
            self.lab.workdir,
            self.lab.config_paths[name],
            check_id=node.check.check_id,
            lock_delay=lock_delay,
            args=["--status-addr", self.lab.status_addr(node.host)],
            netns=node.host.netns,
        ).start()
        self.electors[name] = elector
        return elector

    def restart_all(self, lock_delay: str) -> str:
        """Fresh daemons with this lock-delay; returns the leader (a, the first)."""
        for elector in self.electors.values():
            elector.terminate()
        for name in self.lab.nodes:
            self.start(name, lock_delay)
            if name == "a":
                self.wait_vip(("a",))
        for name in self.lab.nodes:
            wait_until(partial(serving, self.host(name)), 20, f"{name} serves /leader")
        return "a"

    def host(self, name: str) -> Host:
        return self.lab.nodes[name].host

    def wait_vip(self, holders: tuple[str, ...], timeout: float = 30) -> float:
        return float(wait_until(lambda: self.vip.holders() == holders, timeout, f"VIP {holders}"))

    def key_value(self) -> str | None:
        return self.keys.current()[0]


def serving(host: Host) -> bool:
    return leader_code(host) in (200, 503)


def leader_code(host: Host) -> int | None:
    try:
        url = f"{VipLab.leader_endpoint(host)}/leader"
        return requests.get(url, timeout=0.5).status_code
    except requests.RequestException:
        return None


@pytest.fixture(scope="module")
def fenced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FencedLab]:
    reason = netns_mod.unavailable_reason() or vip_manager_has_patroni_mode()
    if reason:
        pytest.skip(f"the fenced mode needs vip-manager v5 in namespaces: {reason}")
    workdir: Path = tmp_path_factory.mktemp("fenced")
    lab = VipLab(["a", "b"], workdir, "service/fenced/vip", servers=3, fenced=True).start()
    try:
        for node in lab.nodes.values():
            node.check.register()
            node.check.wait_status("passing")
        assert lab.cluster is not None
        vip = VipWatcher(lab.network.hosts, lab.vip).start().wait_watching()
        keys = KeyWatcher(lab.cluster.servers, lab.trigger_key)
        keys.start_watching()
        lab.start_vip_managers()
        yield FencedLab(lab, vip, keys)
        vip.stop()
        keys.stop()
    finally:
        lab.stop()


def test_health_failure_stop_and_node_failure_move_the_vip_without_two_holders(
    fenced: FencedLab,
) -> None:
    fenced.restart_all("1s")
    t0 = time.monotonic()
    # H: a's check fails.
    fenced.lab.nodes["a"].check.set("500")
    fenced.wait_vip(("b",))
    fenced.lab.nodes["a"].check.set("200")
    wait_until(lambda: leader_code(fenced.host("a")) == 503, 20, "a serves /leader again")
    # G: b stops cleanly.
    fenced.electors["b"].terminate()
    fenced.wait_vip(("a",))
    fenced.start("b", "1s")
    wait_until(lambda: leader_code(fenced.host("b")) == 503, 20, "b is back as a follower")
    # N: a's agent dies.
    agent = fenced.lab.nodes["a"].agent
    agent.kill()
    fenced.wait_vip(("b",), 45)
    agent.start().wait_ready(60)
    measure = fenced.vip.measure(t0, time.monotonic())
    assert measure.two == [], measure.two
    assert measure.unobserved == []


def test_the_vip_rides_through_a_consul_leader_election_with_lock_delay_5s(
    fenced: FencedLab,
) -> None:
    leader = fenced.restart_all("5s")
    assert fenced.lab.cluster is not None
    fenced.lab.cluster.wait_healthy()
    before = fenced.keys.current()
    t0 = time.monotonic()
    server = fenced.lab.cluster.leader_server()
    server.kill()
    fenced.lab.cluster.wait_leader(30, not_this=server)
    wait_until(lambda: time.monotonic() - t0 > 12, 15, "past the election and renewals")
    measure = fenced.vip.measure(t0, time.monotonic())
    server.start().wait_ready(60)
    fenced.lab.cluster.wait_healthy()
    assert measure.nobody == [], f"the VIP was gone: {measure.nobody}"  # 0 ms with nobody
    assert measure.two == []
    assert fenced.vip.holders() == (leader,)
    assert fenced.keys.current() == before  # the lock did not move


def test_a_partitioned_leader_loses_200_before_anybody_can_take_the_lock(
    fenced: FencedLab,
) -> None:
    lock_delay = 5.0
    leader = fenced.restart_all("5s")
    bound = lock_delay * 0.999 - INTERVAL - FENCE_MARGIN
    host = fenced.host(leader)
    assert leader_code(host) == 200
    t_cut = time.monotonic()
    host.partition()
    try:
        # /leader on the partitioned host (through its observation link, which a
        # partition does not cut): 503 once the last proof is older than the bound.
        wait_until(lambda: leader_code(host) == 503, bound + 5, "a drops /leader")
        t_503 = time.monotonic()
        wait_until(lambda: fenced.key_value() == "b", 40, "b takes the lock")
        t_taken = next(e.t for e in fenced.keys.since(t_cut) if e.value == "b")
        fenced.wait_vip(("b",))
    finally:
        host.heal()
    assert t_503 < t_taken, (t_503 - t_cut, t_taken - t_cut)
    # Within the bound of the last proof, which is at most a fifth of it old (the
    # watch returns every B/10): not later, and not much earlier either.
    assert 0.75 * bound <= t_503 - t_cut <= bound + 0.1, t_503 - t_cut
    measure = fenced.vip.measure(t_cut, time.monotonic())
    assert measure.two == [], measure.two
    fenced.electors[leader].process.send_signal(signal.SIGTERM)
