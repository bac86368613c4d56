"""One simulated node: its vip-elector process (the real Election and decision
core, driven by an owner loop equivalent to Election._run), models of the
renewer and key-watch threads following renewer.py and key_watch.py, and a
vip-manager model.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from tests.sim.bounds import VM_WAIT
from tests.sim.consul import SimAgent
from vip_elector import decision as core
from vip_elector.consul_adapter import ConsulAdapter, ConsulError, SessionGone
from vip_elector.continuity import Inheritance
from vip_elector.decision import (
    AdoptFailed,
    Event,
    GateClosed,
    KeyRead,
    Memory,
    SessionDown,
    SessionUp,
    StopAsked,
    Tick,
    VipSeen,
)
from vip_elector.election import SHUTDOWN_CALL_TIMEOUT, Election
from vip_elector.generation import STOP_WAIT
from vip_elector.key_entries import is_foreign, next_index
from vip_elector.key_watch import FENCE_REFRESH, MIN_FENCE_WAIT, POLL_WAIT, WATCH_SLACK
from vip_elector.node_watch import FIRST_RETRY, RETRY_MAX
from vip_elector.renewer import RENEW_AFTER, RETRY_AFTER_FAILED_RENEW, HealthGate
from vip_elector.roles import Cause, Role
from vip_elector.runtime_dir import Held
from vip_elector.settings import ConsulSettings, Settings, VipManagerConfig
from vip_elector.state import DaemonState
from vip_elector.trigger_key import TriggerKey, session_name
from vip_elector.worker import WorkerContext

if TYPE_CHECKING:
    from tests.sim.world import World

KEY = "service/sim/vip"
TICK_RESOLUTION = 1e-6  # the least time one turn of the election loop takes
HOT_LOOP_WINDOW = 0.001
HOT_LOOP_DECISIONS = 300
CHECK = "web"
REQUEST_LATENCY = 0.002  # the node watch model's requests


def make_settings(
    name: str,
    *,
    fenced: bool,
    ttl: float,
    lock_delay: float,
    interval_ms: int,
    priority: int = 100,
    preempt_delay: float | None = None,
    step_down_without_vip: bool = False,
) -> Settings:
    return Settings(
        vip_manager=VipManagerConfig(
            path=Path("/sim/vip-manager.yml"),
            trigger_key=KEY,
            trigger_value=name,
            endpoints=("http://127.0.0.1:8500",),
            interval_ms=interval_ms,
            leader_url="http://127.0.0.1:8008/leader" if fenced else None,
        ),
        consul=ConsulSettings(scheme="http", host=f"{name}.sim", port=8500),
        lock_value=name,
        lock_value_source="trigger-value",
        check_id=CHECK,
        ttl=ttl,
        lock_delay=lock_delay,
        status_addr=("127.0.0.1", 8008) if fenced else None,
        priority=priority,
        preempt_delay=preempt_delay,
        step_down_without_vip=step_down_without_vip,
    )


class SimRecord:
    """The runtime directory's session record (it survives the process)."""

    def __init__(self) -> None:
        self.held: Held | None = None

    def load(self) -> Held | None:
        return self.held

    def save(self, held: Held) -> None:
        self.held = held

    def clear(self) -> None:
        self.held = None


class SimFence:
    """The coordinator's Fence: kept across an in-place restart (as the env var does)."""

    def __init__(self) -> None:
        self.until = 0.0

    def set(self, until: float) -> None:
        self.until = until

    def observe(self, vip: bool | None) -> None:
        """Fence.observe: the simulated vip-manager polls without /leader's hold."""


@dataclass
class RenewedSession:
    id: str
    renewed_at: float
    failures: int = 0
    ended: bool = False


