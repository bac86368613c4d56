"""The decision core, rule by rule, with fabricated reads and a fake clock.

Each test builds what the election thread would have seen, calls ``decide``
and checks what it would do: no Consul, no threads, no sleeping (Patroni's
test_ha.py does this for its HA loop). The combinations the red-team round
found are at the end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TypeVar

from vip_elector.decision import (
    CONSUL_MAINTENANCE_WAIT,
    MEMBER_HEARTBEAT,
    REPORT_MIN_GAP,
    Acquire,
    Action,
    AdoptFailed,
    AppendHistory,
    Blank,
    CandidatesRead,
    CheckRivals,
    CheckSession,
    ConsulMaintenance,
    Decision,
    Delete,
    Destroy,
    Discard,
    Done,
    DropRequest,
    Event,
    GateClosed,
    HandOver,
    HandTo,
    KeyRead,
    Leaving,
    LockDelayOf,
    Log,
    LookUpCandidates,
    LookUpLockDelay,
    MaintenanceFile,
    Memory,
    Move,
    Publish,
    ReadFailed,
    ReadKey,
    ReapMember,
    Record,
    RefuseRequest,
    Release,
    ReleaseKey,
    Report,
    Restore,
    Retire,
    RivalsChecked,
    Rules,
    SessionChecked,
    SessionDown,
    SessionUp,
    StepDownAsked,
    StopAsked,
    Tick,
    Transition,
    UnlockKeeping,
    VipSeen,
    decide,
)
from vip_elector.key_entries import (
    LOCK_FLAG,
    MEMBER_REAP,
    MEMBER_STALE,
    Candidate,
    KeyState,
    Member,
    SwitchoverRequest,
)
from vip_elector.roles import Cause, Role

RULES = Rules(value="a", key="svc/vip", handover_gap=1.2, lock_delay=1.0)
FENCED = Rules(value="a", key="svc/vip", handover_gap=1.2, lock_delay=5.0, fence_bound=3.6)
OURS = "sess-a"
B = Candidate("b", "sess-b", priority=100, eligible=True)
C = Candidate("c", "sess-c", priority=100, eligible=True)
WALL = 1_000_000.0
A = TypeVar("A")


def free(index: int = 10) -> KeyState:
    return KeyState(index=index, exists=False)


def held(session: str, value: bytes, index: int = 10) -> KeyState:
    return KeyState(index, True, value, LOCK_FLAG, session, modify_index=index)


def read(key: KeyState, at: float, **kw: object) -> KeyRead:
    return KeyRead(key, started=at, wall=WALL + at, **kw)  # type: ignore[arg-type]


class Run:
    """Feeds events to ``decide`` one at a time, answering nothing by itself but
    (unless ``reports``) the member reports and history appends, which it keeps
    in ``self.reports`` instead of returning them."""

    def __init__(
        self,
        rules: Rules = RULES,
        memory: Memory | None = None,
        reports: bool = False,
        node_watched: bool = True,
    ) -> None:
        self.rules = rules
        self.memory = memory or Memory()
        # node_watched: the node watch has answered (Consul maintenance known)
        self.memory = replace(self.memory, consul_maintenance_known=node_watched)
        self.actions: list[Action] = []
        self.reports: list[Report | AppendHistory] = []
        self.last: Decision | None = None
        self.show_reports = reports

    def __call__(self, event: Event, now: float) -> tuple[Action, ...]:
        self.last = decide(self.memory, event, now, self.rules)
        self.memory = self.last.memory
        self.actions.extend(self.last.actions)
        if self.show_reports:
            return self.last.actions
        shown: list[Action] = []
        wake = self.last.wake_at
        for action in self.last.actions:
            if isinstance(action, (Report, AppendHistory)):
                self.reports.append(action)
                if not action.final:
                    shown += self(Done(action, "ok"), now)
            else:
                shown.append(action)
        assert self.last is not None
        self.last = Decision(self.memory, tuple(shown), min(wake, self.last.wake_at))
        return tuple(shown)

    @property
    def wake(self) -> float:
        assert self.last is not None
        return self.last.wake_at


def of(kind: type[A], actions: Iterable[object]) -> list[A]:
    return [a for a in actions if isinstance(a, kind)]


def follower(rules: Rules = RULES, at: float = 0.0) -> Run:
    """A follower with a session, published, that has watched the key all along."""
    run = Run(rules, Memory(watching=True))
    run(SessionUp(OURS, node="node-a"), at)
    for action in of(Publish, run.actions):
        run(Done(action, "ok"), at)
    return run


def no_rivals(
    run: Run,
    actions: Iterable[Action],
    now: float,
    candidates: dict[str, Candidate] | None = None,
) -> tuple[Action, ...]:
    """Answer the lookups a free key triggers (no rivals, no better candidate, or
    ``candidates``)."""
    out: list[Action] = []
    pending = list(actions)
    while pending:
        action = pending.pop(0)
        out.append(action)
        if isinstance(action, CheckRivals):
            pending += run(RivalsChecked(None), now)
        elif isinstance(action, LookUpCandidates):
            pending += run(CandidatesRead(candidates or {}, action.freed_at), now)
        elif isinstance(action, LookUpLockDelay):
            pending += run(LockDelayOf(action.session, 1.0), now)
    return tuple(out)


def leader(rules: Rules = RULES, at: float = 0.0) -> Run:
    run = follower(rules, at)
    actions = no_rivals(run, run(read(free(), at), at), at)
    acquire = of(Acquire, actions)[0]
    run(Done(acquire, "ok", started=at), at)
    run(read(held(OURS, b"a", 11), at, consistent=True, tree=True), at)
    assert run.memory.leading
    return run


# -- role, candidacy ---------------------------------------------------------------


def test_a_session_makes_a_follower_that_publishes_its_candidacy() -> None:
    run = Run()
    actions = run(SessionUp(OURS, node="node-a"), 0.0)
    assert Transition(Role.FOLLOWER, Cause.SESSION_CREATED, f"session {OURS}") in actions
    assert Publish(OURS, True, "", "node-a") in actions


def test_a_refusing_health_gate_is_fault() -> None:
    run = Run()
    actions = run(GateClosed("check 'web' is critical"), 0.0)
    assert Transition(Role.FAULT, Cause.CHECK, "check 'web' is critical") in actions


def test_a_failing_publish_backs_off_instead_of_retrying_every_half_second() -> None:
    run = Run()
    publish = of(Publish, run(SessionUp(OURS), 0.0))[0]
    delays = []
    now = 0.0
    for _ in range(8):
        run(Done(publish, "failed", "Permission denied"), now)
        delays.append(run.memory.publish_at - now)
        now = run.memory.publish_at
        publish = of(Publish, run(Tick(), now))[0]
    assert delays[0] == 0.5
    assert delays == sorted(delays)
    assert delays[-1] == 30.0
    # One ERROR for the lasting problem, not one per attempt.
    assert len([a for a in run.actions if isinstance(a, Log) and a.level == "error"]) == 1


def test_an_earlier_runs_session_holding_our_entry_is_destroyed_and_we_publish_again() -> None:
    # SIGKILLed with its runtime record lost: its session keeps our candidacy entry
    # (nobody sees this node as a candidate, a switchover could hand the lock to a
    # dead session) until its TTL ran twice, unless we destroy it.
    run = Run(RULES, Memory(watching=True))
    publish = of(Publish, run(SessionUp(OURS, node="node-a"), 0.0))[0]
    actions = run(Done(publish, "orphan", "sess-old"), 0.0)
    assert [a.event for a in of(Log, actions)] == ["orphan_session"]
    assert Destroy("sess-old") in actions + run(Tick(), 0.0)
    assert not of(Publish, run(Tick(), 0.4))
    run(Done(Destroy("sess-old"), "ok"), 0.4)
    assert of(Publish, run(Tick(), 0.5)) == [publish]
    assert run.memory.publish_failures == 0


def test_maintenance_makes_a_follower_ineligible_and_republishes() -> None:
    run = follower()
    actions = run(MaintenanceFile("maintenance file /x exists"), 1.0)
    assert Transition(Role.MAINTENANCE, Cause.MAINTENANCE, "maintenance file /x exists") in actions
    assert Publish(OURS, False, "maintenance file /x exists", "node-a") in actions


# -- following ------------------------------------------------------------------------


def test_a_free_key_is_acquired_at_once_when_nobody_else_held_it() -> None:
    run = follower()
    actions = no_rivals(run, run(read(free(), 1.0), 1.0), 1.0)
    assert of(Acquire, actions) == [Acquire(OURS, free())]


def test_a_key_free_at_the_first_look_or_after_failed_reads_waits_the_gap() -> None:
    """Found by the simulation (F1, seeds 21, 183, 222): a node that never saw who
    held the key last took it at once while that node's vip-manager held the VIP."""
    run = Run(RULES)
    run(SessionUp(OURS), 0.0)
    actions = no_rivals(run, run(read(free(), 0.1), 0.1), 0.1)
    assert not of(Acquire, actions)
    assert run.wake == 0.1 + 1.2
    run = follower()
    no_rivals(run, run(read(free(), 0.0), 0.0), 0.0)  # watched: at once
    actions = no_rivals(run, run(read(free(20), 5.0, resumed=True), 5.0), 5.0)
    assert run.memory.other_left_at == 5.0


def test_a_plain_key_is_never_acquired_and_said_once() -> None:
    run = follower()
    plain = KeyState(5, True, b"x", 0, None, modify_index=5)
    first = run(read(plain, 1.0), 1.0)
    again = run(read(plain, 2.0), 2.0)
    assert not of(Acquire, first + again)
    assert len(of(Log, first)) == 1
    assert "pre-flight" in of(Log, first)[0].message
    assert not of(Log, again)


def test_the_hand_over_gap_counts_from_when_another_nodes_value_left() -> None:
    run = follower()
    run(read(held("sess-b", b"b"), 1.0), 1.0)
    actions = no_rivals(run, run(read(free(12), 2.0), 2.0), 2.0)
    assert not of(Acquire, actions)
    assert run.wake == 2.0 + 1.2
    assert of(Acquire, no_rivals(run, run(Tick(), 3.2), 3.2))


def test_after_a_refusal_the_acquire_waits_for_the_holders_lock_delay() -> None:
    run = follower()
    run(read(held("sess-b", b"b"), 0.0), 0.0)
    run(LockDelayOf("sess-b", 5.0), 0.0)
    no_rivals(run, run(read(free(12), 1.0), 1.0), 1.0)
    acquire = of(Acquire, no_rivals(run, run(Tick(), 2.2), 2.2))[0]
    run(Done(acquire, "refused"), 2.2)
    assert run.memory.acquire_at == 1.0 + 5.0 + 0.02
    assert not of(Acquire, no_rivals(run, run(Tick(), 5.0), 5.0))
    assert of(Acquire, no_rivals(run, run(Tick(), 6.02), 6.02))


def test_a_refusal_past_the_estimate_backs_off() -> None:
    run = follower()
    no_rivals(run, run(read(free(), 0.0), 0.0), 0.0)
    acquire = of(Acquire, run.actions)[0]
    run(Done(acquire, "refused"), 5.0)  # long past our 1 s guess
    assert 5.0 < run.memory.acquire_at <= 6.0


