"""Scripted schedules: one scenario (two nodes, their settings, a fault and what
follows it at stated times) played in the simulated world, recording every
state of the trigger-key. tests/test_sim_fidelity.py plays the same scenario on
the test bed (real Consul 1.14.5, real vip-elector processes) and compares the
two recordings: the simulation's verdicts are only worth what its world is.

A scenario's times are relative to the fault; the fault itself comes some time
after the first node took the key, and the second node starts some time after
that: the real run measures both and the simulated run replays them (the
session's renewal phase, e.g., decides when a SIGKILLed leader's session
expires).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.sim.consul import SERF_DETECT, Entry
from tests.sim.node import KEY, SimNode, make_settings
from tests.sim.world import Violation, World, patched
from vip_elector.continuity import Inheritance
from vip_elector.decision import Memory, StopAsked, VipSeen
from vip_elector.key_entries import LOCK_FLAG
from vip_elector.trigger_key import TriggerKey

NODES = ("a", "b")
# The servers learn a failed HTTP check at its next run: within its interval (1 s
# on the test bed), half of it on average. The comparison's tolerance for the
# transitions a check failure starts covers the other half (see the test).
CHECK_NOTICED = 0.5


@dataclass(frozen=True)
class Step:
    """One action, ``at`` seconds after the fault (the first step is the fault)."""

    at: float
    action: str  # check_fail, sigterm, sigkill, start, blank, switchover, sighup, sigusr2, ...
    node: str = "a"
    change: tuple[tuple[str, Any], ...] = ()  # settings changed before a SIGHUP / SIGUSR2
    duration: float = 0.0  # how long a Consul leader election leaves the cluster without one


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: tuple[Step, ...]
    # The key is recorded this long after the fault: the last transition expected
    # plus a margin, so that one more on the test bed would show (the test checks).
    watch: float
    ttl: float = 10.0
    lock_delay: float = 1.0
    interval_ms: int = 1000
    fenced: bool = False
    maintenance_service: bool = False  # node a's check belongs to a service (consul maint)
    cluster: bool = False  # three servers, a client agent per node (N, L)
    # Extra tolerance on the delays counted from the fault, for a latency of the
    # real run the simulation does not model (stated with the scenario).
    slack: float = 0.0


@dataclass(frozen=True)
class Timing:
    """When, after node a's acquisition, node b started and the fault came; how
    long a SIGUSR2's exec took until the new process started (None: no SIGUSR2);
    how long after a killed agent the servers marked its serfHealth critical
    (None: not measured, SERF_DETECT); how long a start step took until the new
    process started (None: no start step, or at once)."""

    b_started: float
    fault: float
    exec_took: float | None = None
    serf_detected: float | None = None
    start_took: float | None = None


@dataclass(frozen=True)
class LeadersSeen:
    t: float  # seconds after the fault
    nodes: frozenset[str]  # the nodes whose /leader answers 200


# How often the simulated /leader answers are sampled (the real ones are polled).
LEADER_SAMPLE = 0.02


@dataclass(frozen=True)
class KeySeen:
    t: float  # seconds after the fault
    value: str | None  # None: the key does not exist
    session: str | None


class ScriptedWorld(World):
    """The simulated world without random schedules: nodes a and b, the scenario's
    settings, the scenario's steps at their times. Every invariant of the random
    schedules stays armed."""

    def __init__(self, scenario: Scenario, timing: Timing) -> None:
        super().__init__(seed=0, minutes=10.0)
        self.lines.clear()  # the random configuration it drew is replaced below
        self.scenario = scenario
        self.timing = timing
        self.fenced = scenario.fenced
        self.ttl = scenario.ttl
        self.lock_delay = scenario.lock_delay
        self.interval_ms = scenario.interval_ms
        self.consul.checks.clear()
        self.nodes = []
        self.agents = {}
        for name in NODES:
            settings = make_settings(
                name,
                fenced=scenario.fenced,
                ttl=scenario.ttl,
                lock_delay=scenario.lock_delay,
                interval_ms=scenario.interval_ms,
            )
            node = self._add_node(name, settings)
            setattr(node, "start", self._starter(node))  # noqa: B010 - an instance's own start
        first = self.nodes[0].settings
        self.gap = first.handover_gap
        self.fence_bound = first.fence_bound if self.fenced else 0.0
        self.quiet_from = self.end
        self.fault_at: float | None = None
        self.seen: list[KeySeen] = []
        self.leaders: list[LeadersSeen] = []  # fenced: who answers 200 on /leader
        self._state: tuple[str | None, str | None] = (None, None)
        watched = self.consul.observers.on_key_change
        self.consul.observers.on_key_change = lambda *args: self._record(watched, *args)
        self.trace(f"scenario {scenario.name}: {scenario}")

    def _starter(self, node: SimNode) -> Callable[[Memory | None, Inheritance | None], None]:
        """node.start, then what the test bed's daemons see of the VIP: nothing (no
        vip-manager, no namespace: the address watch cannot observe it), so a
        hand-over waits the gap there and here alike."""
        start = node.start

        def started(memory: Memory | None = None, inherit: Inheritance | None = None) -> None:
            start(memory, inherit)
            if node.daemon is not None:
                node.daemon.deliver(VipSeen(None))

        return started

    # -- recording ---------------------------------------------------------------------
    def _record(
        self,
        watched: Callable[[str, Entry | None, Entry | None, str], None],
        key: str,
        before: Entry | None,
        after: Entry | None,
        by: str,
    ) -> None:
        watched(key, before, after, by)
        if key != KEY:
            return
        state = (None, None) if after is None else ((after.value or b"").decode(), after.session)
        if state == self._state:
            return
        self._state = state
        if self.fault_at is not None:
            self.seen.append(KeySeen(self.now - self.fault_at, *state))
        elif state[0] == "a":
            self._acquired()

    def _acquired(self) -> None:
        """Node a took the key: b starts, the fault and its steps are scheduled."""
        b = self._node("b")
        self.at(self.now + self.timing.b_started, b.start)
        fault_at = self.fault_at = self.now + self.timing.fault
        self.seen.append(KeySeen(-self.timing.fault, *self._state))
        for step in self.scenario.steps:
            self.at(fault_at + step.at, self._action(step))
        self.end = fault_at + self.scenario.watch
        if self.scenario.fenced:
            self.at(fault_at - 1.0, self._sample_leaders)

    def _sample_leaders(self) -> None:
        """Who answers 200 on /leader, as the vip-manager model asks it."""
        assert self.fault_at is not None
        nodes = frozenset(
            n.name for n in self.nodes if n.fence.until > self.now and (n.running or n.restarting)
        )
        if not self.leaders or self.leaders[-1].nodes != nodes:
            self.leaders.append(LeadersSeen(self.now - self.fault_at, nodes))
        self.after(LEADER_SAMPLE, self._sample_leaders)

    # -- running -----------------------------------------------------------------------
    def play(self) -> list[KeySeen]:
        """The key's states from the one in force at the fault on (times from the fault);
        an invariant broken on the way raises Violation (``report()`` says which)."""
        with patched(self):
            self.at(0.0, self._node("a").start)
            for node in self.nodes:
                node.vm.start()
            self.after(1.0, self._periodic)
            self.drain()
        if self.fault_at is None:
            raise Violation(f"node a never took the key in the simulation ({self.scenario.name})")
        before = [s for s in self.seen if s.t < 0][-1:]
        return before + [s for s in self.seen if s.t >= 0]

    def _action(self, step: Step) -> Callable[[], None]:
        node = self._node(step.node)

        def act() -> None:
            self.trace(f"STEP {step.action} {step.node} {dict(step.change)}")
            if step.change:
                node.reconfigure(**dict(step.change))
            if step.action == "consul_election":
                self._consul_election(node, step.duration)
            else:
                getattr(self, f"_{step.action}")(node)

        return act

    # -- the actions, as the test bed does them ---------------------------------------------
    def _check_fail(self, node: SimNode) -> None:
        self.after(CHECK_NOTICED, lambda: self._set_check(node, "critical"))

    def _sigterm(self, node: SimNode) -> None:
        if node.daemon is not None and node.daemon.running:
            node.daemon.stop(StopAsked())

    def _sigkill(self, node: SimNode) -> None:
        if node.daemon is not None:
            node.daemon.kill()

    def _start(self, node: SimNode) -> None:
        self.after(self.timing.start_took or 0.0, node.restart_after_failure)

    def _blank(self, node: SimNode) -> None:
        """What a hand-over's blank writes, as the test bed writes it for a node whose
        process is gone: the holding session, an empty value, the lock flag."""
        entry = self.consul.kv.get(KEY)
        assert entry is not None, "nobody holds the key to blank"
        assert entry.session, f"nobody holds the key to blank ({entry})"
        lock = {"Verb": "lock", "Key": KEY, "Value": "", "Flags": LOCK_FLAG}
        assert self.consul.txn([{"KV": {**lock, "Session": entry.session}}], by="test").ok

    def _switchover(self, node: SimNode) -> None:
        """`switchover --to <node>`: the request the CLI writes."""
        with contextlib.suppress(Exception):
            TriggerKey(self._adapter(node), KEY, node.name).request_switchover(node.name, "op")

    def _sighup(self, node: SimNode) -> None:
        self._sighup_session(node, keep=False)

    def _sigusr2(self, node: SimNode) -> None:
        self._sigusr2_now(node, self.timing.exec_took)

    def _consul_maintenance(self, node: SimNode) -> None:
        self._maintenance(node, True, "consul")

    def _kill_agent(self, node: SimNode) -> None:
        """The node's Consul agent SIGKILLed: its daemon's calls are refused, and the
        servers declare the node failed (serfHealth critical) as long after it as
        they did on the test bed (SERF_DETECT when not measured)."""
        node.agent.faults.http_down = True
        self.consul.wake_agent(node.agent)
        detected = self.timing.serf_detected
        self.after(
            SERF_DETECT if detected is None else detected,
            lambda: self.consul.set_check(node.name, "serfHealth", "critical"),
        )

    def _consul_election(self, node: SimNode, duration: float) -> None:
        """The Consul leader server killed: no leader (every call fails) for ``duration``."""
        self.consul.no_leader = True
        for agent in self.agents.values():
            self.consul.wake_agent(agent)
        self.after(duration, lambda: setattr(self.consul, "no_leader", False))


def play(scenario: Scenario, timing: Timing) -> tuple[list[KeySeen], ScriptedWorld]:
    world = ScriptedWorld(scenario, timing)
    try:
        return world.play(), world
    except Violation as exc:
        raise AssertionError(f"the simulation broke an invariant:\n{world.report()}") from exc
