"""What the lock owner does next: a pure function of what it saw, what it
remembers, the time and the rules.

``decide(memory, event, now, rules)`` takes one input (a read of the key, a
session the renewer made or lost, an operator's request, the outcome of the
last action, or just the time) and returns the new memory, the actions to
perform in order, and when to decide again if nothing arrives earlier. It
does no I/O and reads no clock: the election thread (election.py) reads,
decides, acts and waits around it, and the tests and the simulation call it
with fabricated inputs and a virtual clock (etcd's raft library has this
shape: ``Step``/``Tick`` in, ``Ready`` out).

Every rule is a named step below, in the order it is applied:

- **stop / retire**: release the key and every session, or leave them for
  the next process (restart in place, a reload that keeps the lock).
- **hand-over on stop**: a leader that sees its VIP (the address watch) and
  has an eligible candidate hands the lock to it (below) before it releases;
  a hand-over under way when the stop came runs to its end first; unobserved,
  or nobody to hand to, or the hand-over failed: release at once.
- **destroy**: sessions that ended are destroyed (retried until Consul has
  surely expired them); never one that still holds the key.
- **move**: a session of the previous run (or generation) that holds the key
  with settings that changed hands it to our new session in one transaction;
  if no new session can be made, the old one releases the key.
- **role**: FAULT while the health gate refuses, MAINTENANCE while the file or
  Consul's maintenance says so, FOLLOWER otherwise (LEADER below).
- **VIP place**: a leader without its VIP, or a node that does not lead
  with it, as the address watch sees it (``VipSeen``), for longer than
  vip-manager needs to add or drop it (``vip_grace``): said once (WARNING,
  ERROR), and once more when it is right again (INFO); published.
- **candidacy**: our entry under the key's prefix says priority and
  eligibility (and whether this node has the VIP); published again whenever
  they change, with a backoff.
- **member report**: our member entry (not tied to the session, so it says
  FAULT too) says our state, eligibility and why not; written on a change (at
  most every REPORT_MIN_GAP) and every MEMBER_HEARTBEAT, and "stopped" on a
  clean stop. **history**: each change of the key's holder this node caused or
  saw happen to itself (it took the key, it lost or gave it, and why) is
  appended to the key's bounded history, retried with a backoff. **reap**:
  the leader removes (cas) the member entry of a node gone for good, one
  that said "stopped" or went silent more than MEMBER_REAP (72 h) ago (its
  own clock) and that the leader's reads showed unchanged for MEMBER_STALE
  heartbeats (ours); never its own, never one of a value with a live
  session; one at a time, none during a hand-over, step-down or stop.
- **foreign key**: a plain key somebody wrote is never taken.
- leading: **ownership** (the key still ours, else the lock is lost and why),
  **fence** (each consistent read that proves the lock extends /leader's
  bound), **step-down** (SIGUSR1, maintenance, a duplicate value, no VIP
  with ``step_down_without_vip``: delete with ``cas``, retried at the current
  index until it is gone), **leave by hand-over** (SIGUSR1 or maintenance on
  a leader that sees its VIP: hand to the best eligible candidate instead of
  deleting), **hand-over** (switchover, preemption, stop or step-down: blank
  the value, wait until the VIP is *observed* gone from this host, at most
  the hand-over gap, then give the lock to the target's session; past the
  gap with the VIP still seen, one WARNING; target gone: a step-down or stop
  deletes instead, a switchover puts our value back), **switchover**, **preemption**,
  **conflict flag**.
- following: **leading again** (the key carries our session), **holder**
  (its lock-delay, a duplicate of our value), **standby** (maintenance, a
  step-down hold), **rivals**, **hand-over gap** (never a new value sooner
  than vip-manager's interval + margin after another node's value left the
  key, whatever freed it; a lock *handed* to us is taken at once, the giver
  having seen its VIP go), **lock-delay** (after a refusal, until the
  holder's lock-delay has run since the key went free), **priority
  hold-back**, then **acquire**.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

from vip_elector.key_entries import (
    LOCK_FLAG,
    MEMBER_REAP,
    MEMBER_STALE,
    Candidate,
    Change,
    KeyState,
    Member,
    SwitchoverRequest,
    best_other,
    is_foreign,
    not_a_lock_message,
    switchover_target,
)
from vip_elector.roles import Cause, Role

LOCK_DELAY_MARGIN = 0.02  # retry this long after the lock-delay should have ended
LOCK_DELAY_RETRY_MAX = 1.0  # past our estimate: back off up to this
ACQUIRE_RETRY = 0.25  # an acquire whose answer was lost: the next read tells
# After a write of ours failed without an answer, the read that tells what it
# did is asked for again after it fails (the key watch, blocked on an unchanged
# key, may not answer for a minute): 1 s, doubling up to 8 s (a hung agent
# holds each read of the election thread for its timeout).
REREAD_RETRY = 1.0
REREAD_RETRY_MAX = 8.0
PRIORITY_MARGIN = 1.0  # a better candidate gets this long on top of the time it needs
RECHECK = 1.0  # a refusal (duplicate value) is looked at again this often
PUBLISH_RETRY = 0.5  # first retry of a candidacy publish, doubled up to PUBLISH_RETRY_MAX
PUBLISH_RETRY_MAX = 30.0
# After this node's own check failed, no other node preempts back to it for this
# long (or --preempt-delay, if longer): keepalived counts its preempt_delay from
# the last failure too, and a flapping check must not drag the VIP along.
PREEMPT_HOLD_DOWN = 60.0
# The member entry: written again at least this often, so that `status` can tell
# a node whose daemon died (no report for MEMBER_STALE heartbeats) from a quiet
# one; a change is written at once, but not more often than REPORT_MIN_GAP (a
# check whose output changes every second must not write every second).
MEMBER_HEARTBEAT = 60.0
REPORT_MIN_GAP = 5.0
CHRONICLE_KEEP = 20  # changes of the holder waiting to be written to the history
# A stop hands the lock over only while the wait for the VIP to go (at most the
# gap) fits in the packaged unit's TimeoutStopSec=5s beside the release's own
# bounds (generation.end: STOP_WAIT + gap + two calls); with vip-manager's
# interval over 2 s it releases at once and the next node waits the gap.
STOP_HAND_OVER_GAP_MAX = 2.2
STEP_DOWN_RETRY = 0.5  # a delete that failed (Consul unreachable) is sent again
# --step-down-without-vip: a leader that stepped down because its VIP did not
# come stays out this long (or twice the next leader's gap + grace, if longer).
# The next leader must find it ineligible when its own grace runs out: if its
# vip-manager is broken too, it then has nobody to step down to and keeps the
# lock (no ping-pong). After the hold the lock may move back, so the hold is
# long: each node steps down at most once per hold while every vip-manager is
# broken, and a node whose vip-manager just failed to add the VIP is a poor
# candidate meanwhile.
VIP_STEP_DOWN_HOLD = 300.0
DESTROY_RETRY = 1.0
# No acquire before the node watch's first answer says whether Consul maintenance
# (`consul maint`) applies to this node, for at most this long: an agent that cannot
# tell (no answer, no node read) must not keep a healthy node out for ever, so past
# it the node competes without knowing, and says so (docs/operations.md).
CONSUL_MAINTENANCE_WAIT = 10.0
IDLE = 60.0  # decide again at least this often
# The last other holder, when the key was taken and freed again between two reads.
UNSEEN = b"another node"


@dataclass(frozen=True)
class Rules:
    """The settings the decisions depend on."""

    value: str  # our lock value
    key: str = ""  # the trigger-key's name
    priority: int = 100
    handover_gap: float = 1.2  # vip-manager's interval + margin
    lock_delay: float = 1.0  # ours: the guess for a holder whose lock-delay is unknown
    fence_bound: float = 0.0  # > 0: /leader is fenced with this bound
    preempt_delay: float | None = None
    # A leader without its VIP (or a VIP on a node that does not lead) is said
    # only after this long: vip-manager adds or drops it within its interval.
    vip_grace: float = 3.0
    vip_address: str = "the VIP"  # as `ip addr` takes it (198.51.100.10/24), for messages
    vip_interface: str = ""
    # A leader without its VIP past vip_grace steps down (--step-down-without-vip).
    step_down_without_vip: bool = False

    @property
    def value_bytes(self) -> bytes:
        return self.value.encode()


# -- inputs ------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRead:
    """An answer of the key watch. ``started``: when its request was sent (a
    consistent read proves the lock from then on). ``early``: a blocking read
    came back before its wait ran out, so the key changed. ``tree``: the
    leader's read, with the entries under the prefix."""

    key: KeyState
    started: float
    wall: float  # wall clock (switchover requests carry one)
    early: bool = False
    consistent: bool = False
    tree: bool = False
    candidates: Mapping[str, Candidate] = field(default_factory=dict)
    request: SwitchoverRequest | None = None
    conflict: int = 0  # ModifyIndex of a conflict flag on our value
    answered: float | None = None  # when its answer came (default: ``started``)
    resumed: bool = False  # the first answer after failed reads
    members: Mapping[str, Member] = field(default_factory=dict)  # the tree's member entries
    # The core's own ReadKey: sent after every outcome decided before it arrives
    # (a write whose answer was lost included), so it shows what they did.
    asked: bool = False


@dataclass(frozen=True)
class SessionUp:
    """The renewer made (or adopted) a session; ``node`` is the Consul node it lives on."""

    session: str
    node: str = ""
    adopted: bool = False


@dataclass(frozen=True)
class SessionDown:
    """The renewer ended a session (Consul lost it, or no renewal for a TTL)."""

    session: str
    cause: Cause
    detail: str


@dataclass(frozen=True)
class GateClosed:
    """The health gate refuses a session: the check is missing or critical."""

    problem: str


@dataclass(frozen=True)
class AdoptFailed:
    """The session of the previous run could not be renewed within its TTL."""

    session: str
    detail: str


@dataclass(frozen=True)
class StepDownAsked:
    """SIGUSR1: step down and stay out for ``hold`` seconds (``detail`` says until when)."""

    detail: str
    hold: float


@dataclass(frozen=True)
class MaintenanceFile:
    reason: str | None


@dataclass(frozen=True)
class ConsulMaintenance:
    """The node watch's answer: Consul maintenance of this node (``reason``), or
    ``known`` False: its last request failed, ``reason`` is the last one known."""

    reason: str | None
    known: bool = True


@dataclass(frozen=True)
class StopAsked:
    """Stop: release everything (``retire``: leave the session and the key to the
    next process or generation). ``cause``/``detail``: why a leader lets go."""

    retire: bool = False
    cause: Cause = Cause.SHUTDOWN
    detail: str = ""
    keep_fence: bool = False


@dataclass(frozen=True)
class Tick:
    """Nothing happened; the time did."""


@dataclass(frozen=True)
class Done:
    """The outcome of a write action: ``ok``; ``refused`` (Consul said no: the
    key changed, another session holds it, lock-delay); ``gone`` (the session
    is gone); ``failed`` (no answer, or an error: it may or may not have been
    applied); ``skipped`` (a bookkeeping write, SKIPPABLE, not sent because a
    session loss or a stop waited to be decided on: sent again when due, with
    no backoff and nothing said)."""

    action: Action
    result: str
    detail: str = ""
    started: float = 0.0
    index: int = 0  # the key's ModifyIndex after an ok transaction (0: not known)