def test_a_follower_that_lost_the_race_watches_the_winner() -> None:
    run = follower()
    no_rivals(run, run(read(free(), 0.0), 0.0), 0.0)
    acquire = of(Acquire, run.actions)[0]
    run(Done(acquire, "refused"), 0.0)
    actions = run(read(held("sess-c", b"c", 12), 0.01, early=True), 0.01)
    assert LookUpLockDelay("sess-c") in actions
    # The winner steps down at once: we take it after the gap, not lock-delay.
    no_rivals(run, run(read(free(13), 0.3, early=True), 0.3), 0.3)
    assert run.memory.acquire_at == 0.0
    assert run.wake == 0.3 + 1.2


def test_a_key_taken_and_freed_between_two_reads_waits_the_gap_from_now() -> None:
    run = follower()
    no_rivals(run, run(read(free(), 0.0), 0.0), 0.0)
    acquire = of(Acquire, run.actions)[0]
    run(Done(acquire, "refused"), 0.0)
    actions = no_rivals(run, run(read(free(14), 0.5, early=True), 0.5), 0.5)
    assert not of(Acquire, actions)
    assert run.memory.other_left_at == 0.5


def test_a_better_candidate_gets_the_free_key_first() -> None:
    run = follower()
    better = Candidate("z", "sess-z", priority=200, eligible=True)
    actions = run(read(free(), 1.0), 1.0)
    actions = run(RivalsChecked(None), 1.0)
    lookup = of(LookUpCandidates, actions)[0]
    actions = run(CandidatesRead({"z": better}, lookup.freed_at), 1.0)
    assert not of(Acquire, actions)
    assert run.wake == 1.0 + 1.2 + 1.0  # max(lock-delay, gap) + margin


def test_another_node_with_our_value_is_flagged_and_refused() -> None:
    run = follower()
    actions = run(read(held("sess-x", b"a"), 1.0), 1.0)
    assert CheckRivals(OURS, flag=True) in actions
    actions = run(RivalsChecked("node(s) x also compete"), 1.0)
    assert any(isinstance(a, Log) and "also compete" in a.message for a in actions)
    actions = no_rivals(run, run(read(free(12), 1.5), 1.5), 1.5)
    assert not of(Acquire, actions)


def test_maintenance_keeps_a_follower_out_of_a_free_key() -> None:
    run = follower()
    run(MaintenanceFile("maintenance file /x exists"), 0.0)
    actions = no_rivals(run, run(read(free(), 1.0), 1.0), 1.0)
    assert not of(Acquire, actions)


# -- leading ---------------------------------------------------------------------------


def test_an_acquire_then_a_read_of_our_key_makes_the_leader() -> None:
    run = leader()
    assert any(
        isinstance(a, Transition) and a.role == Role.LEADER and a.cause == Cause.ACQUIRED
        for a in run.actions
    )
    assert of(Record, run.actions)


def test_consistent_reads_extend_the_fence_from_their_start() -> None:
    run = leader(FENCED)
    assert run.memory.fence_until == 3.6  # the acquire at 0 proved it
    run(read(held(OURS, b"a", 11), 2.0, consistent=True, tree=True), 2.1)
    assert run.memory.fence_until == 2.0 + 3.6
    run(read(held(OURS, b"a", 11), 3.0), 3.1)  # not consistent: no proof
    assert run.memory.fence_until == 5.6


def test_a_key_deleted_under_us_is_explained_before_it_is_called_lost() -> None:
    run = leader()
    actions = run(read(free(20), 5.0, consistent=True, tree=True), 5.0)
    assert actions == (CheckSession(OURS),)
    actions = run(SessionChecked(OURS, alive=False), 5.0)
    (lost,) = of(Transition, actions)
    assert lost.role == Role.FOLLOWER
    assert lost.cause == Cause.SESSION_LOST
    assert of(Discard, actions)


def test_sigusr1_deletes_the_key_and_the_node_stays_out_for_the_hold() -> None:
    run = leader()
    asked = run(StepDownAsked("SIGUSR1; competing again at 12:00:10 (after 10s)", 10.0), 1.0)
    assert Delete(OURS, 11) in asked
    assert run.memory.fence_until == 0.0
    run(Done(Delete(OURS, 11), "ok"), 1.0)
    actions = run(read(free(12), 1.1, consistent=True, tree=True), 1.1)
    assert any(isinstance(a, Transition) and a.cause == Cause.STEP_DOWN for a in actions)
    assert not run.memory.leading


def test_a_refused_step_down_delete_is_sent_again_at_the_current_index() -> None:
    run = leader()
    run(StepDownAsked("SIGUSR1", 10.0), 1.0)
    run(Done(Delete(OURS, 11), "refused"), 1.0)
    actions = run(read(held(OURS, b"a", 15), 1.1, consistent=True, tree=True), 1.1)
    assert Delete(OURS, 15) in actions


def test_sigusr1_on_a_follower_says_so_and_does_nothing() -> None:
    run = follower()
    actions = run(StepDownAsked("SIGUSR1", 10.0), 1.0)
    assert of(Log, actions)[0].event == "step_down_ignored"
    assert run.memory.hold_until == 0.0


def test_a_switchover_blanks_waits_the_gap_then_hands_the_lock_over() -> None:
    run = leader()
    request = SwitchoverRequest("b", "ops", WALL + 1.0, 30)
    actions = run(
        read(
            held(OURS, b"a", 11),
            1.0,
            consistent=True,
            tree=True,
            candidates={"b": B},
            request=request,
        ),
        1.0,
    )
    assert Blank(OURS) in actions
    assert run.memory.fence_until == 0.0
    run(Done(Blank(OURS), "ok"), 1.0)
    assert not of(HandTo, run(Tick(), 2.0))
    actions = run(Tick(), 2.2)
    assert HandTo(OURS, B) in actions
    actions = run(Done(HandTo(OURS, B), "ok"), 2.2)
    assert any(isinstance(a, Transition) and a.cause == Cause.SWITCHOVER for a in actions)


def test_a_switchover_whose_target_went_away_puts_our_value_back() -> None:
    run = leader()
    request = SwitchoverRequest("b", "ops", WALL + 1.0, 30)
    run(
        read(
            held(OURS, b"a", 11),
            1.0,
            consistent=True,
            tree=True,
            candidates={"b": B},
            request=request,
        ),
        1.0,
    )
    run(Done(Blank(OURS), "ok"), 1.0)
    run(Tick(), 2.2)
    actions = run(Done(HandTo(OURS, B), "refused"), 2.2)
    assert Restore(OURS) in actions
    assert run.memory.leading


def test_switchover_requests_that_cannot_be_honoured_are_answered_with_why() -> None:
    cases = {
        "stale": SwitchoverRequest("b", "ops", WALL - 60, 30),
        "already": SwitchoverRequest("a", "ops", WALL + 1, 31),
        "no live candidate": SwitchoverRequest("q", "ops", WALL + 1, 32),
    }
    for words, request in cases.items():
        run = leader()
        actions = run(
            read(
                held(OURS, b"a", 11),
                1.0,
                consistent=True,
                tree=True,
                candidates={"b": B},
                request=request,
            ),
            1.0,
        )
        (refusal,) = of(RefuseRequest, actions)  # answered, for the asker to print
        assert refusal.request == request, words
        assert words.split()[0] in refusal.reason, words
        assert not of(Blank, actions)


def test_preemption_waits_for_the_better_candidate_to_stay_eligible() -> None:
    rules = Rules(value="a", handover_gap=1.2, preempt_delay=3.0)
    run = leader(rules)
    better = Candidate("z", "sess-z", priority=200, eligible=True)
    tree = {"consistent": True, "tree": True, "candidates": {"z": better}}
    run(read(held(OURS, b"a", 11), 1.0, **tree), 1.0)
    assert run.wake == 4.0
    assert Blank(OURS) in run(Tick(), 4.0)


def test_a_conflict_flag_is_checked_and_a_duplicate_steps_down() -> None:
    run = leader()
    actions = run(read(held(OURS, b"a", 11), 1.0, consistent=True, tree=True, conflict=40), 1.0)
    assert CheckRivals(OURS, flag=False) in actions
    actions = run(RivalsChecked("node(s) x also compete"), 1.0)
    assert Delete(OURS, 11) in actions


def test_a_value_written_into_our_lock_is_kept_and_the_lock_freed() -> None:
    run = leader()
    changed = held(OURS, b"manual", 12)
    actions = run(read(changed, 1.0, consistent=True, tree=True), 1.0)
    assert UnlockKeeping(OURS, changed) in actions
    assert any(isinstance(a, Transition) and a.cause == Cause.KEY_CHANGED for a in actions)


def test_a_session_lost_while_leading_is_a_loss_and_is_destroyed() -> None:
    run = leader()
    actions = run(SessionDown(OURS, Cause.RENEW_TIMEOUT, "no renewal"), 1.0)
    assert Transition(Role.FOLLOWER, Cause.RENEW_TIMEOUT, "no renewal") in actions
    assert Destroy(OURS) in actions


def test_ended_sessions_are_destroyed_and_retried() -> None:
    run = follower()
    actions = run(SessionDown("old", Cause.SESSION_LOST, "gone"), 1.0)
    assert Destroy("old") in actions
    run(Done(Destroy("old"), "failed", "500"), 1.0)
    assert Destroy("old") in run(Tick(), 2.0)
    run(Done(Destroy("old"), "ok"), 2.0)
    assert "old" not in run.memory.doomed


def test_stop_releases_the_key_we_hold_and_every_session() -> None:
    run = leader()
    run(SessionDown("old", Cause.SESSION_LOST, "gone"), 1.0)
    run(Done(Destroy("old"), "failed"), 1.0)
    actions = run(StopAsked(), 1.5)
    assert Transition(Role.STOPPING, Cause.SHUTDOWN) in actions
    assert Release((OURS, "old"), (OURS, 11)) in actions
    assert run.memory.finished


def test_retire_keeps_the_key_and_the_fence_only_when_asked() -> None:
    run = leader(FENCED)
    actions = run(StopAsked(retire=True, keep_fence=True), 1.0)
    assert Retire(()) in actions
    assert run.memory.fence_until > 0
    run = leader(FENCED)
    run(StopAsked(retire=True), 1.0)
    assert run.memory.fence_until == 0.0


def test_adopting_the_previous_runs_session_is_lock_kept() -> None:
    run = Run(memory=Memory(adopting="old", leader_since=123.0))
    run(SessionUp("old", node="node-a", adopted=True), 0.0)
    actions = run(read(held("old", b"a"), 0.1), 0.1)
    assert Transition(Role.LEADER, Cause.ADOPTED) in actions
    assert Record("old", 123.0) in actions


def test_a_changed_session_setting_moves_the_lock_to_the_new_session() -> None:
    run = Run(memory=Memory(move_from="old", leader_since=5.0))
    run(read(held("old", b"a"), 0.0), 0.0)
    actions = run(SessionUp("new"), 0.1)
    assert Move("old", "new") in actions
    run(Done(Move("old", "new"), "ok"), 0.1)
    actions = run(read(held("new", b"a", 12), 0.2), 0.2)
    assert Transition(Role.LEADER, Cause.ACQUIRED) in actions
    assert Destroy("old") in run.actions


# -- the red-team combinations -----------------------------------------------------------


def test_a_stop_inside_a_switchovers_gap_does_not_let_the_target_skip_the_gap() -> None:
    """22.1: A blanks for B, is stopped 0.4 s later and deletes the key. B saw
    A's value leave at the blank; its value must not appear sooner than the
    gap after that."""
    run = follower(Rules(value="b", handover_gap=1.2))
    run(read(held("sess-x", b"a", 11), 0.0), 0.0)
    run(read(held("sess-x", b"", 12), 0.05, early=True), 0.05)  # the blank
    actions = no_rivals(run, run(read(free(13), 0.45, early=True), 0.45), 0.45)
    assert not of(Acquire, actions)
    assert run.wake >= 0.05 + 1.2


