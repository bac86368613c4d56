"""The renewer thread: it keeps this node's Consul session, behind the health gate.

The renewer creates the Consul session once the node's health check passes,
renews it once 0.6 of the TTL has passed (the latest point that still leaves
room for a few retries, one a second) and replaces it when it
is gone. It treats a session
as lost as soon as no renewal has succeeded for one TTL by its own clock,
even when Consul cannot be reached: Consul may invalidate it after 2 x TTL
and give the lock away, so believing in it longer risks two leaders.

It also publishes that deadline, the session's lease (last good renewal +
TTL, ``DaemonState.lease``): /status, /primary and the metrics stop saying
LEADER once it has passed, even while the election thread, which decides on
the SessionDown, is still waiting for a Consul call.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from vip_elector.consul_adapter import (
    CheckNotHealthy,
    ConsulAdapter,
    ConsulError,
    SessionGone,
)
from vip_elector.decision import AdoptFailed, Event, GateClosed, SessionDown, SessionUp
from vip_elector.durations import format_duration
from vip_elector.liveness import LivenessCheck
from vip_elector.logs import Reminder, untrusted
from vip_elector.retrying import Interrupted, Retrier
from vip_elector.roles import Cause
from vip_elector.runtime_dir import Held
from vip_elector.trigger_key import own_session_name
from vip_elector.worker import Worker, WorkerContext

log = logging.getLogger("vip_elector")

RETRY_AFTER_FAILED_RENEW = 1.0
HEALTH_GATE_POLL = 1.0
HEALTH_GATE_REMIND = 30.0  # repeat an unchanged health-gate warning this often
MAX_WAIT = 5.0
# Renew when this much of the TTL has passed since the last good renewal. Later
# costs fewer requests (10 a minute with the 10 s default: most of an idle node's)
# but leaves less time to retry before the TTL rule gives up: a Consul write
# outage (a leader election: requests wait for the new leader) that starts right
# before a renewal is ridden out if it ends within 0.4 TTL (4 s by default; one
# starting earlier, up to a full TTL). Nothing is detected later for it: key
# changes come by the blocking query, a session Consul dropped by the key's
# deletion.
RENEW_AFTER = 0.6
# A renewal answers in milliseconds; one lost on the way (a hung agent, a dropped
# connection) is only noticed at its timeout. So the timeout follows the renewals'
# own latency (like TCP's retransmission timeout): this many times the slowest of
# the last few, at least RENEW_TIMEOUT_MIN, doubled after each attempt that timed
# out, and at most the adapter's timeout (TTL/4): a Consul that became slow but
# works is still waited for.
RENEW_TIMEOUT_FACTOR = 4.0
RENEW_TIMEOUT_MIN = 1.0
RENEW_LATENCIES_KEPT = 8


def renew_timeout(latencies: Iterable[float], timed_out: int, cap: float) -> float:
    """How long one renewal may take, from the last renewals' ``latencies`` and
    how many attempts ``timed_out`` in a row since (see RENEW_TIMEOUT_FACTOR)."""
    recent = list(latencies)
    if not recent:
        return cap
    timeout = max(RENEW_TIMEOUT_MIN, max(recent) * RENEW_TIMEOUT_FACTOR)
    return min(cap, timeout * 2.0 ** min(timed_out, 8))


def renewal_due(renewed_at: float, ttl: float) -> float:
    """When a session renewed at ``renewed_at`` is renewed next (no failures)."""
    return renewed_at + ttl * RENEW_AFTER


@dataclass(eq=False)
class Session:
    """One Consul session as this daemon holds it.

    ``id`` and ``ttl`` never change. ``renewed_at``, ``failures`` and
    ``last_attempt`` are written by the renewer thread only; any thread may
    read them. Any thread may :meth:`end` it; only the first call counts.
    """

    id: str
    ttl: float
    renewed_at: float = field(default_factory=time.monotonic)
    failures: int = 0  # renewals failed in a row
    last_attempt: float = 0.0
    _ended: threading.Event = field(default_factory=threading.Event, repr=False)
    _ending: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def end(self) -> bool:
        """Mark it ended; True for the one caller that ended it (check-and-set, atomic)."""
        with self._ending:
            if self._ended.is_set():
                return False
            self._ended.set()
            return True

    def alive(self) -> bool:
        """Not ended, and renewed within one TTL (our own clock)."""
        return not self.ended and time.monotonic() - self.renewed_at < self.ttl


class HealthGate:
    """Is this node's health check there and not critical on the local agent?"""

    def __init__(self, check_id: str | None) -> None:
        self.check_id = check_id

    def problem(self, adapter: ConsulAdapter) -> str | None:
        """None when the node may compete, else why not (raises ConsulError)."""
        if not self.check_id:
            return None
        checks = adapter.agent_checks()
        check = checks.get(self.check_id)
        if check is None:
            known = ", ".join(sorted(checks)) or "none"
            return (
                f"check {self.check_id!r} is not registered on the local agent "
                f"(visible: {known}); register the service with its HTTP check, "
                "or fix --check-id (with ACLs, the token needs node and service read to "
                "see checks); waiting for it"
            )
        if check.status == "critical":
            output = f": {untrusted(check.output, 200)}" if check.output else ""
            return f"check {self.check_id!r} is critical{output}; not competing until it passes"
        return None