@dataclass(frozen=True)
class LockDelayOf:
    session: str
    seconds: float


@dataclass(frozen=True)
class RivalsChecked:
    """Other nodes competing with our value (``problem``), or None; ``known``
    False when Consul could not tell."""

    problem: str | None
    known: bool = True


@dataclass(frozen=True)
class CandidatesRead:
    candidates: Mapping[str, Candidate]
    freed_at: float  # the freeing of the key they were read for


@dataclass(frozen=True)
class ReadFailed:
    """A read of the key failed: what we know of it may be old."""


@dataclass(frozen=True)
class VipSeen:
    """Whether the VIP is on this host's interface, as the address watch saw it
    (kernel address events); ``present`` None: it cannot be observed here (another
    manager-type, no such interface, no netlink), and the hand-over gap is all
    there is to go by."""

    present: bool | None
    # When the kernel said so (monotonic; None: when it is decided on). A hand-over
    # goes on only for a "gone" seen after its blank was sent: one that waited in
    # the inbox may be older than a re-add behind it.
    at: float | None = None


@dataclass(frozen=True)
class SessionChecked:
    """Whether our session still exists (why the key went: invalidated, or deleted)."""

    session: str
    alive: bool | None


Event = (
    KeyRead
    | SessionUp
    | SessionDown
    | GateClosed
    | AdoptFailed
    | StepDownAsked
    | MaintenanceFile
    | ConsulMaintenance
    | StopAsked
    | Tick
    | Done
    | LockDelayOf
    | RivalsChecked
    | CandidatesRead
    | ReadFailed
    | SessionChecked
    | VipSeen
)


# -- outputs -----------------------------------------------------------------------


@dataclass(frozen=True)
class Acquire:
    session: str
    seen: KeyState  # taken only if the key is still as seen


@dataclass(frozen=True)
class Blank:
    """Empty our value, keeping the lock: vip-manager here drops the VIP."""

    session: str


@dataclass(frozen=True)
class HandTo:
    session: str
    target: Candidate


@dataclass(frozen=True)
class Restore:
    """Our value back into the key we hold (a hand-over that failed)."""

    session: str


@dataclass(frozen=True)
class Delete:
    """Delete the key we hold at ``index`` (cas): no lock-delay, others take over."""

    session: str
    index: int


@dataclass(frozen=True)
class UnlockKeeping:
    """Free the key from our session, keeping a value somebody else wrote."""

    session: str
    seen: KeyState


@dataclass(frozen=True)
class DropRequest:
    request: SwitchoverRequest


@dataclass(frozen=True)
class RefuseRequest:
    """Answer a switchover request with why it is refused (the asker prints it)."""

    request: SwitchoverRequest
    reason: str


@dataclass(frozen=True)
class Publish:
    session: str
    eligible: bool
    why: str
    node: str
    settled: bool = True  # not in a hold-down after our own check failed
    vip: bool | None = None  # this node has the VIP (None: not observed)
    vip_problem: str = ""  # the VIP-place problem said, if any


@dataclass(frozen=True)
class Report:
    """This node's member entry: its state as the role machine has it, whether it
    may take the lock now and why not. ``final``: the last one, on a clean stop
    (written after the release, only while Consul answers)."""

    state: str
    eligible: bool
    why: str
    session: str
    node: str
    final: bool = False


@dataclass(frozen=True)
class ReapMember:
    """Remove the member entry of a node gone for good, if it is still at
    ``modify_index`` (cas). ``member``: what it said last, for the log line."""

    member: Member


@dataclass(frozen=True)
class AppendHistory:
    """Changes of the key's holder this node took part in, for ``<key>/history``
    (``at`` on the monotonic clock: the election thread stamps the wall clock)."""

    changes: tuple[Change, ...]
    final: bool = False


@dataclass(frozen=True)
class CheckRivals:
    session: str
    flag: bool  # also raise the conflict flag the leader watches


@dataclass(frozen=True)
class LookUpLockDelay:
    session: str


@dataclass(frozen=True)
class LookUpCandidates:
    freed_at: float


@dataclass(frozen=True)
class ReadKey:
    """Read the key now (after a refused acquire: who won, or still free?);
    ``tree``: with the entries under its prefix, consistently (a leader's read)."""

    tree: bool = False


@dataclass(frozen=True)
class CheckSession:
    session: str


@dataclass(frozen=True)
class Discard:
    """Tell the renewer we are done with this session: it makes a new one."""

    session: str
    detail: str


@dataclass(frozen=True)
class Destroy:
    session: str


@dataclass(frozen=True)
class Move:
    """unlock(old) + lock(new) in one transaction: the key is never free."""

    old: str
    new: str


@dataclass(frozen=True)
class ReleaseKey:
    """Delete the key if ``session`` holds it (never anybody else's)."""

    session: str


@dataclass(frozen=True)
class Release:
    """Stop: the key if we hold it, then every session; nothing left behind."""

    sessions: tuple[str, ...]
    held: tuple[str, int] | None  # (session, ModifyIndex) while leading


@dataclass(frozen=True)
class Retire:
    """Stop without releasing: destroy only sessions that hold nothing."""

    sessions: tuple[str, ...]


@dataclass(frozen=True)
class Transition:
    role: Role
    cause: Cause
    detail: str = ""


@dataclass(frozen=True)
class Record:
    """Keep the session (and since when it leads) for the next process."""

    session: str
    leader_since: float | None


@dataclass(frozen=True)
class Log:
    level: str  # "debug", "info", "warning", "error"
    message: str
    event: str


Action = (
    Acquire
    | Blank
    | HandTo
    | Restore
    | Delete
    | UnlockKeeping
    | DropRequest
    | RefuseRequest
    | Publish
    | Report
    | ReapMember
    | AppendHistory
    | CheckRivals
    | LookUpLockDelay
    | LookUpCandidates
    | ReadKey
    | CheckSession
    | Discard
    | Destroy
    | Move
    | ReleaseKey
    | Release
    | Retire
    | Transition
    | Record
    | Log
)

# Inputs that must not wait behind bookkeeping writes: the lock's session is
# gone (a leader says LEADER until it is decided on), or the main thread waits
# for the release with a budget of its own.
URGENT = (SessionDown, AdoptFailed, StopAsked)


def skippable(action: Action) -> bool:
    """A bookkeeping write the election thread leaves unsent while an URGENT input
    waits (its outcome is then ``Done(action, "skipped")``): the candidacy, the
    member entry, the history, a reaping. Nothing of the lock's own order depends
    on them and each is sent again when due; the last ones of a clean stop are
    not skipped (they are written after the release, on its short timeout)."""
    if isinstance(action, (Report, AppendHistory)):
        return not action.final
    return isinstance(action, (Publish, ReapMember))


# -- memory ------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaving:
    """A step-down under way: the key is being deleted; then the role to go to."""

    cause: Cause
    detail: str
    role: Role
    retry_at: float = 0.0  # send the delete (again) from then on


@dataclass(frozen=True)
class HandOver:
    """A switchover or preemption under way: the key is blank, held by us."""

    target: Candidate
    cause: Cause
    blanked_at: float | None = None
    handed: bool = False
    request: SwitchoverRequest | None = None  # the request that asked for it
    # A leave (stop, step-down, maintenance): the role after it, and a failed
    # hand-over deletes the key instead of putting our value back.
    role: Role = Role.FOLLOWER
    leave: bool = False
    detail: str = ""
    # The address watch saw the VIP leave this host after the blank was sent.
    vip_gone: bool = False
    blank_sent: float | None = None  # when the blank was sent (its outcome: blanked_at)