def test_a_blank_freed_after_the_gap_still_waits_the_gap_from_the_freeing() -> None:
    """A failed hand-over puts the old value back, then a step-down deletes it a
    few ms later: B's reads see the blank, then the free key, never the value
    that was back for a moment; A's vip-manager may have added the VIP again.
    (The simulation's finding F7: two VIP holders.)"""
    run = follower(Rules(value="b", handover_gap=1.2))
    run(read(held("sess-x", b"a", 11), 0.0), 0.0)
    run(read(held("sess-x", b"", 12), 0.05, early=True), 0.05)  # the blank
    actions = no_rivals(run, run(read(free(14), 2.0, early=True), 2.0), 2.0)
    assert not of(Acquire, actions), "acquired at once: the restored value may be on A's VIP"
    assert run.wake >= 2.0 + 1.2


def test_a_node_that_starts_during_a_blank_still_waits_the_gap() -> None:
    run = follower(Rules(value="b", handover_gap=1.2))
    run(read(held("sess-x", b"", 12), 0.0), 0.0)
    actions = no_rivals(run, run(read(free(13), 0.3, early=True), 0.3), 0.3)
    assert not of(Acquire, actions)
    assert run.wake >= 1.2


def test_a_carried_fence_is_dropped_when_the_previous_session_is_not_adopted() -> None:
    """22.2: SIGUSR2 into a changed setting whose new session cannot be made:
    the key is released, and /leader must not say 200 on the old fence."""
    run = Run(FENCED, Memory(move_from="old", leader_since=5.0, fence_until=0.0))
    run(read(held("old", b"a"), 0.0), 0.0)
    actions = run(GateClosed("check 'missing' is not registered"), 0.1)
    assert ReleaseKey("old") in actions
    assert run.memory.fence_until == 0.0


def test_a_failed_adoption_releases_before_it_destroys_and_drops_the_fence() -> None:
    """22.6: the previous run's session is never destroyed while it holds the key."""
    run = Run(FENCED, Memory(adopting="old", fence_until=9.0))
    actions = run(AdoptFailed("old", "500 No cluster leader"), 0.0)
    assert actions.index(ReleaseKey("old")) < len(actions)
    assert run.memory.fence_until == 0.0
    destroy = run(Tick(), 0.1)
    assert Destroy("old") in actions + destroy


def test_consul_maintenance_after_adoption_steps_the_leader_down() -> None:
    """22.4: the adopted leader knows its node and follows Consul maintenance."""
    run = Run(memory=Memory(adopting="old"))
    actions = run(SessionUp("old", node="node-a", adopted=True), 0.0)
    assert Publish("old", True, "", "node-a") in actions
    run(read(held("old", b"a"), 0.1), 0.1)
    actions = run(ConsulMaintenance("the node is in Consul maintenance mode"), 0.2)
    assert Delete("old", 10) in actions


def test_no_acquire_before_the_node_watch_says_whether_consul_maintenance_applies() -> None:
    """Sim F5, F6: a process started on a node in `consul maint` took the free key
    before its node watch had answered (the name came late with the session, or
    never when reading the session back failed)."""
    run = Run(memory=Memory(watching=True), node_watched=False)
    run(SessionUp(OURS), 0.0)
    actions = no_rivals(run, run(read(free(), 0.1), 0.1), 0.1)
    assert not of(Acquire, actions), "acquired before knowing about Consul maintenance"
    assert run.wake == 0.1 + CONSUL_MAINTENANCE_WAIT
    actions = run(ConsulMaintenance("the node is in Consul maintenance mode"), 0.2)
    assert not of(Acquire, no_rivals(run, actions + run(Tick(), 30.0), 30.0))
    # The answer "no maintenance" lets it acquire in the same instant.
    run = Run(memory=Memory(watching=True), node_watched=False)
    run(SessionUp(OURS), 0.0)
    no_rivals(run, run(read(free(), 0.1), 0.1), 0.1)
    actions = no_rivals(run, run(ConsulMaintenance(None), 0.12), 0.12)
    assert of(Acquire, actions) == [Acquire(OURS, free())]


def test_a_node_watch_that_never_answers_delays_the_acquire_only_for_a_bound() -> None:
    run = Run(memory=Memory(watching=True), node_watched=False)
    run(SessionUp(OURS), 0.0)
    no_rivals(run, run(read(free(), 0.1), 0.1), 0.1)
    assert not of(Acquire, no_rivals(run, run(Tick(), 5.0), 5.0))
    now = 0.1 + CONSUL_MAINTENANCE_WAIT
    actions = no_rivals(run, run(Tick(), now), now)
    assert of(Acquire, actions) == [Acquire(OURS, free())]
    warnings = [a for a in actions if isinstance(a, Log) and a.level == "warning"]
    assert len(warnings) == 1
    assert "cannot tell whether Consul maintenance" in warnings[0].message


def test_after_an_agent_outage_the_key_and_the_node_watch_are_waited_for_again() -> None:
    """Sim (seed 3 of the node watch's schedules): the key was free, the agent went
    down (the node watch's request failed), the wait for its answer ran out and
    the session timed out during the outage. The new session came before any
    read: the node took the key on what it knew 25 s before, before its node
    watch could say that `consul maint` had been run meanwhile. Now it acquires
    only after a read, and waits for the node watch's answer from then on."""
    run = follower()
    run(read(held("sess-b", b"b"), 0.0), 0.0)
    no_rivals(run, run(read(free(12), 1.0), 1.0), 1.0)  # (its lock-delay runs)
    run(ConsulMaintenance(None, known=False), 1.1)  # the agent is down
    run(SessionDown(OURS, Cause.RENEW_TIMEOUT, "no successful renewal for a TTL"), 8.0)
    now = 1.1 + CONSUL_MAINTENANCE_WAIT + 0.1
    assert not of(Acquire, no_rivals(run, run(Tick(), now), now))
    back = 30.0  # the agent answers again: a new session first
    actions = list(no_rivals(run, run(SessionUp("sess-a2", node="node-a"), back), back))
    for action in of(Publish, actions):
        actions += no_rivals(run, run(Done(action, "ok"), back), back)
    actions += no_rivals(run, run(Tick(), back + 0.5), back + 0.5)
    assert not of(Acquire, actions), "took the free key after the outage on what it knew before it"
    # The key watch's first answer after its failed reads; the node watch
    # retries within 2 s.
    no_rivals(run, run(read(free(12), back + 0.6, resumed=True), back + 0.6), back + 0.6)
    back += 0.6
    for at in (back + 1.0, back + 1.5, back + 1.9):
        assert not of(Acquire, no_rivals(run, run(Tick(), at), at)), (
            "took the free key after the outage before the node watch said whether "
            "Consul maintenance applies"
        )
    answered = run(ConsulMaintenance("the node is in Consul maintenance mode"), back + 2.0)
    assert not of(Acquire, no_rivals(run, answered + run(Tick(), back + 5), back + 5))


def test_a_step_down_inside_a_hand_over_is_not_lost() -> None:
    """22.16: maintenance begins while a switchover's hand-over runs and the
    target goes away: our value comes back, then the step-down deletes the key."""
    run = leader()
    request = SwitchoverRequest("b", "ops", WALL + 1.0, 30)
    run(
        read(
            held(OURS, b"a", 11),
            1.0,
            consistent=True,
            tree=True,
            candidates={"b": B},
            request=request,
        ),
        1.0,
    )
    run(Done(Blank(OURS), "ok"), 1.0)
    run(MaintenanceFile("maintenance file /x exists"), 1.35)
    run(Tick(), 2.2)
    run(Done(HandTo(OURS, B), "refused"), 2.2)
    actions = run(read(held(OURS, b"a", 14), 2.3, consistent=True, tree=True), 2.3)
    assert Delete(OURS, 14) in actions


def test_maintenance_that_begins_inside_the_gap_stops_the_acquire() -> None:
    """22.17: maintenance is looked at right before the acquire, not only before the gap."""
    run = follower()
    run(read(held("sess-b", b"b"), 0.0), 0.0)
    no_rivals(run, run(read(free(12), 0.1), 0.1), 0.1)
    run(MaintenanceFile("maintenance file /x exists"), 0.5)
    assert not of(Acquire, no_rivals(run, run(Tick(), 1.3), 1.3))


def test_a_node_whose_own_check_failed_says_it_is_not_settled_for_the_hold_down() -> None:
    """22.23: a flapping check must not drag the VIP back and forth."""
    run = Run(Rules(value="a", preempt_delay=3.0))
    run(GateClosed("check 'web' is critical"), 0.0)
    actions = run(SessionUp(OURS, node="node-a"), 1.0)
    assert Publish(OURS, True, "", "node-a", settled=False) in actions
    run(Done(of(Publish, actions)[0], "ok"), 1.0)
    run(Tick(), 1.0 + REPORT_MIN_GAP)  # the member entry says "follower" now
    assert run.wake == 60.0
    assert Publish(OURS, True, "", "node-a", settled=True) in run(Tick(), 60.0)


def test_the_leader_does_not_preempt_to_a_candidate_in_its_hold_down() -> None:
    rules = Rules(value="a", handover_gap=1.2, preempt_delay=3.0)
    run = leader(rules)
    flapping = Candidate("z", "sess-z", priority=200, eligible=True, settled=False)
    tree = {"consistent": True, "tree": True, "candidates": {"z": flapping}}
    run(read(held(OURS, b"a", 11), 1.0, **tree), 1.0)
    assert not of(Blank, run(Tick(), 10.0))
    settled = {"z": Candidate("z", "sess-z", priority=200, eligible=True)}
    run(read(held(OURS, b"a", 11), 70.0, consistent=True, tree=True, candidates=settled), 70.0)
    assert Blank(OURS) in run(Tick(), 73.0)


def test_a_second_switchover_during_a_hand_over_is_refused_at_once() -> None:
    """22.15: answered with the reason, and the first hand-over's request is the
    only one deleted."""
    run = leader()
    first = SwitchoverRequest("b", "ops", WALL + 1.0, 30)
    tree = {"consistent": True, "tree": True, "candidates": {"b": B, "c": C}}
    run(read(held(OURS, b"a", 11), 1.0, request=first, **tree), 1.0)
    run(Done(Blank(OURS), "ok"), 1.0)
    second = SwitchoverRequest("c", "ops2", WALL + 1.5, 33)
    actions = run(read(held(OURS, b"", 12), 1.5, request=second, **tree), 1.5)
    (refusal,) = of(RefuseRequest, actions)
    assert refusal.request == second
    assert "another hand-over (to 'b') is in progress" in refusal.reason
    run(Tick(), 2.2)
    actions = run(Done(HandTo(OURS, B), "ok"), 2.2)
    assert DropRequest(first) in actions
    assert DropRequest(second) not in actions


def test_a_request_the_leader_answered_is_not_acted_on_again() -> None:
    run = leader()
    answered = SwitchoverRequest("b", "ops", WALL + 1.0, 30, refused="no")
    tree = {"consistent": True, "tree": True, "candidates": {"b": B}}
    actions = run(read(held(OURS, b"a", 11), 1.0, request=answered, **tree), 1.0)
    assert not of(Blank, actions)
    assert not of(RefuseRequest, actions)


