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

from tests.sim.scripted import Scenario, Step, Timing, play
from vip_elector.decision import PRIORITY_MARGIN, Memory, handover_goes_on

from .test_decisions import RULES

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


def test_the_restarted_node_stands_by_for_the_gap_and_a_margin_only() -> None:
    gap = RULES.handover_gap
    held = handover_goes_on(Memory(), 100.0, RULES)
    assert held.vip_hold_until == 100.0 + gap + PRIORITY_MARGIN
    assert held.standby(100.0) == "the previous run of this daemon was handing the VIP over"
    assert held.in_vip_hold(100.0)  # gives way when no other node is eligible
    assert held.standby(100.0 + gap + PRIORITY_MARGIN) is None
    # a longer hold of its own (a step-down without the VIP) is not shortened
    longer = handover_goes_on(Memory(vip_hold_until=500.0), 100.0, RULES)
    assert longer.vip_hold_until == 500.0