@dataclass(frozen=True)
class Memory:
    """What the core remembers between steps (replaced, never changed in place)."""

    role: Role = Role.STARTING
    # our session and what the renewer says about it
    session: str | None = None
    node: str = ""
    gate: str | None = None  # why the renewer makes no session
    adopting: str | None = None  # a session of the previous run being adopted
    move_from: str | None = None  # a session holding the key, to move to our next one
    moving: bool = False  # the Move is sent; its outcome comes next
    leader_since: float | None = None  # wall clock, kept across restarts and moves
    # the key, as last read
    key: KeyState | None = None
    # When our last write to the key was sent: a read answered before it shows
    # the key as it was, and is not decided on (the next read shows the write).
    written_at: float = float("-inf")
    # The Raft index our last transaction on the key got, and when its answer
    # came. A read already under way then may still have been taken before it
    # (Consul takes the answer when the query wakes; it arrives later): its
    # X-Consul-Index, below the write's, says so. It is not decided on.
    written_index: int = 0
    written_done: float = float("-inf")
    # When a write of ours to the key failed without an answer: applied or
    # not, no read already under way then can tell (only one sent after).
    unsure_before: float = float("-inf")
    # The read sent after that write: when to ask for it (again, if the last
    # one failed), and how many were asked for since (their retries back off).
    reread_at: float | None = None
    rereads: int = 0
    # Our value is to go back into the key (a hand-over that failed after its
    # blank, or whose blank's answer was lost): a blank in our lock is ours
    # until a read shows our value again.
    blanked: bool = False
    # Whether we have watched the key continuously: at the first read, and after
    # reads that failed, who held a free key last is not known.
    watching: bool = False
    candidates: Mapping[str, Candidate] = field(default_factory=dict)
    request: SwitchoverRequest | None = None
    conflict: int = 0
    wall: float = 0.0
    # leading
    leading: bool = False
    held_index: int = 0
    fence_until: float = 0.0
    acquire_started: float | None = None  # when the acquire that won was sent
    leaving: Leaving | None = None
    handover: HandOver | None = None
    request_done: int = 0  # ModifyIndex of the last switchover request dealt with
    better_since: Mapping[str, float] = field(default_factory=dict)
    conflict_checked: int = 0
    duplicate: str | None = None  # another node competes with our value (leader)
    loss: tuple[Cause, str] | None = None  # the lock is gone; explaining why
    # following
    holder: str | None = None
    holder_lock_delay: float | None = None
    other_value: bytes | None = None  # another node's value last seen in the key
    other_left_at: float | None = None  # when it was seen to leave the key
    freed_at: float | None = None  # when the key was first seen free
    refused: int = 0
    acquire_at: float = 0.0  # no acquire before (lock-delay, backoff)
    rival: str | None = None
    rivals_at: float | None = None  # last rival check
    candidates_for: float | None = None  # the freeing the candidates were read for
    better: Candidate | None = None
    # this node's will
    maintenance_file: str | None = None
    consul_maintenance: str | None = None
    consul_maintenance_known: bool = False  # the node watch's last request was answered
    consul_maintenance_asked: float | None = None  # when an acquire first waited for it
    hold_until: float = 0.0  # SIGUSR1's hold: the operator's, it never gives way
    hold_reason: str = ""
    # After a step-down without the VIP: a hold of its own (SIGUSR1 must not
    # shorten it, nor it SIGUSR1's), which gives way when no other node is
    # eligible (holding back would then leave the VIP nowhere).
    vip_hold_until: float = 0.0
    vip_hold_reason: str = ""
    vip_hold_gave_way: float | None = None  # when it last did
    others_eligible: bool = False  # another eligible candidate, as last read
    candidates_at: float | None = None  # when they were last read
    step_down: str | None = None  # SIGUSR1's detail, until the step-down starts
    failed_at: float | None = None  # our own check last failed (the health gate)
    # the VIP on this host, as the address watch last saw it; None: not observed
    vip: bool | None = None
    # the VIP where it should not be: ("missing" leading without it, or "stray"
    # held without leading, since when), and the problem once it lasted vip_grace
    vip_wrong: tuple[str, float] | None = None
    vip_problem: str | None = None
    # --step-down-without-vip: when the last read with the candidates that found
    # Consul working (not the first after failed reads) started, and when ours
    # was asked for
    read_ok_at: float = float("-inf")
    vip_read_asked: float | None = None
    # the candidacy entry
    published: tuple[str, bool, str, str, bool, bool | None, str] | None = None
    publish_at: float = 0.0
    publish_failures: int = 0
    # the member entry: what was last written (state, eligible, why, session,
    # node), the next heartbeat (or retry), the soonest a change may be written
    reported: tuple[str, bool, str, str, str] | None = None
    report_at: float = 0.0
    report_soonest: float = 0.0
    report_failures: int = 0
    reporting: bool = False  # a Report is out; its outcome comes next
    # the member entries, as the leader's last read of the tree found them; those
    # removed (or being removed) by value, at the ModifyIndex removed; no removal
    # before reap_at (after a failed one)
    members: Mapping[str, Member] = field(default_factory=dict)
    reaped: Mapping[str, int] = field(default_factory=dict)
    reap_at: float = 0.0
    # by value: (ModifyIndex, when this leader's reads first showed it at that
    # index), on our own clock: the writer's may be off
    members_seen: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    reaping: bool = False  # a ReapMember is out; its outcome comes next
    # the history: changes of the holder not written yet
    chronicle: tuple[Change, ...] = ()
    chronicle_at: float = 0.0
    chronicle_failures: int = 0
    chronicle_sending: int = 0  # how many of them the AppendHistory out carries
    # sessions to destroy: id -> (next attempt, give up at)
    doomed: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    ttl: float = 10.0  # ours: how long Consul may keep an ended session (2 x TTL)
    # stopping
    stop: StopAsked | None = None
    stop_handed: bool = False  # the stop's hand-over was tried (once)
    finished: bool = False
    # what was said, so it is said once
    said: Mapping[str, str] = field(default_factory=dict)

    def standby(self, now: float) -> str | None:
        """Why this node must not compete now (maintenance, a hold), or None."""
        if self.maintenance_file is not None:
            return self.maintenance_file
        if self.consul_maintenance is not None:
            return self.consul_maintenance
        if now < self.hold_until:
            return self.hold_reason
        if now < self.vip_hold_until:
            return self.vip_hold_reason
        return None

    def in_vip_hold(self, now: float) -> bool:
        """Standing by only for the hold after a step-down without the VIP."""
        return self.maintenance is None and self.hold_until <= now < self.vip_hold_until

    @property
    def maintenance(self) -> str | None:
        return self.maintenance_file or self.consul_maintenance

    @property
    def sessions(self) -> tuple[str, ...]:
        """Every session of ours Consul may still keep, each once (what a release
        destroys)."""
        ours = (self.session, self.move_from, self.adopting, *self.doomed)
        return tuple(dict.fromkeys(s for s in ours if s))

    @property
    def held(self) -> tuple[str, int] | None:
        """(session, ModifyIndex) of the key while leading: what a release deletes."""
        if self.leading and self.session and self.held_index:
            return self.session, self.held_index
        return None

    @property
    def expects_lock(self) -> bool:
        """Leading, or about to be without writing the key (a session to adopt, or
        one to move the lock from): the key is watched as a leader watches it."""
        return self.leading or self.adopting is not None or self.move_from is not None

    @property
    def rereading(self) -> bool:
        """A read sent after a write of ours that failed without an answer is still
        wanted: due, or asked for and not answered yet."""
        return self.reread_at is not None or self.rereads > 0


@dataclass(frozen=True)
class Decision:
    memory: Memory
    actions: tuple[Action, ...]
    wake_at: float


def decide(memory: Memory, event: Event, now: float, rules: Rules) -> Decision:
    """The next actions of the lock owner (see the module's docstring)."""
    step = _Step(memory, now, rules)
    step.absorb(event)
    wake = step.next()
    return Decision(step.m, tuple(step.out), max(wake, now))


def handover_goes_on(memory: Memory, now: float, rules: Rules) -> Memory:
    """A restart inside a hand-over: the previous run of this daemon blanked the key
    to hand the VIP over and was killed (or exec'd) before it finished; this run
    deleted that blank (and, before it, the dead session's candidate entry). The
    hand-over goes on: the other nodes, which count the gap from that delete,
    take the key, and this run stands by for as long as they need (the gap and a
    margin) instead of racing them for it; then it competes as usual. Like the
    hold after a step-down without the VIP, it gives way at once when no other
    node is eligible: holding back would then leave the VIP nowhere."""
    until = now + rules.handover_gap + PRIORITY_MARGIN
    if until <= memory.vip_hold_until:
        return memory  # a longer hold of its own runs, with its reason
    return replace(
        memory,
        vip_hold_until=until,
        vip_hold_reason="the previous run of this daemon was handing the VIP over",
    )


def ownership_problem(key: KeyState, session_id: str, value: bytes) -> tuple[Cause, str] | None:
    """Why ``key`` is no longer the lock of ``session_id`` with ``value``, or None while it is."""
    if not key.exists:
        return (
            Cause.KEY_DELETED,
            "the trigger-key was deleted (our session was invalidated, or someone deleted the key)",
        )
    if key.session != session_id:
        holder = key.session or "nobody"
        return Cause.KEY_TAKEN, f"the trigger-key is now held by session {holder}"
    if key.value != value or key.flags != LOCK_FLAG:
        # Escaped and bounded: anybody who may write the key wrote it.
        shown = repr(key.value.decode(errors="replace"))[:80] if key.value is not None else None
        return Cause.KEY_CHANGED, (
            f"the trigger-key changed under our session (value={shown}, flags={key.flags})"
        )
    return None


def switchover_refusal(
    request: SwitchoverRequest, candidates: Mapping[str, Candidate], value: str, wall: float
) -> tuple[Candidate | None, str]:
    """The candidate a switchover request moves the VIP to, or why it is refused."""
    if not request.fresh(wall):
        return None, "it is stale (older than 10 s, or from a clock far off)"
    if request.to == value:
        return None, "this node holds the VIP already"
    return switchover_target(request.to, value, candidates)


