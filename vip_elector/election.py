"""The election thread: the trigger-key's one owner.

It is the only code of the daemon that writes the trigger-key and the
entries under its prefix, changes the fence behind /leader, sets the role
and destroys sessions. Its loop reads in one sitting: take the next input
(an answer of the key watch, a session the renewer made or lost, an
operator's request, the outcome of the last action, or the time), let the
decision core say what to do (decision.py, a pure function), do it through
the lock protocol (trigger_key.py), feed the outcome back, wait. Requests
from the other threads arrive as events in its inbox (``post``), never as
callbacks.

Before the loop it runs the pre-flight check (a plain key is never taken)
and looks at the session the previous run left (continuity.py).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from vip_elector.address_watch import AddressWatch, vip_rules, vip_status
from vip_elector.consul_adapter import ConsulAdapter, ConsulError, SessionGone, TxnResult
from vip_elector.continuity import Inheritance, try_inspect
from vip_elector.decision import (
    MEMBER_HEARTBEAT,
    URGENT,
    Acquire,
    Action,
    AppendHistory,
    Blank,
    CandidatesRead,
    CheckRivals,
    CheckSession,
    Decision,
    Delete,
    Destroy,
    Discard,
    Done,
    DropRequest,
    Event,
    HandTo,
    KeyRead,
    LockDelayOf,
    Log,
    LookUpCandidates,
    LookUpLockDelay,
    MaintenanceFile,
    Memory,
    Move,
    Publish,
    ReadFailed,
    ReadKey,
    ReapMember,
    Record,
    RefuseRequest,
    Release,
    ReleaseKey,
    Report,
    Restore,
    Retire,
    RivalsChecked,
    Rules,
    SessionChecked,
    Tick,
    Transition,
    UnlockKeeping,
    decide,
    handover_goes_on,
    skippable,
)
from vip_elector.fence import Fence
from vip_elector.key_entries import Change, is_foreign, not_a_lock_message
from vip_elector.key_watch import READ_BUDGET, KeyWatch
from vip_elector.liveness import LivenessCheck
from vip_elector.renewer import Renewer
from vip_elector.retrying import Retrier
from vip_elector.roles import Cause, Role
from vip_elector.runtime_dir import Held
from vip_elector.settings import Settings
from vip_elector.trigger_key import TriggerKey, node_of, own_session_name, rival_message, rivals
from vip_elector.worker import Fatal, Worker, WorkerContext

log = logging.getLogger("vip_elector")

SHUTDOWN_CALL_TIMEOUT = 0.3  # per Consul call while releasing
MAINTENANCE_POLL = 1.0  # the maintenance file is looked at this often
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def maintenance_file_reason(path: Path | None) -> str | None:
    if path is not None and path.exists():
        return f"maintenance file {path} exists"
    return None


class Election(Worker):
    """The election thread.

    Thread contract: ``post`` may be called from any thread; ``status`` too (it
    reads a frozen value); everything else runs on this thread, or (``release``)
    on the main thread once this thread is dead.
    """

    def __init__(
        self,
        context: WorkerContext,
        adapter: ConsulAdapter,
        watch_adapter: ConsulAdapter,
        renewer: Renewer,
        fence: Fence,
        liveness: LivenessCheck | None = None,
        inherit: Inheritance | None = None,
        inspect_previous: bool = False,
        memory: Memory | None = None,
        ready: threading.Event | None = None,
        on_ready: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__("election", context.state, context.stop)
        self.settings = settings = context.settings
        self.adapter = adapter
        self.key = TriggerKey(adapter, settings.trigger_key, settings.lock_value)
        self.renewer = renewer
        self.fence = fence
        self.liveness = liveness
        self.record = context.record
        self.rules = Rules(
            value=settings.lock_value,
            key=settings.trigger_key,
            priority=settings.priority,
            handover_gap=settings.handover_gap,
            lock_delay=settings.lock_delay,
            fence_bound=settings.fence_bound if settings.status_addr else 0.0,
            preempt_delay=settings.preempt_delay,
            step_down_without_vip=settings.step_down_without_vip,
            **vip_rules(settings),
        )
        self._inherit = inherit
        self._inspect_previous = inspect_previous
        self.memory = memory or Memory(ttl=settings.ttl)
        # Set once the pre-flight check passed and the previous run's session was
        # looked at: the renewer creates no session before (nothing half-done).
        self.ready = ready or threading.Event()
        self.on_ready = on_ready  # READY=1: the agent answered
        self._inbox: queue.Queue[Event] = queue.Queue()
        self._outcomes: collections.deque[Event] = collections.deque()
        # An URGENT input was posted: bookkeeping writes still to do are skipped,
        # and it is decided on before their outcomes (``_apply``, ``_next_event``).
        self._urgent = threading.Event()
        self._early: collections.deque[Event] = collections.deque()  # inbox, in order
        self._skipped: collections.deque[Event] = collections.deque()
        self._retrier = Retrier(
            self.stop,
            settings.consul.address,
            settings.trigger_key,
            on_wait=lambda delay: self.beat(delay + READ_BUDGET),
        )
        self.watch = KeyWatch(
            TriggerKey(watch_adapter, settings.trigger_key, settings.lock_value),
            context.state,
            self.stop,
            Retrier(self.stop, settings.consul.address, settings.trigger_key),
            self.post,
            self.rules.fence_bound,
        )
        # Whether the VIP is on this host's interface: VipSeen into the inbox.
        self.address_watch = AddressWatch(settings.vip_manager, context.state, self.stop, self.post)
        # A single reference: the main thread sets it on a reload ("applied at once").
        self.maintenance_file = settings.maintenance_file
        self._maintenance_seen: str | None = None
        self.done = threading.Event()  # the loop has ended (released or retired)
        self._release_failed = False  # the release found Consul not answering

    # -- from other threads ----------------------------------------------------------
    def post(self, event: Event) -> None:
        self._inbox.put(event)
        if isinstance(event, URGENT):
            self._urgent.set()

    def reload_rules(self, settings: Settings) -> None:
        """A reload's rules that apply at once (main thread). The rules are one frozen
        value the loop reads per step, replaced by a single reference; the Tick makes
        the core decide with them now rather than at its next wake-up."""
        self.rules = dataclasses.replace(
            self.rules, step_down_without_vip=settings.step_down_without_vip
        )
        self.post(Tick())

    # -- the thread --------------------------------------------------------------------
    def work(self) -> None:
        try:
            self._preflight()
            self._take_over()
            self.ready.set()
            self.on_ready()
            self.watch.start()
            self.address_watch.start()
            self._run()
        finally:
            self.address_watch.close()  # it waits for the kernel: wake it to see the stop
            self.done.set()

    def _run(self) -> None:
        wake = 0.0
        while True:
            event = self._next_event(wake)
            decision = decide(self.memory, event, time.monotonic(), self.rules)
            self._apply(decision)
            if isinstance(event, KeyRead):
                self.watch.proceed()  # in the mode this answer led to
            if decision.memory.finished:
                return
            wake = decision.wake_at

    def _next_event(self, wake: float) -> Event:
        """The outcome of the last action first; after an URGENT input, the inbox up
        to it (in order), then the outcomes of the writes skipped for it; then the
        maintenance file, then whatever arrives before ``wake``."""
        if self._outcomes:
            return self._outcomes.popleft()
        if self._urgent.is_set():
            self._urgent.clear()
            with contextlib.suppress(queue.Empty):
                while True:
                    self._early.append(self._inbox.get_nowait())
        if self._early:
            return self._early.popleft()
        if self._skipped:
            return self._skipped.popleft()
        path = self.maintenance_file
        reason = maintenance_file_reason(path)
        if reason != self._maintenance_seen:
            self._maintenance_seen = reason
            return MaintenanceFile(reason)
        timeout = max(0.0, wake - time.monotonic())
        if path is not None:
            timeout = min(timeout, MAINTENANCE_POLL)
        self.beat(timeout + 1.0)
        try:
            return self._inbox.get(timeout=timeout)
        except queue.Empty:
            return Tick()

    def _apply(self, decision: Decision) -> None:
        """The memory first (the fence before any write), then the actions in order."""
        memory = self.memory = decision.memory
        self.fence.set(memory.fence_until)
        self.fence.observe(memory.vip)  # /leader holds vip-manager's request while they agree
        self.state.sync(
            session=memory.session,
            held_index=memory.held_index if memory.leading else None,
            leader_since=memory.leader_since if memory.leading else None,
            adopted=memory.leading and memory.adopting is not None,
            node=memory.node or None,
            # The session holding the key: its lease bounds what /primary says.
            lock_session=memory.move_from or memory.adopting or memory.session,
        )
        if memory.expects_lock:
            # The leader's reads (tree, consistent, fenced wait), also for a lock
            # about to be ours without a write (adoption): a follower's read in
            # flight would leave the fence unrenewed for a minute.
            self.watch.lead()
        else:
            self.watch.follow()
        for action in decision.actions:
            if self._urgent.is_set() and skippable(action):
                # A session loss (or a stop) waits: a report on a hung agent
                # would hold it for a request timeout each (the soak's 1.6 s of
                # two leaders). Told to the core as not sent, after the loss.
                self._skipped.append(Done(action, "skipped", "an urgent input waits"))
                continue
            outcome = self._perform(action)
            if outcome is not None:
                self._outcomes.append(outcome)

    # -- before the loop -------------------------------------------------------------
    def _preflight(self) -> None:
        """Refuse a trigger-key that exists but is not a lock."""
        key = self._retrier.call(
            "Reading the trigger-key for the pre-flight check failed",
            self.key.read,
            self.stop.is_set,
        )
        if is_foreign(key):
            raise Fatal(
                not_a_lock_message(self.key.name, key.flags),
                event="preflight_failed",
                key=self.key.name,
            )

    def _take_over(self) -> None:
        """What to do with the session the previous run (or generation) left."""
        inherit = self._inherit
        if inherit is None and self._inspect_previous and self.record is not None:
            self.beat(3 * self.adapter.timeout + 5.0)
            inherit = try_inspect(self.adapter, self.settings, self.record)
        memory = self.memory
        if inherit is None or not inherit.holds_key:
            memory = _replace(memory, fence_until=0.0)  # a carried fence is void without the lock
        elif self.rules.fence_bound > 0:
            # Never longer than this configuration's own bound (a lower lock-delay).
            bound = time.monotonic() + self.rules.fence_bound
            memory = _replace(memory, fence_until=min(memory.fence_until, bound))
        else:
            memory = _replace(memory, fence_until=0.0)
        if inherit is not None and inherit.holds_key and inherit.matches:
            memory = _replace(memory, adopting=inherit.session, leader_since=inherit.leader_since)
            self.renewer.adopt(inherit.session)
        elif inherit is not None and inherit.holds_key:
            memory = _replace(
                memory,
                move_from=inherit.session,
                leader_since=inherit.leader_since,
                fence_until=0.0,
            )
            log.info(
                "session %s holds the trigger-key but %s changed: the lock moves to a new "
                "session without being freed",
                inherit.session,
                inherit.reason or "the configuration",
                extra={"event": "inherit_move", "session": inherit.session},
            )
        elif inherit is not None:
            log.info(
                "session %s of the previous run did not hold the trigger-key: destroying it",
                inherit.session,
                extra={"event": "inherit_follower", "session": inherit.session},
            )
            # Its candidate entry goes first, as release() does at a stop: the
            # other nodes read the candidates when the key goes free, and an entry
            # of a dead session with a higher priority would hold them back (up to
            # its lock-delay) from finishing the hand-over below.
            with contextlib.suppress(ConsulError):
                self.key.drop_entry(inherit.session)
            # Unless it holds our blank (it exec'd or died inside a hand-over):
            # that is deleted first, destroying the session would set its lock-delay.
            with contextlib.suppress(ConsulError):
                if self.key.release(inherit.session, None):
                    memory = handover_goes_on(memory, time.monotonic(), self.rules)
            memory = _replace(
                memory, doomed={**memory.doomed, inherit.session: (0.0, time.monotonic() + 60)}
            )
        self.memory = memory
        self.fence.set(memory.fence_until)
        if memory.expects_lock:
            self.watch.lead()  # its first read already

    # -- actions -----------------------------------------------------------------------
    def _perform(self, action: Action) -> Event | None:
        self.beat(3 * self.adapter.timeout + 1.0)
        if isinstance(action, Log):
            level = _LEVELS.get(action.level, logging.ERROR)
            log.log(
                level, "%s", action.message, extra={"event": action.event, "key": self.key.name}
            )
            return None
        if isinstance(action, Transition):
            self.state.transition(action.role, action.cause, action.detail)
            return None
        if isinstance(action, Record):
            if self.record is not None:
                with contextlib.suppress(OSError):
                    self.record.save(Held(action.session, self.state.leader_since))
            return None
        if isinstance(action, Acquire):
            self.state.count_acquire_attempt()
            return self._write(action, lambda: self.key.acquire(action.session, action.seen))
        if isinstance(action, Blank):
            return self._hand_over_write(action, lambda key: key.blank(action.session))
        if isinstance(action, HandTo):
            return self._hand_over_write(
                action, lambda key: key.hand_to(action.session, action.target)
            )
        if isinstance(action, Restore):
            return self._write(
                action,
                lambda: self.key.acquire(action.session, self.key.read(consistent=True)),
            )
        if isinstance(action, Delete):
            return self._write(action, lambda: self.key.delete_at(action.index))
        if isinstance(action, Move):
            return self._write(action, lambda: self.key.move(action.old, action.new))
        if isinstance(action, UnlockKeeping):
            with contextlib.suppress(ConsulError):
                self.key.unlock_keeping(action.seen, action.session)
            return None
        if isinstance(action, ReleaseKey):
            self.key.release(action.session, None)
            return None
        if isinstance(action, DropRequest):
            with contextlib.suppress(ConsulError):
                self.key.drop_request(action.request)
            return None
        if isinstance(action, RefuseRequest):
            with contextlib.suppress(ConsulError):
                self.key.refuse_request(action.request, action.reason)
            return None
        if isinstance(action, Publish):
            return self._publish(action)
        if isinstance(action, (Report, AppendHistory)):
            return self._report(action)
        if isinstance(action, ReapMember):
            return self._reap_member(action)
        if isinstance(action, CheckRivals):
            return self._check_rivals(action)
        if isinstance(action, LookUpLockDelay):
            return LockDelayOf(action.session, self._lock_delay_of(action.session))
        if isinstance(action, ReadKey):
            return self._read_now(action.tree)
        if isinstance(action, LookUpCandidates):
            try:
                return CandidatesRead(self.key.candidates(), action.freed_at)
            except ConsulError:
                return CandidatesRead({}, action.freed_at)
        if isinstance(action, CheckSession):
            try:
                alive = self.adapter.session_info(action.session, consistent=True) is not None
            except ConsulError:
                return SessionChecked(action.session, None)
            return SessionChecked(action.session, alive)
        if isinstance(action, Discard):
            self.renewer.discard(action.session, action.detail)
            return None
        if isinstance(action, Destroy):
            return self._destroy(action)
        if isinstance(action, Release):
            self.release(action.sessions, action.held)
            return None
        if isinstance(action, Retire):
            self._retire(action.sessions)
            return None
        raise AssertionError(f"unknown action {action!r}")

    def _write(self, action: Action, call: object) -> Done:
        """A write to the key: ok, refused (Consul said no), gone (our session) or failed."""
        started = time.monotonic()
        assert callable(call)
        try:
            answer = call()
        except SessionGone as exc:
            return Done(action, "gone", str(exc), started)
        except ConsulError as exc:
            # The write may have been applied even if we did not see the answer;
            # the next read tells.
            return Done(action, "failed", str(exc), started)
        index = answer.modify_index if isinstance(answer, TxnResult) else 0
        return Done(action, "ok" if answer else "refused", "", started, index)

    def _hand_over_write(
        self, action: Action, call: Callable[[TriggerKey], TxnResult | bool]
    ) -> Done:
        """A hand-over's write; while stopping, each call is as short as the
        release's, so a hung agent cannot hold the stop past its budget."""
        if self.memory.stop is None:
            return self._write(action, lambda: call(self.key))
        with ConsulAdapter(self.settings.consul, timeout=SHUTDOWN_CALL_TIMEOUT) as adapter:
            key = TriggerKey(adapter, self.settings.trigger_key, self.settings.lock_value)
            return self._write(action, lambda: call(key))

    def _read_now(self, tree: bool) -> Event:
        """ReadKey: the key, or a leader's whole tree read consistently, at once."""
        started, wall = time.monotonic(), time.time()
        try:
            if not tree:
                return KeyRead(
                    self.key.read(), started, wall, answered=time.monotonic(), asked=True
                )
            found = self.key.read_all(consistent=True)
        except ConsulError:
            return ReadFailed()
        return KeyRead(
            found.key,
            started,
            wall,
            consistent=True,
            tree=True,
            candidates=found.candidates,
            request=found.request,
            conflict=found.conflict,
            answered=time.monotonic(),
            members=found.members,
            asked=True,
        )

    def _publish(self, action: Publish) -> Done:
        """This node's candidate entry. Refused while our previous session still
        holds it (destroyed shortly) or under its lock-delay: retried, silently."""
        try:
            if self.key.publish(
                action.session,
                self.settings.priority,
                action.eligible,
                action.why,
                action.node,
                action.settled,
                action.vip,
                action.vip_problem,
            ):
                return Done(action, "ok")
            holder = self.key.candidate_entry_holder()
        except ConsulError as exc:
            return Done(action, "failed", str(exc))
        ours = (action.session, *self.memory.doomed)
        if holder is not None and holder not in ours and self._earlier_run_of_ours(holder):
            return Done(action, "orphan", holder)
        if holder is not None and holder not in ours:
            return Done(
                action,
                "refused",
                "its entry is held by another session (the same value elsewhere?)",
            )
        return Done(action, "refused")

    def _earlier_run_of_ours(self, session_id: str) -> bool:
        """Whether ``session_id`` carries our session's name on our node: made by an
        earlier process of this daemon (the runtime directory's lock lets one run)."""
        try:
            info = self.adapter.session_info(session_id)
        except ConsulError:
            return False
        name = own_session_name(self.settings.lock_value, self.settings.trigger_key)
        node = self.memory.node
        return info is not None and info.name == name and bool(node) and info.node == node

    def _report(self, action: Report | AppendHistory) -> Done | None:
        """The member entry or the history. The last ones (a clean stop) go after
        the release, on a short timeout, and only while Consul answered it."""
        if not action.final:
            return self._report_with(self.key, action)
        if self._release_failed:
            return None
        with ConsulAdapter(self.settings.consul, timeout=SHUTDOWN_CALL_TIMEOUT) as adapter:
            self._report_with(TriggerKey(adapter, self.key.name, self.key.value), action)
        return None

    def _report_with(self, key: TriggerKey, action: Report | AppendHistory) -> Done:
        try:
            if isinstance(action, AppendHistory):
                done = key.append_history(self._stamped(action.changes))
            else:
                done = key.report(
                    {
                        "state": action.state,
                        "priority": self.settings.priority,
                        "eligible": action.eligible,
                        "why": action.why,
                        "node": action.node,
                        "session": action.session,
                        "heartbeat": MEMBER_HEARTBEAT,
                    }
                )
        except ConsulError as exc:
            return Done(action, "failed", str(exc))
        return Done(action, "ok" if done else "refused")

    def _reap_member(self, action: ReapMember) -> Done:
        """The member entry of a node gone for good, removed if it is unchanged."""
        member = action.member
        return self._write(action, lambda: self.key.drop_member(member.value, member.modify_index))

    def _stamped(self, changes: tuple[Change, ...]) -> list[Change]:
        """The core's changes with the wall clock of when they happened."""
        offset = time.time() - time.monotonic()
        return [
            dataclasses.replace(c, at=c.at + offset, by=c.by or self.key.value) for c in changes
        ]

    def _check_rivals(self, action: CheckRivals) -> RivalsChecked:
        try:
            sessions = self.adapter.list_sessions()
        except ConsulError:
            return RivalsChecked(None, known=False)
        found = rivals(sessions, self.key.name, self.key.value, node_of(sessions, action.session))
        if not found:
            return RivalsChecked(None)
        if action.flag:
            try:
                self.key.flag_conflict(action.session, found)
            except ConsulError as exc:  # the next check flags again
                log.warning("could not flag the duplicate value for the leader: %s", exc)
        return RivalsChecked(rival_message(self.key.name, self.key.value, found))

    def _lock_delay_of(self, session_id: str) -> float:
        """The holder's LockDelay (ours as a guess if it cannot be read)."""
        try:
            info = self.adapter.session_info(session_id)
        except ConsulError:
            return self.settings.lock_delay
        return info.lock_delay if info is not None else self.settings.lock_delay

    def _destroy(self, action: Destroy) -> Done:
        """Drop the session's candidate entry (else it would sit under lock-delay),
        then destroy it; a refused entry delete does not keep the session alive."""
        with contextlib.suppress(ConsulError):
            self.key.drop_entry(action.session)
        try:
            self.adapter.destroy_session(action.session)
        except ConsulError as exc:
            return Done(action, "failed", str(exc))
        log.info(
            "session %s destroyed",
            action.session,
            extra={"event": "session_destroyed", "session": action.session},
        )
        return Done(action, "ok")

    def _retire(self, sessions: tuple[str, ...]) -> None:
        """Stop without releasing: only sessions that hold nothing are destroyed."""
        if not sessions:
            return
        with ConsulAdapter(self.settings.consul, timeout=SHUTDOWN_CALL_TIMEOUT) as adapter:
            for session_id in sessions:
                with contextlib.suppress(ConsulError):
                    adapter.destroy_session(session_id)

    # -- the clean release -----------------------------------------------------------
    def release(self, sessions: tuple[str, ...], held: tuple[str, int] | None) -> None:
        """Leave nothing behind in Consul, in bounded time: the key if one of our
        sessions holds it (deleted with cas: no lock-delay), our candidate
        entries, the sessions, the runtime record, the liveness check (last)."""
        with ConsulAdapter(self.settings.consul, timeout=SHUTDOWN_CALL_TIMEOUT) as adapter:
            key = TriggerKey(adapter, self.settings.trigger_key, self.settings.lock_value)
            # Our candidate entry first: the others read the candidates the moment
            # the key goes, and would hold back for us (and then race each other).
            # It also spares the next start a lock-delay on the entry.
            for session_id in sessions:
                if not key.release_failed:  # while Consul answers
                    try:
                        key.drop_entry(session_id)
                    except ConsulError:
                        key.release_failed = True
            for session_id in sessions:
                known = held[1] if held and held[0] == session_id else None
                key.release(session_id, known)
            for session_id in sessions:
                try:
                    adapter.destroy_session(session_id)
                    log.info(
                        "session %s destroyed",
                        session_id,
                        extra={"event": "session_destroyed", "session": session_id},
                    )
                except ConsulError as exc:
                    log.warning(
                        "could not destroy session %s (%s); Consul expires it within 2 x TTL",
                        session_id,
                        exc,
                        extra={"event": "shutdown_error"},
                    )
            self._release_failed = key.release_failed
            if self.record is not None:
                self.record.clear()  # nothing left for a next run to adopt
            if self.liveness is not None:
                # Last: deregistering the check earlier would invalidate a session
                # still holding the key, and lock-delay would apply.
                try:
                    adapter.deregister_service(self.liveness.service_id)
                except ConsulError as exc:
                    log.warning(
                        "could not deregister the liveness check (%s)",
                        exc,
                        extra={"event": "shutdown_error"},
                    )

    def release_after_failure(self) -> None:
        """The thread died: release from the main thread with what it knew."""
        memory = self.memory
        self.fence.set(0.0)
        self.state.transition(Role.STOPPING, Cause.SHUTDOWN)
        self.release(memory.sessions, memory.held)

    # -- what /status shows ------------------------------------------------------------
    def status(self) -> dict[str, object]:
        """Eligibility and hand-over state, from the last decision (a frozen value)."""
        memory = self.memory
        now = time.monotonic()
        why = memory.standby(now)
        candidate = memory.role in (Role.FOLLOWER, Role.LEADER) and memory.session is not None
        return {
            "candidate": candidate,
            "eligible": candidate and why is None,
            "standby_reason": why,
            "stepping_down": memory.leaving is not None,
            "maintenance": memory.maintenance is not None,
            "step_down_hold_left": round(max(0.0, memory.hold_until - now), 3),
            "vip_hold_left": round(max(0.0, memory.vip_hold_until - now), 3),
            **vip_status(memory),
        }


def _replace(memory: Memory, **changes: object) -> Memory:
    return dataclasses.replace(memory, **changes)  # type: ignore[arg-type]
