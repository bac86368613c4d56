"""The trigger-key and the entries under its prefix, as plain values.

What one read of the key says (``KeyState``), the candidates and switchover
requests under its prefix, and the rules that need nothing but those values:
the lock flag, "is it somebody else's plain key", the next blocking-query
index, the best other candidate. No I/O: the Consul adapter returns these
types, the lock protocol (trigger_key.py) builds them, and the decision core
decides on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

LOCK_FLAG = 0x2DDCCBC058A50C18  # consul/api/lock.go LockFlagValue = 3304740253564472344
SWITCHOVER_FRESH = 10.0  # seconds a switchover request is good for


@dataclass(frozen=True)
class KeyState:
    """The trigger-key as one GET saw it."""

    index: int  # X-Consul-Index of the answer (for the next blocking query)
    exists: bool
    value: bytes | None = None
    flags: int = 0
    session: str | None = None
    modify_index: int = 0
    lock_index: int = 0

    @property
    def held(self) -> bool:
        return bool(self.session)


@dataclass(frozen=True)
class Candidate:
    """A candidate as its entry says (only entries whose session still lives).

    Every string here came from Consul, where anybody with write access under the
    key's prefix may have put it: ``value`` is checked (printable, bounded), the
    others are stored already made safe for a log line (``logs.untrusted``), so
    any consumer may log them as they are.
    """

    value: str
    session: str
    priority: int
    eligible: bool
    why: str = ""
    node: str = ""
    # False during the hold-down after its own check failed: not to be
    # preempted to (entries of older versions say nothing: True).
    settled: bool = True
    # Whether that node has the VIP (None: not observed, or an older version),
    # and the VIP-place problem it reports ("": none).
    vip: bool | None = None
    vip_problem: str = ""


@dataclass(frozen=True)
class SwitchoverRequest:
    """A request as its entry says; ``to`` and ``by`` are safe for a log line.

    An entry that cannot be read is returned as ``to=""``, ``at=0`` (stale), so
    the leader refuses it and deletes it."""

    to: str  # a lock value, or "any"
    by: str
    at: float  # wall clock of the request
    modify_index: int
    refused: str = ""  # the leader's answer when it refused it (the asker reads it)

    def fresh(self, now: float) -> bool:
        """Asked within SWITCHOVER_FRESH of ``now`` (wall clock), and not from a
        clock far off."""
        return abs(now - self.at) <= SWITCHOVER_FRESH


@dataclass(frozen=True)
class Member:
    """A node's member entry (``<key>/members/<value>``): what its daemon last said
    about itself, kept without a session so that it outlives a FAULT, a lost
    session and a dead daemon (then its ``at`` grows old). Strings are made safe
    for a log line, as a Candidate's."""

    value: str
    state: str  # a Role's value, or "stopped" after a clean stop
    priority: int
    eligible: bool
    why: str = ""
    node: str = ""
    host: str = ""
    session: str = ""
    at: float = 0.0  # wall clock of the report
    heartbeat: float = 60.0  # the daemon reports again at least this often
    modify_index: int = 0  # of its entry: the leader removes it with cas

    def silent_since(self, now: float) -> float | None:
        """When it last reported, if it has missed its heartbeats since (its daemon
        died, or cannot reach Consul); None while it reports (or said it stopped)."""
        if self.state == "stopped" or now - self.at <= MEMBER_STALE * self.heartbeat:
            return None
        return self.at

    def gone_for_good(self, now: float) -> bool:
        """Whether it said "stopped", or went silent, more than MEMBER_REAP ago (wall
        clock ``now``): a node taken out of service, whose entry the leader removes.
        ``at`` is the writer's clock, which may be off by days: the leader also
        requires its own reads to have shown the entry unchanged (decision.py)."""
        return now - self.at > max(MEMBER_REAP, MEMBER_STALE * self.heartbeat)


MEMBER_STALE = 2.5  # heartbeats missed before a member counts as silent
# A member entry that has not been written for this long is removed by the
# leader. Consul itself forgets a failed node after its reconnect_timeout, 72 h
# by default; the same time keeps the row of a node that is down over a long
# weekend (or powered off for a repair) in `status`, and a node that comes back
# later simply writes its entry again.
MEMBER_REAP = 72 * 3600.0


@dataclass(frozen=True)
class Change:
    """One change of the trigger-key's holder, as the node it concerned recorded
    it in ``<key>/history``: from one lock value to another (None: the key went
    free, or who held it is not known), when (wall clock) and why."""

    at: float
    from_value: str | None
    to_value: str | None
    cause: str
    by: str  # the node that recorded it
    detail: str = ""


@dataclass(frozen=True)
class Rejected:
    """An entry under the key's prefix that vip-elector cannot have written."""

    what: str  # "candidate entry", "switchover request"
    entry: str  # its KV name, safe for a log line
    modify_index: int
    reason: str  # what is wrong with it, in our words (never its content)


@dataclass(frozen=True)
class KeyTree:
    """One read of the key and everything under its prefix."""

    key: KeyState
    candidates: dict[str, Candidate]
    request: SwitchoverRequest | None
    conflict: int  # ModifyIndex of a conflict flag on our value; 0 when there is none
    rejected: tuple[Rejected, ...] = ()
    members: dict[str, Member] = field(default_factory=dict)


def best_other(
    candidates: dict[str, Candidate], value: str, than: int | None = None
) -> Candidate | None:
    """The eligible candidate other than ``value`` with the highest priority (above
    ``than`` if given); ties by value, so every node picks the same one."""
    others = [
        c
        for c in candidates.values()
        if c.value != value and c.eligible and (than is None or c.priority > than)
    ]
    return min(others, key=lambda c: (-c.priority, c.value), default=None)


def switchover_target(
    to: str, holder: str, candidates: Mapping[str, Candidate]
) -> tuple[Candidate | None, str]:
    """The candidate a switchover ``to`` (a value or "any") moves the VIP to from
    ``holder``, or None and why not: the leader and the command decide alike."""
    live = ", ".join(sorted(candidates)) or "none"
    if to == "any":
        target = best_other(dict(candidates), holder)
        return (target, "") if target else (None, f"no other eligible candidate (live: {live})")
    target = candidates.get(to)
    if target is None:
        return None, f"no live candidate has the value {to!r} (live: {live})"
    if not target.eligible:
        return None, f"{to!r} is not eligible: {target.why or 'unknown reason'}"
    return target, ""


DEFAULT_PRIORITY = 100


def not_a_lock_message(key: str, flags: int) -> str:
    """The pre-flight error of the Go original, plus how to fix it."""
    return (
        f"trigger-key pre-flight check failed: existing key at '{key}' is a regular KV entry "
        f"(Flags={flags}), not a lock key (expected Flags={LOCK_FLAG}). "
        f"It was created by `consul kv put` or another tool. Fix: delete it with "
        f"`consul kv delete {key}` and let vip-elector create it; never pre-create the "
        "trigger-key."
    )


def is_foreign(key: KeyState) -> bool:
    """The key exists but was not written by a lock: somebody else's plain key."""
    return key.exists and key.flags != LOCK_FLAG


def next_index(previous: int, answered: int) -> int:
    """The index for the next blocking query (Consul's rules for X-Consul-Index)."""
    if answered < previous or answered < 1:
        return 0  # went backwards (snapshot restore, new leader): start over
    return answered
