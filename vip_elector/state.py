"""The role machine: the daemon's role, logged, counted and told to listeners.

The election thread (the lock's owner) is the only writer of the role and of
what it reports about the session and the lock (``transition``, ``sync``); the
decision core decides the transitions. This module logs each exactly once at
INFO/WARNING with its cause (the LOCK ACQUIRED / LOST / KEPT and STEPPED DOWN
banners), counts it, and tells the listeners (notify hooks, systemd status) on
the caller's thread. The renewer writes its own counters and ``last_renew``;
every thread writes its own heartbeat. Readers (status, metrics) take a
snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vip_elector.roles import VOLUNTARY, Cause, Role

log = logging.getLogger("vip_elector")

DEFAULT_BEAT = 5.0  # seconds a thread may take to its next beat unless it says otherwise
BEAT_SLACK = 2.0


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

    def sync(
        self,
        session: str | None,
        held_index: int | None,
        leader_since: float | None,
        adopted: bool,
        node: str | None,
    ) -> None:
        """What the election thread's last decision says about the session and the lock."""
        with self._lock:
            self.session_id = session
            self.held_index = held_index
            self.leader_since = leader_since
            self.adopted = adopted
            if node:
                self.node = node

    def configure(self, trigger_key: str, lock_value: str) -> None:
        """A reload changed what is elected (only while not leader)."""
        with self._lock:
            self.trigger_key, self.lock_value = trigger_key, lock_value

    # -- counters (each written by one thread) ----------------------------------
    def count_session_created(self) -> None:
        """By the renewer."""
        with self._lock:
            self.last_renew = time.time()
            self.counters.sessions_created += 1

    def session_renewed(self) -> None:
        with self._lock:
            self.last_renew = time.time()

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