def still_leading(run: Run, event: Event, now: float) -> None:
    """``event`` at ``now`` leaves the lead as it is: no transition, still leading."""
    assert not of(Transition, run(event, now))
    assert run.memory.leading


def moving_leader() -> Run:
    """A leader whose lock is to move from session "old" (read holding it at
    index 10) to the new session "new", just made."""
    run = Run(memory=Memory(move_from="old", leader_since=5.0, role=Role.LEADER, leading=True))
    run(read(held("old", b"a", 10), 0.0), 0.0)
    run(SessionUp("new"), 0.1)
    return run


def test_a_read_older_than_our_own_write_is_not_decided_on() -> None:
    """Found by the suite: a read answered before the lock moved to the new
    session, decided on after the move, said the key was taken: LOCK LOST for
    nothing. A read that came back *because* of our write was sent before it,
    and counts."""
    run = moving_leader()
    run(Done(Move("old", "new"), "ok", started=0.15), 0.16)
    still_leading(run, read(held("old", b"a"), 0.11, answered=0.12), 0.17)  # before the move
    still_leading(run, read(held("new", b"a", 12), 0.2), 0.2)


def test_a_read_taken_before_our_move_but_arriving_after_it_is_not_decided_on() -> None:
    """Found by CI (the differential test's SIGHUP with a new lock-delay) and by
    the simulation once its answers travel: Consul took a blocking read's answer
    when a write woke it, our move was applied before the answer arrived. Its
    X-Consul-Index, below the move's, says it is older: LOCK LOST for nothing."""
    run = moving_leader()
    run(Done(Move("old", "new"), "ok", started=0.15, index=14), 0.16)
    # Sent before the move's answer came, answered after the move was sent.
    stale = KeyState(13, True, b"a", LOCK_FLAG, "old", modify_index=10)
    still_leading(run, read(stale, 0.14, answered=0.161), 0.161)
    # A read sent after the move's answer came shows it.
    still_leading(run, read(held("new", b"a", 14), 0.2), 0.2)


def test_a_move_whose_answer_was_lost_is_judged_on_a_read_sent_after_it() -> None:
    """Review of the fix above: Consul applied the move, its answer was lost (a
    timeout). The read under way shows the old session: it proves nothing."""
    run = moving_leader()
    actions = run(Done(Move("old", "new"), "failed", "Read timed out", started=0.15), 5.15)
    assert ReadKey(tree=True) in actions  # a read sent now tells
    stale = KeyState(13, True, b"a", LOCK_FLAG, "old", modify_index=10)
    actions = run(read(stale, 0.14, answered=5.2), 5.2)
    assert not of(Transition, actions)
    assert not of(Discard, actions)
    still_leading(run, read(held("new", b"a", 14), 5.16, consistent=True, tree=True), 5.2)


def test_after_indexes_start_low_again_a_read_older_than_our_write_is_still_skipped() -> None:
    """A Consul cluster rebuilt under a running daemon: its writes get indexes
    far below earlier ones; the guard follows the last write, not the highest."""
    memory = Memory(
        move_from="old",
        leader_since=5.0,
        role=Role.LEADER,
        leading=True,
        written_index=5000,  # a write to the cluster before it was rebuilt
        written_done=0.0,
    )
    run = Run(memory=memory)
    run(read(held("old", b"a", 10), 1.0), 1.0)
    run(SessionUp("new"), 1.01)
    run(Done(Move("old", "new"), "ok", started=1.05, index=20), 1.06)
    stale = KeyState(19, True, b"a", LOCK_FLAG, "old", modify_index=10)
    still_leading(run, read(stale, 1.04, answered=1.061), 1.061)


def test_a_read_sent_before_our_acquires_answer_that_shows_it_is_decided_on() -> None:
    """The index rule skips only reads taken before the write: one taken after
    it (its index at least the write's) counts, though it was sent before."""
    run = follower()
    acquire = of(Acquire, no_rivals(run, run(read(free(), 0.5), 0.5), 0.5))[0]
    run(Done(acquire, "ok", started=1.0, index=21), 1.01)
    actions = run(read(held(OURS, b"a", 21), 0.9, early=True, answered=1.02), 1.02)
    assert Transition(Role.LEADER, Cause.ACQUIRED) in actions
    assert run.memory.leading


def test_a_switchover_blank_whose_answer_was_lost_puts_our_value_back() -> None:
    """Review: the blank was applied, its answer lost. Without our value back,
    the next read finds our own blank in our lock, takes it for somebody's
    write, and gives the lock up."""
    run = leader()
    request = SwitchoverRequest("b", "ops", WALL + 1.0, 30)
    tree = {"consistent": True, "tree": True, "candidates": {"b": B}}
    actions = run(read(held(OURS, b"a", 11), 1.0, request=request, **tree), 1.0)
    assert Blank(OURS) in actions
    actions = run(Done(Blank(OURS), "failed", "Read timed out", started=1.0), 6.0)
    assert Restore(OURS) in actions
    run(Done(Restore(OURS), "ok", started=6.0, index=13), 6.01)
    # The watch's read under way shows the blank, applied after all: older.
    actions = run(read(held(OURS, b"", 12), 5.9, answered=6.011, **tree), 6.011)
    assert not of(Transition, actions)
    assert not of(UnlockKeeping, actions)
    still_leading(run, read(held(OURS, b"a", 13), 6.02, **tree), 6.02)


def test_after_a_lost_answer_the_read_that_tells_is_asked_for_until_one_comes() -> None:
    """Found by the simulation's lost answers (seed 133 before this rule): the
    read after a failed acquire failed too; the key watch, blocked on the
    unchanged free key, answered a minute later, and nobody led meanwhile."""
    run = follower()
    acquire = of(Acquire, no_rivals(run, run(read(free(), 0.5), 0.5), 0.5))[0]
    actions = run(Done(acquire, "failed", "timed out", started=0.5), 5.5)
    assert ReadKey() in actions
    run(ReadFailed(), 5.6)
    assert not of(ReadKey, run(Tick(), 6.0))
    assert ReadKey() in run(Tick(), 6.6)  # 1 s after it failed
    run(ReadFailed(), 6.7)
    assert not of(ReadKey, run(Tick(), 7.7))
    assert ReadKey() in run(Tick(), 8.7)  # then 2 s: it backs off
    run(read(free(11), 8.7), 8.8)
    run(ReadFailed(), 9.0)  # a read came: nothing more is wanted
    assert not of(ReadKey, run(Tick(), 20.0))


def test_a_restore_that_fails_leaves_our_blank_ours_and_is_sent_again() -> None:
    """After a failed switchover the restore of our value failed too: the blank
    in our lock is still ours, not somebody's write to give the lock up to."""
    run = leader()
    request = SwitchoverRequest("b", "ops", WALL + 1.0, 30)
    tree = {"consistent": True, "tree": True, "candidates": {"b": B}}
    run(read(held(OURS, b"a", 11), 1.0, request=request, **tree), 1.0)
    run(Done(Blank(OURS), "ok", started=1.0, index=12), 1.0)
    actions = run(Tick(), 2.2)
    assert HandTo(OURS, B) in actions
    actions = run(Done(HandTo(OURS, B), "refused", started=2.2), 2.2)
    assert Restore(OURS) in actions
    run(Done(Restore(OURS), "refused", started=2.2), 2.21)
    actions = run(read(held(OURS, b"", 12), 2.3, **tree), 2.3)
    assert Restore(OURS) in actions
    assert not of(UnlockKeeping, actions)
    assert not of(Transition, actions)
    run(Done(Restore(OURS), "ok", started=2.3, index=14), 2.31)
    actions = run(read(held(OURS, b"a", 14), 2.4, **tree), 2.4)
    assert not of(Restore, actions)
    assert run.memory.leading
    assert not run.memory.blanked


def test_the_read_our_acquire_wakes_makes_the_leader() -> None:
    run = follower()
    acquire = of(Acquire, no_rivals(run, run(read(free(), 0.5), 0.5), 0.5))[0]
    run(Done(acquire, "ok", started=1.0), 1.0)
    # Sent before the acquire (the watch was waiting), answered by it.
    actions = run(read(held(OURS, b"a", 11), 0.6, early=True, answered=1.01), 1.01)
    assert Transition(Role.LEADER, Cause.ACQUIRED) in actions


# -- the member entry and the history (issue 24.4) ------------------------------------------


def history(run: Run) -> list[tuple[str | None, str | None, str]]:
    """(from, to, cause) of every change the run sent to the history."""
    return [
        (c.from_value, c.to_value, c.cause)
        for a in of(AppendHistory, run.reports)
        for c in a.changes
    ]


def test_a_node_in_fault_reports_it_with_why_although_it_has_no_session() -> None:
    run = Run(reports=True)
    actions = run(GateClosed("check 'web' is critical"), 0.0)
    assert Report("fault", False, "check 'web' is critical", "", "") in actions
    assert not of(Publish, actions)  # no session: no candidacy entry, but a member entry


def test_the_member_entry_is_written_on_a_change_and_on_a_heartbeat_not_on_every_read() -> None:
    run = Run(RULES, Memory(watching=True), reports=True)
    actions = run(SessionUp(OURS, node="node-a"), 0.0)
    report = of(Report, actions)[0]
    assert report == Report("follower", True, "", OURS, "node-a")
    run(Done(report, "ok"), 0.0)
    for t in (1.0, 2.0, 30.0, MEMBER_HEARTBEAT - 0.1):  # reads of the key: no writes
        assert not of(Report, run(read(held("sess-b", b"b"), t), t))
    assert run.wake <= MEMBER_HEARTBEAT
    assert of(Report, run(Tick(), MEMBER_HEARTBEAT)) == [report]  # the heartbeat
    run(Done(report, "ok"), MEMBER_HEARTBEAT)
    # A change is written, but not sooner than REPORT_MIN_GAP after the last write.
    changed = run(MaintenanceFile("maintenance file /x exists"), MEMBER_HEARTBEAT + 1.0)
    assert not of(Report, changed)
    assert run.wake == MEMBER_HEARTBEAT + REPORT_MIN_GAP
    actions = run(Tick(), MEMBER_HEARTBEAT + REPORT_MIN_GAP)
    assert of(Report, actions) == [
        Report("maintenance", False, "maintenance file /x exists", OURS, "node-a")
    ]


def test_while_the_candidacy_is_refused_the_member_report_and_history_wait_for_it() -> None:
    # The same key_prefix right: one writer backs off, not three (test_security's
    # count of denied writes).
    run = Run(RULES, Memory(watching=True), reports=True)
    actions = run(SessionUp(OURS, node="node-a"), 0.0)
    (publish,) = of(Publish, actions)
    for report in of(Report, actions):
        run(Done(report, "ok"), 0.0)
    run(Done(publish, "failed", "403 Permission denied"), 0.0)
    actions = run(MaintenanceFile("maintenance file /x exists"), 6.0)  # a change to report
    assert not of(Report, actions)
    (publish,) = of(Publish, actions)
    assert of(Report, run(Done(publish, "ok"), 6.1))


def test_a_failing_member_report_backs_off_and_says_so_once() -> None:
    run = Run(reports=True)
    report = of(Report, run(GateClosed("check 'web' is critical"), 0.0))[0]
    warned = run(Done(report, "failed", "403 Permission denied"), 0.0)
    assert [a.event for a in of(Log, warned)] == ["member_unreported"]
    assert "key_prefix write" in of(Log, warned)[0].message
    assert not of(Report, run(Tick(), 0.4))
    report = of(Report, run(Tick(), 0.5))[0]
    assert not of(Log, run(Done(report, "failed", "403 Permission denied"), 0.5))
    assert not of(Report, run(Tick(), 1.4))  # 1 s after the second failure
    assert of(Report, run(Tick(), 1.5))


