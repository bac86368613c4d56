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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from vip_elector import decision
from vip_elector import trigger_key as trigger_key_module


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    patch: Callable[[], contextlib.AbstractContextManager[None]]
    renewer_ttl_rule: bool = True
    # Why it is expected to survive (documented in tests/sim/FINDINGS.md), if it is.
    survives: str = ""


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
        "a blank key held by another session does not start the gap",
        lambda: _source_patch(
            'if other and key.value in (None, b"") and m.other_value is None:',
            "if False:",
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
        survives="defence in depth: lock-delay and the other clearings cover every loss "
        "the simulation makes (tests/sim/FINDINGS.md)",
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
)

# Issue 23's confirmed hand-over: the wait ends only on the VIP *seen* gone.
MUTANTS += (
    Mutant(
        "handover-unconfirmed",
        "a hand-over goes on whenever the VIP is not seen here (unobservable or not yet "
        "seen counts as gone)",
        lambda: _source_patch(
            "if self.now < due and not handover.vip_gone:",
            "if self.now < due and self.m.vip is True:",
        ),
    ),
)