class RenewerModel:
    """renewer.py's rules: health gate, create, renew at 0.6 TTL, retry every second,
    the TTL rule, adoption retried within the TTL."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.w = daemon.world
        self.session: RenewedSession | None = None
        self._adopt: str | None = None
        self.gate = HealthGate(daemon.settings.check_id)
        self.gate_told: str | None = None
        self.creating = False
        self.ttl_rule = True  # the mutation "no TTL self-fence" turns it off
        # Sessions whose read-back (their node) failed: the core learns no node
        # from them (renewer.py's rule), so the candidate entry may name none.
        self.unread: set[str] = set()

    # -- called by Election._perform ------------------------------------------------
    def adopt(self, session_id: str) -> None:
        self._adopt = session_id

    def discard(self, session_id: str, detail: str) -> None:
        if self.session is not None and self.session.id == session_id:
            self._end(Cause.SESSION_LOST, detail)

    # -- the thread ------------------------------------------------------------------
    def start(self) -> None:
        if self._adopt is not None:
            self._adopt_attempt(self._adopt, self.w.now + self.d.settings.ttl)
        else:
            self._create()

    def _live(self) -> bool:
        return self.d.running and not self.d.stopping

    def _adopt_attempt(self, sid: str, deadline: float) -> None:
        if not self._live():
            return
        agent = self.d.node.agent
        try:
            agent.renew_session(sid)
            info = agent.session_info(sid)
        except SessionGone as exc:
            self.d.post(AdoptFailed(sid, str(exc)))
            self._create()
            return
        except ConsulError as exc:
            if self.w.now + RETRY_AFTER_FAILED_RENEW >= deadline:
                self.d.post(AdoptFailed(sid, str(exc)))
                self._create()
                return
            self.w.after(RETRY_AFTER_FAILED_RENEW, lambda: self._adopt_attempt(sid, deadline))
            return
        self.session = RenewedSession(sid, self.w.now)
        if info is None:
            self.unread.add(sid)
        self.d.post(SessionUp(sid, info.node if info else "", adopted=True))
        self._schedule_renew(self.session)

    def _create(self, delay: float = 0.0) -> None:
        if self.creating:
            return
        self.creating = True
        self.w.after(delay, self._create_now)

    def _create_now(self, backoff: float = 0.25) -> None:
        self.creating = False
        if not self._live() or self.session is not None:
            return
        agent = self.d.node.agent
        adapter = cast(ConsulAdapter, agent)
        try:
            problem = self.gate.problem(adapter)
            sid = ""
            if problem is None:
                settings = self.d.settings
                sid = agent.create_session(
                    session_name(socket.gethostname(), settings.lock_value, settings.trigger_key),
                    settings.ttl,
                    settings.lock_delay,
                    settings.session_checks,
                    "delete",
                )
        except ConsulError as exc:
            if exc.kind != "check":
                self.creating = True
                self.w.after(backoff, lambda: self._create_now(min(2.0, backoff * 2)))
                return
            problem = f"Consul refused the session: {exc}"
        if problem is not None:
            if self.gate_told != problem:
                self.gate_told = problem
                self.d.post(GateClosed(problem))
            self._create(1.0)
            return
        self.gate_told = None
        self.d.node.record.save(Held(sid, None))
        try:
            info = agent.session_info(sid)
            node = info.node if info else ""
        except ConsulError:
            node = ""
        if not node:
            self.unread.add(sid)
        self.session = RenewedSession(sid, self.w.now)
        self.d.post(SessionUp(sid, node))
        self._schedule_renew(self.session)

    def _schedule_renew(self, session: RenewedSession) -> None:
        ttl = self.d.settings.ttl
        if session.failures:
            due = self.w.now + RETRY_AFTER_FAILED_RENEW
        else:
            due = session.renewed_at + ttl * RENEW_AFTER
        if self.ttl_rule:
            due = min(due, session.renewed_at + ttl)
        self.w.at(due, lambda: self._renew(session))

    def _timed_out(self, session: RenewedSession) -> bool:
        if not self.ttl_rule or self.w.now < session.renewed_at + self.d.settings.ttl:
            return False
        self._end(Cause.RENEW_TIMEOUT, "no successful renewal for a TTL")
        return True

    def _renew(self, session: RenewedSession) -> None:
        if not self._live() or session.ended or session is not self.session:
            return
        if self._timed_out(session):
            return
        try:
            self.d.node.agent.renew_session(session.id)
        except SessionGone:
            self._end(Cause.SESSION_LOST, "Consul no longer knows the session")
            return
        except ConsulError:
            session.failures += 1
            if not self._timed_out(session):
                self._schedule_renew(session)
            return
        session.failures = 0
        session.renewed_at = self.w.now
        self._schedule_renew(session)

    def _end(self, cause: Cause, detail: str) -> None:
        session = self.session
        if session is None or session.ended:
            return
        session.ended = True
        self.session = None
        self.d.post(SessionDown(session.id, cause, detail))
        self._create()


class WatchModel:
    """key_watch.py: follower reads the key (non-consistent, 60 s wait); the leader
    reads the prefix tree consistently (wait = FENCE_REFRESH x fence bound when
    fenced); the next read only once the election decided on the last answer."""

    def __init__(self, daemon: Daemon, fence_bound: float) -> None:
        self.d = daemon
        self.w = daemon.world
        self.fence_bound = fence_bound
        self.leader = False
        self.index = 0
        self.attempts = 0

    def follow(self) -> None:
        self.leader = False

    def lead(self) -> None:
        self.leader = True

    def _wait(self, leader: bool) -> float:
        if leader and self.fence_bound > 0:
            return min(POLL_WAIT, max(MIN_FENCE_WAIT, self.fence_bound * FENCE_REFRESH))
        return POLL_WAIT

    def proceed(self) -> None:
        self.attempts = 0
        self._send()

    def _send(self) -> None:
        if not self.d.running:
            return
        self.attempts += 1
        leader = self.leader
        wait = self._wait(leader)
        at = self.index if self.attempts == 1 else 0
        started, wall = self.w.now, self.w.wall()
        agent = self.d.node.agent
        cluster = self.w.consul
        cluster.block(
            agent, KEY, leader, at, wait, lambda: self._answer(leader, at, wait, started, wall)
        )

    def _answer(self, leader: bool, at: int, wait: float, started: float, wall: float) -> None:
        if not self.d.running:
            return
        key = TriggerKey(cast(ConsulAdapter, self.d.node.agent), KEY, self.d.settings.lock_value)
        try:
            if leader:
                tree = key.read_all(0, None, consistent=True)
                read = KeyRead(
                    tree.key,
                    started,
                    wall,
                    consistent=True,
                    tree=True,
                    candidates=tree.candidates,
                    request=tree.request,
                    conflict=tree.conflict,
                    answered=self.w.now,
                    resumed=self.attempts > 1,
                    members=tree.members,
                )
            else:
                read = KeyRead(
                    key.read(0, None),
                    started,
                    wall,
                    answered=self.w.now,
                    resumed=self.attempts > 1,
                )
        except ConsulError:
            urgent = leader and self.fence_bound > 0
            initial, maximum = (0.1, 0.4) if urgent else (0.25, 2.0)
            delay = min(maximum, initial * 2 ** min(self.attempts - 1, 6))
            self.w.after(delay, self._send)
            return
        self.w.after(self.d.node.agent.latency(), lambda: self._deliver(read, at, wait, started))

    def _deliver(self, read: KeyRead, at: int, wait: float, started: float) -> None:
        """The answer arrives: it says how the key was when Consul took it."""
        if not self.d.running:
            return
        early = at > 0 and self.w.now < started + wait - WATCH_SLACK
        self.index = next_index(self.index, read.key.index)
        self.d.deliver(replace(read, early=early, answered=self.w.now))


class NodeWatchModel:
    """node_watch.NodeWatch: this node's name from the local agent (else from the
    session), then its checks; the first answer is posted whatever it says (the
    core does not acquire before it), then each change (a blocking query returns
    on a change), and a failed request as not known (``known=False``) until the
    next answer. Failed requests are retried with NodeWatch's backoff."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.w = daemon.world
        self.name: str | None = None
        self.current: str | None = None
        self.known = False  # the core has the last answer, no failure since
        self.retrying = False

    def _live(self) -> bool:
        return self.d.running and self.d.node.daemon is self.d

    def _latency(self) -> float:
        # Not agent.latency(): no draw from the world's random numbers, so that the
        # schedules stay as they were drawn before this model.
        return REQUEST_LATENCY + self.d.node.agent.faults.slow

    def start(self) -> None:
        self.w.after(self._latency(), lambda: self._find_name(FIRST_RETRY))

    def _find_name(self, delay: float) -> None:
        if not self._live():
            return
        agent = self.d.node.agent
        name = self.d.state.node
        with contextlib.suppress(ConsulError):
            name = name or agent.node_name()
        session = self.d.state.session_id
        if not name and session:
            with contextlib.suppress(ConsulError):
                info = agent.session_info(session)
                name = info.node if info is not None else None
        if not name:
            next_delay = min(delay * 2, RETRY_MAX)
            self.w.after(delay, lambda: self._find_name(next_delay))
            return
        self.name = name
        self._ask(FIRST_RETRY)

    def changed(self, delay: float | None = None) -> None:
        """`consul maint` on this node changed, or its agent failed: the blocking
        query returns (after ``delay``)."""
        if self.name is not None and not self.retrying:
            wait = self._latency() if delay is None else delay
            self.w.after(wait, lambda: self._ask(FIRST_RETRY))

    def _ask(self, delay: float) -> None:
        self.retrying = False
        if not self._live() or self.name is None:
            return
        try:
            self.d.node.agent.node_health(self.name)
        except ConsulError:
            if self.known:
                self.known = False
                self.d.deliver(core.ConsulMaintenance(self.current, known=False))
            self.retrying = True
            next_delay = min(delay * 2, RETRY_MAX)
            self.w.after(delay, lambda: self._ask(next_delay))
            return
        # The answer is the node's maintenance as it is now (the world keeps it).
        reason = "Consul maintenance mode" if self.d.node.consul_maintenance else None
        if reason != self.current or not self.known:
            self.current, self.known = reason, True
            self.d.deliver(core.ConsulMaintenance(reason))