# -- member entries of nodes gone for good -----------------------------------------------


def member(value: str, age: float, state: str = "follower", **kw: object) -> Member:
    """A member entry last written ``age`` seconds before WALL (a read at t=0)."""
    fields: dict[str, object] = {"node": f"node-{value}", "at": WALL - age, "modify_index": 20}
    fields.update(kw)
    return Member(value, state, 100, state == "follower", **fields)  # type: ignore[arg-type]


def tree(at: float, members: dict[str, Member], **kw: object) -> KeyRead:
    """The leader's read of the key and its prefix at ``at`` (wall clock WALL + at)."""
    return read(held(OURS, b"a", 11), at, consistent=True, tree=True, members=members, **kw)


def reaped(actions: Iterable[Action]) -> list[str]:
    return [a.member.value for a in of(ReapMember, actions)]


# How long the leader's own reads must show a member entry unchanged before it
# is removed (on the leader's clock: the writer's may be off by days).
SEEN = MEMBER_STALE * MEMBER_HEARTBEAT


def test_the_leader_removes_a_member_entry_silent_for_longer_than_the_reap_time() -> None:
    run = leader()
    d = member("d", MEMBER_REAP - 200)  # 200 s short of it
    assert reaped(run(tree(1.0, {"d": d}), 1.0)) == []
    assert reaped(run(tree(150.0, {"d": d}), 150.0)) == []
    actions = run(tree(201.0, {"d": d}), 201.0)
    assert of(ReapMember, actions) == [ReapMember(d)]  # with its ModifyIndex: cas
    done = run(Done(ReapMember(d), "ok"), 201.1)
    (said,) = of(Log, done)
    assert (said.level, said.event) == ("info", "member_reaped")
    assert said.message.startswith(
        "removed the member entry of node node-d (value 'd'): silent since 1970-01-09 "
    )
    assert "(last said: follower), longer than 72 h" in said.message
    # A read answered before the delete still shows it: not removed (nor said) twice.
    assert reaped(run(tree(201.2, {"d": d}), 201.2)) == []
    assert not of(Log, run(tree(201.3, {}), 201.3))
    assert run.memory.reaped == {}


def test_a_stopped_member_is_removed_after_the_reap_time_too() -> None:
    run = leader()
    recent = member("d", 3600.0, state="stopped")  # an upgrade, a reboot: kept
    old = member("e", MEMBER_REAP + 1, state="stopped", modify_index=31)
    run(tree(1.0, {"d": recent, "e": old}), 1.0)
    actions = run(tree(1.0 + SEEN, {"d": recent, "e": old}), 1.0 + SEEN)
    assert reaped(actions) == ["e"]
    (said,) = of(Log, run(Done(ReapMember(old), "ok"), 1.0 + SEEN))
    assert "node node-e (value 'e'): stopped since" in said.message


def test_a_member_that_reported_again_keeps_its_entry() -> None:
    run = leader()
    old = member("d", MEMBER_REAP + 1)
    run(tree(1.0, {"d": old}), 1.0)
    assert reaped(run(tree(1.0 + SEEN, {"d": old}), 1.0 + SEEN)) == ["d"]
    # Its daemon came back and wrote its entry between the read and the delete:
    # the cas delete at the old ModifyIndex is refused; nothing is said at INFO.
    kept = run(Done(ReapMember(old), "refused"), 1.1 + SEEN)
    assert [a.level for a in of(Log, kept)] == ["debug"]
    back = member("d", 0.0, modify_index=40)
    for t in (2.0, 60.0, 3600.0):
        assert reaped(run(tree(SEEN + t, {"d": back}), SEEN + t)) == []


def test_a_member_whose_clock_is_days_behind_is_kept_while_it_reports() -> None:
    # A node in FAULT (no session) whose clock is 5 days behind: every report
    # it writes looks older than the reap time. It rewrites its entry every
    # heartbeat, so the leader never sees it unchanged for long: never removed.
    run = leader()
    for beat in range(60):  # an hour of reports
        t = 1.0 + beat * MEMBER_HEARTBEAT
        skewed = member("d", 5 * 86400.0 - t, state="fault", modify_index=100 + beat)
        for read_at in (t, t + MEMBER_HEARTBEAT / 2):
            assert reaped(run(tree(read_at, {"d": skewed}), read_at)) == []
    # It stops writing (its daemon died): removed once this leader's reads showed
    # it unchanged for MEMBER_STALE heartbeats, not before.
    last = 1.0 + 59 * MEMBER_HEARTBEAT
    assert reaped(run(tree(last + SEEN - 1.0, {"d": skewed}), last + SEEN - 1.0)) == []
    assert run.wake == last + SEEN
    assert reaped(run(Tick(), last + SEEN)) == ["d"]


def test_member_entries_are_removed_one_at_a_time() -> None:
    # Each removal may wait for Consul's request timeout on the election thread:
    # the next is sent after the outcome of the last.
    run = leader()
    old = {v: member(v, MEMBER_REAP + 1, modify_index=i) for i, v in enumerate("def", 30)}
    run(tree(1.0, old), 1.0)
    assert reaped(run(tree(1.0 + SEEN, old), 1.0 + SEEN)) == ["d"]
    assert reaped(run(Tick(), 2.0 + SEEN)) == []
    assert reaped(run(tree(3.0 + SEEN, old), 3.0 + SEEN)) == []
    assert reaped(run(Done(ReapMember(old["d"]), "ok"), 4.0 + SEEN)) == ["e"]
    assert reaped(run(Done(ReapMember(old["e"]), "refused"), 5.0 + SEEN)) == ["f"]
    assert reaped(run(Done(ReapMember(old["f"]), "ok"), 6.0 + SEEN)) == []


def test_no_member_entry_is_removed_while_the_lock_is_handed_over_or_given_up() -> None:
    busy: dict[str, dict[str, object]] = {
        "a hand-over": {"handover": HandOver(B, Cause.SWITCHOVER)},
        "a step-down": {"leaving": Leaving(Cause.STEP_DOWN, "SIGUSR1", Role.FOLLOWER)},
    }
    for what, changes in busy.items():
        run = leader()
        old = {"d": member("d", MEMBER_REAP + 1)}
        run(tree(1.0, old), 1.0)
        calm = run.memory
        run.memory = replace(calm, **changes)  # type: ignore[arg-type]
        actions = run(tree(1.0 + SEEN, old), 1.0 + SEEN)
        assert reaped(actions) == [], what
        run.memory = replace(run.memory, **{k: getattr(calm, k) for k in changes})
        assert reaped(run(Tick(), 2.0 + SEEN)) == ["d"], what
    # SIGUSR1 or a stop with the entry due: the lock's business goes first, and
    # no removal follows it.
    for event in (StepDownAsked("SIGUSR1", 10.0), StopAsked()):
        run = leader()
        run(tree(1.0, {"d": member("d", MEMBER_REAP + 1)}), 1.0)
        run.memory = replace(run.memory, reap_at=2.0 + SEEN)  # due just after it
        assert reaped(run(event, 1.0 + SEEN)) == [], event
        assert reaped(run(Tick(), 2.0 + SEEN)) == [], event


def test_while_the_prefix_is_refused_no_member_entry_is_removed() -> None:
    run = leader()
    old = {"d": member("d", MEMBER_REAP + 1)}
    run(tree(1.0, old), 1.0)
    run.memory = replace(run.memory, publish_failures=1, publish_at=10.0 + SEEN)
    assert reaped(run(tree(1.0 + SEEN, old), 1.0 + SEEN)) == []
    assert run.wake <= 10.0 + SEEN
    run.memory = replace(run.memory, publish_failures=0)
    assert reaped(run(Tick(), 10.0 + SEEN)) == ["d"]


def test_the_leaders_own_entry_and_one_with_a_live_session_are_never_removed() -> None:
    run = leader()
    ours = member("a", MEMBER_REAP * 2)
    b = member("b", MEMBER_REAP * 2)  # its candidacy entry lives: its session does
    e = member("e", MEMBER_REAP * 2, session="sess-b")  # names a live session
    for t in (1.0, 1.0 + SEEN):
        actions = run(tree(t, {"a": ours, "b": b, "e": e}, candidates={"b": B}), t)
        assert reaped(actions) == []


def test_only_the_leader_removes_member_entries() -> None:
    run = follower()
    old = {"d": member("d", MEMBER_REAP * 2)}
    for t in (1.0, 1.0 + SEEN):
        actions = run(read(held("sess-b", b"b"), t, tree=True, members=old), t)
        assert reaped(actions) == []
    assert reaped(run(Tick(), 2.0 + SEEN)) == []


def test_what_the_leader_knew_of_member_entries_is_forgotten_when_it_stops_leading() -> None:
    run = leader()
    old = {"d": member("d", MEMBER_REAP + 1)}
    run(tree(1.0, old), 1.0)
    run(read(held("sess-b", b"b", 12), 2.0, consistent=True, tree=True, members=old), 2.0)
    assert not run.memory.leading
    assert (run.memory.members, run.memory.members_seen, run.memory.reaped) == ({}, {}, {})


def test_a_failed_removal_is_said_once_and_tried_again_later() -> None:
    run = leader()
    old = member("d", MEMBER_REAP + 1)
    other = member("e", MEMBER_REAP + 1, modify_index=21)
    run(tree(1.0, {"d": old, "e": other}), 1.0)
    assert reaped(run(tree(1.0 + SEEN, {"d": old, "e": other}), 1.0 + SEEN)) == ["d"]
    failed = run(Done(ReapMember(old), "failed", "403 Permission denied"), 1.0 + SEEN)
    assert [(a.level, a.event) for a in of(Log, failed)] == [("warning", "member_unreaped")]
    assert reaped(failed) == []  # not before the retry time
    t = 31.0 + SEEN
    assert reaped(run(tree(t, {"d": old, "e": other}), t)) == ["d"]
    again = run(Done(ReapMember(old), "failed", "403 Permission denied"), t)
    assert "warning" not in [a.level for a in of(Log, again)]
    # One warning until a removal succeeds, whichever entry fails next (not one
    # each time the failing entry changes).
    back = member("d", 0.0, modify_index=40)
    run(tree(t + 1.0, {"d": back, "e": other}), t + 1.0)
    assert reaped(run(Tick(), t + 30.0)) == ["e"]
    failed = run(Done(ReapMember(other), "failed", "403 Permission denied"), t + 30.0)
    assert [a.level for a in of(Log, failed)] == ["debug"]  # not a second warning


def test_the_history_records_an_acquire_and_a_loss_with_its_cause() -> None:
    run = follower()
    run(read(held("sess-b", b"b", 10), 0.0), 0.0)
    no_rivals(run, run(read(free(12), 1.0), 1.0), 1.0)
    actions = no_rivals(run, run(Tick(), 3.0), 3.0)
    run(Done(of(Acquire, actions)[0], "ok", started=3.0), 3.0)
    run(read(held(OURS, b"a", 13), 3.0, consistent=True, tree=True), 3.0)
    assert run.memory.leading
    assert history(run) == [("b", "a", "acquired")]
    run(SessionDown(OURS, Cause.SESSION_LOST, "check critical"), 4.0)
    assert history(run)[-1] == ("a", None, "session_lost")
    assert of(AppendHistory, run.reports)[-1].changes[0].detail == "check critical"
    assert run.memory.chronicle == ()


