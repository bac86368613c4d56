"""The simulated Consul (tests/sim/consul.py) against the real one: the same
scripted primitive scenarios run through the real ConsulAdapter on the test
bed's agent and through the simulated agent, and their outcomes must be
equal. A primitive whose behaviour differs is a failing test: the simulation's
verdicts are only worth what its Consul is.
"""

from __future__ import annotations

import base64
import heapq
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import pytest

from tests.sim.consul import SimAgent, SimConsul
from tests.testbed.agents import ConsulAgent
from tests.testbed.waiting import wait_until
from vip_elector.consul_adapter import ConsulAdapter, ConsulError
from vip_elector.key_entries import LOCK_FLAG, KeyState
from vip_elector.settings import ConsulSettings

LOCK_DELAY = 1.0
TOLERANCE = 0.6  # seconds: a lock-delay ends within [delay - 0.15, delay + TOLERANCE]


class Backend(Protocol):
    adapter: Any

    def elapsed_until(self, done: Callable[[], bool], timeout: float) -> float | None: ...

    def fail_check(self, check: str) -> None: ...

    def add_check(self, check: str) -> None: ...

    def blocking_get(
        self, key: str, index: int, wait: float, write: Callable[[], None] | None
    ) -> tuple[KeyState, float]: ...


class Real:
    def __init__(self, agent: ConsulAgent) -> None:
        host, port = agent.http_addr.rsplit(":", 1)
        self.adapter = ConsulAdapter(ConsulSettings(scheme="http", host=host, port=int(port)))
        self.http = agent.api()

    def elapsed_until(self, done: Callable[[], bool], timeout: float) -> float | None:
        started = time.monotonic()
        try:
            wait_until(done, timeout, "the primitive never succeeded", interval=0.05)
        except Exception:
            return None
        return time.monotonic() - started

    def add_check(self, check: str) -> None:
        body = {"ID": check, "Name": check, "TTL": "60s", "Status": "passing"}
        self.http.ok("PUT", "/v1/agent/check/register", body=body)
        wait_until(
            lambda: self.http.catalog_check_status(self.http.node_name(), check) == "passing",
            10,
            "the check never reached the servers",
        )

    def fail_check(self, check: str) -> None:
        self.http.ok("PUT", f"/v1/agent/check/fail/{check}")

    def blocking_get(
        self, key: str, index: int, wait: float, write: Callable[[], None] | None
    ) -> tuple[KeyState, float]:
        if write is not None:
            timer = threading.Timer(0.3, write)
            timer.start()
        started = time.monotonic()
        answer = self.adapter.get_key(key, index=index, wait=wait)
        return answer, time.monotonic() - started


class Simulated:
    def __init__(self) -> None:
        self.now = 0.0
        self.heap: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = 0
        self.cluster = SimConsul(lambda: self.now, self._at, random.Random(1))
        self.cluster.checks["sim"] = {"serfHealth": "passing"}
        self.adapter = SimAgent(self.cluster, "sim", random.Random(2))

    def _at(self, when: float, fn: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (when, self.seq, fn))

    def _advance(self, to: float) -> None:
        while self.heap and self.heap[0][0] <= to:
            when, _, fn = heapq.heappop(self.heap)
            self.now = max(self.now, when)
            fn()
        self.now = max(self.now, to)

    def elapsed_until(self, done: Callable[[], bool], timeout: float) -> float | None:
        started = self.now
        while self.now - started <= timeout:
            if done():
                return self.now - started
            self._advance(self.now + 0.05)
        return None

    def add_check(self, check: str) -> None:
        self.adapter.local_checks[check] = "passing"
        self.cluster.set_check("sim", check, "passing")

    def fail_check(self, check: str) -> None:
        self.adapter.local_checks[check] = "critical"
        self.cluster.set_check("sim", check, "critical")

    def blocking_get(
        self, key: str, index: int, wait: float, write: Callable[[], None] | None
    ) -> tuple[KeyState, float]:
        started = self.now
        answers: list[KeyState] = []
        self.cluster.block(
            self.adapter, key, False, index, wait, lambda: answers.append(self.adapter.get_key(key))
        )
        if write is not None:
            self._at(self.now + 0.3, write)
        while not answers:
            self._advance(self.heap[0][0])
        return answers[0], self.now - started


def _lock(key: str, session: str, value: bytes = b"v") -> dict[str, Any]:
    body = {
        "Verb": "lock",
        "Key": key,
        "Value": base64.b64encode(value).decode(),
        "Flags": LOCK_FLAG,
        "Session": session,
    }
    return {"KV": body}


def _unlock(key: str, session: str) -> dict[str, Any]:
    return {"KV": {"Verb": "unlock", "Key": key, "Session": session}}


def _session(backend: Backend, checks: list[str] | None = None) -> str:
    sid: str = backend.adapter.create_session(
        "vip-elector-fidelity", 10.0, LOCK_DELAY, checks or ["serfHealth"], "delete"
    )
    return sid


def scenario_lock_delay(backend: Backend, key: str) -> list[object]:
    """An invalidated lock: the key goes with it, and acquire is refused until its
    lock-delay has run, then granted."""
    a, b = _session(backend), _session(backend)
    seen: list[object] = [backend.adapter.txn([_lock(key, a)]).ok]
    backend.adapter.destroy_session(a)
    seen.append(backend.adapter.get_key(key).exists)
    seen.append(
        backend.adapter.txn([{"KV": {"Verb": "check-not-exists", "Key": key}}, _lock(key, b)]).ok
    )
    seen.append(backend.adapter.put_key(key, b"x", acquire=b))
    took = backend.elapsed_until(lambda: backend.adapter.txn([_lock(key, b)]).ok, LOCK_DELAY + 3)
    seen.append(took is not None and LOCK_DELAY - 0.15 <= took <= LOCK_DELAY + TOLERANCE)
    backend.adapter.destroy_session(b)
    return seen


