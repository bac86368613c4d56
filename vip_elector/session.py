"""Session keeping: the renewer thread and the health gate in front of it.

The renewer creates the Consul session once the node's health check passes,
renews it every TTL/3 and replaces it when it is gone. It treats a session
as lost as soon as no renewal has succeeded for one TTL by its own clock,
even when Consul cannot be reached: Consul may invalidate it after 2 x TTL
and give the lock away, so believing in it longer risks two leaders.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vip_elector.config import Settings
from vip_elector.consul_adapter import (
    CheckNotHealthy,
    ConsulAdapter,
    ConsulError,
    SessionGone,
)
from vip_elector.durations import format_duration
from vip_elector.liveness import LivenessCheck
from vip_elector.retrying import Interrupted, Retrier
from vip_elector.state import Cause, DaemonState

log = logging.getLogger("vip_elector")

RETRY_AFTER_FAILED_RENEW = 1.0
HEALTH_GATE_POLL = 1.0
HEALTH_GATE_REMIND = 30.0  # repeat an unchanged health-gate warning this often
MAX_WAIT = 5.0


@dataclass
class Lease:
    """One Consul session as this daemon holds it."""

    id: str
    ttl: float
    renewed_at: float = field(default_factory=time.monotonic)
    ended: threading.Event = field(default_factory=threading.Event)
    failures: int = 0  # renewals failed in a row
    last_attempt: float = 0.0

    def alive(self) -> bool:
        """Not ended, and renewed within one TTL (our own clock)."""
        return not self.ended.is_set() and time.monotonic() - self.renewed_at < self.ttl


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
            output = f": {check.output[:200]}" if check.output else ""
            return f"check {self.check_id!r} is critical{output}; not competing until it passes"
        return None


class SessionKeeper(threading.Thread):
    """The renewer thread."""

    def __init__(
        self,
        settings: Settings,
        adapter: ConsulAdapter,
        state: DaemonState,
        stop: threading.Event,
        write_lock: threading.Lock,
        on_first_session: Callable[[], None] = lambda: None,
        liveness: LivenessCheck | None = None,
        may_start: threading.Event | None = None,
        on_status: Callable[[str], None] = lambda _: None,
    ) -> None:
        super().__init__(name="renewer", daemon=True)
        self.settings = settings
        self.adapter = adapter
        self.state = state
        self.stop = stop
        self.write_lock = write_lock
        self.on_first_session = on_first_session
        self.liveness = liveness
        self.extra_checks = (liveness.check_id,) if liveness else ()
        self.may_start = may_start  # the trigger-key pre-flight check passed
        self.on_status = on_status  # why we are not competing, for systemctl status
        self.gate = HealthGate(settings.check_id)
        self.failure: BaseException | None = None
        self._lease: Lease | None = None
        self._lease_changed = threading.Condition()
        self._wake = threading.Event()  # discard() or stop: act now
        self._doomed: list[tuple[str, float]] = []  # sessions to destroy, with give-up time
        self._last_gate_warning: tuple[str, float] | None = None
        # Longest a turn's Consul calls take (gate, create, read back / renew).
        self._step_budget = 3 * adapter.timeout + HEALTH_GATE_POLL
        self._retrier = Retrier(
            stop,
            settings.consul.address,
            settings.trigger_key,
            on_wait=lambda delay: state.beat("renewer", delay + self._step_budget),
        )

    # -- used by the other threads --------------------------------------------
    @property
    def lease(self) -> Lease | None:
        with self._lease_changed:
            lease = self._lease
        return lease if lease is not None and lease.alive() else None

    def wait_for_lease(self, timeout: float) -> Lease | None:
        """A live lease, waiting up to ``timeout`` seconds for one."""
        deadline = time.monotonic() + timeout
        with self._lease_changed:
            while True:
                lease = self._lease
                if lease is not None and lease.alive():
                    return lease
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.stop.is_set():
                    return None
                self._lease_changed.wait(remaining)

    def discard(self, lease: Lease, detail: str) -> None:
        """The election is done with ``lease``: destroy it and make a new one."""
        self._end(lease, Cause.SESSION_LOST, detail, log_it=False)

    def wake(self) -> None:
        self._wake.set()

    # -- the thread ----------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except Interrupted:
            pass
        except BaseException as exc:
            self.failure = exc
            log.exception("renewer thread failed; stopping the daemon")
            self.stop.set()

    def _run(self) -> None:
        while self.may_start is not None and not self.may_start.wait(0.5):
            self.state.beat("renewer", 0.5)
            if self.stop.is_set():
                return
        first = True
        while not self.stop.is_set():
            # One turn: at most a wait of MAX_WAIT plus a few Consul calls.
            self.state.beat("renewer", MAX_WAIT + self._step_budget)
            self._destroy_doomed()
            lease = self._current()
            if lease is None:
                if self._create() and first:
                    first = False
                    self.on_first_session()
                continue
            self._renew_when_due(lease)

    def _current(self) -> Lease | None:
        with self._lease_changed:
            lease = self._lease
        if lease is not None and lease.ended.is_set():
            return None
        return lease

    def _set_lease(self, lease: Lease | None) -> None:
        with self._lease_changed:
            self._lease = lease
            self._lease_changed.notify_all()

    def _end(self, lease: Lease, cause: Cause, detail: str, log_it: bool = True) -> None:
        if lease.ended.is_set():
            return
        lease.ended.set()
        with self._lease_changed:
            if self._lease is lease:
                self._lease = None
            self._lease_changed.notify_all()
        if log_it:
            log.warning(
                "session %s lost: %s",
                lease.id,
                detail,
                extra={"event": "session_lost", "session": lease.id, "cause": cause.value},
            )
        self.state.session_ended(cause, detail)
        # Destroy it while it can still exist (Consul keeps it up to 2 x TTL).
        self._doomed.append((lease.id, time.monotonic() + 2 * lease.ttl + 5))
        self._wake.set()

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
        self._last_gate_warning = None
        self._log_session(session_id)
        return True

    def _create_session(self) -> str:
        checks = [*self.settings.session_checks, *self.extra_checks]
        name = (
            f"vip-elector@{socket.gethostname()} value={self.settings.lock_value} "
            f"key={self.settings.trigger_key}"
        )
        with self.write_lock:
            if self.stop.is_set():
                raise Interrupted("stopping")
            session_id = self.adapter.create_session(
                name=name,
                ttl=self.settings.ttl,
                lock_delay=self.settings.lock_delay,
                checks=checks,
                behavior="delete",
            )
            self.state.session_created(session_id)
            self._set_lease(Lease(session_id, self.settings.ttl))
        return session_id

    def _log_session(self, session_id: str) -> None:
        try:
            info = self.adapter.session_info(session_id)
        except ConsulError as exc:
            log.warning("session %s created, but reading it back failed: %s", session_id, exc)
            return
        if info is None:
            log.warning("session %s was created and is already gone again", session_id)
            return
        log.info(
            "Session created: %s",
            info.describe(),
            extra={"event": "session_created", "session": session_id},
        )

    def _gate_warning(self, problem: str) -> None:
        now = time.monotonic()
        last = self._last_gate_warning
        if last is None or last[0] != problem or now - last[1] >= HEALTH_GATE_REMIND:
            log.warning(
                "Health check verification failed: %s",
                problem,
                extra={"event": "health_gate", "cause": "check"},
            )
            self._last_gate_warning = (problem, now)
            self.on_status(f"not competing: {problem}")

    # -- renewing ------------------------------------------------------------
    def _renew_when_due(self, lease: Lease) -> None:
        """Renew every TTL/3; after a failure retry every second until the TTL is up."""
        if lease.failures:
            due = lease.last_attempt + RETRY_AFTER_FAILED_RENEW
        else:
            due = lease.renewed_at + self.settings.ttl / 3
        due = min(due, lease.renewed_at + lease.ttl)  # never sleep past the deadline
        self._wake.clear()
        # Wake at least every MAX_WAIT (beats, doomed sessions), even for a 24h TTL.
        self._wake.wait(min(MAX_WAIT, max(0.0, due - time.monotonic())))
        if self.stop.is_set() or lease.ended.is_set() or time.monotonic() < due:
            return  # stopping, discarded, or woken early for other work
        if self._timed_out(lease, None):
            return
        lease.last_attempt = time.monotonic()
        # A hanging renewal must not run past the TTL deadline it protects.
        left = lease.renewed_at + lease.ttl - lease.last_attempt
        try:
            self.adapter.renew_session(lease.id, timeout=min(self.adapter.timeout, max(0.1, left)))
        except SessionGone:
            self._end(
                lease,
                Cause.SESSION_LOST,
                "Consul no longer knows the session (its check went critical, its node "
                "failed, it expired or it was destroyed); creating a new one",
            )
            return
        except ConsulError as exc:
            lease.failures += 1
            self.state.count_renew_failure()
            if not self._timed_out(lease, exc):
                left = lease.ttl - (time.monotonic() - lease.renewed_at)
                log.warning(
                    "session %s renewal failed: %s; retrying in %.0fs (%.1fs of TTL left)",
                    lease.id,
                    exc,
                    RETRY_AFTER_FAILED_RENEW,
                    left,
                    extra={"event": "renew_failed", "session": lease.id, "cause": exc.kind},
                )
            return
        if lease.failures:
            log.info(
                "session %s renewed again after %d failed attempts",
                lease.id,
                lease.failures,
                extra={"event": "renew_recovered", "session": lease.id},
            )
        lease.failures = 0
        lease.renewed_at = time.monotonic()
        self.state.session_renewed()
        log.debug("session %s renewed", lease.id, extra={"event": "renewed", "session": lease.id})

    def _timed_out(self, lease: Lease, error: ConsulError | None) -> bool:
        silent_for = time.monotonic() - lease.renewed_at
        if silent_for < lease.ttl:
            return False
        last = f"; last error: {error}" if error else ""
        self._end(
            lease,
            Cause.RENEW_TIMEOUT,
            f"no successful renewal for {format_duration(silent_for)} "
            f"(TTL {format_duration(lease.ttl)}){last}; stepping down before Consul "
            "can give the lock to another node",
        )
        return True

    # -- cleaning up ---------------------------------------------------------
    def _destroy_doomed(self) -> None:
        keep: list[tuple[str, float]] = []
        for session_id, give_up_at in self._doomed:
            try:
                self.adapter.destroy_session(session_id)
                log.info(
                    "session %s destroyed",
                    session_id,
                    extra={"event": "session_destroyed", "session": session_id},
                )
            except ConsulError as exc:
                if time.monotonic() < give_up_at:
                    keep.append((session_id, give_up_at))
                else:
                    log.info(
                        "session %s could not be destroyed (%s); Consul has expired it",
                        session_id,
                        exc,
                    )
        self._doomed = keep

    def doomed_sessions(self) -> list[str]:
        return [session_id for session_id, _ in self._doomed]