def test_the_history_records_a_switchover_to_its_target() -> None:
    run = leader()
    request = SwitchoverRequest("b", "ops", WALL + 1.0, 30)
    run(read(held(OURS, b"a", 11), 1.0, tree=True, candidates={"b": B}, request=request), 1.0)
    run(Done(Blank(OURS), "ok"), 1.0)
    run(Tick(), 2.2)
    run(Done(HandTo(OURS, B), "ok"), 2.2)
    assert history(run)[-1] == ("a", "b", "switchover")


def test_an_unwritten_history_is_kept_bounded_and_retried() -> None:
    run = Run(reports=True)
    run.memory = leader().memory
    actions = run(SessionDown(OURS, Cause.SESSION_LOST, "gone"), 1.0)
    append = of(AppendHistory, actions)[0]
    run(Done(append, "failed", "timeout"), 1.0)
    assert run.memory.chronicle == append.changes  # kept
    assert not of(AppendHistory, run(Tick(), 1.4))
    assert of(AppendHistory, run(Tick(), 1.5)) == [append]


def test_a_clean_stop_says_stopped_and_writes_the_history_after_the_release() -> None:
    run = Run(reports=True)
    run.memory = leader().memory
    actions = run(StopAsked(), 1.0)
    kinds = [type(a) for a in actions if isinstance(a, (Release, AppendHistory, Report))]
    assert kinds == [Release, AppendHistory, Report]
    (append,) = of(AppendHistory, actions)
    assert append.final
    assert [(c.from_value, c.to_value, c.cause) for c in append.changes][-1] == (
        "a",
        None,
        "shutdown",
    )
    assert of(Report, actions) == [Report("stopped", False, "stopped cleanly", "", "node-a", True)]


def test_a_restart_in_place_says_nothing_about_stopping() -> None:
    run = Run(reports=True)
    run.memory = leader().memory
    actions = run(StopAsked(retire=True), 1.0)
    assert not of(Report, actions)
    assert not of(AppendHistory, actions)


def test_our_own_stale_entry_with_a_higher_priority_is_no_one_to_preempt_to() -> None:
    """Seed 109 of the simulation: after a restart with a lower priority, the entry
    of our old session (not yet gone) says 200; the leader took it for a better
    candidate, found nobody to hand to, and woke at a time already past: a hot loop."""
    rules = Rules(value="a", handover_gap=1.2, preempt_delay=3.0)
    run = leader(rules)
    stale = Candidate("a", "old-sess", priority=200, eligible=True)
    tree = {"consistent": True, "tree": True, "candidates": {"a": stale, "b": B}}
    run(read(held(OURS, b"a", 11), 1.0, **tree), 1.0)
    assert run.memory.better_since == {}
    actions = run(Tick(), 4.0)
    assert not of(Blank, actions)
    assert run.wake > 4.0


# -- the confirmed hand-over (issue 23.2) --------------------------------------------

TREE = {"consistent": True, "tree": True, "candidates": {"b": B}}


def seeing_leader(vip: bool | None = True, rules: Rules = RULES) -> Run:
    """A leader whose address watch says ``vip``, with candidate b known."""
    run = leader(rules)
    run(VipSeen(vip), 0.5)
    run(read(held(OURS, b"a", 11), 0.6, **TREE), 0.6)
    return run


def switchover_started(run: Run, at: float = 1.0) -> None:
    request = SwitchoverRequest("b", "ops", WALL + at, 30)
    actions = run(read(held(OURS, b"a", 11), at, request=request, **TREE), at)
    assert Blank(OURS) in actions
    run(Done(Blank(OURS), "ok"), at)


def test_a_switchover_hands_over_as_soon_as_the_vip_is_seen_gone() -> None:
    run = seeing_leader()
    switchover_started(run)
    assert run.wake == 1.0 + 1.2  # no sooner than the gap while the VIP is here
    assert not of(HandTo, run(Tick(), 1.05))
    actions = run(VipSeen(False), 1.12)
    assert HandTo(OURS, B) in actions  # 120 ms, not 1.2 s
    assert not [a for a in of(Log, actions) if a.level == "warning"]


def test_the_lock_goes_to_the_target_before_our_entry_says_the_vip_left() -> None:
    """The VIP seen gone also changes this node's candidacy entry. Written first,
    that entry held the target's VIP back by one Consul write (4-8 ms measured,
    fenced switchover); now the lock goes first and the entry in the same step."""
    run = seeing_leader()
    for action in of(Publish, run.actions):
        run(Done(action, "ok"), 0.7)
    switchover_started(run)
    actions = run(VipSeen(False), 1.12)
    writes = [a for a in actions if isinstance(a, (HandTo, Publish))]
    assert [type(a) for a in writes] == [HandTo, Publish]
    assert of(Publish, writes)[0].vip is False


def test_a_vip_never_seen_gone_is_handed_over_at_the_gap_with_one_warning() -> None:
    run = seeing_leader()
    switchover_started(run)
    assert not of(HandTo, run(VipSeen(True), 1.5))
    actions = run(Tick(), 2.2)
    assert HandTo(OURS, B) in actions
    (warning,) = [a for a in of(Log, actions) if a.level == "warning"]
    assert warning.event == "vip_still_seen"
    assert not of(HandTo, run(Tick(), 2.5))  # sent once, its outcome comes next


def test_an_unobservable_vip_waits_the_whole_gap_without_a_warning() -> None:
    run = seeing_leader(vip=None)
    switchover_started(run)
    assert not of(HandTo, run(VipSeen(None), 1.1))
    assert not of(HandTo, run(Tick(), 2.19))
    actions = run(Tick(), 2.2)
    assert HandTo(OURS, B) in actions
    assert not [a for a in of(Log, actions) if a.level == "warning"]


def test_a_vip_that_comes_back_after_going_is_waited_for_again() -> None:
    run = seeing_leader()
    switchover_started(run)
    run(VipSeen(False), 1.1)  # handed at once ...
    run2 = seeing_leader()
    switchover_started(run2)
    run2(VipSeen(None), 1.05)  # ... but not when the watch stops seeing it
    assert not of(HandTo, run2(Tick(), 1.1))
    run3 = seeing_leader(vip=False)  # absent before the blank: not seen *leave*
    switchover_started(run3)
    assert not of(HandTo, run3(Tick(), 1.5))
    assert HandTo(OURS, B) in run3(Tick(), 2.2)


def test_sigterm_on_a_leader_that_sees_its_vip_hands_the_lock_to_the_best_candidate() -> None:
    run = seeing_leader()
    actions = run(StopAsked(), 1.0)
    assert Blank(OURS) in actions
    assert not of(Release, actions)
    assert run.memory.fence_until == 0.0
    run(Done(Blank(OURS), "ok"), 1.0)
    assert run.wake <= 1.0 + 1.2  # the stop's budget: never past the gap
    actions = run(VipSeen(False), 1.1)
    assert HandTo(OURS, B) in actions
    actions = run(Done(HandTo(OURS, B), "ok"), 1.1)
    assert Transition(Role.STOPPING, Cause.SHUTDOWN, "handed the lock to 'b' (shutdown)") in (
        actions
    )
    assert Release((OURS,), None) in actions  # the key is b's: only our session goes
    assert not of(Discard, actions)
    assert run.memory.finished


def test_sigterm_with_a_gap_longer_than_the_stop_can_wait_releases_at_once() -> None:
    # vip-manager's interval 3 s: waiting for the VIP to go could outlast
    # systemd's TimeoutStopSec=5s and leave a blank key nobody renews.
    run = seeing_leader(rules=replace(RULES, handover_gap=3.2))
    actions = run(StopAsked(), 1.0)
    assert not of(Blank, actions)
    assert Release((OURS,), (OURS, 11)) in actions


def test_sigterm_without_a_seen_vip_or_without_a_candidate_releases_at_once() -> None:
    for vip, candidates in ((None, {"b": B}), (True, {})):
        run = leader()
        run(VipSeen(vip), 0.5)
        run(read(held(OURS, b"a", 11), 0.6, consistent=True, tree=True, candidates=candidates), 0.6)
        actions = run(StopAsked(), 1.0)
        assert Release((OURS,), (OURS, 11)) in actions, (vip, candidates)
        assert not of(Blank, actions)


def test_sigterm_whose_target_session_is_gone_releases_the_key() -> None:
    run = seeing_leader()
    run(StopAsked(), 1.0)
    run(Done(Blank(OURS), "ok"), 1.0)
    run(VipSeen(False), 1.1)
    actions = run(Done(HandTo(OURS, B), "refused"), 1.1)
    assert not of(Restore, actions)  # the VIP does not come back to a stopping node
    assert Release((OURS,), (OURS, 11)) in actions
    assert run.memory.finished


def test_sigterm_whose_blank_fails_releases_at_once() -> None:
    run = seeing_leader()
    run(StopAsked(), 1.0)
    actions = run(Done(Blank(OURS), "failed", "timed out"), 1.0)
    assert Release((OURS,), (OURS, 11)) in actions


def test_sigterm_inside_a_switchover_finishes_that_hand_over_then_releases() -> None:
    """22.1 with the address watch: the stop neither skips the wait nor starts a
    second hand-over; b gets the lock from us, then our session goes."""
    run = seeing_leader()
    switchover_started(run)
    actions = run(StopAsked(), 1.3)
    assert not of(Blank, actions)
    assert not of(Release, actions)
    assert not of(HandTo, actions)  # the VIP is still seen here
    assert HandTo(OURS, B) in run(VipSeen(False), 1.4)
    actions = run(Done(HandTo(OURS, B), "ok"), 1.4)
    assert Release((OURS,), None) in actions


def test_a_stop_whose_hand_over_never_sees_the_vip_go_ends_at_the_gap() -> None:
    run = seeing_leader()
    run(StopAsked(), 1.0)
    run(Done(Blank(OURS), "ok"), 1.0)
    actions = run(Tick(), 2.2)
    assert HandTo(OURS, B) in actions
    assert "vip_still_seen" in [a.event for a in of(Log, actions)]
    actions = run(Done(HandTo(OURS, B), "failed", "timed out"), 2.5)
    assert of(Release, actions)


def test_sigusr1_on_a_leader_that_sees_its_vip_hands_over_instead_of_deleting() -> None:
    run = seeing_leader()
    actions = run(StepDownAsked("SIGUSR1", 10.0), 1.0)
    assert Blank(OURS) in actions
    assert not of(Delete, actions)
    run(Done(Blank(OURS), "ok"), 1.0)
    assert HandTo(OURS, B) in run(VipSeen(False), 1.1)
    actions = run(Done(HandTo(OURS, B), "ok"), 1.1)
    (change,) = of(Transition, actions)
    assert (change.role, change.cause) == (Role.FOLLOWER, Cause.STEP_DOWN)
    assert run.memory.standby(1.2) == "SIGUSR1"  # still out for the hold


def test_a_step_down_blanks_before_it_writes_its_changed_entry() -> None:
    """Soak, fenced mode: the step-down's entry (now in its hold) was written between
    the fence's drop and the blank; /leader's 503 went out at once, the VIP left
    before the blank was sent, and the hand-over waited its whole gap (0.3 s)."""
    run = seeing_leader()
    for action in of(Publish, run.actions):
        run(Done(action, "ok"), 0.7)
    actions = run(StepDownAsked("SIGUSR1", 10.0), 1.0)
    writes = [a for a in actions if isinstance(a, (Blank, Publish))]
    assert [type(a) for a in writes] == [Blank, Publish]
    assert of(Publish, writes)[0].why == "SIGUSR1"