class Daemon:
    """One vip-elector process (or generation of workers) on a node."""

    def __init__(
        self,
        world: World,
        node: SimNode,
        settings: Settings,
        memory: Memory | None = None,
        inherit: Inheritance | None = None,
        inspect_previous: bool = False,
    ) -> None:
        self.world = world
        self.node = node
        self.settings = settings
        self.running = True
        self.stopping = False
        self.finished = False
        self.state = DaemonState(settings.trigger_key, settings.lock_value)
        self.state.subscribe(
            lambda change: world.trace(
                f"{node.name}: {change.old.value} -> {change.new.value} ({change.cause.value}) "
                f"{change.detail[:90]}"
            )
        )
        self.state.subscribe(
            lambda change: world.transitioned(node, self, change.cause, change.old)
        )
        context = WorkerContext(settings, self.state, threading.Event(), record=None)
        self.renewer = RenewerModel(self)
        self.renewer.ttl_rule = world.renewer_ttl_rule
        adapter = cast(ConsulAdapter, node.agent)
        self.election = Election(
            context,
            adapter,
            adapter,
            self.renewer,  # type: ignore[arg-type]
            node.fence,  # type: ignore[arg-type]
            inherit=inherit,
            inspect_previous=inspect_previous,
            memory=memory or Memory(ttl=settings.ttl, fence_until=node.fence.until),
        )
        self.election.record = node.record  # type: ignore[assignment]
        self.watch = WatchModel(self, self.election.rules.fence_bound)
        self.election.watch = self.watch  # type: ignore[assignment]
        self.node_watch = NodeWatchModel(self)
        self.tick_at = 0.0
        self.busy = False
        self.pending: list[Event] = []
        self.seen_holders: dict[str, float] = {}  # node -> when a read last showed it holding
        # Until then the election thread is held up in a call (a write on a hung
        # agent takes its whole timeout): the key watch sends no read meanwhile.
        self.held_until = 0.0
        self.burst_started, self.burst, self.last_actions = 0.0, 0, ""
        self.stopped_at = 0.0

    # -- life ---------------------------------------------------------------------
    def start(self) -> None:
        try:
            key = self.election.key.read()
        except ConsulError:
            self.world.after(0.5, self.start)  # the pre-flight check is retried
            return
        if not self.running:
            return
        if is_foreign(key):
            # Fatal: the process exits; systemd starts it again later.
            self.world.trace(f"{self.node.name}: pre-flight refused a plain key; exiting")
            self.running = False
            self.node.fence.set(0.0)
            self.world.after(5.0, self.node.restart_after_failure)
            return
        with contextlib.suppress(ConsulError):
            self.election._take_over()
        self.renewer.start()
        self.node_watch.start()
        self.watch.proceed()

    def post(self, event: Event) -> None:
        """The election thread's inbox."""
        self.world.after(0.0, lambda: self.deliver(event))

    def stop(self, stop: StopAsked) -> None:
        """Generation.end: the renewer stops first, then the election gets the stop."""
        if not self.stopping:
            self.stopped_at = self.world.now
        self.stopping = True
        self.deliver(stop)

    def kill(self) -> None:
        self.running = False
        self.node.fence.set(0.0)

    # -- the owner loop: Election._run with a virtual clock ---------------------------
    def deliver(self, event: Event) -> None:
        if not self.running or self.finished:
            return
        if self.busy:
            self.pending.append(event)
            return
        self.busy = True
        try:
            self._step(event)
            while self.pending and self.running and not self.finished:
                self._step(self.pending.pop(0))
        except Exception as exc:
            self.world.escaped(self.node.name, exc)
            self.running = False
        finally:
            self.busy = False
            self.pending.clear() if not self.running else None

    def _proceed_when_free(self) -> None:
        """The key watch's next read, once the election thread is not held up."""
        if self.held_until > self.world.now:
            # (looked at again every 10 ms: the hold may be shortened meanwhile)
            self.world.at(min(self.held_until, self.world.now + 0.01), self._proceed_when_free)
        else:
            self.watch.proceed()

    def _count_decision(self) -> None:
        """A core that decides again and again without waiting is a hot loop (in
        production: Consul calls as fast as they fail)."""
        now = self.world.now
        if now - self.burst_started > HOT_LOOP_WINDOW:
            self.burst_started, self.burst = now, 0
        self.burst += 1
        if self.burst > HOT_LOOP_DECISIONS:
            self.world.fail(
                f"{self.node.name}: hot loop, {self.burst} decisions within "
                f"{HOT_LOOP_WINDOW * 1000:g} ms (last actions: {self.last_actions})"
            )

    def _step(self, event: Event) -> None:
        election = self.election
        now = self.world.now
        calls = self.node.agent.calls
        decision = core.decide(election.memory, event, now, election.rules)
        self._trace(decision)
        election._apply(decision)
        self.world.after_apply(self)
        if isinstance(event, KeyRead):
            if event.key.session:
                # whose session held it (a blank value included)
                self.seen_holders[event.key.session.split("-s")[0]] = now
            # The real loop asks for the next read once the decision's calls are
            # done, each taking the agent's latency (the simulation's take none):
            # meanwhile no read is waiting at the servers.
            busy = sum(self.node.agent.latency() for _ in range(self.node.agent.calls - calls))
            if busy > 0 or self.held_until > now:
                self.world.after(busy, self._proceed_when_free)
            else:
                self.watch.proceed()
        while election._outcomes and not decision.memory.finished:
            outcome = election._outcomes.popleft()
            decision = core.decide(election.memory, outcome, now, election.rules)
            self._trace(decision, outcome)
            election._apply(decision)
            self.world.after_apply(self)
        if decision.memory.finished:
            # Generation.end waits this long for the release (a hand-over first).
            budget = STOP_WAIT + self.settings.handover_gap + 2 * SHUTDOWN_CALL_TIMEOUT
            if self.stopping and now - self.stopped_at > budget:
                self.world.fail(
                    f"{self.node.name}: the stop took {now - self.stopped_at:.2f}s "
                    f"(the main thread waits {budget:.2f}s)"
                )
            self.finished = True
            self.running = False
            self.world.trace(f"{self.node.name}: process loop ended")
            return
        # A wake-up due now: the real loop's clock has moved on by the time it
        # asks again (see FINDINGS.md, F2); a virtual clock must move it itself.
        at = max(decision.wake_at, now + TICK_RESOLUTION)
        self.tick_at = at
        self.world.at(at, lambda: self._tick(at))

    def _trace(self, decision: core.Decision, cause: Event | None = None) -> None:
        self._count_decision()
        self.last_actions = ", ".join(type(a).__name__ for a in decision.actions)[:200]
        for action in decision.actions:
            if isinstance(action, QUIET_ACTIONS):
                continue
            self.world.trace(f"{self.node.name}: {_short(action)}")

    def _tick(self, at: float) -> None:
        if self.tick_at == at:
            self.deliver(Tick())


