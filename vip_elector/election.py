"""The election thread: blocking-query acquire loops on the trigger-key.

As a follower it long-polls the key and, when it is free, acquires it with
Consul's lock flag and the lock value. A ``false`` with nobody holding the
key means lock-delay: it retries when the delay can have ended (the holder
session's LockDelay after the key went free), not after a fixed 5 s as the
Go lock helper does. As the leader it watches the key with consistent
blocking queries; the key deleted, taken or changed is a LOCK LOST, after
which it competes again with a fresh session. Transient errors are retried
and are never a loss on their own: the renewer's TTL rule decides that.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from vip_elector.consul_adapter import (
    ConsulAdapter,
    ConsulError,
    KeyState,
    SessionGone,
    blocking_timeout,
)
from vip_elector.durations import format_duration
from vip_elector.logs import Reminder
from vip_elector.renewer import Renewer, Session
from vip_elector.retrying import Interrupted, Retrier
from vip_elector.runtime_dir import Held
from vip_elector.state import Cause, Role, StepDown
from vip_elector.trigger_key import (
    Candidate,
    KeyTree,
    SwitchoverRequest,
    TriggerKey,
    best_other,
    is_foreign,
    next_index,
    node_of,
    not_a_lock_message,
    rival_message,
    rivals,
)
from vip_elector.worker import Fatal, Worker, WorkerContext

log = logging.getLogger("vip_elector")
T = TypeVar("T")

# Blocking-query wait: a change returns at once anyway, so a longer wait only
# saves requests (1 a minute). It also bounds how long a connection that died
# without a word goes unnoticed (rare: the agent is local).
POLL_WAIT = 60.0
# The fenced leader's watch returns every tenth of the fencing bound. The
# proof behind /leader dates from the start of the last answered read, so when
# Consul stops answering just before an answer was due it is two waits old:
# a wait of B/10 leaves /leader at least 0.8 B to ride out a Consul leader
# election (B/3 left only a third, and measured Consul elections here take 3 s
# and more). The price: 60/(B/10) consistent reads a minute from the leader
# (about 130 with lock-delay 5 s), in the fenced mode only.
FENCE_REFRESH = 0.1
MIN_FENCE_WAIT = 0.1
READ_BUDGET = blocking_timeout(POLL_WAIT) + 1.0  # longest a key read can take
LOCK_DELAY_MARGIN = 0.02  # retry this long after the lock-delay should have ended
LOCK_DELAY_RETRY_MAX = 1.0  # then back off up to this
WATCH_SLACK = 0.01  # a blocking read back this much before its wait changed something
# The last holder, when the key was taken and freed again between two reads.
UNSEEN_HOLDER = b"another node"
STANDBY_POLL = 1.0
REFUSAL_REMIND = 30.0
PRIORITY_MARGIN = 1.0  # a better candidate gets this long on top of the time it needs


class Election(Worker):
    """The election thread (it also runs the trigger-key pre-flight check first).

    Thread contract: everything here runs on the election thread; it reads the
    renewer's session and tells the renewer (``discard``) when it is done with
    one. ``preflight_passed`` is set by this thread and waited on by the renewer.
    """

    def __init__(
        self,
        context: WorkerContext,
        adapter: ConsulAdapter,
        renewer: Renewer,
        standby_reason: Callable[[], str | None] = lambda: None,
        step_down_cause: Callable[[str], StepDown | None] = lambda _: None,
        preflight_passed: threading.Event | None = None,
        on_preflight_passed: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__("election", context.state, context.stop)
        self.settings = context.settings
        self.adapter = adapter
        self.key = TriggerKey(adapter, self.settings.trigger_key, self.settings.lock_value)
        self.renewer = renewer
        self.write_lock = context.write_lock
        self.record = context.record
        self.standby_reason = standby_reason
        self.step_down_cause = step_down_cause
        # Set once the trigger-key passed the pre-flight check; the renewer
        # creates no session before that (nothing half-done in Consul).
        self.preflight_passed = preflight_passed or threading.Event()
        self.on_preflight_passed = on_preflight_passed
        self._retrier = Retrier(
            self.stop,
            self.settings.consul.address,
            self.settings.trigger_key,
            on_wait=lambda delay: self.beat(delay + READ_BUDGET),
        )
        self._reported_not_a_lock: int | None = None
        self._last_standby: str | None = None
        # The value of the last holder seen (None: none since start). Another
        # node's value means its vip-manager may still hold the VIP for up to
        # the hand-over gap after the key went free.
        self._last_holder_value: bytes | None = None
        self._refusal_reminder = Reminder(REFUSAL_REMIND)
        self._held_back_for: tuple[str, float] | None = None  # (better value, freed at)
        self._read_started = 0.0  # when the last (successful) read was sent

    def work(self) -> None:
        self._preflight()
        while not self.stop.is_set():
            self.beat(1.0)
            session = self.renewer.wait_for_session(1.0)
            if session is None:
                continue
            # Interrupted: stopping, or the session ended; the loop decides.
            with contextlib.suppress(Interrupted):
                self._compete(session)

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
        self.preflight_passed.set()
        self.on_preflight_passed()

    # -- helpers -------------------------------------------------------------
    def _done(self, session: Session) -> bool:
        return self.stop.is_set() or not session.alive()

    def _read(
        self, session: Session, index: int, consistent: bool, wait: float = POLL_WAIT
    ) -> KeyState:
        return self._retried(session, lambda i: self.key.read(i, wait, consistent), index)

    def _read_all(self, session: Session, index: int, due: float | None = None) -> KeyTree:
        """The leader's watch: the key, the candidates, switchover requests and
        conflict flags.

        Consistent, and with /leader served it returns at least every
        FENCE_REFRESH of the fencing bound, so each answer (counted from the
        start of its request) keeps the fence up while the lock is ours.
        ``due``: a monotonic time by which it must return even if nothing
        changes (a preemption delay ends).
        """
        wait = POLL_WAIT
        if self.fencing:
            wait = min(POLL_WAIT, max(MIN_FENCE_WAIT, self.settings.fence_bound * FENCE_REFRESH))
        if due is not None:
            # Not less than a second: a hand-over that failed is not retried in a loop.
            wait = min(wait, max(1.0, due - time.monotonic()))
        return self._retried(
            session,
            lambda i: self.key.read_all(i, wait, consistent=True),
            index,
            urgent=self.fencing,
        )

    @property
    def fencing(self) -> bool:
        """/leader is served (--status-addr) and lock-delay leaves room for a fence."""
        return self.settings.status_addr is not None and self.settings.fence_bound > 0

    def _retried(
        self, session: Session, read: Callable[[int], T], index: int, urgent: bool = False
    ) -> T:
        """``read`` until it answers. ``urgent``: a leader keeping /leader fenced
        tries again every few tenths of a second, so that one answer from a live
        server (a Consul leader election, a dead server the agent still dials)
        renews the fence before it runs out."""
        attempts = 0

        def attempt() -> T:
            nonlocal attempts
            attempts += 1
            self.beat(READ_BUDGET)
            self._read_started = time.monotonic()
            # After a failure (a Consul leader election, a snapshot restore) the
            # index may have gone backwards: a blocking read with the old one
            # would wait its full 10 s. Read at once, then block again.
            return read(index if attempts == 1 else 0)

        return self._retrier.call(
            "Reading the trigger-key failed",
            attempt,
            lambda: self._done(session),
            initial=0.1 if urgent else 0.25,
            maximum=0.4 if urgent else 2.0,
            quiet_first=3 if urgent else 1,
        )

    def _lock_delay_of(self, session_id: str) -> float:
        """The holder's LockDelay (ours as a guess if it cannot be read)."""
        try:
            info = self.adapter.session_info(session_id)
        except ConsulError:
            return self.settings.lock_delay
        return info.lock_delay if info is not None else self.settings.lock_delay

    # -- follower ------------------------------------------------------------
    def _compete(self, session: Session) -> None:
        index = 0
        holder: str | None = None
        holder_lock_delay = self.settings.lock_delay
        freed_at: float | None = None
        refused = 0  # acquire answered false this many times since the key went free
        waited = 0  # the refusal after which we last waited for lock-delay
        lock_delay_ends = 0.0  # monotonic; our estimate while we wait for it
        watch_ends = 0.0  # when the lock-delay watch returns if nothing changes
        wait = POLL_WAIT
        while not self._done(session):
            key = self._read(session, index, consistent=False, wait=wait)
            # Back before its wait ran out: the key changed while we waited for
            # lock-delay (another node took it and let it go again, too fast for
            # us to see it held).
            woke = time.monotonic() < watch_ends - WATCH_SLACK
            wait, watch_ends = POLL_WAIT, 0.0
            index = next_index(index, key.index)
            self.beat()
            if is_foreign(key):
                self._report_not_a_lock(key)
                continue
            if key.session == session.id:
                self._lead(session)  # ours already (e.g. an acquire whose answer was lost)
                return
            if key.held:
                if key.session != holder:
                    holder = key.session
                    assert holder is not None
                    holder_lock_delay = self._lock_delay_of(holder)
                self._last_holder_value = key.value
                freed_at, refused, waited, lock_delay_ends = None, 0, 0, 0.0
                if key.value == self.key.value_bytes:
                    # Another session holds the key with *our* value: another
                    # node with our trigger-value (both get the VIP), or an old
                    # session of ours on its way out. Flag it: the leader steps down.
                    rival = self._rival_problem(session, flag=True)
                    if rival is not None:
                        self._refuse(rival)
                continue
            # Free.
            if freed_at is None:
                freed_at = time.monotonic()
            reason = self.standby_reason()
            if reason is not None:
                self._standby(reason)
                index = 0
                continue
            rival = self._rival_problem(session)
            if rival is not None:
                self._refuse(rival)
                index = 0
                continue
            self._leave_standby(session)
            if woke:
                # Its vip-manager may have added the VIP: the hand-over gap
                # counts from now. Lock-delay is still counted from freed_at.
                self._last_holder_value = UNSEEN_HOLDER
            if not self._wait_for_handover_gap(time.monotonic() if woke else freed_at, session):
                continue  # stopping, or the session ended: the loop decides
            hold = self._hold_back(freed_at, holder_lock_delay)
            if hold > 0:
                wait = hold  # a blocking read: returns as soon as the better one takes it
                continue
            if refused > waited:
                # Refused, and the key is still free: Consul's lock-delay keeps
                # it (its holder's session was invalidated). Wait for it watching
                # the key: another node whose estimate ends sooner (it saw the key
                # go earlier) may take it and step down again meanwhile.
                waited = refused
                lock_delay_ends = freed_at + holder_lock_delay + LOCK_DELAY_MARGIN
                wait = self._lock_delay_watch(lock_delay_ends, refused)
                if not wait:
                    wait, index = POLL_WAIT, 0  # backed off: look again at once
                else:
                    watch_ends = time.monotonic() + wait
                continue  # else a blocking read at this index, for ``wait``
            if not woke:
                # The watch ran out, up to wait/16 before our estimate (see
                # _lock_delay_watch): sleep the rest.
                left = lock_delay_ends - time.monotonic()
                if left > 0:
                    self.beat(left + 1.0)
                    self.stop.wait(left)
            won = self._acquire(session, key)
            if won is None:
                return  # the session is gone: the renewer makes a new one
            if won:
                self._last_holder_value = self.key.value_bytes
                self._lead(session)
                return
            refused += 1
            # Look again at once: if another node won the race, watch it (it may
            # step down right away) instead of sleeping out a lock-delay that
            # does not apply.
            index = 0

    def _wait_for_handover_gap(self, freed_at: float, session: Session) -> bool:
        """Do not take a key another node held before its vip-manager can have
        dropped the VIP (``Settings.handover_gap`` after the key went free; we
        saw it free at ``freed_at``, no earlier than it was). False if stopped."""
        previous = self._last_holder_value
        if previous is None or previous == self.key.value_bytes:
            return True  # nobody else held it since we started, or it was ours
        remaining = freed_at + self.settings.handover_gap - time.monotonic()
        if remaining > 0:
            log.debug(
                "the key was %r's; acquiring in %s, once its vip-manager has dropped the VIP",
                previous.decode(errors="replace"),
                format_duration(remaining),
                extra={"event": "handover_gap"},
            )
            self.beat(remaining)
            self.stop.wait(remaining)
        return not self._done(session)

    def _hold_back(self, freed_at: float, lock_delay: float) -> float:
        """Seconds to leave a free key to a better (higher-priority, eligible)
        candidate: the time it needs to take it (lock-delay or the hand-over
        gap), plus a margin; then we take it after all (it may be stuck). 0:
        nobody better, or the bound is over."""
        bound = freed_at + max(lock_delay, self.settings.handover_gap) + PRIORITY_MARGIN
        remaining = bound - time.monotonic()
        if remaining <= 0:
            return 0.0
        try:
            better = best_other(self.key.candidates(), self.key.value, than=self.settings.priority)
        except ConsulError:
            return 0.0
        if better is None:
            return 0.0
        if self._held_back_for != (better.value, freed_at):
            self._held_back_for = (better.value, freed_at)
            log.info(
                "leaving the free key to %r (priority %d > %d) for up to %s",
                better.value,
                better.priority,
                self.settings.priority,
                format_duration(remaining),
                extra={"event": "priority_hold_back", "key": self.key.name},
            )
        return max(0.05, remaining)

    def _report_not_a_lock(self, key: KeyState) -> None:
        if self._reported_not_a_lock != key.modify_index:
            self._reported_not_a_lock = key.modify_index
            log.error(
                "%s Not competing until it is fixed.",
                not_a_lock_message(self.key.name, key.flags),
                extra={"event": "not_a_lock", "key": self.settings.trigger_key},
            )

    def _standby(self, reason: str) -> None:
        if reason != self._last_standby:
            log.info(
                "not competing for the lock: %s",
                reason,
                extra={"event": "standby", "key": self.settings.trigger_key},
            )
            self._last_standby = reason
        self.beat(STANDBY_POLL)
        self.stop.wait(STANDBY_POLL)

    def _leave_standby(self, session: Session) -> None:
        self._last_standby = None

    def _rival_problem(self, session: Session, flag: bool = False) -> str | None:
        """Why this node must not hold the key: another node competes with our value.
        ``flag``: also put up the conflict flag the leader watches for."""
        try:
            sessions = self.adapter.list_sessions()
        except ConsulError:
            return None  # cannot tell now; the next turn asks again
        found = rivals(sessions, self.key.name, self.key.value, node_of(sessions, session.id))
        if not found:
            return None
        if flag:
            try:
                self.key.flag_conflict(session.id, found)
            except ConsulError as exc:  # the next turn flags again
                log.warning("could not flag the duplicate value for the leader: %s", exc)
        return rival_message(self.key.name, self.key.value, found)

    def _refuse(self, problem: str) -> None:
        """Not competing because of a configuration mistake: an ERROR, repeated
        every REFUSAL_REMIND seconds while it lasts (not a crash loop)."""
        if self._refusal_reminder.due(problem):
            log.error(
                "not competing for the lock: %s",
                problem,
                extra={"event": "duplicate_value", "key": self.key.name},
            )
        self.beat(STANDBY_POLL)
        self.stop.wait(STANDBY_POLL)

    def _acquire(self, session: Session, seen: KeyState) -> bool | None:
        """True won, False refused, None when the session turned out to be gone."""
        self.beat(self.adapter.timeout + 1.0)
        with self.write_lock:
            if self._done(session):
                raise Interrupted("stopping")
            self.state.count_acquire_attempt()
            try:
                return self.key.acquire(session.id, seen)
            except SessionGone as exc:
                self.renewer.discard(session, f"Consul refused our session for the lock: {exc}")
                return None
            except ConsulError as exc:
                # The PUT may have been applied even if we did not see the answer;
                # the next read tells (the key then carries our session).
                log.warning(
                    "acquiring the trigger-key failed: %s; reading it again",
                    exc,
                    extra={"event": "acquire_failed", "cause": exc.kind},
                )
                self.stop.wait(0.25)
                return False

    def _lock_delay_watch(self, until: float, refused: int) -> float:
        """How long to watch the free key (a blocking read) before acquiring again
        at ``until``, when lock-delay should be over; 0 after backing off instead.

        Consul returns a blocking read that sees no change after its wait plus
        up to wait/16 of jitter, so the watch is 16/17 of the time left and the
        rest is slept before the acquire."""
        remaining = until - time.monotonic()
        self.beat(max(remaining, LOCK_DELAY_RETRY_MAX) + READ_BUDGET)
        if remaining > 0:
            log.debug(
                "lock-delay in force; retrying in %s",
                format_duration(remaining),
                extra={"event": "lock_delay"},
            )
            return remaining * 16 / 17
        # Past our estimate (clock skew, a longer lock-delay): back off gently.
        self.stop.wait(min(LOCK_DELAY_RETRY_MAX, 0.05 * 2 ** min(refused, 5)))
        return 0.0

    # -- moving the VIP on purpose (switchover, preemption) -------------------
    def _steer(
        self,
        session: Session,
        key: KeyState,
        candidates: dict[str, Candidate],
        request: SwitchoverRequest | None,
        better_since: dict[str, float],
    ) -> StepDown | None:
        """Apply a switchover request or preempt; the StepDown if the lock moved."""
        target, cause = None, Cause.SWITCHOVER
        if request is not None:
            target = self._switchover_target(request, candidates)
        elif self.settings.preempt_delay is not None:
            target = self._preemptor(candidates, better_since)
            cause = Cause.PREEMPTED
        if target is None or not self._hand_over(session, target, request):
            return None
        detail = f"handed the lock to {target.value!r} ({cause.value})"
        return StepDown(session.id, cause, detail)

    def _switchover_target(
        self, request: SwitchoverRequest, candidates: dict[str, Candidate]
    ) -> Candidate | None:
        refusal = ""
        target = None
        if not request.fresh():
            refusal = "it is stale (older than 10 s, or from a clock far off)"
        elif request.to == self.key.value:
            refusal = "this node holds the VIP already"
        else:
            target = (
                best_other(candidates, self.key.value)
                if request.to == "any"
                else candidates.get(request.to)
            )
            if target is None:
                refusal = "no live candidate has that value"
            elif not target.eligible:
                refusal = f"that candidate is not eligible ({target.why or 'unknown'})"
                target = None
        if target is None:
            log.warning(
                "switchover to %r (asked by %s) refused: %s",
                request.to,
                request.by,
                refusal,
                extra={"event": "switchover_refused", "key": self.key.name},
            )
            with contextlib.suppress(ConsulError):
                self.key.drop_request(request)
        return target

    def _preemption_due(self, better_since: dict[str, float]) -> float | None:
        """When the first better candidate will have waited --preempt-delay."""
        if self.settings.preempt_delay is None or not better_since:
            return None
        return min(better_since.values()) + self.settings.preempt_delay

    def _preemptor(
        self, candidates: dict[str, Candidate], better_since: dict[str, float]
    ) -> Candidate | None:
        """A higher-priority candidate eligible for --preempt-delay without a break."""
        now = time.monotonic()
        better = {
            c.value
            for c in candidates.values()
            if c.eligible and c.priority > self.settings.priority
        }
        for value in list(better_since):
            if value not in better:
                del better_since[value]  # a break: the delay starts again
        for value in better:
            better_since.setdefault(value, now)
        assert self.settings.preempt_delay is not None
        ready = {
            v: c
            for v, c in candidates.items()
            if v in better_since and now - better_since[v] >= self.settings.preempt_delay
        }
        return best_other(ready, self.key.value)

    def _hand_over(
        self, session: Session, target: Candidate, request: SwitchoverRequest | None
    ) -> bool:
        """Blank the key (vip-manager here drops the VIP; nobody can take it), wait
        the hand-over gap, then move the lock to the target's session in one
        transaction: never two holders, never a free key."""
        gap = self.settings.handover_gap
        log.info(
            "handing the VIP to %r%s: the key is blanked now, and goes to %r's session in "
            "%s, once vip-manager here has dropped the VIP",
            target.value,
            f" (switchover asked by {request.by})" if request else " (preemption)",
            target.value,
            format_duration(gap),
            extra={"event": "handing_over", "key": self.key.name},
        )
        self.state.unfence()  # /leader says no before the key changes
        try:
            if not self.key.blank(session.id):
                return False
            self.beat(gap + self.adapter.timeout)
            self.stop.wait(gap)
            if self._done(session):
                return False  # the release (stop) deletes the blank key
            if self.key.hand_to(session.id, target):
                return True
            log.warning(
                "%r's session is gone: keeping the VIP here",
                target.value,
                extra={"event": "switchover_failed"},
            )
            # Our value back; nobody else could take the key meanwhile.
            self.key.acquire(session.id, self.key.read(consistent=True))
        except ConsulError as exc:
            log.warning(
                "handing the VIP over failed: %s", exc, extra={"event": "switchover_failed"}
            )
        return False

    def _record_leadership(self, session: Session) -> None:
        """Keep the session id and since when we lead for the next run (a restart)."""
        if self.record is not None:
            with contextlib.suppress(OSError):
                self.record.save(Held(session.id, self.state.leader_since))

    def _give_up_key(self, key: KeyState) -> bool:
        """Delete the key we hold (cas, no lock-delay); True when it is gone."""
        try:
            return self.key.delete_at(key.modify_index)
        except ConsulError as exc:
            log.warning("deleting the trigger-key to step down failed: %s", exc)
            return False

    def _explain(self, problem: tuple[Cause, str], session: Session) -> tuple[Cause, str]:
        """Tell "Consul invalidated our session" apart from "someone deleted the key"."""
        if problem[0] != Cause.KEY_DELETED:
            return problem
        try:
            alive = self.adapter.session_info(session.id, consistent=True) is not None
        except ConsulError:
            return problem
        if alive:
            return Cause.KEY_DELETED, "the trigger-key was deleted by someone else"
        return Cause.SESSION_LOST, (
            "Consul invalidated our session (a check it is tied to went critical, the node "
            "failed, or the session was destroyed) and deleted the trigger-key with it"
        )

    # -- leader --------------------------------------------------------------
    def _lead(self, session: Session) -> None:
        """Confirm the lock with a consistent read, then watch it until it is lost."""
        index = 0
        leading = False
        conflict_checked = 0  # the conflict flag (its ModifyIndex) last looked into
        own_step: StepDown | None = None
        better_since: dict[str, float] = {}  # preemption: eligible and better, since
        while not self._done(session):
            try:
                tree = self._read_all(session, index, self._preemption_due(better_since))
            except Interrupted:
                break
            if self._done(session):
                break  # stopped while the read ran: this generation acts no more
            key = tree.key
            index = next_index(index, key.index)
            self.beat()
            problem = self.key.ownership_problem(key, session.id)
            if (
                problem is not None
                and problem[0] == Cause.KEY_CHANGED
                and key.session == session.id
            ):
                # Somebody wrote into our lock: free it, keep their value.
                with contextlib.suppress(ConsulError):
                    self.key.unlock_keeping(key, session.id)
            if problem is not None:
                step = self.step_down_cause(session.id) or own_step
                cause, detail = (
                    (step.cause, step.detail) if step else self._explain(problem, session)
                )
                if leading:
                    self.state.lose_leadership(
                        cause, detail, new=step.role if step else Role.FOLLOWER
                    )
                else:
                    log.warning("the acquire succeeded but the key is not ours: %s", detail)
                self.renewer.discard(session, detail)
                return
            if not leading:
                leading = self.state.become_leader(session.id, key.modify_index)
                if not leading:
                    return  # stopping
                self._record_leadership(session)
            else:
                self.state.set_held_index(key.modify_index)
            if self.fencing and own_step is None:
                self.state.confirm(self._read_started, self.settings.fence_bound)
            if own_step is None:
                own_step = self._steer(session, key, tree.candidates, tree.request, better_since)
            if own_step is None and tree.conflict not in (0, conflict_checked):
                # A follower says another node has our value: both vip-managers
                # would add the VIP. Check (a flag is only a hint) and step down.
                conflict_checked = tree.conflict
                rival = self._rival_problem(session)
                if rival is not None:
                    self.state.unfence()
                if rival is not None and self._give_up_key(key):
                    log.error("stepping down: %s", rival, extra={"event": "duplicate_value"})
                    own_step = StepDown(session.id, Cause.DUPLICATE_VALUE, rival)
                    self._refuse(rival)
        # Stopping (the main thread releases the lock), or the renewer ended the
        # session (TTL rule, or Consul says it is gone) and recorded the loss.
