"""A simulated Consul cluster, at the adapter boundary.

``SimConsul`` is the servers' state (KV with ModifyIndex/LockIndex/raft index,
sessions with TTL, lock-delay, Behavior=delete and checks, blocking-query
watches); ``SimAgent`` is one node's agent and implements the subset of
``ConsulAdapter`` the daemon uses, raising the adapter's own exception types.
Nothing here sleeps: the time is the world's virtual clock, and what takes
time (a blocking query, a session's TTL) is an event in the world's heap.

Semantics follow Consul 1.14 (see docs/design.md, "Simulation", and
tests/test_sim_fidelity.py, which checks the primitives against a real agent).
"""

from __future__ import annotations

import base64
import contextlib
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from vip_elector.consul_adapter import (
    CheckNotHealthy,
    CheckState,
    SessionGone,
    SessionInfo,
    TxnResult,
    Unavailable,
)
from vip_elector.durations import format_duration
from vip_elector.key_entries import KeyState

# A node cut off or killed: the servers mark its serfHealth critical this long
# after. Consul 1.14.5's LAN gossip (memberlist defaults: a probe a second, 0.5 s
# probe timeout, then suspicion for at least 4 x max(1, log10(nodes)) s, longer
# until other nodes confirm) takes 5 to 9 s on the test bed's five-node cluster
# (the bench's N row; tests/test_sim_fidelity.py's N scenario measures it and
# replays it); 3 s, the value before that test, let the simulated leader lose
# its key 3 to 4 s early.
SERF_DETECT = 6.0


@dataclass
class Entry:
    value: bytes
    flags: int
    session: str | None
    create_index: int
    modify_index: int
    lock_index: int


@dataclass
class Session:
    id: str
    name: str
    node: str
    ttl: float
    lock_delay: float
    behavior: str
    checks: tuple[str, ...]
    create_index: int
    renewed_at: float
    expires_at: float


@dataclass
class Waiter:
    agent: SimAgent
    prefix: bool
    name: str
    index: int
    answer: Callable[[], None]
    done: bool = False


@dataclass
class AgentFaults:
    http_down: bool = False  # connection refused
    partitioned: bool = False  # the agent cannot reach the servers
    error_500: bool = False  # every call answers 500
    flaky: float = 0.0  # this share of calls answers 500
    slow: float = 0.0  # extra latency of every answer
    lost: float = 0.0  # this share of KV writes is applied, its answer lost (a timeout)


@dataclass
class Mutation:
    """Protocol observers of the world (invariants at the KV layer)."""

    on_key_change: Callable[[str, Entry | None, Entry | None, str], None] = field(
        default=lambda *_: None
    )
    on_lock_delay_refusal: Callable[[str, str], None] = field(default=lambda *_: None)


