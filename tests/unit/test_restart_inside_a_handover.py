"""A restart inside a hand-over: the leader blanked the key to hand the VIP over
and its process was killed before it finished (systemd's stop timeout, an OOM
kill, an exec). The next process deletes that blank (destroying the session
holding it would keep the key from everybody for its lock-delay), and the
hand-over goes on to the other nodes: the restarted node stands by while they
take the key, and takes it back only when no other node is eligible.

Played in the simulated world with the real decision core and the real
election thread's start-up (the scenario tests/test_sim_fidelity.py also plays
on the test bed)."""

from __future__ import annotations

from tests.sim.consul import Entry
from tests.sim.node import KEY
from tests.sim.scripted import Scenario, ScriptedWorld, Step, Timing, play
from tests.unit.test_decisions import RULES
from vip_elector.decision import PRIORITY_MARGIN, Memory, handover_goes_on

TIMING = Timing(b_started=0.02, fault=2.0)


def restart_inside_a_handover(lock_delay: float = 10.0) -> Scenario:
    return Scenario(
        "restart_inside_handover",
        (Step(0, "sigkill"), Step(0.1, "blank"), Step(0.3, "start")),
        watch=5.0,
        lock_delay=lock_delay,
    )


def test_the_hand_over_goes_on_to_the_other_node() -> None:
    seen, world = play(restart_inside_a_handover(), TIMING)
    after = [(s.value, s.t) for s in seen if s.t >= 0]
    assert [v for v, _ in after] == ["", None, "b"], world.report()
    freed = next(t for v, t in after if v is None)
    taken = next(t for v, t in after if v == "b")
    # b counts the gap (interval 1 s + 0.2 s) from the delete; no lock-delay (10 s)
    assert taken - freed < 1.5, (freed, taken)
    restarted = next(n for n in world.nodes if n.name == "a")
    assert restarted.daemon is not None
    assert restarted.daemon.running  # and follows


def test_the_dead_sessions_candidate_entry_goes_before_the_key() -> None:
    """The other node reads the candidates when the key goes free: an entry of the
    dead session (with a higher priority) still there would hold it back for up
    to that session's lock-delay + 1 s, while this node stands by for less and
    then takes the key back. So the entry is deleted first."""
    world = ScriptedWorld(restart_inside_a_handover(), TIMING)
    world._node("a").reconfigure(priority=200)
    gone: list[str] = []
    watched = world.consul.observers.on_key_change

    def record(key: str, before: Entry | None, after: Entry | None, by: str) -> None:
        watched(key, before, after, by)
        if before is not None and before.session == "a-s0001" and after is None:
            gone.append(key)

    world.consul.observers.on_key_change = record
    seen = world.play()
    assert gone == [f"{KEY}/candidates/a", KEY], world.report()
    assert [s.value for s in seen if s.t >= 0] == ["", None, "b"], world.report()


def test_the_restarted_node_stands_by_for_the_gap_and_a_margin_only() -> None:
    gap = RULES.handover_gap
    held = handover_goes_on(Memory(), 100.0, RULES)
    assert held.vip_hold_until == 100.0 + gap + PRIORITY_MARGIN
    assert held.standby(100.0) == "the previous run of this daemon was handing the VIP over"
    assert held.in_vip_hold(100.0)  # gives way when no other node is eligible
    assert held.standby(100.0 + gap + PRIORITY_MARGIN) is None
    # a longer hold of its own (a step-down without the VIP) is kept, with its reason
    longer = Memory(vip_hold_until=500.0, vip_hold_reason="stepped down without the VIP")
    assert handover_goes_on(longer, 100.0, RULES) == longer