QUIET_ACTIONS = (
    core.Log,
    core.Transition,
    core.Record,
    core.Publish,
    core.Report,
    core.AppendHistory,
    core.CheckRivals,
    core.LookUpLockDelay,
    core.LookUpCandidates,
)


def _short(action: core.Action) -> str:
    text = repr(action)
    return text if len(text) < 140 else text[:137] + "..."


class VipManager:
    """vip-manager: trigger-key mode (blocking read with a 1 s wait, then a sleep of
    `interval` after every answer; holds the VIP iff the value is its
    trigger-value, drops it on an error or a missing key) or patroni mode
    (GET /leader every interval: 200 iff the node's fence is in the future)."""

    def __init__(self, world: World, node: SimNode, fenced: bool, interval: float) -> None:
        self.world = world
        self.node = node
        self.fenced = fenced
        self.interval = interval
        self.holds = False
        self.index = 0
        self.stopped = 0  # faults that stopped it, not healed yet

    def stop_service(self, stopped: bool) -> None:
        """vip-manager stopped (SIGINT: it drops the VIP at once) or started again
        (its next read adds the VIP back where the key says)."""
        self.stopped += 1 if stopped else -1
        if self.stopped:
            self._set(False)

    def start(self) -> None:
        self.world.after(self.world.rng.uniform(0, self.interval), self._loop)

    def _loop(self) -> None:
        if self.fenced:
            daemon = self.node.daemon
            answering = daemon is not None and (daemon.running or self.node.restarting)
            self._set(answering and self.node.fence.until > self.world.now)
            self.world.after(self.interval, self._loop)
            return
        agent = self.node.agent
        self.world.consul.block(agent, KEY, False, self.index, VM_WAIT, self._answer)

    def _answer(self) -> None:
        try:
            key = self.node.agent.get_key(KEY)
            holds = key.exists and key.value == self.node.name.encode()
            index = next_index(self.index, key.index)
        except ConsulError:
            holds, index = False, 0
        self.world.after(self.node.agent.latency(), lambda: self._arrived(holds, index))

    def _arrived(self, holds: bool, index: int) -> None:
        """The answer arrives (as Consul took it, a few ms ago); then vip-manager
        sleeps its interval."""
        self.index = index
        self._set(holds)
        self.world.after(self.interval, self._loop)

    def _set(self, holds: bool) -> None:
        holds = holds and not self.stopped
        if holds != self.holds:
            self.holds = holds
            self.world.vip_changed(self.node, holds)
            self.node.address_changed()  # the address watch sees the kernel's event