def scenario_txn(backend: Backend, key: str) -> list[object]:
    """lock / unlock / check-index / check-not-exists as the daemon uses them."""
    a, b = _session(backend), _session(backend)
    ad = backend.adapter
    seen: list[object] = [ad.txn([_lock(key, a, b"a")]).ok]
    first = ad.get_key(key)
    seen += [first.session == a, first.flags == LOCK_FLAG, first.lock_index]
    seen.append(ad.txn([_lock(key, b, b"b")]).ok)  # held by another session
    seen.append(ad.txn([_unlock(key, b)]).ok)  # not b's to unlock
    seen.append(ad.txn([_lock(key, a, b"")]).ok)  # a blank, keeping the lock
    blank = ad.get_key(key)
    seen += [blank.value, blank.lock_index, blank.modify_index > first.modify_index]
    stale = {"KV": {"Verb": "check-index", "Key": key, "Index": first.modify_index}}
    seen.append(ad.txn([stale, _lock(key, a)]).ok)
    seen.append(ad.txn([_unlock(key, a), _lock(key, b, b"b")]).ok)  # a hand-over
    moved = ad.get_key(key)
    seen += [moved.session == b, moved.value, moved.lock_index]
    seen.append(ad.txn([_unlock(key, a), _lock(key, a)]).ok)  # a no longer holds it
    seen.append(ad.txn([{"KV": {"Verb": "check-not-exists", "Key": key}}, _lock(key, a)]).ok)
    keep = {
        "KV": {
            "Verb": "unlock",
            "Key": key,
            "Value": base64.b64encode(b"kept").decode(),
            "Flags": 7,
            "Session": b,
        }
    }
    seen.append(ad.txn([keep]).ok)
    kept = ad.get_key(key)
    seen += [kept.session, kept.value, kept.flags]
    seen.append(ad.txn([{"KV": {"Verb": "delete", "Key": key}}]).ok)
    seen.append(ad.txn([{"KV": {"Verb": "delete", "Key": key}}]).ok)  # already gone
    for sid in (a, b):
        ad.destroy_session(sid)
    return seen


def scenario_invalidation(backend: Backend, key: str) -> list[object]:
    """A session tied to a check: the check goes critical, the session and its key go."""
    check = f"fidelity-{uuid.uuid4().hex[:6]}"
    backend.add_check(check)
    a = _session(backend, ["serfHealth", check])
    seen: list[object] = [backend.adapter.txn([_lock(key, a)]).ok]
    backend.fail_check(check)
    gone = backend.elapsed_until(lambda: not backend.adapter.get_key(key).exists, 5)
    seen.append(gone is not None)
    seen.append(backend.adapter.session_info(a) is None)
    try:
        _session(backend, ["serfHealth", check])
        seen.append("created")
    except ConsulError as exc:
        seen.append(exc.kind)
    return seen


def scenario_cas_delete(backend: Backend, key: str) -> list[object]:
    ad = backend.adapter
    seen: list[object] = [ad.put_key(key, b"plain")]
    index = ad.get_key(key).modify_index
    seen.append(ad.delete_key(key, cas=index + 1000))
    seen.append(ad.get_key(key).exists)
    seen.append(ad.delete_key(key, cas=index))
    seen.append(ad.get_key(key).exists)
    seen.append(ad.delete_key(key, cas=index))  # a missing key
    seen.append(ad.put_key(key, b"new", cas=0))
    seen.append(ad.put_key(key, b"again", cas=0))
    a = _session(backend)
    seen.append(ad.put_key(key, b"locked", acquire=a))
    held = ad.get_key(key)
    seen.append(ad.put_key(key, b"plain put"))  # keeps the lock
    after = ad.get_key(key)
    seen += [after.session == a, after.lock_index == held.lock_index, after.flags]
    seen.append(ad.delete_key(key, cas=after.modify_index))  # a held key: deleted
    seen.append(ad.get_key(key).exists)
    ad.destroy_session(a)
    return seen


def scenario_blocking(backend: Backend, key: str) -> list[object]:
    ad = backend.adapter
    ad.put_key(key, b"one")
    index = ad.get_key(key).index
    answer, took = backend.blocking_get(key, index, 1.0, None)
    seen: list[object] = [answer.index == index, 1.0 <= took <= 1.0 + 1 / 16 + 0.3]
    answer, took = backend.blocking_get(key, index, 5.0, lambda: ad.put_key(key, b"two"))
    seen += [answer.value, answer.index > index, took < 2.0]
    return seen


SCENARIOS = [
    scenario_lock_delay,
    scenario_txn,
    scenario_invalidation,
    scenario_cas_delete,
    scenario_blocking,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_simulated_consul_matches_the_real_agent(
    scenario: Callable[[Backend, str], list[object]], consul_dev: ConsulAgent, key_prefix: str
) -> None:
    real = scenario(Real(consul_dev), f"{key_prefix}/k")
    simulated = scenario(Simulated(), "fidelity/k")
    # Raft indexes differ between the two: lock indexes are compared as they are
    # (both start at 1 for a new key), ModifyIndexes only by order.
    assert simulated == real, f"the simulation says {simulated}, Consul 1.14.5 says {real}"
