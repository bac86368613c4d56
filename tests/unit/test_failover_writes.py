"""What one failover writes to Consul does not grow with the number of candidates:
the bench's scale rows (bench/failover.py, scale_run) played in the simulated
world, each write counted by the node that sent it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from bench.failover import MemberSeen, heartbeats
from tests.sim.consul import SimAgent
from tests.sim.node import KEY, SimNode, make_settings
from tests.sim.world import World, patched
from vip_elector.decision import StopAsked, VipSeen

WRITES = ("put_key", "txn", "delete_key", "create_session", "destroy_session")
WINDOW = 3.0  # after the takeover, as the bench counts


class Candidates(World):
    """N candidates of distinct priorities (10 + i) on one key, no VIP observed (as
    the bench's scale candidates: no vip-manager runs where they do)."""

    def __init__(self, count: int) -> None:
        super().__init__(seed=1, minutes=2.0)
        self.lines.clear()
        self.fenced = False
        self.consul.checks.clear()
        self.nodes, self.agents = [], {}
        for i in range(count):
            name = f"c{i:02d}"
            settings = make_settings(
                name, fenced=False, ttl=10.0, lock_delay=1.0, interval_ms=100, priority=10 + i
            )
            self._add_node(name, settings).observable = False
        self.quiet_from = self.end


def failover_writes(
    count: int, monkeypatch: pytest.MonkeyPatch, sigterm_at: float = 15.0, spread: float = 2.0
) -> Counter[str]:
    """Raft writes by sender, from the SIGTERM of the best candidate (which started
    first and took the key; the others started within ``spread`` s after) to WINDOW
    after the next best took the key."""
    world = Candidates(count)
    counting = [False]
    sent: Counter[str] = Counter()

    def counted(name: str) -> Callable[..., Any]:
        call = getattr(SimAgent, name)

        def wrapper(agent: SimAgent, *args: Any, **kwargs: Any) -> Any:
            before = world.consul.index
            try:
                return call(agent, *args, **kwargs)
            finally:
                if counting[0] and world.consul.index > before:
                    sent[agent.node] += world.consul.index - before

        return wrapper

    for name in WRITES:
        monkeypatch.setattr(SimAgent, name, counted(name))
    top, second = world.nodes[-1], world.nodes[-2]
    took: list[float] = []
    watched = world.consul.observers.on_key_change

    def key_changed(key: str, before: Any, after: Any, by: str) -> None:
        watched(key, before, after, by)
        if key == KEY and after is not None and after.value == second.name.encode() and not took:
            took.append(world.now)
            world.after(WINDOW, lambda: counting.__setitem__(0, False))

    world.consul.observers.on_key_change = key_changed

    def sigterm() -> None:
        assert world.consul.kv[KEY].value == top.name.encode()
        counting[0] = True
        assert top.daemon is not None
        top.daemon.stop(StopAsked())

    def start(node: SimNode) -> None:
        node.start()
        # The address watch's first answer comes before the session does (the
        # test bed's candidates log "not watching the VIP" first): the member entry
        # says "starting" before it says "follower".
        assert node.daemon is not None
        node.daemon.deliver(VipSeen(None))

    with patched(world):
        world.at(0.0, lambda: start(top))
        for node in world.nodes[:-1]:
            world.at(world.rng.uniform(0.05, spread), partial(start, node))
        world.at(sigterm_at, sigterm)
        world.end = sigterm_at + 30.0
        world.drain()
    assert took, "the second best candidate never took the key"
    assert world.violation is None, world.report()
    return sent


@pytest.mark.parametrize("count", [2, 10, 30])
def test_a_failover_writes_the_same_whatever_the_number_of_candidates(
    count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = failover_writes(count, monkeypatch)
    old, new = f"c{count - 1:02d}", f"c{count - 2:02d}"
    # The leader that stops: its candidate entry, the key, its session, the
    # history, its member entry; the next: the acquire, the history, its member entry.
    assert sent == {old: 5, new: 3}, f"writes by node: {dict(sent)}"


def test_a_sigterm_soon_after_the_start_counts_each_candidates_start_up_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the bench counted on 2026-12-06 (8, 16 and 36 for 2, 10 and 30): each
    candidate's member entry says "starting", then "follower" REPORT_MIN_GAP later;
    a SIGTERM within that gap counts the second one in the failover's window (there,
    the candidates started within 0.2 s, the SIGTERM came 2.6 s later). So the
    bench waits for raft to be still before the SIGTERM."""
    sent = failover_writes(10, monkeypatch, sigterm_at=2.7, spread=0.25)
    assert sum(sent.values()) == 16, f"writes by node: {dict(sent)}"
    assert sorted(sent) == [f"c{i:02d}" for i in range(10)]


def _member(index: int, at: float, state: str = "follower") -> MemberSeen:
    return MemberSeen(index, (("state", f'"{state}"'),), at, heartbeat=60.0)


def test_the_bench_leaves_out_member_heartbeats_only() -> None:
    """The bench's scale row subtracts the member entries rewritten unchanged when
    their heartbeat was due; a follower writing its unchanged entry early (on the
    change of leader), or a changed entry, stays the failover's."""
    before = {
        "due": _member(10, at=1000.0),
        "early": _member(11, at=1030.0),
        "changed": _member(12, at=1000.0),
        "untouched": _member(13, at=1000.0),
        "written_before": _member(14, at=1000.0),
    }
    after = {
        "due": _member(21, at=1060.2),
        "early": _member(22, at=1062.0),
        "changed": _member(23, at=1062.0, state="leader"),
        "untouched": _member(13, at=1000.0),
        "written_before": _member(19, at=1060.0),
    }
    assert heartbeats(before, after, since=20) == 1
