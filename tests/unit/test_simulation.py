"""The simulation harness itself (tests/sim): a seed replays exactly, the real
core passes a few schedules, and a broken core is caught. The full budget is
`make sim` / `make sim-mutants` (CI runs both)."""

from __future__ import annotations

from tests.sim.mutants import MUTANTS
from tests.sim.world import World


def test_a_seed_replays_exactly() -> None:
    first, second = World(7), World(7)
    assert first.run() == second.run()
    assert first.lines == second.lines
    assert first.events == second.events > 1000


def test_the_core_keeps_every_invariant_on_a_few_schedules() -> None:
    for seed in range(1, 11):
        world = World(seed)
        assert world.run(), world.report()


def test_a_core_without_the_hand_over_gap_gives_two_vip_holders() -> None:
    mutant = next(m for m in MUTANTS if m.name == "no-handover-gap")
    with mutant.patch():
        world = World(2)  # the first seed that catches it (`make sim-mutants`)
        assert not world.run()
    assert "two VIP holders" in (world.violation or "")
    # and the real core again, on the same seed
    assert World(2).run()