def test_a_vip_gone_seen_before_the_blank_was_sent_does_not_hand_over() -> None:
    """Review finding: a "gone" that waited in the inbox (vip-manager dropped the
    VIP on a read error, and added it again) must not hand over early."""
    run = seeing_leader()
    request = SwitchoverRequest("b", "ops", WALL + 1.0, 30)
    assert Blank(OURS) in run(read(held(OURS, b"a", 11), 1.0, request=request, **TREE), 1.0)
    run(Done(Blank(OURS), "ok", started=1.0), 1.01)
    assert not of(HandTo, run(VipSeen(False, 0.95), 1.02))
    assert HandTo(OURS, B) in run(VipSeen(False, 1.08), 1.09)


def test_a_sigusr1_whose_blank_fails_still_steps_down() -> None:
    run = seeing_leader()
    assert Blank(OURS) in run(StepDownAsked("SIGUSR1", 10.0), 1.0)
    actions = run(Done(Blank(OURS), "failed", "500 Internal Server Error"), 1.0)
    assert ReadKey() in actions
    actions = run(read(held(OURS, b"a", 12), 1.1, **TREE), 1.1)
    assert Delete(OURS, 12) in actions


def test_the_history_names_whom_a_step_down_handed_the_lock_to() -> None:
    run = seeing_leader()
    run(StepDownAsked("SIGUSR1", 10.0), 1.0)
    run(Done(Blank(OURS), "ok"), 1.0)
    run(VipSeen(False), 1.1)
    run(Done(HandTo(OURS, B), "ok"), 1.1)
    assert history(run)[-1] == ("a", "b", "step_down")


def test_maintenance_on_a_leader_that_sees_its_vip_hands_over_and_stays_out() -> None:
    run = seeing_leader()
    actions = run(MaintenanceFile("maintenance file /x exists"), 1.0)
    assert Blank(OURS) in actions
    run(Done(Blank(OURS), "ok"), 1.0)
    run(VipSeen(False), 1.1)
    actions = run(Done(HandTo(OURS, B), "ok"), 1.1)
    (change,) = of(Transition, actions)
    assert (change.role, change.cause) == (Role.MAINTENANCE, Cause.MAINTENANCE)


def test_a_step_down_whose_target_is_gone_deletes_the_blank_key() -> None:
    run = seeing_leader()
    run(StepDownAsked("SIGUSR1", 10.0), 1.0)
    run(Done(Blank(OURS), "ok"), 1.0)
    run(VipSeen(False), 1.1)
    actions = run(Done(HandTo(OURS, B), "refused"), 1.1)
    assert not of(Restore, actions)
    assert ReadKey() in actions
    actions = run(read(held(OURS, b"", 12), 1.15, **TREE), 1.15)
    assert Delete(OURS, 12) in actions
    assert not of(UnlockKeeping, actions)
    run(Done(Delete(OURS, 12), "ok"), 1.15)
    actions = run(read(free(13), 1.2, **TREE), 1.2)
    assert any(isinstance(a, Transition) and a.cause == Cause.STEP_DOWN for a in actions)


def test_maintenance_inside_a_switchover_whose_target_is_gone_deletes_the_key() -> None:
    """The VIP is gone from here already: it does not come back for a moment."""
    run = seeing_leader()
    switchover_started(run)
    run(MaintenanceFile("maintenance file /x exists"), 1.05)
    run(VipSeen(False), 1.1)
    actions = run(Done(HandTo(OURS, B), "refused"), 1.1)
    assert not of(Restore, actions)
    actions = run(read(held(OURS, b"", 12), 1.15, **TREE), 1.15)
    assert Delete(OURS, 12) in actions


def test_a_second_switchover_during_a_step_down_hand_over_is_refused() -> None:
    run = seeing_leader()
    run(StepDownAsked("SIGUSR1", 10.0), 1.0)
    run(Done(Blank(OURS), "ok"), 1.0)
    second = SwitchoverRequest("c", "ops2", WALL + 1.05, 33)
    tree = {"consistent": True, "tree": True, "candidates": {"b": B, "c": C}}
    actions = run(read(held(OURS, b"", 12), 1.05, request=second, **tree), 1.05)
    (refusal,) = of(RefuseRequest, actions)
    assert "another hand-over (to 'b') is in progress" in refusal.reason
    assert HandTo(OURS, B) in run(VipSeen(False), 1.1)


def test_a_lock_handed_to_us_is_taken_at_once_a_freed_one_waits_the_gap() -> None:
    run = follower(Rules(value="b", handover_gap=1.2))
    run(read(held("sess-x", b"a", 11), 0.0), 0.0)
    run(read(held("sess-x", b"", 12), 0.05, early=True), 0.05)  # the blank
    actions = run(read(held(OURS, b"b", 13), 0.2, early=True), 0.2)  # handed
    assert Transition(Role.LEADER, Cause.ACQUIRED) in actions


# -- the VIP's place: a leader without it, a node that does not lead with it ----------

VIP_RULES = Rules(
    value="a",
    key="svc/vip",
    handover_gap=1.2,
    lock_delay=1.0,
    vip_grace=3.0,
    vip_address="198.51.100.10/24",
    vip_interface="eth0",
)


def logs(actions: Iterable[Action], level: str) -> list[str]:
    return [a.message for a in of(Log, actions) if a.level == level]


def published(run: Run, actions: Iterable[Action], now: float) -> list[Publish]:
    """The publishes among ``actions`` and the next step's, each answered ok."""
    found = of(Publish, actions)
    for action in found:
        run(Done(action, "ok"), now)
    return found


def test_a_leader_without_its_vip_past_the_grace_is_warned_once_and_published() -> None:
    run = leader(VIP_RULES)
    (entry,) = published(run, run(VipSeen(False), 0.5), 0.5)
    assert entry.vip is False
    assert entry.vip_problem == ""
    assert not logs(run(Tick(), 3.4), "warning")  # vip-manager may still be adding it
    assert run.wake == 3.5  # the grace counts from when it was seen missing
    actions = run(Tick(), 3.5)
    (warning,) = logs(actions, "warning")
    assert warning.startswith("leader without its VIP (198.51.100.10/24 on eth0)")
    assert "systemctl status vip-manager" in warning
    (entry,) = published(run, actions, 3.5)
    assert entry.vip_problem == "leader without its VIP (198.51.100.10/24 on eth0) for more than 3s"
    assert warning.startswith(entry.vip_problem)
    assert not logs(run(Tick(), 60.0), "warning")  # once
    actions = run(VipSeen(True), 61.0)
    assert logs(actions, "info") == [
        "this leader has its VIP again (198.51.100.10/24): the problem said before is over"
    ]
    (entry,) = published(run, actions, 61.0)
    assert entry.vip is True
    assert entry.vip_problem == ""


def test_a_vip_that_comes_within_the_grace_is_not_reported() -> None:
    run = follower(VIP_RULES)
    published(run, run(VipSeen(False), 0.0), 0.0)
    actions = no_rivals(run, run(read(free(), 10.0), 10.0), 10.0)
    run(Done(of(Acquire, actions)[0], "ok", started=10.0), 10.0)
    run(read(held(OURS, b"a", 11), 10.0, consistent=True, tree=True), 10.0)
    assert run.memory.leading
    assert run.wake <= 13.0
    run(VipSeen(True), 11.5)
    run(Tick(), 13.0)
    assert not logs(run.actions, "warning")
    assert run.memory.vip_problem is None


def test_a_node_that_does_not_lead_and_has_the_vip_is_an_error() -> None:
    run = follower(VIP_RULES)
    run(read(held("sess-b", b"b"), 0.0), 0.0)
    published(run, run(VipSeen(True), 1.0), 1.0)
    assert not logs(run(Tick(), 3.9), "error")
    actions = run(Tick(), 4.0)
    (error,) = logs(actions, "error")
    assert "has the VIP (198.51.100.10/24 on eth0) but does not lead" in error
    assert "`ip addr del 198.51.100.10/24 dev eth0`" in error
    (entry,) = published(run, actions, 4.0)
    assert entry.vip is True
    assert entry.vip_problem == "has the VIP (198.51.100.10/24 on eth0) but does not lead"
    actions = run(VipSeen(False), 5.0)
    assert logs(actions, "info") == [
        "the VIP (198.51.100.10/24) is no longer on this node: the problem said before is over"
    ]


def test_a_leader_that_lost_the_lock_has_the_grace_to_drop_the_vip() -> None:
    run = leader(VIP_RULES)
    run(VipSeen(True), 0.5)
    run(read(held("sess-b", b"b", 12), 5.0), 5.0)  # taken (lock lost)
    assert not run.memory.leading
    assert not logs(run(VipSeen(True), 6.0), "error")
    assert run.wake <= 8.0  # the grace counts from the loss
    assert not logs(run(VipSeen(False), 7.5), "error")
    assert not logs(run(Tick(), 30.0), "error")


def test_a_leader_handing_the_vip_over_is_meant_to_be_without_it() -> None:
    run = leader(VIP_RULES)
    run(VipSeen(True), 0.5)
    # A hand-over under way (however it started): the key is blank, the VIP leaves.
    run.memory = replace(run.memory, handover=HandOver(B, Cause.SWITCHOVER, blanked_at=1.0))
    run(VipSeen(False), 1.1)
    run(Tick(), 5.0)
    assert not logs(run.actions, "warning")
    assert run.memory.vip_problem is None


def test_an_unobserved_vip_is_never_reported() -> None:
    run = leader(VIP_RULES)
    run(VipSeen(None), 0.5)
    run(Tick(), 60.0)
    assert not [a for a in of(Log, run.actions) if a.event.startswith("vip")]
    assert run.memory.vip_problem is None


# -- --step-down-without-vip ------------------------------------------------------------

STEP_DOWN_RULES = replace(VIP_RULES, step_down_without_vip=True)


def leader_without_vip(rules: Rules, candidates: dict[str, Candidate]) -> Run:
    """A leader that knows ``candidates`` and sees its VIP missing from 0.5 (grace 3 s)."""
    run = leader(rules)
    run(read(held(OURS, b"a", 11), 0.2, consistent=True, tree=True, candidates=candidates), 0.2)
    run(VipSeen(False), 0.5)
    return run


def past_grace(run: Run, now: float) -> tuple[Action, ...]:
    """A step at ``now``, and the answer to the read it asks for (Consul works)."""
    actions = run(Tick(), now)
    if ReadKey(tree=True) not in actions:
        return actions
    key = held(OURS, b"a", 11)
    answer = run(read(key, now, tree=True, candidates=run.memory.candidates), now)
    return actions + answer


def stepped_down(run: Run, now: float) -> tuple[Action, ...]:
    """The delete answered, and the read that shows the key gone."""
    run(Done(Delete(OURS, 11), "ok"), now)
    return run(read(free(12), now, consistent=True, tree=True, candidates={"b": B}), now)


def test_by_default_a_leader_without_its_vip_keeps_the_lock() -> None:
    run = leader_without_vip(VIP_RULES, {"b": B})
    for now in (3.5, 10.0, 100.0):
        run(Tick(), now)
    assert run.memory.vip_problem is not None  # reported...
    assert not of(Delete, run.actions)  # ...and nothing else
    assert run.memory.leading
    assert run.memory.leaving is None


