"""The simulated world: a seeded scheduler with a virtual clock, N nodes running
the real decision core, faults and operator actions, and the invariants,
checked at every step (bounds in tests/sim/bounds.py).

One run is one seed: everything random comes from ``random.Random(seed)``, the
heap orders events by (time, sequence number), nothing reads the real clock,
so a seed replays exactly.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import random
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from tests.sim import bounds
from tests.sim.consul import SERF_DETECT, Entry, SimAgent, SimConsul
from tests.sim.node import CHECK, KEY, SimNode, make_settings, on_each
from vip_elector import election as election_module
from vip_elector import state as state_module
from vip_elector import trigger_key as trigger_key_module
from vip_elector.consul_adapter import ConsulAdapter, Unavailable
from vip_elector.continuity import Inheritance
from vip_elector.decision import (
    VIP_STEP_DOWN_HOLD,
    MaintenanceFile,
    Memory,
    StepDownAsked,
    StopAsked,
)
from vip_elector.key_entries import LOCK_FLAG
from vip_elector.roles import Cause, Role
from vip_elector.settings import FENCE_MARGIN, HANDOVER_MARGIN, ConsulSettings, Settings
from vip_elector.trigger_key import TriggerKey, candidates_prefix

WALL_OFFSET = 1_700_000_000.0
TRACE_KEPT = 400
TRACE_SHOWN = 40
# Mean time between two lost-answer faults (f_lost_answers) in a schedule.
LOST_ANSWERS_EVERY = 120.0
# Mean time between two of node_watch_schedules' combinations in a schedule.
SURVIVOR_FAMILY_EVERY = 150.0
# A failed hand-over's restored value is deleted within this plus the observing
# node's slowness (one read of that node: its agent's latency).
RESTORE_DELETED_WITHIN = 0.004


CANDIDATES = candidates_prefix(KEY)
FIRST_READ = "took the free key without ever reading it held by the node that had just left it"


class Violation(Exception):
    pass


@dataclass
class Stats:
    schedules: int = 0
    simulated: float = 0.0
    faults: int = 0
    operator: int = 0
    events: int = 0
    violations: list[str] = field(default_factory=list)


class SimTime:
    """Stands in for the ``time`` module of the code under test."""

    def __init__(self, world: World) -> None:
        self.world = world

    def monotonic(self) -> float:
        return self.world.now

    def time(self) -> float:
        return self.world.wall()


@contextlib.contextmanager
def patched(world: World) -> Iterator[None]:
    """The code under test reads the world's clock and talks to the simulated agents."""
    clock = SimTime(world)

    def adapter_for(settings: ConsulSettings, timeout: float = 0.0) -> SimAgent:
        return world.agents[settings.host]

    replaced: list[tuple[object, str, object]] = [
        (election_module, "time", clock),
        (state_module, "time", clock),
        (trigger_key_module, "time", clock),
        (election_module, "ConsulAdapter", adapter_for),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in replaced]
    for owner, name, value in replaced:
        setattr(owner, name, value)
    logger = logging.getLogger("vip_elector")
    disabled = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = disabled
        for owner, name, value in saved:
            setattr(owner, name, value)


