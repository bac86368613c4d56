"""The daemon's state machine: the one source of truth for role, session and lock.

Threads report what happened (a session was created, the lock was won or
lost); this module decides whether that is a transition, logs it exactly
once at INFO/WARNING with its cause, counts it, and tells the listeners
(notify hooks, metrics) on the caller's thread, without blocking it.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("vip_elector")

DEFAULT_BEAT = 5.0  # seconds a thread may take to its next beat unless it says otherwise
BEAT_SLACK = 2.0


class Role(enum.StrEnum):
    STARTING = "starting"  # no usable session yet (health gate, Consul unreachable)
    FOLLOWER = "follower"  # holds a session, competes for the lock
    LEADER = "leader"  # holds the trigger-key lock
    MAINTENANCE = "maintenance"  # not competing by operator's choice
    FAULT = "fault"  # not competing: the health check is critical or missing (keepalived's FAULT)
    STOPPING = "stopping"


class Cause(enum.StrEnum):
    """Why a transition happened; a small fixed set (a metrics label)."""

    STARTED = "started"
    SESSION_CREATED = "session_created"
    CHECK = "check"  # the health check is critical or missing
    SESSION_LOST = "session_lost"  # Consul invalidated it (check, node, TTL)
    RENEW_TIMEOUT = "renew_timeout"  # no successful renewal for TTL
    ACQUIRED = "acquired"
    ADOPTED = "adopted"  # a session left by the previous run (restart, upgrade) holds the key
    KEY_DELETED = "key_deleted"
    KEY_TAKEN = "key_taken"  # another session holds it
    KEY_CHANGED = "key_changed"  # value or flags changed under our session
    STEP_DOWN = "step_down"
    MAINTENANCE = "maintenance"
    CONFIG_RELOAD = "config_reload"
    DUPLICATE_VALUE = "duplicate_value"  # another node competes with our lock value
    SWITCHOVER = "switchover"  # `vip-elector switchover` moved the VIP
    PREEMPTED = "preempted"  # a higher-priority candidate took over (--preempt-delay)
    SHUTDOWN = "shutdown"


# Leaving LEADER for these causes is our own choice, not a LOCK LOST.
VOLUNTARY = frozenset(
    {
        Cause.STEP_DOWN,
        Cause.MAINTENANCE,
        Cause.CONFIG_RELOAD,
        Cause.DUPLICATE_VALUE,
        Cause.SWITCHOVER,
        Cause.PREEMPTED,
    }
)


@dataclass(frozen=True)
class Transition:
    old: Role
    new: Role
    cause: Cause
    detail: str
    at: float  # wall clock, for humans and hooks
    key: str
    value: str
    session: str | None


Listener = Callable[[Transition], None]


@dataclass(frozen=True)
class StepDown:
    """A step-down we asked for: the session that led, why, and where to go."""

    session: str
    cause: Cause
    detail: str
    role: Role = Role.FOLLOWER


@dataclass
class _Counters:
    transitions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    acquire_attempts: int = 0
    renew_failures: int = 0
    sessions_created: int = 0
    leader_seconds: float = 0.0


class DaemonState:
    """Thread-safe role and lock bookkeeping."""

    def __init__(self, trigger_key: str, lock_value: str) -> None:
        self._lock = threading.RLock()
        self.trigger_key = trigger_key
        self.lock_value = lock_value
        self.role = Role.STARTING
        self.cause = Cause.STARTED
        self.detail = ""
        self.since = time.time()
        self._since_monotonic = time.monotonic()
        self.session_id: str | None = None
        self.held_index: int | None = None  # ModifyIndex of the key while we hold it
        self.last_renew: float | None = None  # wall clock of the last good renewal
        # Since when this node holds the lock (wall clock), across restarts and
        # moves to a new session; None while not leader.
        self.leader_since: float | None = None
        self.adopted = False  # the lock is held through a session of a previous run
        self.node: str | None = None  # the Consul node our sessions live on, once known
        # /leader answers 200 until then (monotonic): the last consistent read that
        # proved our lock, started at t, plus the fencing bound (Settings.fence_bound).
        self.fence_until = 0.0
        self._adopted: tuple[str, float | None] | None = None  # (session, leader since)
        self.counters = _Counters()
        self._listeners: list[Listener] = []
        self._beat_deadlines: dict[str, float] = {}

    # -- listeners -----------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    # -- transitions ---------------------------------------------------------
    def transition(
        self, new: Role, cause: Cause, detail: str = "", only_from: tuple[Role, ...] | None = None
    ) -> Transition | None:
        """Move to ``new``; returns the Transition, or None if nothing changed.

        ``only_from`` makes it conditional (e.g. "lose leadership, if leader").
        """
        with self._lock:
            old = self.role
            if old == new or (only_from is not None and old not in only_from):
                return None
            if old == Role.STOPPING:
                return None  # nothing comes after stopping
            now = time.monotonic()
            if old == Role.LEADER:
                self.counters.leader_seconds += now - self._since_monotonic
                self.held_index = None
                self.leader_since = None
                self.adopted = False
                self.fence_until = 0.0  # before anybody is told, the key released
            self.role, self.cause, self.detail = new, cause, detail
            self.since, self._since_monotonic = time.time(), now
            self.counters.transitions[(old.value, new.value, cause.value)] += 1
            change = Transition(
                old,
                new,
                cause,
                detail,
                self.since,
                self.trigger_key,
                self.lock_value,
                self.session_id,
            )
            self._log(change)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(change)
            except Exception:
                log.exception("a state listener failed (ignored): %r", listener)
        return change

    def _log(self, change: Transition) -> None:
        fields = {
            "event": "transition",
            "state": change.new.value,
            "previous": change.old.value,
            "cause": change.cause.value,
            "key": change.key,
            "session": change.session,
        }
        detail = f": {change.detail}" if change.detail else ""
        if change.new == Role.LEADER and change.cause == Cause.ADOPTED:
            log.info(
                "*** LOCK KEPT *** key=%s value=%s session=%s: adopted after restart, the "
                "VIP did not move",
                change.key,
                change.value,
                change.session,
                extra={**fields, "event": "lock_kept", "value": change.value},
            )
        elif change.new == Role.LEADER:
            log.info(
                "*** LOCK ACQUIRED *** key=%s value=%s session=%s",
                change.key,
                change.value,
                change.session,
                extra={**fields, "event": "lock_acquired", "value": change.value},
            )
        elif change.old == Role.LEADER and change.cause in VOLUNTARY:
            log.info(
                "*** STEPPED DOWN *** key=%s cause=%s%s",
                change.key,
                change.cause.value,
                detail,
                extra={**fields, "event": "stepped_down"},
            )
        elif change.old == Role.LEADER and change.new == Role.STOPPING:
            log.info(
                "stopping as leader: releasing the lock on %s",
                change.key,
                extra={**fields, "event": "releasing"},
            )
        elif change.old == Role.LEADER:
            log.warning(
                "*** LOCK LOST *** key=%s cause=%s%s",
                change.key,
                change.cause.value,
                detail,
                extra={**fields, "event": "lock_lost"},
            )
        else:
            log.info(
                "state %s -> %s (%s%s)",
                change.old.value,
                change.new.value,
                change.cause.value,
                detail,
                extra=fields,
            )

    def become_leader(self, session_id: str, modify_index: int) -> bool:
        """The election confirmed ``session_id`` holds the key; False when stopping.

        Already LEADER (the lock was moved to a new session): no transition.
        A session adopted from the previous run is LOCK KEPT, not ACQUIRED, and
        keeps the time it first led.
        """
        with self._lock:
            if self.role == Role.STOPPING:
                return False
            self.session_id = session_id
            self.held_index = modify_index
            if self.role == Role.LEADER:
                return True
            adopted = self._adopted is not None and self._adopted[0] == session_id
            since = self._adopted[1] if adopted and self._adopted else None
            self.transition(Role.LEADER, Cause.ADOPTED if adopted else Cause.ACQUIRED)
            self.leader_since = since or self.since
            self.adopted = adopted
            return True

    # -- fencing (/leader) ----------------------------------------------------
    def confirm(self, read_started: float, bound: float) -> None:
        """A consistent read started at ``read_started`` proved our lock."""
        with self._lock:
            if self.role == Role.LEADER and bound > 0:
                self.fence_until = max(self.fence_until, read_started + bound)

    def carry_fence(self, until: float) -> None:
        """The fence of the process we re-executed from (SIGUSR2): the same clock,
        the same proof; dropped if the session is not adopted as leader."""
        with self._lock:
            self.fence_until = until

    def unfence(self) -> None:
        """Stop answering 200 on /leader at once (a step-down or hand-over starts)."""
        with self._lock:
            self.fence_until = 0.0

    def fenced(self) -> float:
        """Seconds this node may still say "leader" on /leader (0: not the leader)."""
        with self._lock:
            if self.role == Role.STOPPING:
                return 0.0
            return max(0.0, self.fence_until - time.monotonic())

    def lock_moved(self, old_session: str, new_session: str, since: float | None) -> None:
        """The key went from ``old_session`` to ``new_session`` in one transaction."""
        with self._lock:
            if self.session_id in (old_session, None):
                self.session_id = new_session
            if self.role == Role.LEADER and since is not None:
                self.leader_since = since

    def lose_leadership(
        self, cause: Cause, detail: str, new: Role = Role.FOLLOWER
    ) -> Transition | None:
        return self.transition(new, cause, detail, only_from=(Role.LEADER,))

    def configure(self, trigger_key: str, lock_value: str) -> None:
        """A reload changed what is elected (only while not leader)."""
        with self._lock:
            self.trigger_key, self.lock_value = trigger_key, lock_value

    def set_held_index(self, modify_index: int) -> None:
        with self._lock:
            if self.role == Role.LEADER:
                self.held_index = modify_index

    def leader_index(self) -> tuple[str, int] | None:
        """(session, ModifyIndex) while leader, for a clean release."""
        with self._lock:
            if self.role == Role.LEADER and self.session_id and self.held_index:
                return self.session_id, self.held_index
            return None

    # -- sessions ------------------------------------------------------------
    def session_created(self, session_id: str) -> None:
        with self._lock:
            self.session_id = session_id
            self.last_renew = time.time()
            self.counters.sessions_created += 1
        self.transition(
            Role.FOLLOWER,
            Cause.SESSION_CREATED,
            f"session {session_id}",
            only_from=(Role.STARTING, Role.FAULT),
        )

    def fault(self, detail: str) -> None:
        """The health gate refuses: not a candidate (FAULT), unless in maintenance."""
        self.transition(Role.FAULT, Cause.CHECK, detail, only_from=(Role.STARTING, Role.FOLLOWER))

    def session_adopted(self, session_id: str, leader_since: float | None) -> None:
        """The previous run's session, holding the key, is ours now."""
        with self._lock:
            self.session_id = session_id
            self.last_renew = time.time()
            self._adopted = (session_id, leader_since)
        self.transition(
            Role.FOLLOWER,
            Cause.ADOPTED,
            f"session {session_id} of the previous run",
            only_from=(Role.STARTING, Role.FAULT),
        )

    def session_renewed(self) -> None:
        with self._lock:
            self.last_renew = time.time()

    def session_ended(self, cause: Cause, detail: str) -> None:
        """The session is gone or presumed gone: no leadership, no session."""
        with self._lock:
            self.lose_leadership(cause, detail)
            self.session_id = None

    def count_acquire_attempt(self) -> None:
        with self._lock:
            self.counters.acquire_attempts += 1

    def count_renew_failure(self) -> None:
        with self._lock:
            self.counters.renew_failures += 1

    # -- liveness of the threads ---------------------------------------------
    def beat(self, thread: str, within: float = DEFAULT_BEAT) -> None:
        """``thread`` is making progress and will beat again within ``within`` s.

        Each thread states how long its next step may take (a 10 s long poll,
        a 30 s backoff), so "stalled" means "late on its own promise", not "quiet
        for a fixed time".
        """
        with self._lock:
            self._beat_deadlines[thread] = time.monotonic() + within + BEAT_SLACK

    def stalled_threads(self, expected: tuple[str, ...]) -> list[str]:
        """Threads in ``expected`` that are late for their next beat."""
        now = time.monotonic()
        with self._lock:
            return [
                name for name in expected if self._beat_deadlines.get(name, float("-inf")) < now
            ]

    # -- reporting -----------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            leader_seconds = self.counters.leader_seconds
            if self.role == Role.LEADER:
                leader_seconds += time.monotonic() - self._since_monotonic
            return {
                "state": self.role.value,
                "since": self.since,
                "cause": self.cause.value,
                "detail": self.detail,
                "key": self.trigger_key,
                "lock_value": self.lock_value,
                "session": self.session_id,
                "key_index": self.held_index,
                "last_renew": self.last_renew,
                "leader_since": self.leader_since,
                "adopted": self.adopted,
                "fenced_for": round(max(0.0, self.fence_until - time.monotonic()), 3),
                "counters": {
                    "transitions": [
                        {"from": a, "to": b, "cause": c, "count": n}
                        for (a, b, c), n in sorted(self.counters.transitions.items())
                    ],
                    "acquire_attempts": self.counters.acquire_attempts,
                    "renew_failures": self.counters.renew_failures,
                    "sessions_created": self.counters.sessions_created,
                    "leader_seconds": round(leader_seconds, 3),
                },
            }