def test_with_the_option_a_leader_without_its_vip_steps_down_after_the_grace() -> None:
    run = leader_without_vip(STEP_DOWN_RULES, {"b": B})
    assert not of(Delete, run(Tick(), 3.4))  # vip-manager may still be adding it
    assert run.wake == 3.5
    actions = run(Tick(), 3.5)
    assert ReadKey(tree=True) in actions  # does Consul answer now? (else vip-manager cannot either)
    assert not of(Delete, actions)
    actions = run(read(held(OURS, b"a", 11), 3.5, tree=True, candidates={"b": B}), 3.5)
    assert Delete(OURS, 11) in actions
    (why,) = [w for w in logs(actions, "warning") if "stepping down" in w]
    assert why.startswith("leader without its VIP (198.51.100.10/24 on eth0) for more than 3s")
    assert "so that 'b' can take the VIP (--step-down-without-vip)" in why
    assert "staying out for 300s" in why
    assert "systemctl status vip-manager" in why
    actions = stepped_down(run, 3.6)
    (change,) = of(Transition, actions)
    assert change.role == Role.FOLLOWER
    assert change.cause == Cause.VIP_MISSING
    assert "stepped down without its VIP" in change.detail
    assert not run.memory.leading
    # Meant to be without it now: no second problem, no claim that it came back.
    assert not logs(run.actions, "error")
    assert not [m for m in logs(run.actions, "info") if "has its VIP again" in m]


def test_a_leader_that_stepped_down_without_its_vip_holds_back() -> None:
    run = leader_without_vip(STEP_DOWN_RULES, {"b": B})
    past_grace(run, 3.5)
    stepped_down(run, 3.6)
    assert run.memory.vip_hold_until == 3.5 + 300
    (entry,) = published(run, run(SessionUp("sess-a2", node="node-a"), 4.0), 4.0)
    assert not entry.eligible  # b, without a VIP too, finds nobody to step down to
    assert entry.why == "stepped down without its VIP; competing again after 300s"
    # The key is free and b is eligible: this node leaves it to b...
    actions = run(read(free(12), 200.0), 200.0)
    (lookup,) = of(LookUpCandidates, actions)
    actions = no_rivals(run, run(CandidatesRead({"b": B}, lookup.freed_at), 200.0), 200.0)
    assert not of(Acquire, actions)
    assert run.wake <= 201.0  # b may fail to take it: who is eligible is read again
    assert not of(Acquire, with_candidates(run, run(Tick(), 250.0), 250.0, {"b": B}))
    # ...but with nobody else eligible (b's check failed too), holding back would
    # leave the VIP nowhere: the hold gives way (SIGUSR1's never does).
    actions = with_candidates(run, run(Tick(), 260.0), 260.0, {})
    assert of(Acquire, actions)
    assert "no other node is eligible: competing for the lock" in logs(actions, "warning")[0]


def with_candidates(
    run: Run, actions: Iterable[Action], now: float, candidates: dict[str, Candidate]
) -> tuple[Action, ...]:
    """Answer the lookups as no_rivals does, but the candidates with ``candidates``."""
    return no_rivals(run, actions, now, candidates)


def test_sigusr1_neither_shortens_nor_replaces_the_hold_after_a_step_down_without_the_vip() -> None:
    run = leader_without_vip(STEP_DOWN_RULES, {"b": B})
    past_grace(run, 3.5)
    stepped_down(run, 3.6)
    run(StepDownAsked("SIGUSR1 (for 10s)", 10.0), 5.0)  # a follower: ignored
    assert run.memory.vip_hold_until == 3.5 + 300
    assert run.memory.standby(20.0) == "stepped down without its VIP; competing again after 300s"


def test_a_leader_that_took_the_lock_in_its_hold_steps_down_again_once_another_node_can() -> None:
    run = leader_without_vip(STEP_DOWN_RULES, {"b": B})
    past_grace(run, 3.5)
    stepped_down(run, 3.6)
    publish = of(Publish, run(SessionUp("sess-a2", node="node-a"), 4.0))
    run(Done(publish[0], "ok"), 4.0)
    actions = run(read(free(12), 10.0), 10.0)
    acquire = of(Acquire, with_candidates(run, actions, 10.0, {}))[0]
    run(Done(acquire, "ok", started=10.0), 10.0)
    run(read(held("sess-a2", b"a", 13), 10.0, consistent=True, tree=True, candidates={}), 10.0)
    assert run.memory.leading  # nobody else could: the hold gave way
    assert run.memory.vip_hold_gave_way == 10.0
    # Still no VIP here, and b is eligible again: it steps down to b (not a
    # ping-pong: it led only because nobody else could).
    run(
        read(held("sess-a2", b"a", 13), 11.0, consistent=True, tree=True, candidates={"b": B}), 11.0
    )
    for now in (14.0, 20.0):
        past_grace(run, now)
    assert of(Delete, run.actions[-30:])


def test_the_hold_is_longer_than_the_next_leaders_gap_and_grace() -> None:
    slow = replace(STEP_DOWN_RULES, handover_gap=100.2, vip_grace=201.0)
    run = leader_without_vip(slow, {"b": B})
    past_grace(run, 201.5)
    assert run.memory.vip_hold_until == 201.5 + 2 * (100.2 + 201.0)


def test_a_leader_without_its_vip_and_no_other_eligible_candidate_keeps_the_lock() -> None:
    ineligible = replace(B, eligible=False, why="stepped down without its VIP")
    run = leader_without_vip(STEP_DOWN_RULES, {"b": ineligible})
    for now in (3.5, 10.0, 60.0):
        past_grace(run, now)
    assert not of(Delete, run.actions)
    assert run.memory.leading
    assert run.memory.vip_hold_until == 0.0
    (alone,) = [w for w in logs(run.actions, "warning") if "no other eligible candidate" in w]
    assert "keeping the lock (--step-down-without-vip)" in alone
    assert "systemctl status vip-manager" in alone
    # b eligible again (its hold is over): now stepping down helps.
    actions = run(
        read(held(OURS, b"a", 11), 61.0, consistent=True, tree=True, candidates={"b": B}), 61.0
    )
    assert Delete(OURS, 11) in actions


def test_a_leader_without_its_vip_hands_over_when_a_switchover_is_asked() -> None:
    run = leader_without_vip(STEP_DOWN_RULES, {})
    past_grace(run, 3.5)  # alone: kept
    request = SwitchoverRequest("b", "ops", WALL + 4.0, 30)
    asked = read(held(OURS, b"a", 11), 4.0, tree=True, candidates={"b": B}, request=request)
    actions = run(asked, 4.0)
    assert Blank(OURS) in actions  # the hand-over, not a delete
    assert not of(Delete, actions)
    run(Done(Blank(OURS), "ok"), 4.0)
    for now in (5.0, 5.2):
        run(Tick(), now)
    assert HandTo(OURS, B) in run.actions
    actions = run(Done(HandTo(OURS, B), "ok"), 5.2)
    assert Transition(Role.FOLLOWER, Cause.SWITCHOVER, "handed the lock to 'b' (switchover)") in (
        actions
    )
    assert not of(Delete, run.actions)
    assert run.memory.vip_hold_until == 0.0


def test_a_leader_in_a_hand_over_does_not_step_down_for_its_vip() -> None:
    run = leader_without_vip(STEP_DOWN_RULES, {"b": B})
    run.memory = replace(run.memory, handover=HandOver(B, Cause.PREEMPTED, blanked_at=0.4))
    for now in (3.5, 10.0):
        run(Tick(), now)
    assert not of(Delete, run.actions)
    assert run.memory.handover is not None
    assert run.memory.vip_hold_until == 0.0


def test_a_vip_missing_while_consul_does_not_answer_is_judged_again_after() -> None:
    """vip-manager (trigger-key mode) drops the VIP while it cannot read Consul: a
    Consul election longer than the grace is no reason to step down."""
    run = leader_without_vip(STEP_DOWN_RULES, {"b": B})
    assert ReadKey(tree=True) in run(Tick(), 3.5)
    run(ReadFailed(), 5.0)  # Consul does not answer: the grace starts again
    assert not of(Delete, past_grace(run, 7.9))
    assert ReadKey(tree=True) in run(Tick(), 8.0)
    # The first answer after failed reads: Consul is back, vip-manager gets its grace.
    actions = run(read(held(OURS, b"a", 11), 8.0, tree=True, candidates={"b": B}), 8.0)
    assert not of(Delete, actions)
    # The watch's own first answer after failures (resumed) says the same.
    resumed = read(held(OURS, b"a", 11), 9.0, tree=True, candidates={"b": B}, resumed=True)
    actions = run(resumed, 9.0)
    assert not of(Delete, actions)
    assert not of(Delete, past_grace(run, 11.9))
    assert Delete(OURS, 11) in past_grace(run, 12.0)


def test_the_step_down_chooses_from_the_candidates_as_they_are_after_the_grace() -> None:
    # A new leader's candidates may be those of its last leadership, long ago.
    run = leader_without_vip(STEP_DOWN_RULES, {"b": B})
    assert ReadKey(tree=True) in run(Tick(), 3.5)
    assert not of(Delete, run(read(held(OURS, b"a", 11), 3.6), 3.6))  # no candidates in it
    held_back = replace(B, eligible=False, why="stepped down without its VIP")
    actions = run(read(held(OURS, b"a", 11), 3.7, tree=True, candidates={"b": held_back}), 3.7)
    assert not of(Delete, actions)
    assert [w for w in logs(actions, "warning") if "no other eligible candidate" in w]


# -- bookkeeping writes skipped for an urgent input ---------------------------------------
# The election thread leaves a decision's bookkeeping writes unsent while a session
# loss or a stop waits (tests/unit/test_urgent_inputs.py); the core hears "skipped".

SKIPPED = "an urgent input waits"


def test_a_skipped_publish_is_sent_again_at_once_without_a_backoff_or_an_error() -> None:
    run = Run()
    publish = of(Publish, run(SessionUp(OURS, node="node-a"), 0.0))[0]
    again = run(Done(publish, "skipped", SKIPPED), 0.0)
    assert of(Publish, again) == [publish]
    assert run.memory.publish_failures == 0
    assert not of(Log, run.actions)


def test_a_skipped_member_report_and_history_are_sent_again_at_once_and_not_warned() -> None:
    run = Run(reports=True)
    run.memory = leader().memory
    actions = run(SessionDown(OURS, Cause.SESSION_LOST, "gone"), 6.0)
    (append,) = of(AppendHistory, actions)
    (report,) = of(Report, actions)
    assert report.state == "follower"
    assert of(AppendHistory, run(Done(append, "skipped", SKIPPED), 6.0)) == [append]
    assert of(Report, run(Done(report, "skipped", SKIPPED), 6.0)) == [report]
    assert (run.memory.report_failures, run.memory.chronicle_failures) == (0, 0)
    assert not [a for a in run.actions if isinstance(a, Log) and a.level != "debug"]


def test_a_skipped_member_removal_is_chosen_again_without_the_failures_wait() -> None:
    run = leader()
    old = member("d", MEMBER_REAP + 1)
    run(tree(1.0, {"d": old}), 1.0)
    assert reaped(run(tree(1.0 + SEEN, {"d": old}), 1.0 + SEEN)) == ["d"]
    skipped = run(Done(ReapMember(old), "skipped", SKIPPED), 1.0 + SEEN)
    assert not of(Log, skipped)
    assert reaped(skipped + run(Tick(), 1.1 + SEEN)) == ["d"]
