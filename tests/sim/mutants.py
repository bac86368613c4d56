"""Deliberately broken builds of the core, applied at run time (never committed
as product code): each must be caught by the simulation within the CI budget.

A mutation is a small source patch of vip_elector/decision.py's ``_Step`` (the
patched class is compiled next to the real one, with the real module's types,
so the election thread's isinstance checks still hold), a wrapper, or a
switch of the renewer model.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from tests.sim.node import NodeWatchModel, RenewerModel
from vip_elector import decision
from vip_elector import trigger_key as trigger_key_module
from vip_elector.election import Election


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    patch: Callable[[], contextlib.AbstractContextManager[None]]
    renewer_ttl_rule: bool = True


@contextlib.contextmanager
def _source_patch(old: str, new: str) -> Iterator[None]:
    """``_Step`` compiled from decision.py's source with ``old`` replaced by ``new``."""
    source = inspect.getsource(decision)
    if source.count(old) != 1:
        raise AssertionError(f"mutation anchor not found exactly once: {old!r}")
    namespace: dict[str, Any] = {"__name__": decision.__name__}
    exec(compile(source.replace(old, new), decision.__file__, "exec"), namespace)  # noqa: S102
    mutant = namespace["_Step"]
    # Every name but _Step resolves to the real module's objects (the same types).
    for name, value in vars(decision).items():
        if name != "_Step" and not name.startswith("__"):
            namespace[name] = value
    saved = decision._Step
    decision._Step = mutant  # type: ignore[misc]
    try:
        yield
    finally:
        decision._Step = saved  # type: ignore[misc]


@contextlib.contextmanager
def _method_patch(*patches: tuple[type, str, str, str]) -> Iterator[None]:
    """Methods (class, name, old, new) recompiled from their module's source with
    ``old`` replaced by ``new``; each runs with its real module's globals, so what
    the simulation patches there (the clock, the adapter) still reaches it."""
    saved: list[tuple[type, str, Any]] = []
    grouped: dict[tuple[type, str], list[tuple[str, str]]] = {}
    for owner, name, old, new in patches:
        grouped.setdefault((owner, name), []).append((old, new))
    try:
        for (owner, name), replacements in grouped.items():
            method = owner.__dict__[name]
            module = sys.modules[owner.__module__]
            source = inspect.getsource(module)
            for old, new in replacements:
                if inspect.getsource(method).count(old) != 1 or source.count(old) != 1:
                    raise AssertionError(f"mutation anchor not found once in {name}: {old!r}")
                source = source.replace(old, new)
            namespace: dict[str, Any] = {"__name__": module.__name__}
            exec(compile(source, module.__file__ or "", "exec"), namespace)  # noqa: S102
            built = namespace[owner.__name__].__dict__[name]
            code = built.__code__
            function = types.FunctionType(
                code, vars(module), name, built.__defaults__, built.__closure__
            )
            saved.append((owner, name, method))
            setattr(owner, name, function)
        yield
    finally:
        for owner, name, method in reversed(saved):
            setattr(owner, name, method)


@contextlib.contextmanager
def _attribute(owner: Any, name: str, value: Any) -> Iterator[None]:
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def _no_gap() -> contextlib.AbstractContextManager[None]:
    real = decision.decide

    def decide(
        memory: decision.Memory, event: decision.Event, now: float, rules: decision.Rules
    ) -> decision.Decision:
        return real(memory, event, now, replace(rules, handover_gap=0.0))

    return _attribute(decision, "decide", decide)


