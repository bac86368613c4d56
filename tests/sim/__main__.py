"""``python -m tests.sim``: run seeded schedules (see ``make sim``)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from tests.sim.mutants import MUTANTS, Mutant
from tests.sim.world import World


def run_mutants(seeds: int, length: float) -> int:
    """Each mutation of the table, seeds from 1 until one catches it: prints that seed."""
    print(f"{'mutation':32} {'caught by seed':>14}  violation")
    missed = 0
    for mutant in MUTANTS:
        found: World | None = None
        tried = 0
        with mutant.patch():
            for seed in range(1, seeds + 1):
                tried = seed
                world = World(seed, length, renewer_ttl_rule=mutant.renewer_ttl_rule)
                if not world.run():
                    found = world
                    break
        if found is None:
            missed += 1
            print(f"{mutant.name:32} {'NOT CAUGHT in ' + str(tried):>14}  -", flush=True)
        else:
            text = (found.violation or "").splitlines()[0]
            print(f"{mutant.name:32} {tried:>14}  {text}", flush=True)
            print(f"{'':32} {'':>14}  make sim SEED={tried} MUTANT={mutant.name}", flush=True)
    return 1 if missed else 0


def mutant_named(name: str) -> Mutant:
    found = [m for m in MUTANTS if m.name == name]
    if not found:
        names = ", ".join(m.name for m in MUTANTS)
        raise SystemExit(f"no mutation named {name!r} in tests/sim/mutants.py; one of: {names}")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim")
    parser.add_argument("--seeds", type=int, default=int(os.environ.get("SIM_SEEDS") or 200))
    parser.add_argument("--first", type=int, default=1, help="the first seed")
    parser.add_argument(
        "--minutes",
        type=float,
        default=float(os.environ.get("SIM_MINUTES") or 0),
        help="run seeds for this many minutes of wall time instead of --seeds",
    )
    parser.add_argument(
        "--seed", type=int, default=int(os.environ["SEED"]) if os.environ.get("SEED") else None
    )
    parser.add_argument("--length", type=float, default=9.0, help="simulated minutes per schedule")
    parser.add_argument("--trace", action="store_true", help="print the whole trace of --seed")
    parser.add_argument("--mutants", action="store_true", help="run the mutation table")
    parser.add_argument(
        "--mutant",
        default=os.environ.get("MUTANT") or None,
        help="run the seeds with this mutation of the table applied (reproduce its catch)",
    )
    args = parser.parse_args(argv)
    if args.mutants:
        return run_mutants(args.seeds, args.length)
    mutant = mutant_named(args.mutant) if args.mutant else None
    with mutant.patch() if mutant else contextlib.nullcontext():
        return run(args, mutant.renewer_ttl_rule if mutant else True)


def run(args: argparse.Namespace, renewer_ttl_rule: bool = True) -> int:
    if args.seed is not None:
        world = World(args.seed, args.length, renewer_ttl_rule=renewer_ttl_rule)
        ok = world.run()
        if args.trace or not ok:
            print(
                world.report() if not ok else "\n".join(f"  {t:10.3f}  {x}" for t, x in world.lines)
            )
        print(
            f"seed {args.seed}: {'ok' if ok else 'VIOLATION'} ({world.events} events, "
            f"{world.faults} faults, {world.operator} operator actions)"
        )
        return 0 if ok else 1
    started, cpu = time.monotonic(), time.process_time()
    deadline = started + args.minutes * 60 if args.minutes else None
    schedules = faults = operator = events = 0
    simulated = 0.0
    failures: list[World] = []
    seed = args.first
    while (deadline is None and schedules < args.seeds) or (
        deadline is not None and time.monotonic() < deadline
    ):
        world = World(seed, args.length, renewer_ttl_rule=renewer_ttl_rule)
        if not world.run():
            failures.append(world)
            print(world.report(), flush=True)
        schedules += 1
        simulated += world.now
        faults += world.faults
        operator += world.operator
        events += world.events
        seed += 1
    wall, used = time.monotonic() - started, time.process_time() - cpu
    per_min = 60 / used if used else 0.0
    print(
        f"sim: {schedules} schedules (seeds {args.first}..{seed - 1}), "
        f"{simulated / 3600:.1f} simulated hours, {faults} faults and {operator} operator "
        f"actions injected, {events} events; "
        f"{len(failures)} violation(s)\n"
        f"sim: {wall:.1f}s wall, {used:.1f}s CPU: {schedules * per_min:.0f} schedules and "
        f"{simulated / 3600 * per_min:.1f} simulated hours per CPU minute"
    )
    if failures:
        print("sim: failing seeds: " + " ".join(str(w.seed) for w in failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