class Renewer(Worker):
    """The renewer thread: health gate, session create, renewals, the TTL rule.

    It tells the election thread (the lock's owner) what became of its sessions
    through ``post``: made, adopted, lost, refused by the health gate. It writes
    nothing in the key-value store and destroys no session.

    Thread contract: ``session``, ``discard``, ``adopt``
    and ``wake`` may be called from any thread; everything else runs on the
    renewer. The current session (``_session``) is written under
    ``_session_changed``.
    """

    def __init__(
        self,
        context: WorkerContext,
        adapter: ConsulAdapter,
        post: Callable[[Event], None],
        liveness: LivenessCheck | None = None,
        may_start: threading.Event | None = None,
        on_status: Callable[[str], None] = lambda _: None,
    ) -> None:
        super().__init__("renewer", context.state, context.stop)
        self.settings = context.settings
        self.adapter = adapter
        self.post = post
        self.record = context.record
        self.liveness = liveness
        self.extra_checks = (liveness.check_id,) if liveness else ()
        self.may_start = may_start  # the election thread is ready (pre-flight, take-over)
        self.on_status = on_status  # why we are not competing, for systemctl status
        self.gate = HealthGate(self.settings.check_id)
        self._session: Session | None = None
        self._session_changed = threading.Condition()
        self._wake = threading.Event()  # discard() or stop: act now
        self._adopt: str | None = None  # a session of the previous run to renew and keep
        self._renew_latencies: collections.deque[float] = collections.deque(
            maxlen=RENEW_LATENCIES_KEPT
        )
        self._renew_timeouts = 0  # renewals timed out in a row
        self._retried_at_once = False  # the last failure was retried without a wait
        self._gate_reminder = Reminder(HEALTH_GATE_REMIND)  # renewer only
        self._gate_told: str | None = None  # the gate problem last posted
        # Longest a turn's Consul calls take (gate, create, read back / renew).
        self._step_budget = 3 * adapter.timeout + HEALTH_GATE_POLL
        self._retrier = Retrier(
            self.stop,
            self.settings.consul.address,
            self.settings.trigger_key,
            on_wait=lambda delay: self.beat(delay + self._step_budget),
        )

    # -- used by the other threads --------------------------------------------
    @property
    def session(self) -> Session | None:
        """The live session, if there is one."""
        with self._session_changed:
            session = self._session
        return session if session is not None and session.alive() else None

    def discard(self, session_id: str, detail: str) -> None:
        """The election is done with this session: forget it and make a new one."""
        with self._session_changed:
            session = self._session
        if session is not None and session.id == session_id:
            self._end(session, Cause.SESSION_LOST, detail, log_it=False)

    def adopt(self, session_id: str) -> None:
        """Renew this session of the previous run and keep it (before the first turn)."""
        self._adopt = session_id

    def wake(self) -> None:
        self._wake.set()

    # -- the thread ----------------------------------------------------------
    def work(self) -> None:
        while self.may_start is not None and not self.may_start.wait(0.5):
            self.beat(0.5)
            if self.stop.is_set():
                return
        if self._adopt is not None:
            self._adopt_previous(self._adopt)
        while not self.stop.is_set():
            # One turn: at most a wait of MAX_WAIT plus a few Consul calls.
            self.beat(MAX_WAIT + self._step_budget)
            session = self._current()
            if session is None:
                self._create()
                continue
            self._renew_when_due(session)

    def _current(self) -> Session | None:
        with self._session_changed:
            session = self._session
        if session is not None and session.ended:
            return None
        return session

    def _set_session(self, session: Session | None) -> None:
        with self._session_changed:
            self._session = session
            self._session_changed.notify_all()
        if session is not None:
            self._lease(session)

    def _lease(self, session: Session) -> None:
        """Publish the TTL rule's deadline of ``session`` (see the module's doc)."""
        self.state.lease(session.id, session.renewed_at + session.ttl)

    def _end(self, session: Session, cause: Cause, detail: str, log_it: bool = True) -> None:
        """End ``session`` (from any thread): forget it, tell the election thread,
        and make a new one at once (the renewer may be waiting for a renewal)."""
        if not session.end():
            return  # another thread ended it first
        # At once, before anything can block: the readers stop saying LEADER now.
        self.state.lease_ended(session.id, cause)
        with self._session_changed:
            if self._session is session:
                self._session = None
            self._session_changed.notify_all()
        if log_it:
            log.warning(
                "session %s lost: %s",
                session.id,
                detail,
                extra={"event": "session_lost", "session": session.id, "cause": cause.value},
            )
        # The election thread destroys it while it can still exist (Consul keeps
        # it up to 2 x TTL), and leaves LEADER if it led with it.
        self.post(SessionDown(session.id, cause, detail))
        self._wake.set()

    # -- adopting -------------------------------------------------------------
    def _adopt_previous(self, session_id: str) -> None:
        """Renew the previous run's session and keep it: the key never changes.

        A transient error (one 500, a reset) is retried within the session's TTL:
        giving up too soon would hand the lock away for nothing. Only when Consul
        says it is gone, or a TTL passed without a renewal, the election thread is
        told (it releases the key, then destroys the session)."""
        deadline = time.monotonic() + self.settings.ttl
        error: ConsulError | None = None
        while not self.stop.is_set():
            self.beat(MAX_WAIT + self._step_budget)
            try:
                if self.liveness is not None:
                    # Passing again before its TTL runs out keeps the session valid.
                    self.liveness.register()
                self.adapter.renew_session(session_id)
                info = self.adapter.session_info(session_id)
            except SessionGone as exc:
                error = exc
                break
            except ConsulError as exc:
                error = exc
                if time.monotonic() + RETRY_AFTER_FAILED_RENEW >= deadline:
                    break
                self.stop.wait(RETRY_AFTER_FAILED_RENEW)
                continue
            self._set_session(Session(session_id, self.settings.ttl))
            log.info(
                "adopted session %s after restart: it holds the trigger-key, the VIP did not move",
                session_id,
                extra={"event": "session_adopted", "session": session_id},
            )
            self.post(SessionUp(session_id, info.node if info else "", adopted=True))
            return
        if not self.stop.is_set():
            self.post(AdoptFailed(session_id, str(error)))

    # -- creating ------------------------------------------------------------
    def _create(self) -> bool:
        """Pass the health gate and create a session; True once one exists."""
        try:
            problem = self._retrier.call(
                "Health check verification failed",
                lambda: self.gate.problem(self.adapter),
                self.stop.is_set,
            )
            if problem is None and self.liveness is not None:
                # (Re-)register it passing right before the session names it.
                self._retrier.call(
                    "Registering the liveness check failed",
                    self.liveness.register,
                    self.stop.is_set,
                    level=logging.ERROR,
                )
            if problem is None:
                session_id = self._retrier.call(
                    "Failed to create session",
                    self._create_session,
                    self.stop.is_set,
                    give_up_on=(CheckNotHealthy, SessionGone),
                    level=logging.ERROR,
                )
        except Interrupted:
            return False
        except CheckNotHealthy as exc:
            # The agent said passing a moment ago, the servers say otherwise.
            problem = f"Consul refused the session: {exc}"
        if problem is not None:
            self._gate_warning(problem)
            self.stop.wait(HEALTH_GATE_POLL)
            return False
        self._gate_reminder.clear()
        self._gate_told = None
        self.post(SessionUp(session_id, self._log_session(session_id)))
        return True

    def _create_session(self) -> str:
        checks = [*self.settings.session_checks, *self.extra_checks]
        name = own_session_name(self.settings.lock_value, self.settings.trigger_key)
        if self.stop.is_set():
            raise Interrupted("stopping")
        session_id = self.adapter.create_session(
            name=name,
            ttl=self.settings.ttl,
            lock_delay=self.settings.lock_delay,
            checks=checks,
            behavior="delete",
        )
        self.state.count_session_created()
        self._set_session(Session(session_id, self.settings.ttl))
        if self.record is not None:
            with contextlib.suppress(OSError):
                self.record.save(Held(session_id, None))
        return session_id

    def _log_session(self, session_id: str) -> str:
        """Log what Consul stored; the node the session lives on ("" if unknown)."""
        try:
            info = self.adapter.session_info(session_id)
        except ConsulError as exc:
            log.warning("session %s created, but reading it back failed: %s", session_id, exc)
            return ""
        if info is None:
            log.warning("session %s was created and is already gone again", session_id)
            return ""
        log.info(
            "Session created: %s",
            info.describe(),
            extra={"event": "session_created", "session": session_id},
        )
        return info.node

    def _gate_warning(self, problem: str) -> None:
        if self._gate_reminder.due(problem):
            log.warning(
                "Health check verification failed: %s",
                problem,
                extra={"event": "health_gate", "cause": "check"},
            )
            self.on_status(f"not competing: {problem}")
        if self.session is None and problem != self._gate_told:
            self._gate_told = problem
            self.post(GateClosed(problem))

    # -- renewing ------------------------------------------------------------
    def _renew_when_due(self, session: Session) -> None:
        """Renew at RENEW_AFTER of the TTL; after a failure retry every second until
        the TTL is up."""
        if session.failures:
            due = session.last_attempt + RETRY_AFTER_FAILED_RENEW
        else:
            due = renewal_due(session.renewed_at, self.settings.ttl)
        due = min(due, session.renewed_at + session.ttl)  # never sleep past the deadline
        self._wake.clear()
        # Wake at least every MAX_WAIT (beats), even for a 24h TTL.
        self._wake.wait(min(MAX_WAIT, max(0.0, due - time.monotonic())))
        if self.stop.is_set() or session.ended or time.monotonic() < due:
            return  # stopping, discarded, or woken early for other work
        if self._timed_out(session, None):
            return
        session.last_attempt = time.monotonic()
        # A hanging renewal must not run past the TTL deadline it protects, nor
        # take more than half of what is left: one more attempt must fit after it.
        left = session.renewed_at + session.ttl - session.last_attempt
        timeout = min(self._renew_timeout(), max(RENEW_TIMEOUT_MIN, left / 2), left)
        try:
            self.adapter.renew_session(session.id, timeout=max(0.1, timeout))
        except SessionGone:
            self._end(
                session,
                Cause.SESSION_LOST,
                "Consul no longer knows the session (its check went critical, its node "
                "failed, it expired or it was destroyed); creating a new one",
            )
            return
        except ConsulError as exc:
            session.failures += 1
            if exc.kind == "timeout":
                self._renew_timeouts += 1
            if exc.kind == "unreachable" and not self._retried_at_once:
                # Often a keep-alive connection that the agent (or a proxy) closed
                # while idle: a fresh connection may work at once, so try it now.
                session.last_attempt -= RETRY_AFTER_FAILED_RENEW
                self._retried_at_once = True
            else:
                self._retried_at_once = False
            self.state.count_renew_failure()
            if not self._timed_out(session, exc):
                now = time.monotonic()
                left = session.ttl - (now - session.renewed_at)
                log.warning(
                    "session %s renewal failed: %s; retrying in %.1fs (%.1fs of TTL left)",
                    session.id,
                    exc,
                    max(0.0, session.last_attempt + RETRY_AFTER_FAILED_RENEW - now),
                    left,
                    extra={"event": "renew_failed", "session": session.id, "cause": exc.kind},
                )
            return
        if session.failures:
            log.info(
                "session %s renewed again after %d failed attempts",
                session.id,
                session.failures,
                extra={"event": "renew_recovered", "session": session.id},
            )
        session.failures = 0
        session.renewed_at = time.monotonic()
        self._lease(session)
        self._renew_latencies.append(session.renewed_at - session.last_attempt)
        self._renew_timeouts = 0
        self._retried_at_once = False
        self.state.session_renewed()
        log.debug(
            "session %s renewed", session.id, extra={"event": "renewed", "session": session.id}
        )

    def _renew_timeout(self) -> float:
        return renew_timeout(self._renew_latencies, self._renew_timeouts, self.adapter.timeout)

    def _timed_out(self, session: Session, error: ConsulError | None) -> bool:
        silent_for = time.monotonic() - session.renewed_at
        if silent_for < session.ttl:
            return False
        last = f"; last error: {error}" if error else ""
        self._end(
            session,
            Cause.RENEW_TIMEOUT,
            f"no successful renewal for {format_duration(silent_for)} "
            f"(TTL {format_duration(session.ttl)}){last}; stepping down before Consul "
            "can give the lock to another node",
        )
        return True
