"""The role machine: the daemon's role, logged, counted and told to listeners.

The election thread (the lock's owner) is the only writer of the role and of
what it reports about the session and the lock (``transition``, ``sync``); the
decision core decides the transitions. This module logs each exactly once at
INFO/WARNING with its cause (the LOCK ACQUIRED / LOST / KEPT and STEPPED DOWN
banners), counts it, and tells the listeners (notify hooks, systemd status) on
the caller's thread. The renewer writes its own counters, ``last_renew`` and
the session's lease (``lease``, ``lease_ended``); every thread writes its own
heartbeat. Readers (status, metrics) take a snapshot.

The lease bounds the role as the readers report it: the renewer's TTL rule
gives up a session one TTL after its last good renewal (Consul may invalidate
it and give the lock away from then on), and tells the election thread; but
that thread may be waiting for a Consul call at that moment (up to the
request timeout, more than one call). So ``snapshot`` does not claim LEADER
past the lease of the session the role holds the lock with, whatever the
role machine says: a deadline, like the fence behind /leader, that time ends
with no thread awake. The role itself is still the election thread's alone.
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

LEASES_KEPT = 4  # sessions whose lease is remembered (a move involves two)
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
        # The session the lock is held with (by the election thread's last decision:
        # the one a move or an adoption is about, else ours), and the leases of the
        # last few sessions: until when (monotonic) the renewer's TTL rule believes
        # in each (last good renewal + TTL), and why it ended (lost, given up).
        self.lock_session: str | None = None
        self._leases: dict[str, tuple[float, Cause | None]] = {}
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
        lock_session: str | None = None,
    ) -> None:
        """What the election thread's last decision says about the session and the
        lock; ``lock_session``: the session whose lease bounds a LEADER's claim."""
        with self._lock:
            self.session_id = session
            self.lock_session = lock_session or session
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

    def lease(self, session_id: str, until: float) -> None:
        """By the renewer: ``session_id`` is believed in until ``until`` (monotonic),
        its last good renewal (or creation) + TTL. An ended session stays ended (a
        renewal that raced its end does not revive it)."""
        with self._lock:
            known = self._leases.get(session_id)
            if known is not None and known[1] is not None:
                return
            self._leases[session_id] = (until, None)
            while len(self._leases) > LEASES_KEPT:
                del self._leases[next(iter(self._leases))]

    def lease_ended(self, session_id: str, cause: Cause) -> None:
        """``session_id`` is lost (or given up) now, for ``cause``: by whichever
        thread ended it (``renewer.Session.end``); it only shortens the lease."""
        with self._lock:
            known = self._leases.get(session_id)
            if known is not None:
                self._leases[session_id] = (min(known[0], time.monotonic()), cause)

    def _lease_problem(self) -> tuple[Cause, str] | None:
        """Why the lock's session may not be believed in now (past its lease, or
        ended), or None while it may."""
        session = self.lock_session
        until, ended = self._leases.get(session or "", (0.0, Cause.SESSION_LOST))
        if time.monotonic() < until:
            return None
        if ended is None or ended == Cause.RENEW_TIMEOUT:
            return Cause.RENEW_TIMEOUT, "session lease expired, stepping down"
        return ended, f"session {session} lost, stepping down"

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
        """The state as readers report it: a LEADER past its session's lease is
        reported as the FOLLOWER the election thread will make it (see the
        module's doc), with why; ``role`` is what the role machine says."""
        with self._lock:
            leader_seconds = self.counters.leader_seconds
            if self.role == Role.LEADER:
                leader_seconds += time.monotonic() - self._since_monotonic
            role, cause, detail = self.role, self.cause, self.detail
            expired = self._lease_problem() if role == Role.LEADER else None
            if expired is not None:
                role, (cause, detail) = Role.FOLLOWER, expired
            return {
                "state": role.value,
                "role": self.role.value,
                "since": self.since,
                "cause": cause.value,
                "detail": detail,
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