def _delete_without_cas() -> contextlib.AbstractContextManager[None]:
    def delete_at(self: trigger_key_module.TriggerKey, index: int) -> bool:
        return self.adapter.txn([{"KV": {"Verb": "delete", "Key": self.name}}]).ok

    return _attribute(trigger_key_module.TriggerKey, "delete_at", delete_at)


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "no-lock-delay-wait",
        "a refused acquire is retried on a short backoff, not once the holder's lock-delay ran",
        lambda: _attribute(decision._Step, "_holder_lock_delay", lambda self: 0.0),
    ),
    Mutant("no-handover-gap", "the hand-over gap is 0 (leader and followers)", _no_gap),
    Mutant(
        "gap-skipped-after-blank",
        "a blank key held by another session does not start the gap (neither when it is "
        "seen nor when it is freed)",
        lambda: _method_patch(
            (
                decision._Step,
                "_on_key_read",
                'if other and key.value in (None, b"") and m.other_value is None:',
                "if False:",
            ),
            (
                decision._Step,
                "_on_key_read",
                "if gone and previous is not None and previous.held and not previous.value:",
                "if False:",
            ),
        ),
    ),
    Mutant(
        "delete-without-cas",
        "release and step-down delete the key unconditionally",
        _delete_without_cas,
    ),
    Mutant(
        "no-ttl-self-fence",
        "the renewer keeps a session it could not renew for a TTL (renewer model switch)",
        contextlib.nullcontext,
        renewer_ttl_rule=False,
    ),
    Mutant(
        "fence-kept-on-loss",
        "the fence is not cleared when the lock or its session is lost",
        lambda: _source_patch(
            "            leading=False,\n            fence_until=0.0,\n            held_index=0,",
            "            leading=False,\n            held_index=0,",
        ),
    ),
    Mutant(
        "adoption-ignores-maintenance",
        "a maintenance change that arrives while adopting is ignored",
        lambda: _source_patch(
            "        self.set(maintenance_file=changed.reason)",
            "        if self.m.adopting is None:\n"
            "            self.set(maintenance_file=changed.reason)",
        ),
    ),
    Mutant(
        "acquire-over-plain-key",
        "a follower acquires without checking for a foreign plain key",
        lambda: _attribute(decision, "is_foreign", lambda key: False),
    ),
    # Issue 22's findings, each fix reverted (tests/sim/FINDINGS.md's table).
    Mutant(
        "gap-skipped-at-first-read",
        "22 #1 (sim F1): a free key at a process's first read is taken without the gap",
        lambda: _method_patch(
            (
                decision._Step,
                "_on_key_read",
                "if not key.held and (not m.watching or read.resumed):",
                "if False:",
            )
        ),
    ),
    Mutant(
        "gap-skipped-after-restored-blank",
        "sim F7: a blank freed without a hand-over does not restart the gap",
        lambda: _method_patch(
            (
                decision._Step,
                "_on_key_read",
                "if gone and previous is not None and previous.held and not previous.value:",
                "if False:",
            )
        ),
    ),
    Mutant(
        "fence-kept-on-failed-move",
        "22 #2: a fence carried across SIGUSR2 survives a session change (the move)",
        lambda: _method_patch(
            (
                Election,
                "_take_over",
                "leader_since=inherit.leader_since,\n                fence_until=0.0,\n",
                "leader_since=inherit.leader_since,\n",
            )
        ),
    ),
    Mutant(
        "fence-not-cleared-or-clamped",
        "22 #3: a carried fence is neither clamped to the new bound nor cleared on a "
        "session change",
        lambda: _method_patch(
            (
                Election,
                "_take_over",
                "fence_until=min(memory.fence_until, bound)",
                "fence_until=memory.fence_until",
            ),
            (
                Election,
                "_take_over",
                "leader_since=inherit.leader_since,\n                fence_until=0.0,\n",
                "leader_since=inherit.leader_since,\n",
            ),
            (
                decision._Step,
                "_become_leader",
                "m.fence_until if adopted else 0.0",
                "m.fence_until",
            ),
        ),
    ),
    Mutant(
        "adopted-node-unknown",
        "22 #4: an adopted session's node is not learned (Consul maintenance unseen)",
        lambda: _method_patch(
            (
                decision._Step,
                "_on_session_up",
                "node=up.node or m.node",
                "node=m.node if up.adopted else up.node or m.node",
            )
        ),
    ),
    Mutant(
        "adoption-gives-up-at-once",
        "22 #6: one failed renewal during adoption gives the session up (renewer model)",
        lambda: _method_patch(
            (
                RenewerModel,
                "_adopt_attempt",
                "if self.w.now + RETRY_AFTER_FAILED_RENEW >= deadline:",
                "if True:",
            )
        ),
    ),
    Mutant(
        "step-down-dropped-when-refused",
        "22 #16: a step-down starts inside a hand-over (at the index the last read "
        "showed), and a refused delete is not sent again",
        lambda: _method_patch(
            (
                decision._Step,
                "_done_delete",
                "self.set(leaving=replace(leaving, retry_at=self.now), key=None)",
                'self.set(leaving=replace(leaving, retry_at=float("inf")))',
            ),
            (
                decision._Step,
                "_lead",
                "        if m.handover is not None:\n            self._refuse_during_hand_over()",
                "        if m.handover is not None and self._why_leave() is None:\n"
                "            self._refuse_during_hand_over()",
            ),
        ),
    ),
    Mutant(
        "maintenance-not-rechecked",
        "22 #17: maintenance is looked at before the gap and lock-delay wait, not again "
        "before the acquire",
        lambda: _method_patch(
            (
                decision._Step,
                "_compete",
                "reason = m.standby(now)",
                "reason = m.standby(now) if m.rivals_at is None or m.rivals_at < m.freed_at "
                "else None",
            )
        ),
    ),
    Mutant(
        "no-preemption-hold-down",
        "22 #23: a node that lost the lock to its own check preempts back at once",
        lambda: _method_patch(
            (decision._Step, "_settled_at", "if self.m.failed_at is None:", "if True:")
        ),
    ),
    Mutant(
        "acquire-before-node-watch",
        "sim F5, F6: a free key is taken before the node watch says whether Consul "
        "maintenance applies",
        lambda: _method_patch(
            (
                decision._Step,
                "_compete",
                "unknown = self._consul_maintenance_unknown()",
                "unknown = None",
            )
        ),
    ),
    Mutant(
        "node-name-from-session-only",
        "sim F5, F6: the node watch learns the node's name only from the renewer's "
        "read-back of the session (node watch model)",
        lambda: _method_patch(
            (NodeWatchModel, "_find_name", "name = name or agent.node_name()", "name = name"),
            (NodeWatchModel, "_find_name", "if not name and session:", "if False:"),
        ),
    ),
    Mutant(
        "node-watch-failure-unposted",
        "sim F5: a failed node watch request leaves the last answer standing (node watch model)",
        lambda: _method_patch(
            (
                NodeWatchModel,
                "_ask",
                "self.d.deliver(core.ConsulMaintenance(self.current, known=False))",
                "pass",
            )
        ),
    ),
)

# Issue 23's confirmed hand-over: the wait ends only on the VIP *seen* gone.
MUTANTS += (
    Mutant(
        "handover-unconfirmed",
        "a hand-over goes on whenever the VIP is not seen here (unobservable or not yet "
        "seen counts as gone)",
        lambda: _source_patch(
            "return handover.vip_gone or self.now >= handover.blanked_at",
            "return self.m.vip is not True or self.now >= handover.blanked_at",
        ),
    ),
)

# A read Consul took before our own write, arriving after it (CI, 2026-12-06).
MUTANTS += (
    Mutant(
        "read-older-than-own-write",
        "a read sent before our write's answer came is decided on even when its "
        "X-Consul-Index is below the index the write got",
        lambda: _source_patch(
            "if read.started <= self.m.written_done and read.key.index < self.m.written_index:",
            "if False:",
        ),
    ),
)

# Writes applied whose answers are lost (the simulation's f_lost_answers).
MUTANTS += (
    Mutant(
        "read-under-way-after-lost-answer",
        "a read sent before a write of ours failed without an answer is decided on",
        lambda: _source_patch(
            "        if not read.asked and read.started <= self.m.unsure_before:\n"
            "            return",
            "        if False:\n            return",
        ),
    ),
)