class SimNode:
    """A machine: its agent, health check, maintenance, runtime record, fence,
    vip-manager, and the vip-elector process currently running (if any)."""

    def __init__(self, world: World, name: str, settings: Settings, agent: SimAgent) -> None:
        self.world = world
        self.name = name
        self.settings = settings
        self.agent = agent
        self.record = SimRecord()
        self.fence = SimFence()
        self.daemon: Daemon | None = None
        self.restarting = False
        self.partition_token = 0.0
        self.check_critical_since: float | None = None
        self.maintenance_since: float | None = None
        self.maintenance_sources: dict[str, float] = {}  # "file"/"consul" -> since
        self.maintenance_file = False
        self.consul_maintenance = False
        self.vm = VipManager(
            world,
            self,
            settings.vip_manager.fenced,
            settings.vip_manager.interval_ms / 1000,
        )
        # The address watch (its own draws: the other draws of a seed stay as
        # they were): in the seeds that watch the VIP, one node in six cannot
        # (VipSeen(None)), unless the seed runs --step-down-without-vip (a mixed
        # cluster with it moved the key 3 times in 60 s: not this branch's).
        self.vip_rng = random.Random(f"{world.seed}/vip/{name}")
        mixed_ok = self.vip_rng.random() < 5 / 6 or world.step_down_without_vip
        self.observable = world.vip_watched and mixed_ok
        self.watch_free_at = 0.0

    def address_changed(self, first: bool = False) -> None:
        """The address watch: the VIP's presence on this host reaches the running
        daemon's election inbox after a small delay (netlink, the watch thread)."""
        daemon = self.daemon
        if daemon is None or not daemon.running or (not self.observable and not first):
            return
        seen = VipSeen(self.vm.holds if self.observable else None, self.world.now)
        # In order (one watch thread), each after a drawn delay.
        delay = self.vip_rng.choice([0.0005, 0.002, 0.01, 0.05])
        self.watch_free_at = max(self.world.now + delay, self.watch_free_at)

        def deliver() -> None:
            if self.daemon is daemon:
                daemon.deliver(seen)

        self.world.at(self.watch_free_at, deliver)

    @property
    def running(self) -> bool:
        return self.daemon is not None and self.daemon.running

    def start(self, memory: Memory | None = None, inherit: Inheritance | None = None) -> None:
        self.daemon = Daemon(
            self.world,
            self,
            self.settings,
            memory=memory,
            inherit=inherit,
            inspect_previous=inherit is None,
        )
        self.daemon.start()
        self._maintenance_events(self.daemon)
        self.address_changed(first=True)

    def _maintenance_events(self, daemon: Daemon) -> None:
        # The first turn of the loop reads the maintenance file (the node watch
        # model tells Consul maintenance).
        if self.maintenance_file:
            daemon.deliver(core.MaintenanceFile("maintenance file exists"))

    def restart_after_failure(self) -> None:
        if self.restarting:
            return  # an exec (SIGUSR2) in flight starts it
        if self.daemon is not None and self.daemon.running and self.daemon.stopping:
            # systemd starts it again once the stop (a hand-over first) has ended.
            self.world.after(0.1, self.restart_after_failure)
            return
        if self.daemon is None or not self.daemon.running:
            self.start()

    def leads(self) -> bool:
        return (
            self.daemon is not None and self.daemon.running and self.daemon.election.memory.leading
        )

    def role(self) -> Role | None:
        return self.daemon.state.role if self.daemon is not None and self.daemon.running else None

    def reconfigure(self, **changes: object) -> Settings:
        self.settings = replace(self.settings, **changes)  # type: ignore[arg-type]
        return self.settings


def on_each(items: list[SimNode], fn: Callable[[SimNode], None]) -> None:
    for item in items:
        fn(item)