class World:
    def __init__(self, seed: int, minutes: float = 9.0, renewer_ttl_rule: bool = True) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self.end = minutes * 60
        self.heap: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = 0
        self.events = 0
        self.faults = 0
        self.operator = 0
        self.hostname = "simhost"
        self.lines: list[tuple[float, str]] = []
        self.violation: str | None = None
        self.renewer_ttl_rule = renewer_ttl_rule
        self.consul = SimConsul(lambda: self.now, self.at, self.rng)
        self.consul.observers.on_key_change = self._key_changed
        self.consul.observers.on_lock_delay_refusal = self._lock_delay_refusal
        self.lock_delay_refusals: dict[str, int] = {}
        self.node_faults: dict[str, int] = {}  # node -> faults on its agent not healed
        self.node_faulted_at: dict[str, float] = {}
        # The configuration of this schedule.
        rng = self.rng
        self.fenced = rng.random() < 0.4
        self.ttl = rng.choice([10.0, 15.0])
        self.lock_delay = rng.choice([5.0, 8.0]) if self.fenced else rng.choice([1.0, 5.0])
        self.interval_ms = rng.choice([500, 1000])
        count = rng.choice([2, 3, 3, 4])
        # Priorities: all equal, or one preferred node that preempts back.
        preferred = rng.random() < 0.3
        preempt = rng.choice([None, 3.0, 10.0]) if preferred else None
        # The VIP watched (VipSeen, vip-manager stopped) in half the seeds, with
        # --step-down-without-vip in two of three of them; from a generator of its
        # own, so that the other half of the seeds runs exactly as before.
        self.vip_rng = random.Random(f"{seed}/vip")
        self.vip_watched = self.vip_rng.random() < 0.5
        self.nw_rng = random.Random(f"{seed}/node-watch")
        self.lost_rng = random.Random(f"{seed}/lost-answers")
        # o_failed_switchover_then_stop: (leader, until when, within, its stop)
        self.restore_hook: tuple[str, float, float, Callable[[], None]] | None = None
        self.step_down_without_vip = self.vip_watched and self.vip_rng.random() < 2 / 3
        self.nodes: list[SimNode] = []
        self.agents: dict[str, SimAgent] = {}
        for number in range(count):
            name = f"n{number + 1}"
            settings = make_settings(
                name,
                fenced=self.fenced,
                ttl=self.ttl,
                lock_delay=self.lock_delay,
                interval_ms=self.interval_ms,
                priority=200 if preferred and number == 0 else 100,
                preempt_delay=preempt,
                step_down_without_vip=self.step_down_without_vip,
            )
            self._add_node(name, settings)
        first = self.nodes[0].settings
        self.gap = first.handover_gap
        self.key_changed_at = float("-inf")
        self.slow_observer: SimNode | None = None  # of o_failed_switchover_then_stop
        self.fence_bound = first.fence_bound if self.fenced else 0.0
        self.quiet_from = self.end - bounds.QUIET
        self.disturbed_at = 0.0  # the last fault or operator action (start or end)
        self.active = 0  # faults and operator actions not healed yet
        self.last_owner: str | None = None
        self.acquired_at: dict[str, float] = {}  # node -> when the key last became its
        self.keep: dict[str, tuple[float, str]] = {}  # node -> (since, why): lock must stay
        self.refused: dict[str, int] = {}
        self.moves: list[float] = []  # when the key went from one node to another
        # node -> (when, which process): its last step-down without its VIP
        self.vip_step_downs: dict[str, tuple[float, object]] = {}
        self.operated_at = -1e9
        self.trace(
            f"seed {seed}: {count} nodes, {'patroni' if self.fenced else 'trigger-key'} mode, "
            f"{f'n1 preferred (priority 200), preempt-delay {preempt}, ' if preferred else ''}"
            f"ttl {self.ttl:g}s, lock-delay {self.lock_delay:g}s, interval {self.interval_ms} ms"
            f"{', VIP watched' if self.vip_watched else ''}"
            f"{', --step-down-without-vip' if self.step_down_without_vip else ''}"
        )

    def _add_node(self, name: str, settings: Settings) -> SimNode:
        """A machine with its agent (its check passing) and the servers' view of it."""
        agent = SimAgent(self.consul, name, self.rng)
        agent.local_checks[CHECK] = "passing"
        self.consul.checks[name] = {"serfHealth": "passing", CHECK: "passing"}
        self.agents[settings.consul.host] = agent
        node = SimNode(self, name, settings, agent)
        self.nodes.append(node)
        return node

    # -- the clock -------------------------------------------------------------------
    def wall(self) -> float:
        return WALL_OFFSET + self.now

    def at(self, when: float, fn: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (max(when, self.now), self.seq, fn))

    def after(self, delay: float, fn: Callable[[], None]) -> None:
        self.at(self.now + delay, fn)

    def trace(self, text: str) -> None:
        if self.lines and self.lines[-1][1].split(" (x")[0] == text:
            last_t, last = self.lines[-1]
            count = int(last.rsplit("(x", 1)[1][:-1]) + 1 if " (x" in last else 2
            self.lines[-1] = (last_t, f"{text} (x{count})")
            return
        self.lines.append((self.now, text))
        if len(self.lines) > TRACE_KEPT:
            del self.lines[: TRACE_KEPT // 2]

    def fail(self, text: str) -> None:
        if self.violation is None:
            self.violation = f"t={self.now:.3f}s {text}"
            raise Violation(self.violation)

    def escaped(self, node: str, exc: BaseException) -> None:
        if isinstance(exc, Violation):
            raise exc
        tb = "".join(traceback.format_exception(exc)[-3:]).strip()
        self.fail(f"an exception escaped the core on {node}: {exc!r}\n{tb}")

    def report(self) -> str:
        shown = self.lines[-TRACE_SHOWN:]
        trace = "\n".join(f"  {t:10.3f}  {text}" for t, text in shown)
        return (
            f"VIOLATION seed={self.seed}: {self.violation}\n{trace}\n"
            f"reproduce: make sim SEED={self.seed}"
        )

    # -- running -------------------------------------------------------------------------
    def run(self) -> bool:
        """True when every invariant held."""
        with patched(self):
            try:
                for node in self.nodes:
                    self.at(self.rng.uniform(0, 2), node.start)
                    node.vm.start()
                self._schedule()
                self.drain()
                self.now = self.end
                self._final()
            except Violation:
                return False
        return True

    def drain(self) -> None:
        """Run the events due until ``self.end`` (which an event may move)."""
        while self.heap:
            when, _, fn = heapq.heappop(self.heap)
            if when > self.end:
                break
            self.now = when
            self.events += 1
            fn()

    # -- invariants ----------------------------------------------------------------------
    def vip_changed(self, node: SimNode, holds: bool) -> None:
        self.trace(f"{node.name}: vip-manager {'ADDS' if holds else 'drops'} the VIP")
        holders = [n.name for n in self.nodes if n.vm.holds]
        if len(holders) > 1:
            note = ""
            daemon = node.daemon
            for other in holders:
                since = self.acquired_at.get(other)
                if not holds or other == node.name or daemon is None or since is None:
                    continue
                if daemon.seen_holders.get(other, -1.0) < since:
                    note = f" ({node.name} {FIRST_READ}: {other}'s)"
            self.fail(f"two VIP holders: {', '.join(holders)}{note}")

    def transitioned(self, node: SimNode, daemon: object, cause: Cause, old: Role) -> None:
        """No ping-pong while vip-manager is down everywhere: a process never steps
        down without its VIP twice within its hold (each node tries once, then the
        last one keeps the lock), unless its hold gave way in between (no other
        node was eligible, so it led again)."""
        if cause != Cause.VIP_MISSING or old != Role.LEADER:
            return
        last = self.vip_step_downs.get(node.name)
        gave_way = daemon.election.memory.vip_hold_gave_way  # type: ignore[attr-defined]
        if (
            last is not None
            and last[1] is daemon
            and self.now - last[0] < VIP_STEP_DOWN_HOLD
            # Unless it led again only because no other node was eligible.
            and (gave_way is None or gave_way < last[0])
        ):
            text = (
                f"{node.name} stepped down without its VIP twice in {self.now - last[0]:.1f}s "
                f"(its hold is {VIP_STEP_DOWN_HOLD:g}s)"
            )
            # Not from inside the state's listener, which logs and ignores exceptions.
            self.after(0.0, lambda: self.fail(text))
        self.vip_step_downs[node.name] = (self.now, daemon)

    def after_apply(self, daemon: object) -> None:
        """After each decision applied: /leader 200 on at most one node; the TTL rule."""
        if self.fenced:
            leaders = [
                n.name
                for n in self.nodes
                if n.fence.until > self.now and (n.running or n.restarting)
            ]
            if len(leaders) > 1:
                self.fail(f"/leader answers 200 on {', '.join(leaders)}")

    def _lock_delay_refusal(self, session: str, key: str) -> None:
        owner = session.split("-s", maxsplit=1)[0]
        recent = self.node_faulted_at.get(owner, -1e9) > self.now - 60
        if key != KEY or recent or self.node_faults.get(owner, 0):
            return  # a node that could not read may have missed the last freeing
        made = self.consul.sessions.get(session)
        if made is not None and made.create_index > self.consul.tombstones.get(KEY, 0):
            return  # started after the key went free: it never saw whose lock-delay runs
        count = self.lock_delay_refusals[session] = self.lock_delay_refusals.get(session, 0) + 1
        if count > bounds.MAX_LOCK_DELAY_REFUSALS:
            self.fail(
                f"session {session}: {count} acquires refused for lock-delay for one freeing of "
                "the key (the holder's lock-delay is not waited out)"
            )

    def _key_changed(self, key: str, before: Entry | None, after: Entry | None, by: str) -> None:
        if key.startswith(CANDIDATES) and after is not None:
            self._check_candidate_entry(after, by)
        if key != KEY:
            return
        self.key_changed_at = self.now
        self._restored(before, after, by)
        observer = self.slow_observer
        if observer is not None and after is not None and self._owner(after) == observer.name:
            self.slow_observer = None
            observer.agent.faults.slow = 0.0
            self.trace(f"HEAL {observer.name}'s slowness (it leads)")
        self.lock_delay_refusals.clear()
        shown = (
            "deleted" if after is None else f"{(after.value or b'').decode()!r} by {after.session}"
        )
        self.trace(f"key: {shown} (written by {by})")
        plain = before is not None and before.flags != LOCK_FLAG
        if (
            plain
            and by not in ("operator", "consul")
            and (after is None or after.flags == LOCK_FLAG)
        ):
            self.fail(f"{by} overwrote or deleted a plain key somebody wrote")
        owner_before = self._owner(before)
        others = owner_before not in (None, by) and by not in ("consul", "operator")
        if after is None and before is not None and others:
            self.fail(f"{by} deleted the key held by {owner_before}'s session")
        owner = self._owner(after)
        if owner is not None and owner != self.last_owner:
            if self.last_owner is not None and by == self.last_owner:
                self._moved()  # handed over by its holder (a preemption: no operator)
            self.last_owner = owner
            self.acquired_at[owner] = self.now
        if after is not None and owner is not None and owner != owner_before and owner == by:
            node = self._node(owner)
            since = min(node.maintenance_sources.values(), default=None)
            if since is not None and self.now - since > bounds.MAINTENANCE_NOTICE:
                self.fail(
                    f"{owner} took the key {self.now - since:.2f}s after its maintenance began"
                    + self._unseen_maintenance(node)
                )
        for name, (since, why) in list(self.keep.items()):
            handing_over = after is not None and not after.value and by == name
            if self.disturbed_at > since or self.now > since + bounds.KEEP_WINDOW or handing_over:
                del self.keep[name]  # (a hand-over, e.g. a preemption, is the leader's choice)
                continue
            if after is None or after.value != name.encode():
                self.fail(f"the lock moved away from {name} after {why}")

    def _check_candidate_entry(self, entry: Entry, by: str) -> None:
        """A candidate entry names the node its session lives on: `switchover`
        tests the target's checks and Consul maintenance on that node, and skips
        the test for an entry that names none. None only while the core could not
        know it (renewer.py: the read-back of a new session failed)."""
        session = self.consul.sessions.get(entry.session or "")
        if session is None or by in ("operator", "consul"):
            return
        named = json.loads(entry.value).get("node", "")
        if named == session.node:
            return
        node = self._node(session.node)
        unread = node.daemon is not None and entry.session in node.daemon.renewer.unread
        if named or not unread:
            self.fail(
                f"{session.node}'s candidate entry names node {named!r} (its session "
                f"{session.id} lives on {session.node}): `switchover --to` it would not test "
                "its checks"
            )

    def _moved(self) -> None:
        self.moves = [t for t in self.moves if t > self.now - 60] + [self.now]
        quiet = self.operated_at < self.now - 60
        if len(self.moves) > bounds.MAX_MOVES_PER_MINUTE and quiet:
            self.fail(
                f"the key was handed over {len(self.moves)} times in 60 s with no operator action"
            )

    def _owner(self, entry: Entry | None) -> str | None:
        if entry is None or not entry.session:
            return None
        return entry.session.split("-s")[0]

    def _node(self, name: str) -> SimNode:
        return next(n for n in self.nodes if n.name == name)

    def _holder(self) -> SimNode | None:
        owner = self._owner(self.consul.kv.get(KEY))
        return self._node(owner) if owner else None

    def _check_critical(self, node: SimNode, since: float) -> None:
        if node.check_critical_since == since and node.vm.holds:
            self.fail(
                f"the VIP is on {node.name} {self.now - since:.2f}s after its check went critical"
            )

    def calm(self) -> bool:
        """Nothing else under way: the windows of the liveness invariants open."""
        return self.active == 0

    def _leading_session(self, node: SimNode) -> str | None:
        """The session of ``node``'s daemon, if it leads with the key held by it."""
        daemon = node.daemon
        entry = self.consul.kv.get(KEY)
        if daemon is None or not daemon.running or entry is None:
            return None
        memory = daemon.election.memory
        if memory.leading and memory.session is not None and entry.session == memory.session:
            return memory.session
        return None

    def _step_down_window(self, node: SimNode, why: str) -> None:
        session = self._leading_session(node)
        if session is None or not self.calm():
            return
        since = self.now
        self.at(
            since + bounds.STEP_DOWN_BOUND, lambda: self._check_step_down(node, since, why, session)
        )

    def _keep_window(self, node: SimNode, why: str) -> None:
        daemon = node.daemon
        if daemon is None:
            return
        memory = daemon.election.memory
        if memory.handover is not None or memory.leaving is not None:
            return  # the lock is on its way out anyway
        if self._leading_session(node) is not None and self.calm():
            self.keep[node.name] = (self.now, why)

    def _check_step_down(self, node: SimNode, since: float, why: str, session: str) -> None:
        if self.disturbed_at > since:
            return
        entry = self.consul.kv.get(KEY)
        if entry is not None and entry.session == session:
            self.fail(f"{node.name} still holds the key {self.now - since:.2f}s after {why}")

    def _check_self_fence(self) -> None:
        for node in self.nodes:
            daemon = node.daemon
            if daemon is None or not daemon.running:
                continue
            memory = daemon.election.memory
            if not memory.leading or memory.session is None:
                continue
            ttl = daemon.settings.ttl
            session = self.consul.sessions.get(memory.session)
            renewed = session.renewed_at if session else None
            if renewed is not None and self.now - renewed > ttl + bounds.SELF_FENCE_SLACK:
                self.fail(
                    f"{node.name} still leads {self.now - renewed:.2f}s after its last good "
                    f"renewal (TTL {ttl:g}s)"
                )
            if session is None and daemon.renewer.session is not None:
                last = daemon.renewer.session.renewed_at
                if self.now - last > ttl + bounds.SELF_FENCE_SLACK:
                    self.fail(
                        f"{node.name} still leads {self.now - last:.2f}s after its last good "
                        f"renewal (TTL {ttl:g}s)"
                    )

    def _periodic(self) -> None:
        self._check_self_fence()
        self._check_maintenance()
        if self.now + 1.0 < self.end:
            self.after(1.0, self._periodic)

    def _check_maintenance(self) -> None:
        """A node in maintenance whose agent works lets the key go within the bound."""
        for node in self.nodes:
            since = node.maintenance_since
            if since is None or self.now - since < bounds.MAINTENANCE_BOUND:
                continue
            if self.node_faults.get(node.name, 0) or self.consul.no_leader:
                continue
            if self.node_faulted_at.get(node.name, -1e9) > self.now - bounds.MAINTENANCE_BOUND:
                continue
            if self._leading_session(node) is not None:
                self.fail(
                    f"{node.name} still holds the key {self.now - since:.2f}s after its "
                    "maintenance began" + self._unseen_maintenance(node)
                )

    def _agent_fault(self, agent: SimAgent) -> None:
        """A fault at an agent: its blocking queries return with the error (the key
        watch's and the node watch's)."""
        self.consul.wake_agent(agent)
        for node in self.nodes:
            if node.agent is agent and node.daemon is not None:
                node.daemon.node_watch.changed()

    def _unseen_maintenance(self, node: SimNode) -> str:
        """Why Consul maintenance has not reached the process (findings F5, F6)."""
        daemon = node.daemon
        if daemon is None or set(node.maintenance_sources) != {"consul"}:
            return ""
        memory = daemon.election.memory
        if memory.consul_maintenance is not None:
            return ""
        if daemon.node_watch.name is None:
            return " (Consul maintenance unseen: the node watch does not know the node's name)"
        if not memory.consul_maintenance_known:
            return " (Consul maintenance unseen: the node watch has not answered yet)"
        return " (Consul maintenance unseen: the node watch's answer is older)"

    def _final(self) -> None:
        holders = [n.name for n in self.nodes if n.vm.holds]
        if len(holders) != 1:
            self.fail(f"{len(holders)} VIP holders at the end ({', '.join(holders) or 'none'})")
        for node in self.nodes:
            mine = [s.id for s in self.consul.sessions.values() if s.node == node.name]
            daemon = node.daemon
            current = daemon.election.memory.session if daemon and daemon.running else None
            leaked = [s for s in mine if s != current]
            if leaked:
                self.fail(f"leaked session(s) of {node.name}: {', '.join(leaked)}")

    def _check_healed(self, again: bool = False) -> None:
        holders = [n for n in self.nodes if n.vm.holds]
        # A planned move (a preemption's hand-over) caught in flight: the key
        # changed a moment ago and the vip-managers have not read it yet.
        settle = self.gap + self.interval_ms / 1000 + bounds.VM_WAIT + 1.0
        if len(holders) != 1 and not again and self.now - self.key_changed_at < settle:
            self.after(settle, lambda: self._check_healed(again=True))
            return
        if len(holders) != 1:
            names = ", ".join(n.name for n in holders) or "none"
            self.fail(
                f"{len(holders)} VIP holders ({names}) "
                f"{self.now - self.quiet_from:.1f}s after every fault healed"
            )

    # -- faults and operator actions -------------------------------------------------------
    def disturb(self) -> None:
        self.disturbed_at = self.now

    def _schedule(self) -> None:
        rng = self.rng
        t = 5.0
        actions = [
            (self.f_cut_off, 3),
            (self.f_partition, 3),
            (self.f_500s, 3),
            (self.f_flaky, 2),
            (self.f_consul_election, 2),
            (self.f_check, 5),
            (self.f_slow, 1),
            (self.o_sigterm, 3),
            (self.o_sigkill, 3),
            (self.o_sigusr2, 3),
            (self.o_sighup_session, 2),
            (self.o_switchover, 4),
            (self.o_maintenance_file, 3),
            (self.o_consul_maintenance, 2),
            (self.o_step_down, 3),
            (self.o_plain_key, 1),
            (self.o_upgrade_in_maintenance, 2),
            (self.o_switchover_then_stop, 4),
            (self.o_release_after_partition, 2),
            (self.o_bad_check, 2),
            (self.o_priority, 1),
            *self.finding_schedules(),
        ]
        funcs = [f for f, _ in actions]
        weights = [w for _, w in actions]
        while True:
            t += rng.expovariate(1 / 12.0)
            if t > self.quiet_from - 45:
                break
            fn = rng.choices(funcs, weights)[0]
            self.at(t, fn)
        # The node watch's and the failed hand-over's combinations (the mutation
        # table's last survivors), from a generator of their own: the draws above
        # stay as they were.
        t = 5.0
        families = self.node_watch_schedules()
        while True:
            t += self.nw_rng.expovariate(1 / SURVIVOR_FAMILY_EVERY)
            if t > self.quiet_from - 45:
                break
            self.at(t, self.nw_rng.choices([f for f, _ in families], [w for _, w in families])[0])
        # Writes applied whose answers are lost, with a planned move of the lock
        # meanwhile: from a generator of their own too.
        t = 5.0
        while True:
            t += self.lost_rng.expovariate(1 / LOST_ANSWERS_EVERY)
            if t > self.quiet_from - 45:
                break
            self.at(t, self.f_lost_answers)
        t = 5.0
        while self.vip_watched:
            t += self.vip_rng.expovariate(1 / 60.0)
            if t > self.quiet_from - 45:
                break
            self.at(t, self.f_vip_manager)
        self.at(self.quiet_from, self._quiet)
        deadline = bounds.heal_deadline(self.ttl, self.lock_delay, self.gap)
        self.at(self.quiet_from + deadline, self._check_healed)
        self.after(1.0, self._periodic)

    def _pick(self, leader_bias: float = 0.6) -> SimNode:
        holder = self._holder()
        if holder is not None and self.rng.random() < leader_bias:
            return holder
        return self.rng.choice(self.nodes)

    def _heal_after(self, duration: float, heal: Callable[[], None], what: str) -> None:
        end = min(self.now + duration, self.quiet_from - 1)

        self.active += 1

        def done() -> None:
            self.trace(f"HEAL {what}")
            self.active -= 1
            self.disturb()
            heal()

        self.at(end, done)

    def _fault(self, text: str, node: SimNode | None = None, duration: float = 0.0) -> None:
        self.faults += 1
        self.disturb()
        self.trace(f"FAULT {text}")
        names = [node.name] if node is not None else [n.name for n in self.nodes]
        for name in names:
            self.node_faults[name] = self.node_faults.get(name, 0) + 1
            self.node_faulted_at[name] = self.now

        def healed() -> None:
            for name in names:
                self.node_faults[name] -= 1
                self.node_faulted_at[name] = self.now

        self.at(min(self.now + duration, self.quiet_from - 1), healed)

    def _op(self, text: str) -> None:
        self.operator += 1
        self.operated_at = self.now
        self.disturb()
        self.trace(f"OPERATOR {text}")

    def f_cut_off(self) -> None:
        node = self._pick()
        duration = self.rng.uniform(0.5, 3 * self.ttl)
        self._fault(f"{node.name}'s agent refuses connections for {duration:.1f}s", node, duration)
        node.agent.faults.http_down = True
        self._agent_fault(node.agent)
        self._heal_after(
            duration, lambda: setattr(node.agent.faults, "http_down", False), f"{node.name}'s agent"
        )

    def f_partition(self) -> None:
        node = self._pick()
        duration = self.rng.uniform(1.0, 3 * self.ttl)
        self._fault(f"{node.name} partitioned from the servers for {duration:.1f}s", node, duration)
        self._partition_from_servers(node)

        def heal() -> None:
            node.agent.faults.partitioned = False
            self.consul.set_check(node.name, "serfHealth", "passing")
            self.consul.set_check(node.name, CHECK, node.agent.local_checks[CHECK])

        self._heal_after(duration, heal, f"{node.name}'s partition")

    def f_500s(self) -> None:
        node = self._pick()
        duration = self.rng.choice([0.01, 0.3, 2.0, 8.0])
        self._fault(f"{node.name}'s agent answers 500 for {duration:.2f}s", node, duration)
        node.agent.faults.error_500 = True
        self._agent_fault(node.agent)
        self._heal_after(
            duration, lambda: setattr(node.agent.faults, "error_500", False), f"{node.name}'s 500s"
        )

    def f_flaky(self) -> None:
        node = self._pick()
        duration = self.rng.uniform(5, 60)
        share = self.rng.choice([0.05, 0.2, 0.5])
        self._fault(
            f"{node.name}'s agent answers 500 to {share:.0%} of calls for {duration:.0f}s",
            node,
            duration,
        )
        node.agent.faults.flaky = share
        self._heal_after(
            duration, lambda: setattr(node.agent.faults, "flaky", 0.0), f"{node.name}'s flakiness"
        )

    def f_slow(self) -> None:
        node = self._pick()
        duration = self.rng.uniform(5, 60)
        slow = self.rng.choice([0.02, 0.05, 0.09])  # twice within HANDOVER_MARGIN: FINDINGS.md
        self._fault(
            f"{node.name}'s agent answers {slow:.2f}s late for {duration:.0f}s", node, duration
        )
        node.agent.faults.slow = slow
        self._heal_after(
            duration, lambda: setattr(node.agent.faults, "slow", 0.0), f"{node.name}'s slowness"
        )

    def f_lost_answers(self) -> None:
        """The leader's agent applies KV writes but their answers are lost (the
        client times out: a stalled agent, a connection cut after the request),
        and the lock is moved on purpose meanwhile: SIGHUP with a new session, a
        switchover, a step-down. Only a read sent after such a write says
        whether it happened. Not a disturbance: every write is applied, so the
        invariants that hold while nothing fails hold here too (a reload keeps
        the lock, a step-down completes)."""
        rng = self.lost_rng
        leader = self._holder()
        if leader is None or not leader.running:
            return
        duration = rng.uniform(1.0, 8.0)
        share = rng.choice([0.5, 1.0])
        flaky = rng.choice([0.0, 0.0, 0.3, 0.6])
        agent = leader.agent
        text = (
            f"{leader.name}'s agent applies KV writes but loses {share:.0%} of their answers"
            f"{f', and answers 500 to {flaky:.0%} of calls' if flaky else ''} for {duration:.1f}s"
        )
        agent.faults.lost = share

        def heal() -> None:
            agent.faults.lost = 0.0
            agent.faults.flaky = 0.0

        if flaky:
            # Calls refused too (a write not applied, its restore refused): a
            # disturbance, as f_flaky is.
            agent.faults.flaky = flaky
            self._fault(text, leader, duration)
            self._heal_after(duration, heal, f"{leader.name}'s lost answers and 500s")
        else:
            self.faults += 1
            self.trace(f"FAULT {text}")

            def healed() -> None:
                heal()
                self.trace(f"HEAL {leader.name}'s lost answers")

            self.at(min(self.now + duration, self.quiet_from - 1), healed)
        then = rng.choice([self.o_sighup_session, self.o_switchover, self.o_step_down])
        self.after(rng.uniform(0.0, duration / 2), then)

    def f_consul_election(self) -> None:
        duration = self.rng.uniform(0.5, 8.0)
        self._fault(f"Consul leader election: no leader for {duration:.1f}s", None, duration)
        self.consul.no_leader = True
        for agent in self.agents.values():
            self._agent_fault(agent)
        self._heal_after(
            duration, lambda: setattr(self.consul, "no_leader", False), "Consul leader"
        )

    def f_check(self) -> None:
        node = self._pick()
        duration = self.rng.choice([0.5, 2.0, 5.0, 20.0, 60.0])
        flaps = self.rng.random() < 0.3
        self._fault(
            f"{node.name}'s check critical for {duration:.1f}s{' (flapping)' if flaps else ''}"
        )
        self._set_check(node, "critical")
        if flaps:
            for k in range(1, 6):
                status = "passing" if k % 2 else "critical"
                self.at(self.now + k * duration / 6, self._check_setter(node, status))
        self._heal_after(duration, lambda: self._set_check(node, "passing"), f"{node.name}'s check")

    def _check_setter(self, node: SimNode, status: str) -> Callable[[], None]:
        return lambda: self._set_check(node, status)

    def _set_check(self, node: SimNode, status: str) -> None:
        node.agent.local_checks[CHECK] = status
        if status == "critical" and node.check_critical_since is None:
            since = node.check_critical_since = self.now
            bound = bounds.critical_vip_bound(self.fence_bound, self.interval_ms / 1000)
            self.at(self.now + bound, lambda: self._check_critical(node, since))
        elif status == "passing":
            node.check_critical_since = None
        if not node.agent.faults.partitioned:
            self.consul.set_check(node.name, CHECK, status)

    def o_sigterm(self) -> None:
        node = self._pick()
        daemon = node.daemon
        if daemon is None or not daemon.running:
            return
        down = self.rng.choice([0.5, 3.0, 20.0])
        self._op(f"SIGTERM {node.name} (started again after {down:.1f}s)")
        daemon.stop(StopAsked())
        self._heal_after(down, node.restart_after_failure, f"{node.name} started")

    def o_sigkill(self) -> None:
        node = self._pick()
        daemon = node.daemon
        if daemon is None or not daemon.running:
            return
        down = self.rng.choice([0.3, 1.0, 3.0, 2.5 * self.ttl])
        if down < self.ttl / 2:
            self._keep_window(node, "a SIGKILL and a restart within the TTL")
        self._op(f"SIGKILL {node.name} (restarted after {down:.1f}s with its record)")
        daemon.kill()
        self._heal_after(down, node.restart_after_failure, f"{node.name} restarted")

    def o_sigusr2(self) -> None:
        self._sigusr2(self._pick())

    def _sigusr2(self, node: SimNode) -> None:
        daemon = node.daemon
        if daemon is None or not daemon.running or daemon.stopping:
            return
        change = self.rng.random() < 0.3
        self._keep_window(node, "SIGUSR2")
        self._op(f"SIGUSR2 {node.name}{' with a changed lock-delay' if change else ''}")
        if change:
            node.reconfigure(lock_delay=self.rng.choice([self.lock_delay, self.lock_delay + 1]))
        self._sigusr2_now(node)

    def _sigusr2_now(self, node: SimNode, took: float | None = None) -> None:
        """``took``: how long the exec takes (drawn from the seed unless given)."""
        daemon = node.daemon
        assert daemon is not None
        node.restarting = True
        daemon.stop(StopAsked(retire=True, keep_fence=True))

        def exec_done() -> None:
            node.restarting = False
            node.start(memory=Memory(ttl=node.settings.ttl, fence_until=node.fence.until))

        self.after(self.rng.uniform(0.2, 0.6) if took is None else took, exec_done)

    def o_sighup_session(self) -> None:
        """SIGHUP with a changed TTL or lock-delay: the leader moves the lock to a new
        session (coordinator._move_to_new_session); a follower starts over."""
        node = self._pick()
        daemon = node.daemon
        if daemon is None or not daemon.running or daemon.stopping:
            return
        if self.rng.random() < 0.5:
            new = node.reconfigure(ttl=self.rng.choice([10.0, 15.0]))
        else:
            new = node.reconfigure(lock_delay=self.lock_delay + self.rng.choice([-0.5, 0.5]))
        self._op(f"SIGHUP {node.name}: ttl {new.ttl:g}s, lock-delay {new.lock_delay:g}s")
        self._sighup_session(node)

    def _sighup_session(self, node: SimNode, keep: bool = True) -> None:
        daemon = node.daemon
        assert daemon is not None
        new = node.settings
        state = daemon.state
        held = state.session_id if state.role == Role.LEADER else None
        if held is None:
            daemon.stop(StopAsked(cause=Cause.CONFIG_RELOAD))
            node.start(memory=Memory(ttl=new.ttl))
            return
        if keep:
            self._keep_window(node, "SIGHUP with a new session")
        since = state.leader_since
        daemon.stop(StopAsked(retire=True))
        inherit = Inheritance(held, holds_key=True, matches=False, leader_since=since, reason="sim")
        memory = Memory(role=Role.LEADER, leading=True, ttl=new.ttl, leader_since=since)
        node.start(memory=memory, inherit=inherit)

    def o_switchover(self) -> None:
        rng = self.rng
        names = [n.name for n in self.nodes]
        target = rng.choice([*names, "any", "nosuch"])
        asker = rng.choice(self.nodes)
        self._op(f"switchover --to {target} (via {asker.name})")
        key = TriggerKey(self._adapter(asker), KEY, asker.name)
        with contextlib.suppress(Exception):
            key.request_switchover(target, "operator")
        if rng.random() < 0.25:
            second = rng.choice([*names, "any"])
            self.after(rng.uniform(0.1, 1.0), lambda: self._second_switchover(asker, second))

    def _second_switchover(self, asker: SimNode, target: str) -> None:
        self._op(f"concurrent switchover --to {target}")
        key = TriggerKey(self._adapter(asker), KEY, asker.name)
        with contextlib.suppress(Exception):
            key.request_switchover(target, "operator-2")

    def _adapter(self, node: SimNode) -> ConsulAdapter:
        return node.agent  # type: ignore[return-value]

    def _maintenance(self, node: SimNode, on: bool, which: str) -> None:
        if which == "file":
            node.maintenance_file = on
        else:
            node.consul_maintenance = on
        since = node.maintenance_sources
        if on and which not in since:
            since[which] = self.now
            if node.maintenance_since is None:
                node.maintenance_since = self.now
                self._step_down_window(node, "its maintenance began")
        elif not on:
            since.pop(which, None)
            node.maintenance_since = min(since.values()) if since else None
        daemon = node.daemon
        if daemon is None:
            return
        if which == "consul":
            daemon.node_watch.changed(self.rng.uniform(0.001, 0.05))
            return
        delay = self.rng.uniform(0, 1.0)  # the file is polled every second

        def deliver() -> None:
            # A poll sees the file as it is then (a later change may have come first).
            if node.daemon is not None:
                reason = "maintenance file exists" if node.maintenance_file else None
                node.daemon.deliver(MaintenanceFile(reason))

        self.after(delay, deliver)

    def o_maintenance_file(self) -> None:
        node = self._pick()
        duration = self.rng.uniform(1, 60)
        self._op(f"maintenance file on {node.name} for {duration:.0f}s")
        self._maintenance(node, True, "file")
        self._heal_after(
            duration,
            lambda: self._maintenance(node, False, "file"),
            f"{node.name}'s maintenance file",
        )

    def o_upgrade_in_maintenance(self) -> None:
        """An upgrade: maintenance on (file or Consul), then SIGUSR2 a moment later."""
        node = self._pick(0.9)
        which = self.rng.choice(["file", "consul"])
        duration = self.rng.uniform(10, 40)
        self._op(f"maintenance ({which}) on {node.name} and SIGUSR2 for an upgrade")
        self._maintenance(node, True, which)
        self._heal_after(
            duration, lambda: self._maintenance(node, False, which), f"{node.name}'s maintenance"
        )
        self.after(self.rng.uniform(0.0, 0.8), self.o_sigusr2_of(node))

    def o_switchover_then_stop(self) -> None:
        """Issue 22 #1's combination: a switchover, a third node (re)started so that
        its first read is the blanked key, and SIGTERM of the leader inside the gap."""
        leader = self._holder()
        if leader is None or not leader.running:
            return
        others = [n for n in self.nodes if n is not leader]
        target = self.rng.choice(others)
        third = self.rng.choice(others)
        self._op(f"switchover --to {target.name}, {third.name} restarted, SIGTERM {leader.name}")
        with contextlib.suppress(Exception):
            TriggerKey(self._adapter(target), KEY, target.name).request_switchover(
                target.name, "operator"
            )
        if third.daemon is not None:
            third.daemon.kill()
        self.after(self.rng.uniform(0.005, 0.05), third.restart_after_failure)

        # Or SIGUSR2 (the new process frees the blank key at once): since a stop
        # finishes the hand-over first, the one way left to free a blank early.
        exec_instead = self.rng.random() < 0.6

        def stop() -> None:
            if leader.daemon is not None and leader.daemon.running:
                self.trace(f"OPERATOR {'SIGUSR2' if exec_instead else 'SIGTERM'} {leader.name}")
                if exec_instead and not leader.daemon.stopping:
                    self._sigusr2_now(leader)
                else:
                    leader.daemon.stop(StopAsked())

        # An exec early in the gap, while vip-manager there may still hold the VIP.
        self.after(self.rng.uniform(0.05, 0.25 if exec_instead else self.gap), stop)
        self._heal_after(3.0, leader.restart_after_failure, f"{leader.name} started")

    def o_release_after_partition(self) -> None:
        """The leader is partitioned long enough for another node to take the key but
        less than its TTL; right after the partition heals, with a flaky agent, it
        is stopped: its release must not delete the new holder's key."""
        leader = self._holder()
        shortest = SERF_DETECT + self.lock_delay + self.gap + 1.0
        if leader is None or not leader.running or shortest > self.ttl - 1.0:
            return
        duration = self.rng.uniform(shortest, self.ttl - 1.0)
        self._fault(
            f"{leader.name} partitioned for {duration:.1f}s, then flaky and stopped",
            leader,
            duration + 3,
        )
        agent = leader.agent
        self._partition_from_servers(leader)

        def heal() -> None:
            agent.faults.partitioned = False
            agent.faults.flaky = 0.5
            self.consul.set_check(leader.name, "serfHealth", "passing")
            if leader.daemon is not None and leader.daemon.running:
                self.trace(f"OPERATOR SIGTERM {leader.name}")
                leader.daemon.stop(StopAsked())

        def steady() -> None:
            agent.faults.flaky = 0.0
            leader.restart_after_failure()

        self._heal_after(duration, heal, f"{leader.name}'s partition (flaky now)")
        self._heal_after(duration + 3.0, steady, f"{leader.name}'s flakiness, started")

    def o_bad_check(self) -> None:
        """Issue 22 #2: the check id changed to a check that does not exist, applied by
        SIGUSR2 or SIGHUP (a new session that cannot be made); put right later."""
        node = self._pick(0.8)
        daemon = node.daemon
        if daemon is None or not daemon.running or daemon.stopping:
            return
        how = self.rng.choice(["SIGUSR2", "SIGHUP"])
        duration = self.rng.uniform(3, 30)
        self._op(
            f"{how} {node.name} with --check-id missing-check (put right after {duration:.0f}s)"
        )
        good = node.settings.check_id
        node.reconfigure(check_id="missing-check")
        if how == "SIGUSR2":
            self._sigusr2_now(node)
        else:
            self._sighup_session(node, keep=False)

        def fix() -> None:
            node.reconfigure(check_id=good)
            if node.daemon is not None and node.daemon.running and not node.daemon.stopping:
                self._sighup_session(node, keep=False)

        self._heal_after(duration, fix, f"{node.name}'s check id")

    def o_priority(self) -> None:
        """A priority change, applied by a restart (SIGTERM, start)."""
        node = self.rng.choice(self.nodes)
        daemon = node.daemon
        if daemon is None or not daemon.running or daemon.stopping:
            return
        priority = self.rng.choice([50, 100, 150, 250])
        self._op(f"priority of {node.name} -> {priority} (restart)")
        daemon.stop(StopAsked())
        node.reconfigure(priority=priority)
        self._heal_after(0.5, node.restart_after_failure, f"{node.name} started")

    def o_sigusr2_of(self, node: SimNode) -> Callable[[], None]:
        return lambda: self._sigusr2(node)

    def o_consul_maintenance(self) -> None:
        node = self._pick()
        self._consul_maintenance_on(node, self.rng.uniform(1, 60))

    def o_step_down(self) -> None:
        node = self._pick(0.9)
        daemon = node.daemon
        if daemon is None or not daemon.running:
            return
        self._step_down_window(node, "SIGUSR1")
        self._op(f"SIGUSR1 {node.name} (step down)")
        hold = 10.0
        daemon.deliver(StepDownAsked(f"SIGUSR1 (for {hold:g}s)", hold))

    def o_plain_key(self) -> None:
        """The leader is stopped and an operator puts a plain value into the free key
        (a manual delete of a held lock would bypass lock-delay and the fence: not
        done, the docs forbid it), deleted again later."""
        duration = self.rng.uniform(2, 20)
        self._op(f"consul kv put -cas -modify-index=0 {KEY} (a plain key) for {duration:.0f}s")
        holder = self._holder()
        if holder is not None and holder.daemon is not None and holder.daemon.running:
            self.trace(f"OPERATOR SIGTERM {holder.name} first")
            holder.daemon.stop(StopAsked())
            self._heal_after(2.0, holder.restart_after_failure, f"{holder.name} started")
        if not self.consul.put(KEY, b"operator-value", None, 0, "operator"):
            return

        def remove() -> None:
            entry = self.consul.kv.get(KEY)
            if entry is not None and entry.flags != LOCK_FLAG:
                self.consul.delete(KEY, entry.modify_index, "operator")

        self._heal_after(duration, remove, "the plain key deleted")

    def f_vip_manager(self) -> None:
        """vip-manager stops on one node (most often the leader's) or on every node.
        Off, the leader keeps the lock; with --step-down-without-vip it gives the key
        to another eligible node, whose vip-manager adds the VIP, and while every
        vip-manager is down the key does not bounce (MAX_MOVES_PER_MINUTE)."""
        rng = self.vip_rng
        leader = self._holder()
        every = rng.random() < 0.3
        if every:
            nodes = list(self.nodes)
        else:
            nodes = [
                leader if leader is not None and rng.random() < 0.8 else rng.choice(self.nodes)
            ]
        duration = rng.uniform(5, 90)
        names = ", ".join(n.name for n in nodes)
        if not every and leader is nodes[0] and self.calm():
            if self.step_down_without_vip:
                self._vip_elsewhere_window(nodes[0])
            else:
                self._keep_window(nodes[0], "its vip-manager stopped (--step-down-without-vip off)")
        self.faults += 1
        self.disturb()
        self.trace(f"FAULT vip-manager stopped on {names} for {duration:.0f}s")
        for node in nodes:
            node.vm.stop_service(True)
        self._heal_after(
            duration,
            lambda: on_each(nodes, lambda n: n.vm.stop_service(False)),
            f"vip-manager on {names} started",
        )

    def _vip_elsewhere_window(self, node: SimNode) -> None:
        """The VIP on another node within the grace, a step-down, the gap and
        vip-manager's read, if another node could take it all along."""
        settings = node.settings
        bound = settings.vip_grace + settings.handover_gap + settings.vip_manager.interval_ms / 1000
        bound += bounds.VM_WAIT + 3.0
        since = self.now

        def could_take(other: SimNode) -> bool:
            daemon = other.daemon
            if other is node or daemon is None or not daemon.running or other.vm.stopped:
                return False
            memory = daemon.election.memory
            return (
                memory.session is not None
                and max(memory.hold_until, memory.vip_hold_until) < since + bound
            )

        if not any(could_take(other) for other in self.nodes):
            return

        def check() -> None:
            if self.disturbed_at > since or not all(
                could_take(o) or o is node or not o.running for o in self.nodes
            ):
                return
            holders = [n.name for n in self.nodes if n.vm.holds]
            if not holders:
                self.fail(
                    f"no VIP {self.now - since:.2f}s after vip-manager stopped on the leader "
                    f"{node.name} (--step-down-without-vip)"
                )

        self.at(since + bound, check)

    # -- issue 22's combinations, one family each (tests/sim/FINDINGS.md's table) ------------
    def finding_schedules(self) -> list[tuple[Callable[[], None], int]]:
        return [
            (self.o_fence_session_change, 3 if self.fenced else 0),
            (self.o_switchover_step_down, 3),
            (self.o_maintenance_in_wait, 2),
            (self.o_sigusr2_then_consul_maintenance, 1),
            (self.o_sigusr2_renew_500, 1),
            (self.o_value_into_lock, 2 if self.fenced else 1),
            (self.o_release_and_restart, 2),
            (self.f_flapping_preferred, 3 if self.nodes[0].settings.preempt_delay else 0),
            (self.o_release_after_partition, 2),  # (more of them: delete-without-cas)
        ]

    def o_fence_session_change(self) -> None:
        """Issue 22 #3 (fenced mode): the leader's lock-delay lowered (SIGHUP or SIGUSR2:
        a new session) or vip-manager's interval raised (SIGUSR2: the same session, a
        shorter bound); inside the old fence the leader is cut off and its check fails."""
        leader = self._holder()
        daemon = leader.daemon if leader is not None else None
        if leader is None or daemon is None or not daemon.running or daemon.stopping:
            return
        old_bound = daemon.election.rules.fence_bound
        rng = self.rng
        how = rng.choice(["SIGHUP", "SIGUSR2", "SIGUSR2 interval"])
        lowest = min(n.settings.lock_delay for n in self.nodes)
        if lowest - (self.interval_ms + 500) / 1000 - FENCE_MARGIN < 0.5:
            how = how.split()[0]  # no room for a longer interval: lower lock-delay instead
        if how == "SIGUSR2 interval":
            # vip-manager.yml changed on every node (interval is read at start only).
            self.interval_ms = self.interval_ms + 500
            self.gap = self.interval_ms / 1000 + HANDOVER_MARGIN
            self._op(f"vip-manager interval -> {self.interval_ms} ms everywhere, SIGUSR2 all")
            for node in [leader, *(n for n in self.nodes if n is not leader)]:
                vm = replace(node.settings.vip_manager, interval_ms=self.interval_ms)
                node.reconfigure(vip_manager=vm)
                node.vm.interval = self.interval_ms / 1000
                if node.daemon is not None and node.daemon.running and not node.daemon.stopping:
                    self._sigusr2_now(node)
        else:
            interval = self.interval_ms / 1000
            lock_delay = round(interval + FENCE_MARGIN + rng.choice([0.3, 0.8, 1.5]), 2)
            self._op(f"{how} {leader.name} with lock-delay {lock_delay:g}s (a new session)")
            leader.reconfigure(lock_delay=lock_delay)
            if how == "SIGHUP":
                self._sighup_session(leader, keep=False)
            else:
                self._sigusr2_now(leader)
        exec_gap = 0.0 if how == "SIGHUP" else 0.7
        cut = exec_gap + rng.uniform(0.05, max(0.1, 0.8 * old_bound - exec_gap))
        duration = rng.uniform(3.0, 2 * self.ttl)
        self.after(cut, lambda: self._cut_off_failing(leader, duration))

    def _partition_from_servers(self, node: SimNode) -> None:
        """The node's agent cut off from the servers (it answers what is local); the
        servers mark its serfHealth critical SERF_DETECT later, unless it healed."""
        agent = node.agent
        agent.faults.partitioned = True
        self._agent_fault(agent)
        token = node.partition_token = self.now

        def serf() -> None:
            if agent.faults.partitioned and node.partition_token == token:
                self.trace(f"consul: serfHealth of {node.name} critical")
                self.consul.set_check(node.name, "serfHealth", "critical")

        self.after(SERF_DETECT, serf)

    def _cut_off_failing(self, node: SimNode, duration: float) -> None:
        partition = self.rng.random() < 0.3
        how = "partitioned" if partition else "cut off from its agent"
        self._fault(f"{node.name} {how}, its check critical, for {duration:.1f}s", node, duration)
        agent = node.agent
        if partition:
            self._partition_from_servers(node)
        else:
            agent.faults.http_down = True
            self._agent_fault(agent)
        self._set_check(node, "critical")

        def heal() -> None:
            agent.faults.http_down = agent.faults.partitioned = False
            self.consul.set_check(node.name, "serfHealth", "passing")
            self._set_check(node, "passing")

        self._heal_after(duration, heal, f"{node.name}'s agent and check")

    def o_switchover_step_down(self) -> None:
        """Issue 22 #16: switchover --to b; inside the hand-over the leader's maintenance
        begins and b stops: the step-down must not be lost."""
        leader = self._holder()
        if leader is None or not leader.running:
            return
        rng = self.rng
        target = rng.choice([n for n in self.nodes if n is not leader])
        which = rng.choice(["file", "consul"])
        self._op(
            f"switchover --to {target.name}, then maintenance ({which}) on {leader.name} "
            f"and SIGTERM {target.name}"
        )
        with contextlib.suppress(Exception):
            TriggerKey(self._adapter(target), KEY, target.name).request_switchover(
                target.name, "operator"
            )
        duration = rng.uniform(15, 50)

        def maintenance() -> None:
            self._maintenance(leader, True, which)

        def stop() -> None:
            if target.daemon is not None and target.daemon.running:
                self.trace(f"OPERATOR SIGTERM {target.name}")
                target.daemon.stop(StopAsked())

        begin = rng.uniform(0.05, 0.6 * self.gap)  # inside the hand-over's gap
        self.after(begin, maintenance)
        self.after(begin + rng.uniform(0.0, 0.2), stop)
        self._heal_after(
            begin + duration,
            lambda: self._maintenance(leader, False, which),
            f"{leader.name}'s maintenance",
        )
        self._heal_after(rng.uniform(3, 20), target.restart_after_failure, f"{target.name} started")

    def o_maintenance_in_wait(self) -> None:
        """Issue 22 #17: the leader's check fails (lock-delay applies to everybody);
        during that wait a follower's maintenance begins: it must not take the key."""
        leader = self._holder()
        followers = [n for n in self.nodes if n is not leader and n.running]
        if leader is None or not followers:
            return
        rng = self.rng
        follower = rng.choice(followers)
        which = rng.choice(["file", "consul"])
        lock_delay = leader.settings.lock_delay
        self._fault(f"{leader.name}'s check critical (then maintenance on {follower.name})")
        self._set_check(leader, "critical")
        self._heal_after(
            rng.uniform(lock_delay + 2, 40),
            lambda: self._set_check(leader, "passing"),
            f"{leader.name}'s check",
        )
        duration = rng.uniform(10, 40)
        begin = rng.uniform(0.1, max(0.2, lock_delay - 1.5))

        def maintenance() -> None:
            self._op(f"maintenance ({which}) on {follower.name} for {duration:.0f}s")
            self._maintenance(follower, True, which)

        self.after(begin, maintenance)
        self._heal_after(
            begin + duration,
            lambda: self._maintenance(follower, False, which),
            f"{follower.name}'s maintenance",
        )

    def o_sigusr2_then_consul_maintenance(self) -> None:
        """Issue 22 #4: after SIGUSR2 (adoption) `consul maint -enable` must still work."""
        node = self._pick(0.9)
        daemon = node.daemon
        if daemon is None or not daemon.running or daemon.stopping:
            return
        self._op(f"SIGUSR2 {node.name}, then consul maint -enable on it")
        self._sigusr2_now(node)
        self.after(
            self.rng.uniform(1.0, 4.0),
            lambda: self._consul_maintenance_on(node, self.rng.uniform(10, 40)),
        )

    def _consul_maintenance_on(self, node: SimNode, duration: float) -> None:
        self._op(f"consul maint -enable on {node.name} for {duration:.0f}s")
        self._maintenance(node, True, "consul")
        self._heal_after(
            duration,
            lambda: self._maintenance(node, False, "consul"),
            f"{node.name}'s Consul maintenance",
        )

    def o_sigusr2_renew_500(self) -> None:
        """Issue 22 #6: SIGUSR2 of the leader; the adoption's first session/renew
        answers 500 once. The lock must stay."""
        node = self._pick(0.9)
        daemon = node.daemon
        if daemon is None or not daemon.running or daemon.stopping:
            return
        self._keep_window(node, "SIGUSR2 with one 500 on session/renew")
        self._op(f"SIGUSR2 {node.name}; its next session/renew answers 500 once")
        self.faults += 1
        agent = node.agent

        def renew_once(session_id: str, timeout: float | None = None) -> None:
            del agent.renew_session  # the next call is the class's again
            raise Unavailable("500 Internal Server Error (once)", "server_error")

        agent.renew_session = renew_once  # type: ignore[method-assign]
        self._sigusr2_now(node)

    def o_value_into_lock(self) -> None:
        """`consul kv put` of a value into the held lock (the session stays, value and
        flags change), deleted again a moment later. The leader lets the lock go
        keeping the value: nobody waits out a lock-delay after that, so /leader
        must stop saying 200 when the lock is lost, not when the fence runs out.
        Only while nothing else is under way: a leader that cannot read Consul
        cannot know that somebody deleted its key, and a manual delete waits out
        no lock-delay (docs/operations.md says so: the fence's one blind spot)."""
        holder = self._holder()
        if holder is None or not self.calm():
            return
        duration = self.rng.uniform(0.5, 6.0)
        self._op(f"consul kv put {KEY} into {holder.name}'s lock, deleted {duration:.1f}s later")
        self.consul.put(KEY, b"operator-value", None, None, "operator")

        def remove() -> None:
            entry = self.consul.kv.get(KEY)
            if entry is not None and entry.value == b"operator-value":
                self.consul.delete(KEY, entry.modify_index, "operator")

        self._heal_after(duration, remove, "the operator's value deleted")

    def o_release_and_restart(self) -> None:
        """Issue 22 #1's rule, whatever path freed the key (sim F1): the leader is
        stopped (it releases the key) while a follower's process starts, its first
        read the free key; the old holder's vip-manager may still hold the VIP."""
        leader = self._holder()
        followers = [n for n in self.nodes if n is not leader]
        if leader is None or leader.daemon is None or not leader.daemon.running:
            return
        follower = self.rng.choice(followers)
        self._op(f"SIGTERM {leader.name} while {follower.name} restarts")
        if follower.daemon is not None:
            follower.daemon.kill()
        leader.daemon.stop(StopAsked())
        self.after(self.rng.uniform(0.002, 0.05), follower.restart_after_failure)
        self._heal_after(self.rng.uniform(1.0, 5.0), leader.restart_after_failure, "started")

    def f_flapping_preferred(self) -> None:
        """Issue 22 #23: the preferred node's check flaps (critical a moment, passing
        for longer than the preempt-delay): the VIP must not follow it back and forth."""
        node = self.nodes[0]
        rng = self.rng
        # Down until another node took the key, up until it would preempt back.
        down = self.lock_delay + self.gap + rng.uniform(0.5, 2.0)
        up = (node.settings.preempt_delay or 0.0) + self.gap + rng.uniform(1.0, 4.0)
        self._fault(f"{node.name}'s check flaps: critical {down:.1f}s every {down + up:.1f}s")
        for k in range(5):
            start = k * (down + up)
            self.after(start, self._check_setter(node, "critical"))
            self.after(start + down, self._check_setter(node, "passing"))
        self._heal_after(5 * (down + up), lambda: self._set_check(node, "passing"), "flapping")

    # -- the node watch's combinations, and a restored blank deleted at once ------------
    def node_watch_schedules(self) -> list[tuple[Callable[[], None], int]]:
        three = len(self.nodes) > 2
        return [
            # (a follower in maintenance wins the free key over others rarely)
            (self.o_consul_maintenance_while_partitioned, 2 if three else 4),
            (self.o_restart_unread_then_consul_maintenance, 1),
            (self.o_failed_switchover_then_stop, 3 if three else 0),
        ]

    def o_consul_maintenance_while_partitioned(self) -> None:
        """Sim F5 after an outage: a follower is cut off from the servers, `consul
        maint -enable` is run on it meanwhile (the local agent takes it, the servers
        learn it when the partition heals), and the leader is stopped as it heals:
        the follower's reads come back to a free key before its node watch's next
        answer, which alone says that it is in maintenance."""
        rng = self.nw_rng
        leader = self._holder()
        followers = [n for n in self.nodes if n is not leader and n.running]
        if leader is None or not leader.running or not followers:
            return
        node = rng.choice(followers)
        duration = rng.uniform(1.0, 2 * SERF_DETECT)
        self._fault(
            f"{node.name} partitioned for {duration:.1f}s (consul maint on it meanwhile, "
            f"SIGTERM {leader.name} as it heals)",
            node,
            duration,
        )
        agent = node.agent
        self._partition_from_servers(node)
        begin = rng.uniform(0.1, duration - 0.05)
        down = rng.uniform(3.0, 20.0)

        def maintenance() -> None:
            self._consul_maintenance_on(node, rng.uniform(5, 20))

        def heal() -> None:
            agent.faults.partitioned = False
            self.consul.set_check(node.name, "serfHealth", "passing")
            self.consul.set_check(node.name, CHECK, agent.local_checks[CHECK])
            daemon = leader.daemon
            if daemon is not None and daemon.running and not daemon.stopping:
                self.trace(f"OPERATOR SIGTERM {leader.name} (started again after {down:.1f}s)")
                daemon.stop(StopAsked())
                self._heal_after(down, leader.restart_after_failure, f"{leader.name} started")

        self.after(begin, maintenance)
        self._heal_after(duration, heal, f"{node.name}'s partition")

    def o_restart_unread_then_consul_maintenance(self) -> None:
        """Sim F6 by the node watch: a follower restarts and its agent answers 500
        to the read-back of the new session (its node); a switchover gives it the
        key, then `consul maint -enable` is run on it: it must step down."""
        rng = self.nw_rng
        leader = self._holder()
        followers = [n for n in self.nodes if n is not leader and n.running]
        if leader is None or not followers or not self.calm():
            return
        node = rng.choice(followers)
        daemon = node.daemon
        if daemon is None or daemon.stopping:
            return
        self._op(f"restart {node.name}; its agent answers 500 to its new session's read-back")
        self.faults += 1
        agent = node.agent

        def info_once(session_id: str, consistent: bool = False) -> None:
            del agent.session_info  # the next call is the class's again
            raise Unavailable("500 Internal Server Error (once)", "server_error")

        daemon.stop(StopAsked())

        def start() -> None:
            agent.session_info = info_once  # type: ignore[method-assign]
            node.restart_after_failure()

        later = rng.uniform(2.0, 5.0)
        self.after(rng.uniform(0.3, 1.0), start)
        self.after(later, lambda: self._switchover_to(node))
        self.after(
            later + rng.uniform(2.0, 6.0),
            lambda: self._consul_maintenance_on(node, rng.uniform(5, 20)),
        )

    def _switchover_to(self, node: SimNode) -> None:
        self._op(f"switchover --to {node.name}")
        with contextlib.suppress(Exception):
            TriggerKey(self._adapter(node), KEY, node.name).request_switchover(
                node.name, "operator"
            )

    def o_failed_switchover_then_stop(self) -> None:
        """Sim F7: switchover --to b, b stopped inside the gap (the hand-over fails,
        the leader puts its value back), and the leader stopped right then: the
        restored value is deleted within one read of a third node, whose agent
        answers late (within HANDOVER_MARGIN, as f_slow) and whose last read
        showed the blank."""
        rng = self.nw_rng
        leader = self._holder()
        if leader is None or not leader.running or len(self.nodes) < 3:
            return
        target = rng.choice([n for n in self.nodes if n is not leader])
        observer = rng.choice([n for n in self.nodes if n not in (leader, target)])
        slow = rng.choice([0.02, 0.05, 0.15])
        lasts = 3 * self.gap + 1.0
        # Once the observer leads, its late agent would make it an old holder
        # whose vip-manager drops the VIP later than the gap allows (the gap's
        # stated limit, as f_slow's): its slowness ends then.
        self.slow_observer = observer
        self._fault(
            f"{observer.name}'s agent answers {slow:.2f}s late for {lasts:.1f}s", observer, lasts
        )
        observer.agent.faults.slow = slow
        self._heal_after(
            lasts,
            lambda: setattr(observer.agent.faults, "slow", 0.0),
            f"{observer.name}'s slowness",
        )
        self._switchover_to(target)
        watcher = observer.daemon
        if watcher is not None:
            # Its election thread held up by a call on its late agent (a write
            # that takes its timeout) over the hand-over: its key watch saw the
            # blank, and sends its next read only after the restore (released
            # when the leader stops, below).
            watcher.held_until = self.now + 4 * self.gap + 1.0
        down = rng.uniform(1.0, 10.0)

        def stop_target() -> None:
            if target.daemon is not None and target.daemon.running:
                self.trace(f"OPERATOR SIGTERM {target.name}")
                target.daemon.stop(StopAsked())
                self._heal_after(down, target.restart_after_failure, f"{target.name} started")

        def stop_leader() -> None:
            daemon = leader.daemon
            if daemon is not None and daemon.running and not daemon.stopping:
                self.trace(f"OPERATOR SIGTERM {leader.name} (its hand-over failed)")
                daemon.stop(StopAsked())
                self._heal_after(down, leader.restart_after_failure, f"{leader.name} started")
            if watcher is not None:
                watcher.held_until = self.now + rng.uniform(0.0, self.interval_ms / 2000)

        self.after(rng.uniform(0.05, 0.6 * self.gap), stop_target)
        within = RESTORE_DELETED_WITHIN + slow
        self.restore_hook = (leader.name, self.now + 3 * self.gap, within, stop_leader)

    def _restored(self, before: Entry | None, after: Entry | None, by: str) -> None:
        """A hand-over's blank replaced by its holder's value (a Restore): the hook
        of o_failed_switchover_then_stop runs a moment later."""
        hook = self.restore_hook
        if hook is None or before is None or after is None or by != hook[0]:
            return
        if self.now > hook[1]:
            self.restore_hook = None
            return
        if before.session == after.session and not before.value and after.value:
            self.restore_hook = None
            self.after(self.nw_rng.uniform(0.0, hook[2]), hook[3])

    def _quiet(self) -> None:
        self.trace("QUIET: every fault healed, every node running")
        for node in self.nodes:
            if not node.running and not node.restarting:
                node.start()


def run_seed(seed: int, minutes: float = 9.0, renewer_ttl_rule: bool = True) -> World:
    world = World(seed, minutes, renewer_ttl_rule=renewer_ttl_rule)
    world.run()
    return world


__all__ = ["Stats", "World", "replace", "run_seed"]