class SimConsul:
    """The cluster: servers' state and the clock's hooks."""

    def __init__(
        self,
        now: Callable[[], float],
        schedule: Callable[[float, Callable[[], None]], None],
        rng: random.Random,
    ) -> None:
        self.now = now
        self.schedule = schedule
        self.rng = rng
        self.index = 1
        self.kv: dict[str, Entry] = {}
        self.tombstones: dict[str, int] = {}
        self.kv_index = 1
        self.lock_delay_until: dict[str, float] = {}
        self.sessions: dict[str, Session] = {}
        # The servers' view of each node's checks: node -> check id -> status.
        self.checks: dict[str, dict[str, str]] = {}
        self.no_leader = False
        self.waiters: list[Waiter] = []
        self._woken: list[str] | None = None  # keys written by the entry being applied
        self.observers = Mutation()
        self._ids = 0
        self.invalidations = 0

    # -- raft ----------------------------------------------------------------
    def _next_index(self) -> int:
        self.index += 1
        return self.index

    # -- KV ------------------------------------------------------------------
    def _set(self, key: str, entry: Entry | None, index: int, by: str) -> None:
        before = self.kv.get(key)
        if entry is None:
            if key in self.kv:
                del self.kv[key]
            self.tombstones[key] = index
        else:
            self.kv[key] = entry
        self.kv_index = index
        self.observers.on_key_change(key, before, entry, by)
        self._wake(key)

    def key_index(self, key: str) -> int:
        entry = self.kv.get(key)
        if entry is not None:
            return entry.modify_index
        return self.kv_index  # a missing key answers with the table's index

    def prefix_index(self, prefix: str) -> int:
        found = [e.modify_index for k, e in self.kv.items() if k.startswith(prefix)]
        found += [i for k, i in self.tombstones.items() if k.startswith(prefix)]
        return max(found) if found else self.kv_index

    @contextlib.contextmanager
    def _applying(self) -> Iterator[None]:
        """One raft entry: the blocking queries it wakes run again once all of it
        is applied (never half a transaction), before the writer's next call."""
        outer = self._woken is None
        if outer:
            self._woken = []
        try:
            yield
        finally:
            if outer:
                woken, self._woken = self._woken or [], None
                for key in woken:
                    self._wake(key)

    def _wake(self, key: str) -> None:
        if self._woken is not None:
            self._woken.append(key)
            return
        for waiter in list(self.waiters):
            hit = key.startswith(waiter.name) if waiter.prefix else key == waiter.name
            if hit and not waiter.done:
                self._answer(waiter)

    def _answer(self, waiter: Waiter) -> None:
        if waiter.done:
            return
        waiter.done = True
        if waiter in self.waiters:
            self.waiters.remove(waiter)
        # Consul runs the query again once the write that woke it is applied,
        # and the answer then travels: ``answer`` takes its snapshot (right
        # after the event that woke it) and delivers it after the agent's
        # latency, so a write applied meanwhile is not in it (a stale answer
        # arriving after our own write was sent, as on the real agent).
        self.schedule(self.now(), waiter.answer)

    def block(
        self,
        agent: SimAgent,
        name: str,
        prefix: bool,
        index: int,
        wait: float,
        answer: Callable[[], None],
    ) -> None:
        """A blocking query: ``answer`` (which reads again, may raise, and delivers
        what it read after ``agent.latency()``) runs when the watched key
        or prefix changed past ``index`` (once the whole write is applied), or after
        ``wait`` plus up to wait/16 of jitter; at once when it already changed."""
        waiter = Waiter(agent, prefix, name, index, answer)
        current = self.prefix_index(name) if prefix else self.key_index(name)
        if index < 1 or current > index or agent.failing():
            self._answer(waiter)  # at once, as Consul has it now
            return
        self.waiters.append(waiter)
        deadline = self.now() + wait + self.rng.uniform(0, wait / 16)
        self.schedule(deadline, lambda: self._answer(waiter))

    def wake_agent(self, agent: SimAgent) -> None:
        """A fault at ``agent``: its blocking queries return (with the error)."""
        for waiter in list(self.waiters):
            if waiter.agent is agent:
                self._answer(waiter)

    def read(self, key: str) -> KeyState:
        entry = self.kv.get(key)
        if entry is None:
            return KeyState(index=max(1, self.kv_index), exists=False)
        return _state(entry, max(1, entry.modify_index))

    def read_prefix(self, prefix: str) -> tuple[int, dict[str, KeyState]]:
        answered = max(1, self.prefix_index(prefix))
        found = {k: _state(e, answered) for k, e in self.kv.items() if k.startswith(prefix)}
        return answered, found

    def _may_lock(self, key: str, session: str) -> str | None:
        if session not in self.sessions:
            return f"invalid session {session!r}"
        entry = self.kv.get(key)
        if entry is not None and entry.session and entry.session != session:
            return f"failed to lock key {key!r}: lock is already held"
        if (entry is None or entry.session != session) and self.now() < self.lock_delay_until.get(
            key, 0.0
        ):
            self.observers.on_lock_delay_refusal(session, key)
            return f"failed to lock key {key!r} due to lock delay"
        return None

    def _locked(self, key: str, session: str, value: bytes, flags: int, index: int) -> Entry:
        entry = self.kv.get(key)
        if entry is None:
            return Entry(value, flags, session, index, index, 1)
        lock_index = entry.lock_index if entry.session == session else entry.lock_index + 1
        return Entry(value, flags, session, entry.create_index, index, lock_index)

    def put(self, key: str, value: bytes, acquire: str | None, cas: int | None, by: str) -> bool:
        entry = self.kv.get(key)
        if cas is not None:
            if cas == 0 and entry is not None:
                return False
            if cas > 0 and (entry is None or entry.modify_index != cas):
                return False
        if acquire is not None:
            problem = self._may_lock(key, acquire)
            if problem is not None:
                if problem.startswith("invalid session"):
                    raise SessionGone(f"Unexpected response code: 500 ({problem})")
                return False
            index = self._next_index()
            self._set(key, self._locked(key, acquire, value, 0, index), index, by)
            return True
        index = self._next_index()
        if entry is None:
            new = Entry(value, 0, None, index, index, 0)
        else:  # a plain put keeps the session, and LockIndex goes to 0 (Consul 1.14.5)
            new = Entry(value, 0, entry.session, entry.create_index, index, 0)
        self._set(key, new, index, by)
        return True

    def delete(self, key: str, cas: int | None, by: str) -> bool:
        entry = self.kv.get(key)
        if cas is not None and (entry is None or entry.modify_index != cas):
            return entry is None  # Consul: a missing key "was deleted"
        if entry is None:
            return True
        self._set(key, None, self._next_index(), by)
        return True

    def txn(self, operations: list[dict[str, Any]], by: str) -> TxnResult:
        """All operations in one raft entry, or none (a failed check or lock: 409)."""
        staged: dict[str, Entry | None] = {}
        index = self.index + 1

        def current(key: str) -> Entry | None:
            return staged[key] if key in staged else self.kv.get(key)

        errors: list[str] = []
        for number, op in enumerate(operations):
            kv = op["KV"]
            verb, key = kv["Verb"], kv["Key"]
            entry = current(key)
            if verb == "check-index":
                if entry is None:
                    errors.append(f"op {number}: key {key!r} doesn't exist")
                elif entry.modify_index != int(kv["Index"]):
                    errors.append(
                        f"op {number}: current modify index {entry.modify_index} != {kv['Index']}"
                    )
            elif verb == "check-not-exists":
                if entry is not None:
                    errors.append(f"op {number}: key {key!r} exists")
            elif verb == "delete":
                staged[key] = None
            elif verb == "lock":
                session = kv["Session"]
                held_by_other = entry is not None and entry.session and entry.session != session
                if session not in self.sessions:
                    errors.append(f"op {number}: invalid session {session!r}")
                elif held_by_other:
                    errors.append(f"op {number}: failed to lock key {key!r}: lock is already held")
                elif (entry is None or entry.session != session) and self.now() < (
                    self.lock_delay_until.get(key, 0.0)
                ):
                    self.observers.on_lock_delay_refusal(session, key)
                    errors.append(f"op {number}: failed to lock key {key!r} due to lock delay")
                else:
                    value = base64.b64decode(kv.get("Value") or "")
                    flags = int(kv.get("Flags") or 0)
                    if entry is None:
                        staged[key] = Entry(value, flags, session, index, index, 1)
                    else:
                        lock_index = entry.lock_index + (0 if entry.session == session else 1)
                        staged[key] = Entry(
                            value, flags, session, entry.create_index, index, lock_index
                        )
            elif verb == "unlock":
                session = kv["Session"]
                if entry is None or entry.session != session:
                    errors.append(f"op {number}: failed to unlock key {key!r}")
                else:
                    value = base64.b64decode(kv.get("Value") or "")
                    flags = int(kv.get("Flags") or 0)
                    staged[key] = Entry(
                        value, flags, None, entry.create_index, index, entry.lock_index
                    )
            else:
                raise AssertionError(f"the simulation does not know the txn verb {verb!r}")
        if errors:
            return TxnResult(False, tuple(errors))
        self._next_index()
        with self._applying():
            for key, entry in staged.items():
                if entry is None and key not in self.kv:
                    self.tombstones[key] = index
                    continue
                self._set(key, entry, index, by)
        # Consul returns each entry an operation touched (not for delete or
        # check-not-exists), as it is after the transaction.
        returned = [
            self.kv[op["KV"]["Key"]].modify_index
            for op in operations
            if op["KV"]["Verb"] not in ("delete", "check-not-exists") and op["KV"]["Key"] in self.kv
        ]
        return TxnResult(True, modify_index=max(returned, default=0))

    # -- sessions ----------------------------------------------------------------
    def create_session(
        self,
        node: str,
        name: str,
        ttl: float,
        lock_delay: float,
        checks: Iterable[str],
        behavior: str,
    ) -> str:
        checks = tuple(checks)
        node_checks = self.checks.get(node, {})
        for check in checks:
            status = node_checks.get(check)
            if status is None:
                raise CheckNotHealthy(f"Missing check '{check}' registration")
            if status == "critical":
                raise CheckNotHealthy(f"Check '{check}' is in critical state")
        self._ids += 1
        sid = f"{node}-s{self._ids:04d}"
        now = self.now()
        session = Session(
            sid,
            name,
            node,
            ttl,
            lock_delay,
            behavior,
            checks,
            self._next_index(),
            now,
            now + 2 * ttl,
        )
        self.sessions[sid] = session
        self._schedule_expiry(session)
        return sid

    def _schedule_expiry(self, session: Session) -> None:
        due = session.expires_at

        def expire() -> None:
            current = self.sessions.get(session.id)
            if current is not None and current.expires_at <= self.now():
                self.invalidate(session.id)

        self.schedule(due, expire)

    def renew(self, sid: str) -> None:
        session = self.sessions.get(sid)
        if session is None:
            raise SessionGone(f"session {sid} not found")
        session.renewed_at = self.now()
        session.expires_at = self.now() + 2 * session.ttl
        self._schedule_expiry(session)

    def invalidate(self, sid: str) -> None:
        """Destroyed, expired, or a check went critical: its locks go (Behavior=delete
        deletes them in the same index) and lock-delay starts on each."""
        session = self.sessions.pop(sid, None)
        if session is None:
            return
        self.invalidations += 1
        index = self._next_index()
        with self._applying():
            for key, entry in list(self.kv.items()):
                if entry.session != sid:
                    continue
                if session.lock_delay > 0:
                    self.lock_delay_until[key] = self.now() + session.lock_delay
                if session.behavior == "delete":
                    self._set(key, None, index, "consul")
                else:
                    freed = replace(entry, session=None, modify_index=index)
                    self._set(key, freed, index, "consul")

    def set_check(self, node: str, check: str, status: str) -> None:
        """The servers learn a check's status; sessions tied to it go when it is critical."""
        self.checks.setdefault(node, {})[check] = status
        if status == "critical":
            for session in list(self.sessions.values()):
                if session.node == node and check in session.checks:
                    self.invalidate(session.id)

    def session_dict(self, session: Session) -> dict[str, Any]:
        return {
            "ID": session.id,
            "Name": session.name,
            "Node": session.node,
            "CreateIndex": session.create_index,
        }