def _snake(name: str) -> str:
    """``KeyRead`` -> ``key_read``: the handler of an input or an outcome."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _doubled(first: float, doublings: int, cap: float) -> float:
    """A retry's backoff: ``first`` doubled ``doublings`` times, at most ``cap``.
    No jitter (retrying.backoff has it): the core draws no random numbers, so a
    decision is a function of its inputs."""
    return min(cap, first * (1 << min(max(doublings, 0), 30)))


def _fmt(seconds: float) -> str:
    """A short duration for log lines (no import of the durations module's parser)."""
    return f"{seconds:.3g}s"


_MEMORY_FIELDS = frozenset(f.name for f in fields(Memory))


class _Step:
    """One call of :func:`decide`: the memory being replaced and the actions so far."""

    def __init__(self, memory: Memory, now: float, rules: Rules) -> None:
        self.m = memory
        self.before = memory  # as the step found it (who held the key, a hand-over)
        self.now = now
        self.rules = rules
        self.out: list[Action] = []

    # -- helpers ---------------------------------------------------------------------
    def set(self, **changes: object) -> None:
        # What dataclasses.replace does, without running __init__ over all of
        # Memory's fields for each change: most of a decision's time went there.
        if not _MEMORY_FIELDS.issuperset(changes):
            raise TypeError(f"Memory has no field {sorted(set(changes) - _MEMORY_FIELDS)}")
        new = object.__new__(Memory)
        new.__dict__.update(self.m.__dict__, **changes)
        self.m = new

    def log(self, level: str, message: str, event: str) -> None:
        self.out.append(Log(level, message, event))

    def say_once(self, topic: str, text: str, level: str, event: str) -> None:
        """Log ``text`` unless it is what was said last about ``topic``."""
        if self.m.said.get(topic) != text:
            self.set(said={**self.m.said, topic: text})
            self.log(level, text, event)

    def forget_said(self, topic: str) -> None:
        if topic in self.m.said:
            self.set(said={k: v for k, v in self.m.said.items() if k != topic})

    def transition(self, role: Role, cause: Cause, detail: str = "") -> None:
        if self.m.role in (role, Role.STOPPING):
            return
        previous = self.m.role
        self.set(role=role)
        self.out.append(Transition(role, cause, detail))
        self._chronicle(previous, role, cause, detail)

    def _chronicle(self, previous: Role, role: Role, cause: Cause, detail: str) -> None:
        """Keep a change of the key's holder this transition is, for the history:
        leaving the lead (to whom, for a hand-over), or taking a key we acquired
        (a key handed to us is the giver's to record; an adoption is no change)."""
        before, ours = self.before, self.rules.value
        if previous == Role.LEADER:
            handover = before.handover
            to = None
            if handover is not None and (
                handover.handed or cause in (Cause.SWITCHOVER, Cause.PREEMPTED)
            ):
                to = handover.target.value
            change = Change(self.now, ours, to, cause.value, self.m.node, detail)
        elif role == Role.LEADER and cause == Cause.ACQUIRED and before.acquire_started is not None:
            other = before.other_value
            was = None if other in (None, b"", UNSEEN) else other.decode(errors="replace")
            change = Change(self.now, was, ours, cause.value, self.m.node)
        else:
            return
        kept = (*self.m.chronicle, change)
        dropped = max(0, len(kept) - CHRONICLE_KEEP)  # the oldest, if the history is unwritable
        self.set(
            chronicle=kept[dropped:],
            chronicle_sending=max(0, self.m.chronicle_sending - dropped),
        )

    def doom(self, session: str | None) -> None:
        """Destroy ``session`` from the next step on (retried for 2 x TTL + 5 s)."""
        if session is None or session in self.m.doomed:
            return
        give_up = self.now + 2 * self.m.ttl + 5
        self.set(doomed={**self.m.doomed, session: (self.now, give_up)})

    def ours(self, key: KeyState) -> bool:
        return key.session is not None and key.session == self.m.session

    # -- inputs ------------------------------------------------------------------------
    def absorb(self, event: Event) -> None:
        handler = getattr(self, f"_on_{_snake(type(event).__name__)}")
        handler(event)

    def _on_tick(self, _: Tick) -> None:
        pass

    def _on_key_read(self, read: KeyRead) -> None:
        answered = read.started if read.answered is None else read.answered
        if answered < self.m.written_at:
            return  # answered before our own write was sent: the next read shows it
        if read.started <= self.m.written_done and read.key.index < self.m.written_index:
            return  # taken before our write was applied, though it came after: stale
        if not read.asked and read.started <= self.m.unsure_before:
            return  # under way while a write of ours may have been applied unseen
        self.set(reread_at=None, rereads=0)
        m, key, now = self.m, read.key, self.now
        previous = m.key
        self.set(key=key, wall=read.wall)
        self._vip_reads(not m.watching or read.resumed, read.started if read.tree else None)
        if read.tree:
            self.set(candidates=dict(read.candidates), request=read.request, conflict=read.conflict)
            self._members_read(read.members, read.started)
        if read.resumed and not m.consul_maintenance_known:
            # The agent answers again after failed reads: the wait for the node
            # watch's answer (due within its retry) starts afresh, whatever of it
            # ran out while nothing could answer (`consul maint` run meanwhile).
            self.set(consul_maintenance_asked=None)
        # Whose value is in the key: the hand-over gap counts from the moment
        # another node's value was seen to leave it, whatever freed it.
        other = key.held and not self.ours(key) and key.session != m.move_from
        if other and key.value not in (None, b""):
            self.set(other_value=key.value, other_left_at=None)
        elif m.other_value is not None and m.other_left_at is None:
            self.set(other_left_at=now)
        if other and key.value in (None, b"") and m.other_value is None:
            # Blank (a hand-over under way) and we never saw whose it was.
            self.set(other_value=UNSEEN, other_left_at=now)
        gone = not key.held and previous is not None and previous.session not in m.sessions
        if gone and previous is not None and previous.held and not previous.value:
            # A blank freed without a hand-over: its holder may have put its
            # value back for a moment first (a failed hand-over restores, then
            # a step-down deletes), unseen by our reads. The gap counts from now.
            self.set(other_value=m.other_value or UNSEEN, other_left_at=now)
        if not key.held and (not m.watching or read.resumed):
            # Free at the first look (a start, a new generation) or after reads
            # that failed: another node may have left it a moment ago, its
            # vip-manager still holding the VIP. The gap counts from now.
            self.set(other_value=UNSEEN, other_left_at=now)
        self.set(watching=True)
        if key.held:
            if key.session != m.holder:
                self.set(holder=key.session, holder_lock_delay=None)
            self.set(freed_at=None, refused=0, acquire_at=0.0)
        elif self.m.freed_at is None:
            self.set(freed_at=now, refused=0, acquire_at=0.0)
        elif read.early and previous is not None and not previous.held:
            # Back before its wait ran out with the key free again: another
            # node took it and let it go between two reads. Its vip-manager
            # may have added the VIP: the gap counts from now.
            self.set(other_value=UNSEEN, other_left_at=now)
        # The fence: a consistent read that started at t and found the lock ours
        # proves nobody can hold it before t + lock-delay.
        if (
            self.m.leading
            and read.consistent
            and self.rules.fence_bound > 0
            and self.m.leaving is None
            and self.m.handover is None
            and self.m.move_from is None
            and ownership_problem(key, self.m.session or "", self.rules.value_bytes) is None
        ):
            self.set(fence_until=max(self.m.fence_until, read.started + self.rules.fence_bound))
        if self.m.leading and read.tree and self.rules.preempt_delay is not None:
            self._track_better()

    def _on_session_up(self, up: SessionUp) -> None:
        m = self.m
        if up.adopted and m.adopting != up.session:
            return  # a late answer about a session we no longer want
        self.set(session=up.session, node=up.node or m.node, gate=None, published=None)
        self.set(publish_at=self.now, publish_failures=0)
        self.forget_said("gate")

    def _on_session_down(self, down: SessionDown) -> None:
        if down.session != self.m.session:
            self.doom(down.session)
            return
        self.set(session=None, published=None, adopting=None)
        if down.cause == Cause.RENEW_TIMEOUT:
            # The agent failed us for a TTL: the key watch's last answer may be as
            # old (its failures are not posted). No acquire before a read says how
            # the key is now; a free key then waits the gap.
            self.set(watching=False)
        if self.m.leading:
            self._lost(down.cause, down.detail, discard=False)
        self.doom(down.session)

    def _on_gate_closed(self, gate: GateClosed) -> None:
        self.set(gate=gate.problem, failed_at=self.now)
        if self.m.move_from is not None:
            # The new session cannot be made: the old one gives the key up.
            old = self.m.move_from
            self.log(
                "warning",
                f"cannot make the new session ({gate.problem}): releasing the lock of session "
                f"{old}",
                "inherit_released",
            )
            self.out.append(ReleaseKey(old))
            self.set(move_from=None)
            self.doom(old)
            if self.m.leading:
                self._stop_leading()
                self.transition(
                    Role.FOLLOWER, Cause.CONFIG_RELOAD, f"new session refused: {gate.problem}"
                )

    def _on_adopt_failed(self, failed: AdoptFailed) -> None:
        if failed.session != self.m.adopting:
            return
        self.log(
            "warning",
            f"could not adopt session {failed.session} of the previous run ({failed.detail}); "
            "releasing the key it holds, then destroying it",
            "adopt_failed",
        )
        self.out.append(ReleaseKey(failed.session))
        self.set(adopting=None, fence_until=0.0)
        self.doom(failed.session)

    def _on_step_down_asked(self, asked: StepDownAsked) -> None:
        if not self.m.leading:
            self.log(
                "info", "SIGUSR1: not the leader, nothing to step down from", "step_down_ignored"
            )
            return
        self.set(
            hold_until=self.now + asked.hold,
            hold_reason=asked.detail,
            step_down=asked.detail,
        )

    def _on_maintenance_file(self, changed: MaintenanceFile) -> None:
        self.set(maintenance_file=changed.reason)

    def _on_consul_maintenance(self, changed: ConsulMaintenance) -> None:
        self.set(
            consul_maintenance=changed.reason,
            consul_maintenance_known=changed.known,
            consul_maintenance_asked=None,
        )

    def _on_stop_asked(self, stop: StopAsked) -> None:
        if self.m.stop is None:
            self.set(stop=stop)

    def _on_vip_seen(self, seen: VipSeen) -> None:
        self.set(vip=seen.present)
        self._vip_during_hand_over(seen.present, self.now if seen.at is None else seen.at)

    def _vip_during_hand_over(self, present: bool | None, at: float) -> None:
        """A hand-over under way goes on as soon as the VIP is seen gone after
        its blank was sent (not on an older "gone" that waited in the inbox)."""
        handover = self.m.handover
        if handover is not None and not handover.handed:
            sent = handover.blank_sent
            gone = present is False and sent is not None and at >= sent
            self.set(handover=replace(handover, vip_gone=gone))

    def _on_read_failed(self, _: ReadFailed) -> None:
        self.set(watching=False)
        if self.m.rereading:
            retry = _doubled(REREAD_RETRY, self.m.rereads - 1, REREAD_RETRY_MAX)
            self.set(reread_at=self.now + retry)
        self._vip_reads(True, None)

    def _vip_reads(self, troubled: bool, started: float | None) -> None:
        """vip-manager (trigger-key mode) drops the VIP while it cannot read Consul:
        after failed reads (ours, or the first answer after them) a missing VIP is
        judged again from now, so that a Consul election is no reason to step down.
        ``started``: a read with the candidates (a leader's), which the step-down
        chooses from."""
        wrong = self.m.vip_wrong
        if not troubled:
            if started is not None:
                self.set(read_ok_at=max(self.m.read_ok_at, started))
        elif wrong is not None and wrong[0] == "missing":
            self.set(vip_wrong=("missing", self.now))

    def _on_lock_delay_of(self, found: LockDelayOf) -> None:
        if found.session == self.m.holder:
            self.set(holder_lock_delay=found.seconds)

    def _on_rivals_checked(self, checked: RivalsChecked) -> None:
        self.set(rivals_at=self.now)
        if not checked.known:
            return  # cannot tell now; the next check asks again
        self.set(rival=checked.problem)
        if self.m.leading and checked.problem is not None:
            self.set(duplicate=checked.problem)

    def _on_candidates_read(self, read: CandidatesRead) -> None:
        better = best_other(dict(read.candidates), self.rules.value, than=self.rules.priority)
        others = best_other(dict(read.candidates), self.rules.value) is not None
        self.set(
            candidates_for=read.freed_at,
            better=better,
            others_eligible=others,
            candidates_at=self.now,
        )

    def _on_session_checked(self, checked: SessionChecked) -> None:
        loss = self.m.loss
        if loss is None or checked.session != self.m.session:
            return
        self.set(loss=None)
        cause, detail = loss
        if checked.alive is True:
            cause, detail = Cause.KEY_DELETED, "the trigger-key was deleted by someone else"
        elif checked.alive is False:
            cause, detail = (
                Cause.SESSION_LOST,
                (
                    "Consul invalidated our session (a check it is tied to went critical, the node "
                    "failed, or the session was destroyed) and deleted the trigger-key with it"
                ),
            )
        self._lost(cause, detail)

    def _on_done(self, done: Done) -> None:
        if isinstance(done.action, (Acquire, Blank, HandTo, Restore, Delete, Move)):
            self.set(written_at=max(self.m.written_at, done.started))
            if done.result == "ok" and done.index > 0:
                # The index this write got (not the highest ever: after a
                # cluster rebuilt from scratch, indexes start low again).
                self.set(written_index=done.index, written_done=self.now)
            elif done.result == "failed":
                # Applied or not (only its answer may be lost): a read sent once
                # the handler's writes are done tells; one under way may show the
                # key as it was before.
                self.set(unsure_before=self.now, reread_at=self.now)
        handler = getattr(self, f"_done_{_snake(type(done.action).__name__)}", None)
        if handler is not None:
            handler(done)

    def _done_acquire(self, done: Done) -> None:
        m = self.m
        if done.result == "ok":
            # Ours from the moment Consul applied it; a read says so next.
            self.set(acquire_started=done.started, key=None)
        elif done.result == "gone" and m.session is not None:
            detail = f"Consul refused our session for the lock: {done.detail}"
            self.out.append(Discard(m.session, detail))
            self.set(session=None, published=None)
        elif done.result == "refused":
            refused = m.refused + 1
            # Refused with the key free: Consul's lock-delay keeps it (its holder's
            # session was invalidated). Try again when it has run since the key went
            # free; past that estimate (clock skew, a longer delay), back off.
            freed = m.freed_at if m.freed_at is not None else self.now
            estimate = freed + self._holder_lock_delay() + LOCK_DELAY_MARGIN
            if estimate > self.now:
                self.log(
                    "debug",
                    f"lock-delay in force; retrying in {_fmt(estimate - self.now)}",
                    "lock_delay",
                )
                at = estimate
            else:
                at = self.now + _doubled(0.05, refused, LOCK_DELAY_RETRY_MAX)
            self.set(refused=refused, acquire_at=at)
            # Look again at once: another node may have won (then watch it; it may
            # step down at once) or the key is still free under lock-delay.
            self.out.append(ReadKey())
        else:
            self.log(
                "warning",
                f"acquiring the trigger-key failed: {done.detail}; reading it again",
                "acquire_failed",
            )
            # The agent failed us: what we know of the key may be old. No acquire
            # before a read says how it is now.
            self.set(acquire_at=self.now + ACQUIRE_RETRY, watching=False)

    def _done_blank(self, done: Done) -> None:
        handover = self.m.handover
        if handover is None:
            return
        if done.result == "ok":
            self.set(handover=replace(handover, blanked_at=self.now, blank_sent=done.started))
        elif not self._hand_over_failed_on_leave(handover, done):
            # (A leave is never lost: a step-down whose blank failed deletes instead.)
            self.log(
                "warning",
                f"handing the VIP over failed: {done.detail or 'the key changed'}",
                "switchover_failed",
            )
            self._hand_over_failed()
            if done.result == "failed":
                self._put_value_back()  # the blank may have been applied, its answer lost

    def _done_hand_to(self, done: Done) -> None:
        handover = self.m.handover
        if handover is None:
            return
        if done.result == "ok":
            if handover.request is not None:
                self.out.append(DropRequest(handover.request))
            detail = f"handed the lock to {handover.target.value!r} ({handover.cause.value})"
            if handover.detail:
                detail = f"{handover.detail}; {detail}"
            waited = _fmt(self.now - (handover.blanked_at or self.now))
            how = "once the VIP had left this host" if handover.vip_gone else "after the gap"
            self.log("info", f"{detail}: {waited} after the blank, {how}", "handed_over")
            self._stop_leading()
            self.transition(handover.role, handover.cause, detail)
            if self.m.session is not None and self.m.stop is None:
                # A stop's release destroys it; otherwise the renewer makes a new one.
                self.out.append(Discard(self.m.session, detail))
                self.set(session=None, published=None)
            self.set(handover=None)
            return
        if self._hand_over_failed_on_leave(handover, done):
            return
        if done.result == "refused":
            self.log(
                "warning",
                f"{handover.target.value!r}'s session is gone: keeping the VIP here",
                "switchover_failed",
            )
        else:
            self.log("warning", f"handing the VIP over failed: {done.detail}", "switchover_failed")
        self._hand_over_failed()
        self._put_value_back()

    def _put_value_back(self) -> None:
        """Our value back after our blank (nobody else could take the key
        meanwhile); what comes next is decided on the read after it. Until a
        read shows our value, a blank in our lock is ours, not a foreign write
        (the restore itself may fail): it is put back again."""
        if self.m.session is not None:
            self.out.append(Restore(self.m.session))
            self.set(key=None, blanked=True)

    def _hand_over_failed_on_leave(self, handover: HandOver, done: Done) -> bool:
        """A hand-over that fails while we leave (stop, step-down, maintenance,
        also one that began as a switchover) deletes the key instead of putting
        our value back: the VIP is gone from here, it need not come back."""
        why = done.detail or f"{handover.target.value!r}'s session is gone"
        if self.m.stop is not None:
            self.log(
                "warning",
                f"handing the VIP to {handover.target.value!r} failed ({why}): releasing the key",
                "switchover_failed",
            )
            self._hand_over_failed()  # the stop's release deletes it
            return True
        reason = self._why_leave()
        if handover.leave:
            reason = handover.cause, handover.detail, handover.role
        if reason is None:
            return False
        cause, detail, role = reason
        self.log(
            "warning",
            f"handing the VIP to {handover.target.value!r} failed ({why}): deleting the key "
            "instead",
            "switchover_failed",
        )
        self._hand_over_failed()
        # The key is blank and ours: delete it at the index a read gives now.
        self.set(leaving=Leaving(cause, detail, role), step_down=None)
        self.out.append(ReadKey())
        return True

    def _done_delete(self, done: Done) -> None:
        leaving = self.m.leaving
        if leaving is None:
            return
        if done.result == "ok":
            index = done.action.index  # type: ignore[union-attr]
            self.log(
                "info",
                f"deleted the trigger-key at index {index}: another node can take over at once",
                "lock_released",
            )
            self.set(leaving=replace(leaving, retry_at=float("inf")))
        elif done.result == "refused":
            # The key changed since that index (our own write of a moment ago):
            # delete it at the index the next read shows; a step-down is never dropped.
            self.set(leaving=replace(leaving, retry_at=self.now), key=None)
        else:
            self.set(leaving=replace(leaving, retry_at=self.now + STEP_DOWN_RETRY))

    def _done_publish(self, done: Done) -> None:
        action = done.action
        assert isinstance(action, Publish)
        if done.result == "skipped":
            self.set(publish_at=self.now)  # not sent: due again at once
            return
        if done.result == "orphan":
            # A session of an earlier process of this daemon (our name, our node:
            # the instance lock allows one process) holds our entry: SIGKILLed
            # with its runtime record lost, or stopped while Consul did not answer.
            # Until it expired, nobody would see this node as a candidate, and a
            # switchover could hand the lock to a dead session: destroy it now.
            self.log(
                "info",
                f"session {done.detail} of an earlier run of this daemon holds this node's "
                "candidacy entry: destroying it",
                "orphan_session",
            )
            self.doom(done.detail)
            self.set(publish_at=self.now + PUBLISH_RETRY)
            return
        if done.result == "ok":
            self.set(
                published=(
                    action.session,
                    action.eligible,
                    action.why,
                    action.node,
                    action.settled,
                    action.vip,
                    action.vip_problem,
                ),
                publish_failures=0,
                publish_at=0.0,
            )
            self.forget_said("publish")
            return
        failures = self.m.publish_failures + 1
        delay = _doubled(PUBLISH_RETRY, failures - 1, PUBLISH_RETRY_MAX)
        self.set(publish_failures=failures, publish_at=self.now + delay)
        if done.detail:
            self.say_once(
                "publish",
                f"cannot publish this node's candidacy: {done.detail}; priority, switchover and "
                "preemption do not see this node (the token needs key_prefix write on the "
                "trigger-key, see docs/acl.md); retrying with a backoff",
                "error",
                "candidacy_unpublished",
            )

    def _done_report(self, done: Done) -> None:
        action = done.action
        assert isinstance(action, Report)
        if done.result == "skipped":
            self.set(reporting=False)  # not sent: due again as it was
            return
        if done.result == "ok":
            wanted = (action.state, action.eligible, action.why, action.session, action.node)
            self.set(
                reported=wanted,
                reporting=False,
                report_failures=0,
                report_at=self.now + MEMBER_HEARTBEAT,
                report_soonest=self.now + REPORT_MIN_GAP,
            )
            self.forget_said("report")
            return
        failures = self.m.report_failures + 1
        retry = self.now + _doubled(PUBLISH_RETRY, failures - 1, PUBLISH_RETRY_MAX)
        self.set(reporting=False, report_failures=failures, report_at=retry, report_soonest=retry)
        if done.detail:
            self.say_once(
                "report",
                f"cannot write this node's member entry: {done.detail}; `vip-elector status` "
                "on the other nodes shows this node as not reporting (the token needs "
                "key_prefix write on the trigger-key, see docs/acl.md); retrying with a backoff",
                "warning",
                "member_unreported",
            )

    def _done_append_history(self, done: Done) -> None:
        sent = self.m.chronicle_sending
        if done.result == "skipped":
            self.set(chronicle_sending=0)  # not sent: due again as it was
            return
        if done.result == "ok":
            self.set(chronicle=self.m.chronicle[sent:], chronicle_sending=0, chronicle_failures=0)
            return
        failures = self.m.chronicle_failures + 1
        delay = _doubled(PUBLISH_RETRY, failures - 1, PUBLISH_RETRY_MAX)
        self.set(chronicle_sending=0, chronicle_failures=failures, chronicle_at=self.now + delay)

    def _done_destroy(self, done: Done) -> None:
        session = done.action.session  # type: ignore[union-attr]
        entry = self.m.doomed.get(session)
        if entry is None:
            return
        if done.result in ("ok", "gone") or self.now >= entry[1]:
            if done.result not in ("ok", "gone"):
                self.log(
                    "info",
                    f"session {session} could not be destroyed ({done.detail}); "
                    "Consul has expired it",
                    "session_destroyed",
                )
            self.set(doomed={k: v for k, v in self.m.doomed.items() if k != session})
        else:
            self.set(doomed={**self.m.doomed, session: (self.now + DESTROY_RETRY, entry[1])})

    def _hand_over_failed(self) -> None:
        """A hand-over that could not start or finish: decide again on the next
        read (never at once: a refused blank would be sent again in a loop), and
        a preemption waits its whole delay again."""
        self.set(handover=None, key=None, better_since={})

    def _done_move(self, done: Done) -> None:
        action = done.action
        assert isinstance(action, Move)
        # Moved or not, the key is ours again only once a read says so.
        self.set(move_from=None, moving=False, key=None)
        if done.result == "ok":
            self.log(
                "info",
                f"moved the lock from session {action.old} to {action.new} in one transaction: "
                "the key was never free, the VIP did not move",
                "lock_moved",
            )
        else:
            self.log(
                "warning",
                f"moving the lock to session {action.new} failed ({done.detail or 'refused'}); "
                f"session {action.old} keeps it until it is destroyed",
                "lock_move_failed",
            )
        self.doom(action.old)

    def _holder_lock_delay(self) -> float:
        found = self.m.holder_lock_delay
        return self.rules.lock_delay if found is None else found

    def _settled_at(self) -> float:
        """When this node may be preempted to again, after its own check failed."""
        if self.m.failed_at is None:
            return 0.0
        return self.m.failed_at + max(PREEMPT_HOLD_DOWN, self.rules.preempt_delay or 0.0)

    def _track_better(self) -> None:
        """Preemption: since when each eligible, settled better candidate has been so
        (never our own value: an entry of our previous session may still say an
        older, higher priority, and nobody can be handed the lock by it)."""
        better = {
            c.value
            for c in self.m.candidates.values()
            if c.eligible
            and c.settled
            and c.priority > self.rules.priority
            and c.value != self.rules.value
        }
        since = {v: t for v, t in self.m.better_since.items() if v in better}
        for value in better:
            since.setdefault(value, self.now)
        self.set(better_since=since)

    # -- leadership bookkeeping ------------------------------------------------------
    def _stop_leading(self) -> None:
        self.set(
            leading=False,
            fence_until=0.0,
            held_index=0,
            leaving=None,
            handover=None,
            better_since={},
            duplicate=None,
            leader_since=None,
            adopting=None,
            blanked=False,
        )

    def _lost(self, cause: Cause, detail: str, discard: bool = True) -> None:
        """The lock is no longer ours: say why (a step-down we started says its own)."""
        leaving = self.m.leaving
        role = Role.FOLLOWER
        if cause == Cause.SESSION_LOST:
            self.set(failed_at=self.now)  # a check of ours, or our node, failed
        if leaving is not None:
            cause, detail, role = leaving.cause, leaving.detail, leaving.role
        self._stop_leading()
        self.transition(role, cause, detail)
        if discard and self.m.session is not None:
            self.out.append(Discard(self.m.session, detail))
            self.set(session=None, published=None)

    # -- the rules, in order ---------------------------------------------------------
    def next(self) -> float:
        wake = self._rules()
        if self.m.finished:
            return wake
        # Again on the role this step ended with (a lock just lost or won), so that
        # what changed now is published now; then, last, what the lock's rules
        # just changed (a role, a change of holder) is reported in this step.
        for rule in (self._vip_place, self._report, self._history, self._reap):
            at = rule()
            if at is not None:
                wake = min(wake, at)
        return wake

    def _rules(self) -> float:
        wake = self.now + IDLE
        for rule in (
            self._stopping,
            self._destroy,
            self._move,
            self._role,
            self._vip_place,
            self._candidacy,
        ):
            at = rule()
            if at is not None:
                wake = min(wake, at)
            if self.m.finished or self.m.stop is not None:
                return wake  # stopped, or the stop's hand-over is under way
        at = self._reread()
        if at is not None:
            wake = min(wake, at)
        key = self.m.key
        if key is None:
            return wake
        if is_foreign(key) and not self.m.leading:
            if self.m.said.get("foreign") != str(key.modify_index):
                self.set(said={**self.m.said, "foreign": str(key.modify_index)})
                message = not_a_lock_message(self.rules.key, key.flags)
                self.out.append(
                    Log("error", f"{message} Not competing until it is fixed.", "not_a_lock")
                )
            return wake
        at = self._lead() if self.m.leading else self._follow()
        return min(wake, at)

    def _stopping(self) -> float | None:
        stop = self.m.stop
        if stop is None:
            return None
        if not stop.retire:
            at = self._hand_over_on_stop(stop)
            if at is not None:
                return at  # release once the hand-over has ended
        if stop.retire:
            self.out.append(Retire(tuple(self.m.doomed)))
            if not stop.keep_fence:
                self.set(fence_until=0.0)
        else:
            release = Release(self.m.sessions, self.m.held)
            if stop.cause == Cause.SHUTDOWN:
                self.transition(Role.STOPPING, Cause.SHUTDOWN)
            elif self.m.leading:
                self.transition(Role.FOLLOWER, stop.cause, stop.detail)
            self.set(fence_until=0.0, leading=False)
            self.out.append(release)
            if self.m.chronicle:
                self.out.append(AppendHistory(self.m.chronicle, final=True))
            why = "stopped cleanly" if stop.cause == Cause.SHUTDOWN else stop.detail
            why = why or stop.cause.value
            self.out.append(Report("stopped", False, why, "", self.m.node, final=True))
        self.set(finished=True)
        return None

    def _hand_over_on_stop(self, stop: StopAsked) -> float | None:
        """A leader that stops hands the lock over first (once): when it returns
        a time, the release waits; None: release now."""
        m = self.m
        if not m.leading or m.session is None:
            return None
        if m.handover is not None:
            self.set(stop_handed=True)  # if it fails, no second try: release
            return self._hand_over()  # ours, or a switchover under way: to its end
        if m.stop_handed or m.leaving is not None or m.move_from is not None:
            return None
        self.set(stop_handed=True)
        if self.rules.handover_gap > STOP_HAND_OVER_GAP_MAX:
            return None  # it could outlast systemd's TimeoutStopSec: release, as before
        target = self._leave_target()
        if target is None:
            return None
        role = Role.STOPPING if stop.cause == Cause.SHUTDOWN else Role.FOLLOWER
        self._start_hand_over(target, stop.cause, "", leave=(role, stop.detail))
        return self.now + IDLE

    def _destroy(self) -> float | None:
        wake: float | None = None
        for session, (at, _) in self.m.doomed.items():
            if session in (self.m.session, self.m.move_from, self.m.adopting):
                continue  # never one we still use
            if at <= self.now:
                self.out.append(Destroy(session))
                self.set(
                    doomed={**self.m.doomed, session: (float("inf"), self.m.doomed[session][1])}
                )
            else:
                wake = at if wake is None else min(wake, at)
        return wake

    def _move(self) -> None:
        old, new = self.m.move_from, self.m.session
        if old is not None and new is not None and old != new and not self.m.moving:
            self.out.append(Move(old, new))
            self.set(moving=True)

    def _role(self) -> float | None:
        m = self.m
        if m.leading or m.role == Role.STOPPING:
            return None
        maintenance = m.maintenance
        if maintenance is not None:
            self.transition(Role.MAINTENANCE, Cause.MAINTENANCE, maintenance)
        elif m.role == Role.MAINTENANCE:
            self.transition(Role.FOLLOWER, Cause.MAINTENANCE, "maintenance ended")
        if (
            m.session is None
            and m.gate is not None
            and self.m.role in (Role.STARTING, Role.FOLLOWER)
        ):
            self.transition(Role.FAULT, Cause.CHECK, m.gate)
        elif m.session is not None and self.m.role in (Role.STARTING, Role.FAULT):
            cause = Cause.ADOPTED if m.adopting == m.session else Cause.SESSION_CREATED
            detail = (
                f"session {m.session} of the previous run"
                if cause == Cause.ADOPTED
                else f"session {m.session}"
            )
            self.transition(Role.FOLLOWER, cause, detail)
        return None

    def _vip_place(self) -> float | None:
        """A leader without its VIP, or a node that does not lead with it, for
        longer than vip_grace: said once, published (at once: the next step),
        and said again when right."""
        m, now, rules = self.m, self.now, self.rules
        if m.stop is not None:
            return None
        said = m.vip_problem
        wrong = None
        # While a step-down or a hand-over runs the VIP is meant to go.
        if m.vip is False and m.leading and m.leaving is None and m.handover is None:
            wrong = "missing"
        elif m.vip is True and not m.expects_lock:
            wrong = "stray"
        if m.vip_wrong is None or wrong is None or m.vip_wrong[0] != wrong:
            if m.vip_problem is not None:
                if m.vip is None:
                    back = "the VIP is not observed any more"
                elif m.leading and m.vip:
                    back = f"this leader has its VIP again ({rules.vip_address})"
                elif m.leading:
                    back = "this leader is stepping down or handing the lock over"
                elif m.vip or (m.vip_wrong is not None and m.vip_wrong[0] == "missing"):
                    back = "this node no longer leads"
                else:
                    back = f"the VIP ({rules.vip_address}) is no longer on this node"
                self.log("info", f"{back}: the problem said before is over", "vip_in_place")
            self.set(vip_wrong=None if wrong is None else (wrong, now), vip_problem=None)
        if wrong is None:
            return None if said is None else now
        assert self.m.vip_wrong is not None
        due = self.m.vip_wrong[1] + rules.vip_grace
        if now < due:
            return due
        if self.m.vip_problem is None:
            where = f"{rules.vip_address} on {rules.vip_interface or 'its interface'}"
            # The problem stays short (/status, the candidacy entry); the log line
            # says what to do.
            if wrong == "missing":
                problem = f"leader without its VIP ({where}) for more than {_fmt(rules.vip_grace)}"
                self.log(
                    "warning",
                    f"{problem}, so no node answers for it: is vip-manager running here? check "
                    "`systemctl status vip-manager`, its interface and its log",
                    "vip_missing",
                )
            else:
                problem = f"has the VIP ({where}) but does not lead"
                self.log(
                    "error",
                    f"this node {problem}: two hosts may answer for the address (a stale "
                    "vip-manager, or a manual `ip addr add`); stop it, or remove the address: "
                    f"`ip addr del {rules.vip_address} dev {rules.vip_interface or '<interface>'}`",
                    "vip_stray",
                )
            self.set(vip_problem=problem)
        return None if self.m.vip_problem == said else now

    def _candidacy(self) -> float | None:
        m = self.m
        if m.session is None:
            return None
        why = m.standby(self.now) or ""
        settled_at = self._settled_at()
        wanted = (
            m.session,
            not why,
            why,
            m.node,
            self.now >= settled_at,
            m.vip,
            m.vip_problem or "",
        )
        if m.published == wanted:
            later = [t for t in (m.hold_until, m.vip_hold_until, settled_at) if t > self.now]
            return min(later) if later else None
        if self.now < m.publish_at:
            return m.publish_at
        self.out.append(Publish(*wanted))
        self.set(publish_at=float("inf"))  # until its outcome
        return None

    def _member_view(self) -> tuple[str, bool, str, str, str]:
        """What the member entry says now: state, eligible, why not, session, node."""
        m = self.m
        if m.session is None:
            why = m.gate or "no session yet (the Consul agent has not given one)"
        else:
            why = m.standby(self.now) or ""
        eligible = m.role in (Role.FOLLOWER, Role.LEADER) and m.session is not None and not why
        return m.role.value, eligible, why[:200], m.session or "", m.node

    def _prefix_refused(self) -> float | None:
        """While our candidacy entry cannot be written (the token lacks key_prefix
        write on the trigger-key, which the member entry and the history need as
        well), those two wait for it: one writer backs off, not three."""
        m = self.m
        if m.session is None or m.publish_failures == 0:
            return None
        retry = m.publish_at if m.publish_at != float("inf") else self.now + IDLE
        return max(retry, self.now + PUBLISH_RETRY)

    def _report(self) -> float | None:
        m = self.m
        if m.stop is not None and not m.finished:
            return None  # not between a stop's blank and its hand-over: after the release
        refused = self._prefix_refused()
        if refused is not None:
            return refused
        if m.reporting:
            return None  # its outcome comes next
        wanted = self._member_view()
        due = m.report_at if m.reported == wanted else m.report_soonest
        if self.now < due:
            return due
        self.out.append(Report(*wanted))
        self.set(reporting=True)
        return None

    def _history(self) -> float | None:
        m = self.m
        if m.stop is not None and not m.finished:
            return None  # after the release, as the member report
        refused = self._prefix_refused()
        if refused is not None:
            return refused
        if not m.chronicle or m.chronicle_sending:
            return None
        if self.now < m.chronicle_at:
            return m.chronicle_at
        self.out.append(AppendHistory(m.chronicle))
        self.set(chronicle_sending=len(m.chronicle))
        return None

    def _members_read(self, members: Mapping[str, Member], at: float) -> None:
        """The member entries of a tree read started at ``at``; a removal is
        forgotten once a read no longer shows that entry (removed, or written
        again since)."""
        reaped = {
            value: index
            for value, index in self.m.reaped.items()
            if value in members and members[value].modify_index == index
        }
        seen: dict[str, tuple[int, float]] = {}
        for value, member in members.items():
            index, first = self.m.members_seen.get(value, (-1, at))
            seen[value] = (member.modify_index, first if index == member.modify_index else at)
        self.set(members=dict(members), reaped=reaped, members_seen=seen)

    def _reap(self) -> float | None:
        """The leader removes the member entries of nodes gone for good (as Consul
        reaps a failed node after its reconnect_timeout): with cas, so that a node
        that reported meanwhile keeps its entry; never our own, never one whose
        value has a live session (a candidacy entry, or the session it names).

        The entry's ``at`` is the writer's wall clock, which may be days off: it
        is also required that this leader has seen the entry unchanged for
        MEMBER_STALE of its heartbeats (a node that reports rewrites it every
        heartbeat, which the leader's read of the prefix sees at once, and the
        cas delete is refused after such a write: its entry is never removed,
        whatever its clock says). One
        removal at a time (each may wait for Consul's timeout on the election
        thread), none while the lock is being handed over, given up or the
        daemon stops."""
        m = self.m
        if not m.leading:
            if m.members or m.reaped or m.members_seen or m.reap_at or "reap" in m.said:
                self.set(members={}, reaped={}, members_seen={}, reap_at=0.0)
                self.forget_said("reap")
            return None
        if (
            m.reaping
            or m.stop is not None
            or m.handover is not None
            or m.leaving is not None
            or m.step_down is not None
            or m.move_from is not None
        ):
            return None
        refused = self._prefix_refused()
        if refused is not None:
            return refused
        if self.now < m.reap_at:
            return m.reap_at
        live = {c.session for c in m.candidates.values()}
        wake: float | None = None
        for value, member in sorted(m.members.items()):
            if (
                value == self.rules.value
                or value in m.candidates
                or (member.session and member.session in live)
                or m.reaped.get(value) == member.modify_index
                or not member.gone_for_good(m.wall)
            ):
                continue
            index, first = m.members_seen.get(value, (-1, self.now))
            unchanged_until = first + MEMBER_STALE * member.heartbeat
            if index != member.modify_index or self.now < unchanged_until:
                wake = unchanged_until if wake is None else min(wake, unchanged_until)
                continue
            self.out.append(ReapMember(member))
            self.set(reaped={**m.reaped, value: member.modify_index}, reaping=True)
            return None
        return wake

    def _done_reap_member(self, done: Done) -> None:
        action = done.action
        assert isinstance(action, ReapMember)
        member = action.member
        who = f"node {member.node or '?'} (value {member.value!r})"
        self.set(reaping=False)
        if done.result == "skipped":
            # Not sent: it may be chosen again at the next step.
            self.set(reaped={k: v for k, v in self.m.reaped.items() if k != member.value})
            return
        if done.result == "ok":
            since = datetime.datetime.fromtimestamp(member.at, datetime.UTC)
            how = "stopped" if member.state == "stopped" else "silent"
            self.log(
                "info",
                f"removed the member entry of {who}: {how} since "
                f"{since:%Y-%m-%d %H:%M:%S} UTC (last said: {member.state}), longer than "
                f"{MEMBER_REAP / 3600:g} h; `vip-elector status` no longer lists it (it "
                "comes back when that node's vip-elector runs again)",
                "member_reaped",
            )
            self.forget_said("reap")
        elif done.result == "refused":
            self.log(
                "debug",
                f"kept the member entry of {who}: it was written again since it was read",
                "member_kept",
            )
        else:
            self.set(
                reaped={k: v for k, v in self.m.reaped.items() if k != member.value},
                reap_at=self.now + PUBLISH_RETRY_MAX,
            )
            text = (
                f"cannot remove the member entry of {who}: {done.detail}; retrying in "
                f"{_fmt(PUBLISH_RETRY_MAX)}"
            )
            if "reap" in self.m.said:
                # One warning until a removal succeeds, whichever entry failed.
                self.log("debug", text, "member_unreaped")
            else:
                self.say_once("reap", text, "warning", "member_unreaped")

    # -- leading -------------------------------------------------------------------------
    def _lead(self) -> float:
        m, key, now = self.m, self.m.key, self.now
        assert key is not None
        if m.session is None:
            return now + IDLE  # waiting for a session to move the lock to
        if m.move_from is not None and key.session == m.move_from:
            return now + IDLE  # still the old session's until the move
        if m.loss is not None:
            return now + IDLE  # explaining the loss
        # Our own blank: a hand-over under way, a step-down that replaced one, or
        # one whose restore is still due (a failed hand-over, a lost answer).
        ours = m.handover is not None or m.leaving is not None or m.blanked
        blank_ok = ours and key.value in (None, b"")
        problem = ownership_problem(key, m.session, self.rules.value_bytes)
        if problem is not None and not (blank_ok and problem[0] == Cause.KEY_CHANGED):
            if problem[0] == Cause.KEY_CHANGED:
                # Somebody wrote into our lock: free it, keep their value.
                self.out.append(UnlockKeeping(m.session, key))
            if problem[0] == Cause.KEY_DELETED and m.leaving is None:
                self.set(loss=problem, fence_until=0.0)
                self.out.append(CheckSession(m.session))
                return now + IDLE
            self._lost(*problem)
            return now + IDLE
        self.set(held_index=key.modify_index)
        if m.blanked and m.handover is None and m.leaving is None:
            if key.value in (None, b""):
                self._put_value_back()
                return now + IDLE
            self.set(blanked=False)
        if m.leaving is not None:
            return self._step_down()
        if m.handover is not None:
            self._refuse_during_hand_over()
            return self._hand_over()
        reason = self._why_leave()
        if reason is not None and self._leave_by_hand_over(*reason):
            return now + IDLE
        if reason is not None:
            cause, detail, role = reason
            self.set(leaving=Leaving(cause, detail, role), fence_until=0.0, step_down=None)
            self.log(
                "info",
                f"stepping down ({cause.value}): deleting the trigger-key at index "
                f"{key.modify_index}",
                "stepping_down",
            )
            return self._step_down()
        wake = self._switchover()
        if self.m.handover is not None:
            return wake
        wake = min(wake, self._preemption())
        if self.m.handover is not None:
            return wake
        if m.conflict not in (0, m.conflict_checked):
            # A follower says another node has our value: both vip-managers would
            # add the VIP. Check (a flag is only a hint).
            self.set(conflict_checked=m.conflict)
            self.out.append(CheckRivals(m.session, flag=False))
        return wake

    def _why_leave(self) -> tuple[Cause, str, Role] | None:
        m = self.m
        if m.maintenance is not None:
            return Cause.MAINTENANCE, m.maintenance, Role.MAINTENANCE
        if m.duplicate is not None:
            return Cause.DUPLICATE_VALUE, m.duplicate, Role.FOLLOWER
        if m.step_down is not None:
            return Cause.STEP_DOWN, m.step_down, Role.FOLLOWER
        return self._vip_step_down()

    def _vip_step_down(self) -> tuple[Cause, str, Role] | None:
        """--step-down-without-vip: a leader without its VIP past the grace leaves
        the lock to another eligible candidate and holds back (VIP_STEP_DOWN_HOLD);
        with none, stepping down would leave the VIP nowhere: it keeps the lock."""
        m, rules = self.m, self.rules
        missing = (
            m.vip_problem is not None and m.vip_wrong is not None and m.vip_wrong[0] == "missing"
        )
        if not (rules.step_down_without_vip and missing):
            self.forget_said("vip_alone")
            return None
        request = m.request
        if request is not None and not request.refused and request.modify_index != m.request_done:
            return None  # a switchover asked for: it hands the VIP over, a delete would not
        assert m.vip_wrong is not None
        due = m.vip_wrong[1] + rules.vip_grace  # later than reported, after failed reads
        if m.read_ok_at < due:
            # Consul must answer now, and not for the first time after failures,
            # with the candidates as they are now (a new leader's may be old): a
            # read of our own, and the step-down on its answer.
            if self.now >= due and (m.vip_read_asked is None or m.vip_read_asked < due):
                self.set(vip_read_asked=self.now)
                self.out.append(ReadKey(tree=True))
            return None
        target = best_other(dict(m.candidates), rules.value)
        if target is None:
            self.say_once(
                "vip_alone",
                f"{m.vip_problem}, and no other eligible candidate to step down to: keeping "
                "the lock (--step-down-without-vip); check vip-manager here (`systemctl status "
                "vip-manager`, its interface and its log)",
                "warning",
                "vip_step_down_alone",
            )
            return None
        self.forget_said("vip_alone")
        hold = max(VIP_STEP_DOWN_HOLD, 2 * (rules.handover_gap + rules.vip_grace))
        reason = f"stepped down without its VIP; competing again after {_fmt(hold)}"
        self.set(vip_hold_until=self.now + hold, vip_hold_reason=reason)
        self.log(
            "warning",
            f"{m.vip_problem}: stepping down so that {target.value!r} can take the VIP "
            f"(--step-down-without-vip), and staying out for {_fmt(hold)}; check vip-manager "
            "here (`systemctl status vip-manager`, its interface and its log)",
            "vip_step_down",
        )
        return Cause.VIP_MISSING, f"{m.vip_problem}; {reason}", Role.FOLLOWER

    def _step_down(self) -> float:
        m, key = self.m, self.m.key
        assert m.leaving is not None
        assert key is not None
        assert m.session is not None
        if self.now < m.leaving.retry_at:
            return m.leaving.retry_at
        self.out.append(Delete(m.session, key.modify_index))
        self.set(leaving=replace(m.leaving, retry_at=float("inf")))
        return self.now + IDLE

    def _leave_target(self) -> Candidate | None:
        """Who a leader that leaves (stop, step-down, maintenance) hands the lock
        to: the best eligible candidate, only while the address watch sees the VIP
        here (else deleting at once is as fast, and the others wait the gap)."""
        if self.m.vip is not True or self.m.session is None:
            return None
        return best_other(dict(self.m.candidates), self.rules.value)

    def _leave_by_hand_over(self, cause: Cause, detail: str, role: Role) -> bool:
        """Step-down or maintenance: hand the lock over instead of deleting it."""
        if cause not in (Cause.STEP_DOWN, Cause.MAINTENANCE):
            return False  # a duplicate value: delete at once, the other node may take it
        target = self._leave_target()
        if target is None:
            return False
        self.set(step_down=None)
        self._start_hand_over(target, cause, "", leave=(role, detail))
        return True

    def _hand_over(self) -> float:
        """Blank sent: wait until the VIP is seen gone from this host, at most the
        hand-over gap (vip-manager's interval + margin), then hand the lock over."""
        handover, session = self.m.handover, self.m.session
        assert handover is not None
        assert session is not None
        if handover.blanked_at is None:
            return self.now + IDLE  # the blank's outcome comes next
        if handover.handed:
            return self.now + IDLE  # its outcome comes next
        if not self._hand_to_due():
            return handover.blanked_at + self.rules.handover_gap
        if not handover.vip_gone and self.m.vip is True:
            self.log(
                "warning",
                f"the VIP is still on this host {_fmt(self.rules.handover_gap)} after the key "
                f"was blanked; handing the lock to {handover.target.value!r} anyway. Check "
                "vip-manager on this host (is it running, is its interval what "
                "--vip-manager-config says, may it remove the address?)",
                "vip_still_seen",
            )
        self.set(handover=replace(handover, handed=True))
        # The VIP seen gone changes our entry too: the lock goes first (one Consul
        # write sooner to the target), the entry right after it.
        self._ahead_of_entries(HandTo(session, handover.target))
        return self.now + IDLE

    def _ahead_of_entries(self, write: Action) -> None:
        """A hand-over's write to the key goes out before the candidacy entry this
        step wrote (Publish): the target waits for the key, not for our entry."""
        entries = [a for a in self.out if isinstance(a, Publish)]
        self.out[:] = [a for a in self.out if not isinstance(a, Publish)]
        self.out.append(write)
        self.out.extend(entries)

    def _hand_to_due(self) -> bool:
        """The hand-over's lock goes to its target now: the blank is done, and the
        VIP was seen gone or the gap is over."""
        handover = self.m.handover
        if handover is None or handover.blanked_at is None or handover.handed:
            return False
        return handover.vip_gone or self.now >= handover.blanked_at + self.rules.handover_gap

    def _refuse_during_hand_over(self) -> None:
        """A second switchover while one runs is answered at once, not lost."""
        request, handover = self.m.request, self.m.handover
        if request is None or request.refused or request.modify_index == self.m.request_done:
            return
        assert handover is not None
        self.set(request_done=request.modify_index)
        reason = f"another hand-over (to {handover.target.value!r}) is in progress"
        self.log(
            "warning",
            f"switchover to {request.to!r} (asked by {request.by}) refused: {reason}",
            "switchover_refused",
        )
        self.out.append(RefuseRequest(request, reason))

    def _start_hand_over(
        self,
        target: Candidate,
        cause: Cause,
        by: str,
        request: SwitchoverRequest | None = None,
        leave: tuple[Role, str] | None = None,
    ) -> None:
        assert self.m.session is not None
        asked = {
            Cause.SWITCHOVER: f" (switchover asked by {by})",
            Cause.PREEMPTED: " (preemption)",
        }.get(cause, f" ({cause.value})")
        self.log(
            "info",
            f"handing the VIP to {target.value!r}{asked}: the key is blanked now, and goes to "
            f"{target.value!r}'s session once vip-manager here has dropped the VIP (at most "
            f"{_fmt(self.rules.handover_gap)})",
            "handing_over",
        )
        role, detail = leave if leave is not None else (Role.FOLLOWER, "")
        handover = HandOver(
            target, cause, request=request, role=role, leave=leave is not None, detail=detail
        )
        # /leader says no before the key changes.
        self.set(handover=handover, fence_until=0.0)
        # The blank is the first write after the fence drops: /leader answers
        # vip-manager's held request with 503 at once, and a VIP seen gone counts
        # only once the blank was sent. Our entry, changed in this step (a
        # step-down's hold), went first and the VIP left before the blank: the
        # hand-over waited its whole gap. Now the entry follows the blank.
        self._ahead_of_entries(Blank(self.m.session))

    def _switchover(self) -> float:
        m = self.m
        request = m.request
        if request is None or request.refused or request.modify_index == m.request_done:
            return self.now + IDLE  # none, answered already, or dealt with
        self.set(request_done=request.modify_index)
        target, refusal = switchover_refusal(request, m.candidates, self.rules.value, m.wall)
        if target is None and not request.to:
            # Unreadable: the protocol layer warned about it once; just drop it.
            self.out.append(DropRequest(request))
            return self.now + IDLE
        if target is None:
            self.log(
                "warning",
                f"switchover to {request.to!r} (asked by {request.by}) refused: {refusal}",
                "switchover_refused",
            )
            self.out.append(RefuseRequest(request, refusal))
            return self.now + IDLE
        self._start_hand_over(target, Cause.SWITCHOVER, request.by, request)
        return self.now + IDLE

    def _preemption(self) -> float:
        delay = self.rules.preempt_delay
        if delay is None or not self.m.better_since:
            return self.now + IDLE
        ready = {
            v: c
            for v, c in self.m.candidates.items()
            if v in self.m.better_since and self.now >= self.m.better_since[v] + delay
        }
        target = best_other(ready, self.rules.value)
        if target is None:
            return min(self.m.better_since.values()) + delay
        self._start_hand_over(target, Cause.PREEMPTED, "")
        return self.now + IDLE

    # -- following -------------------------------------------------------------------
    def _follow(self) -> float:
        m, key, now = self.m, self.m.key, self.now
        assert key is not None
        if m.session is None:
            return now + IDLE
        if m.move_from is not None and key.session == m.move_from:
            return now + IDLE  # the old session's until the move
        if self.ours(key):
            if key.session == m.session and (
                key.value != self.rules.value_bytes or key.flags != LOCK_FLAG
            ):
                # Our session, not our value: a blank left by our own hand-over,
                # or a value written into our lock. Free it, keep any value.
                self.out.append(UnlockKeeping(m.session, key))
                return now + IDLE
            return self._become_leader(key)
        if key.held:
            return self._watch_holder(key)
        return self._compete(key)

    def _become_leader(self, key: KeyState) -> float:
        m = self.m
        adopted = m.adopting is not None and m.adopting == m.session
        since = m.leader_since if m.leader_since is not None else m.wall
        fence = 0.0
        if self.rules.fence_bound > 0 and m.acquire_started is not None and m.move_from is None:
            fence = m.acquire_started + self.rules.fence_bound  # the acquire proved it
        self.set(
            leading=True,
            leader_since=since,
            held_index=key.modify_index,
            other_value=None,
            other_left_at=None,
            fence_until=max(fence, m.fence_until if adopted else 0.0),
            acquire_started=None,
            rival=None,
            freed_at=None,
            refused=0,
            request_done=m.request.modify_index if m.request is not None else 0,
            conflict_checked=m.conflict,
        )
        self.transition(Role.LEADER, Cause.ADOPTED if adopted else Cause.ACQUIRED)
        if m.session is not None:
            self.out.append(Record(m.session, since))
        # The leader's rules at once: a lock adopted in maintenance (or with a
        # switchover waiting) must not wait for the key to change.
        return self.now

    def _watch_holder(self, key: KeyState) -> float:
        m, now = self.m, self.now
        assert key.session is not None
        assert m.session is not None
        if m.holder_lock_delay is None:
            self.out.append(LookUpLockDelay(key.session))
            self.set(holder_lock_delay=self.rules.lock_delay)  # until the answer says
        if key.value == self.rules.value_bytes:
            # Another session holds the key with *our* value: another node with our
            # trigger-value (both get the VIP), or an old session of ours on its way
            # out. Flag it: the leader steps down.
            if m.rivals_at is None or now >= m.rivals_at + RECHECK:
                self.set(rivals_at=now)
                self.out.append(CheckRivals(m.session, flag=True))
            self._refusal()
            return now + RECHECK
        return now + IDLE

    def _consul_maintenance_unknown(self) -> float | None:
        """Until the node watch answers, when to look again; None: go on.

        A new process (or generation) learns its node's Consul maintenance from
        the node watch, and after an agent outage its answer may be older than a
        `consul maint` made meanwhile: a free key is not taken before its next
        answer (sim F5, F6), for at most CONSUL_MAINTENANCE_WAIT.
        """
        m = self.m
        if m.consul_maintenance_known:
            self.forget_said("maintenance_unknown")
            return None
        asked = m.consul_maintenance_asked
        if asked is None:
            asked = self.now
            self.set(consul_maintenance_asked=asked)
        if self.now < asked + CONSUL_MAINTENANCE_WAIT:
            return asked + CONSUL_MAINTENANCE_WAIT
        self.say_once(
            "maintenance_unknown",
            "cannot tell whether Consul maintenance (`consul maint`) applies to this node: "
            "the local agent has not answered its node's checks in "
            f"{_fmt(CONSUL_MAINTENANCE_WAIT)}; competing without knowing (check the agent "
            "and the token's node read, docs/acl.md)",
            "warning",
            "consul_maintenance_unknown",
        )
        return None

    def _refusal(self) -> None:
        if self.m.rival is not None:
            self.say_once(
                "rival", f"not competing for the lock: {self.m.rival}", "error", "duplicate_value"
            )
        else:
            self.forget_said("rival")

    def _reread(self) -> float | None:
        """After a write of ours failed without an answer: the read that tells
        what it did, once its writes are sent, and again while it fails."""
        m = self.m
        if m.reread_at is None:
            return None
        if self.now < m.reread_at:
            return m.reread_at
        self.out.append(ReadKey(tree=m.leading))
        self.set(reread_at=None, rereads=m.rereads + 1)
        return None

    def _compete(self, key: KeyState) -> float:
        m, now, rules = self.m, self.now, self.rules
        assert m.session is not None
        assert m.freed_at is not None
        if not m.watching:
            return now + IDLE  # the next read (the watch retries) says how the key is
        reason = m.standby(now)
        if m.in_vip_hold(now):
            # Defer to the other eligible nodes only: read who they are again every
            # RECHECK; with none (their checks failed, their daemons stopped), take it.
            if m.candidates_at is None or now >= m.candidates_at + RECHECK:
                self.set(candidates_at=now)
                self.out.append(LookUpCandidates(m.freed_at))
                return now + RECHECK
            if not m.others_eligible:
                self.say_once(
                    "standby",
                    f"{reason}, but no other node is eligible: competing for the lock",
                    "warning",
                    "hold_given_way",
                )
                self.set(vip_hold_gave_way=now)
                reason = None
        if reason is not None:
            self.say_once("standby", f"not competing for the lock: {reason}", "info", "standby")
            later = [t for t in (m.hold_until, m.vip_hold_until) if t > now]
            if m.in_vip_hold(now):
                # The others may fail to take the key: who is eligible is read again.
                later.append(now + RECHECK)
            return min(later) if later else now + RECHECK
        self.forget_said("standby")
        unknown = self._consul_maintenance_unknown()
        if unknown is not None:
            return unknown
        if m.rivals_at is None or now >= m.rivals_at + RECHECK:
            self.set(rivals_at=now)
            self.out.append(CheckRivals(m.session, flag=False))
            return now  # decide again with the answer
        self._refusal()
        if m.rival is not None:
            return m.rivals_at + RECHECK
        ready = max(now, m.acquire_at)
        if m.other_value is not None and m.other_value != rules.value_bytes:
            left = m.other_left_at if m.other_left_at is not None else now
            gap_ends = left + rules.handover_gap
            if gap_ends > now:
                shown = m.other_value.decode(errors="replace")[:80]
                self.say_once(
                    "gap",
                    f"the key was {shown!r}'s; acquiring in {_fmt(gap_ends - now)}, once its "
                    "vip-manager has dropped the VIP",
                    "debug",
                    "handover_gap",
                )
            ready = max(ready, gap_ends)
        if m.candidates_for != m.freed_at:
            self.out.append(LookUpCandidates(m.freed_at))
            return now
        if m.better is not None:
            hold = m.freed_at + max(self._holder_lock_delay(), rules.handover_gap) + PRIORITY_MARGIN
            if hold > now:
                self.say_once(
                    "hold_back",
                    f"leaving the free key to {m.better.value!r} (priority {m.better.priority} > "
                    f"{rules.priority}) for up to {_fmt(hold - now)}",
                    "info",
                    "priority_hold_back",
                )
            ready = max(ready, hold)
        if ready > now:
            return ready
        self.out.append(Acquire(m.session, key))
        # The outcome comes back at once; until then no second acquire.
        self.set(acquire_at=float("inf"))
        return now + IDLE