def _state(entry: Entry, answered: int) -> KeyState:
    return KeyState(
        index=answered,
        exists=True,
        value=entry.value or None,  # Consul returns an empty value as null
        flags=entry.flags,
        session=entry.session,
        modify_index=entry.modify_index,
        lock_index=entry.lock_index,
    )


class SimAgent:
    """One node's agent: the adapter interface the daemon uses, against SimConsul."""

    timeout = 5.0

    def __init__(self, cluster: SimConsul, node: str, rng: random.Random) -> None:
        self.cluster = cluster
        self.node = node
        self.rng = rng
        self.faults = AgentFaults()
        self.local_checks: dict[str, str] = {}
        self.calls = 0

    # -- faults ------------------------------------------------------------------
    def failing(self) -> bool:
        f = self.faults
        return f.http_down or f.partitioned or f.error_500 or self.cluster.no_leader

    def latency(self) -> float:
        """How long an answer takes to come back. A request is taken at once (the
        simulation's calls take no time), so the whole latency is on the way back:
        a blocking read sent a moment before a write can show the key without it
        and arrive after it, as on the real agent."""
        return self.rng.uniform(0.0005, 0.004) + self.faults.slow

    def _gate(self, local: bool = False) -> None:
        self.calls += 1
        f = self.faults
        if f.http_down:
            raise Unavailable("connection refused", "unreachable")
        if f.error_500:
            raise Unavailable("500 Internal Server Error", "server_error")
        if f.flaky and self.rng.random() < f.flaky:
            raise Unavailable("500 Internal Server Error (flaky)", "server_error")
        if local:
            return
        if f.partitioned:
            raise Unavailable("500 rpc error: No known Consul servers", "server_error")
        if self.cluster.no_leader:
            raise Unavailable("500 No cluster leader", "no_leader")

    # -- the adapter interface -------------------------------------------------------
    def __enter__(self) -> SimAgent:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def close(self) -> None:
        pass

    def node_name(self) -> str:
        self._gate(local=True)
        return self.node

    def node_health(
        self, node: str, index: int | None = None, wait: float | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        """Only whether the agent answers: Consul maintenance is the world's
        (SimNode.consul_maintenance), read by the node watch model."""
        self._gate()
        return 1, []

    def agent_checks(self) -> dict[str, CheckState]:
        self._gate(local=True)
        return {
            cid: CheckState(cid, status, "", "web") for cid, status in self.local_checks.items()
        }

    def create_session(
        self,
        name: str,
        ttl: float,
        lock_delay: float,
        checks: Iterable[str],
        behavior: str = "delete",
    ) -> str:
        self._gate()
        return self.cluster.create_session(self.node, name, ttl, lock_delay, checks, behavior)

    def list_sessions(self) -> list[dict[str, Any]]:
        self._gate()
        return [self.cluster.session_dict(s) for s in self.cluster.sessions.values()]

    def session_info(self, session_id: str, consistent: bool = False) -> SessionInfo | None:
        self._gate()
        s = self.cluster.sessions.get(session_id)
        if s is None:
            return None
        return SessionInfo(
            s.id, s.name, s.node, format_duration(s.ttl), s.lock_delay, s.behavior, s.checks
        )

    def renew_session(self, session_id: str, timeout: float | None = None) -> None:
        self._gate()
        self.cluster.renew(session_id)

    def destroy_session(self, session_id: str) -> None:
        self._gate()
        self.cluster.invalidate(session_id)

    def get_key(
        self,
        key: str,
        index: int | None = None,
        wait: float | None = None,
        consistent: bool = False,
    ) -> KeyState:
        self._gate()
        return self.cluster.read(key)

    def get_prefix(
        self,
        prefix: str,
        index: int | None = None,
        wait: float | None = None,
        consistent: bool = False,
    ) -> tuple[int, dict[str, KeyState]]:
        self._gate()
        return self.cluster.read_prefix(prefix)

    def put_key(
        self, key: str, value: bytes, acquire: str | None = None, cas: int | None = None
    ) -> bool:
        self._gate()
        done = self.cluster.put(key, value, acquire, cas, self.node)
        self._answer_lost()
        return done

    def txn(self, operations: list[dict[str, Any]]) -> TxnResult:
        self._gate()
        result = self.cluster.txn(operations, self.node)
        self._answer_lost()
        return result

    def delete_key(self, key: str, cas: int) -> bool:
        self._gate()
        done = self.cluster.delete(key, cas, self.node)
        self._answer_lost()
        return done

    def _answer_lost(self) -> None:
        """The write is applied; its answer does not come back (the client times out)."""
        if self.faults.lost and self.rng.random() < self.faults.lost:
            raise Unavailable(
                "Consul agent did not answer in time (the write was applied)", "timeout"
            )

    def deregister_service(self, service_id: str) -> None:
        self._gate(local=True)
