"""`make soak`: random faults for a while, invariants checked all the time.

Runs the fault-suite lab (3 Consul servers, 3 hosts in namespaces, vip-elector
and real vip-manager on each, host a behind a fault proxy) and injects a
random fault from tests/testbed/chaos.py, heals it, waits for recovery, and
again, until the time is up. Prints the count of each fault, failovers,
invariant violations (must be 0), per fault kind the VIP outage (p50/max),
the longest time two hosts had the VIP, the unobserved time and the longest
time two daemons said LEADER, and the daemons' RSS at the start and the end.
Exit status 1 if any invariant was violated.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.failover import proc_cpu_rss
from tests.testbed import netns as netns_mod
from tests.testbed.chaos import FAULTS, ChaosLab, InvariantMonitor, run_fault


def rss_mib(chaos: ChaosLab) -> dict[str, float]:
    return {
        name: proc_cpu_rss(e.process.pid or 0)[1] / 1024
        for name, e in chaos.electors.items()
        if e.running()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--fenced",
        action="store_true",
        help="vip-manager follows vip-elector's /leader (patroni mode, lock-delay 5s)",
    )
    args = parser.parse_args(argv)
    reason = netns_mod.unavailable_reason()
    if reason:
        print(f"make soak needs network namespaces: {reason}", file=sys.stderr)
        return 1
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    mode = "fenced (/leader, lock-delay 5s)" if args.fenced else "trigger-key"
    print(f"soak: {args.minutes:g} min of random faults (seed {seed}), mode {mode}", flush=True)

    chaos = ChaosLab(Path(tempfile.mkdtemp(prefix="vip-elector-soak-")), fenced=args.fenced).start()
    monitor = InvariantMonitor(chaos).start()
    counts: Counter[str] = Counter()
    try:
        monitor.wait_settled()
        rss_start = rss_mib(chaos)
        started = time.monotonic()
        deadline = started + args.minutes * 60
        while time.monotonic() < deadline:
            fault = rng.choice(list(FAULTS))
            before = len(monitor.violations)
            leader = run_fault(chaos, monitor, fault)
            counts[fault] += 1
            new = monitor.violations[before:]
            print(
                f"{(time.monotonic() - started) / 60:5.1f} min  leader now {leader or '?'}; "
                f"violations {len(new)}; {monitor.record_line(monitor.records[-1])}",
                flush=True,
            )
            for violation in new:
                print(f"           VIOLATION {violation}", flush=True)
        rss_end = rss_mib(chaos)
        monitor.finish()
        monitor.check_logs()
        monitor.check_no_sessions_left()
    finally:
        monitor.stop()
        chaos.stop()

    print(
        "\nfaults:      "
        + ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
        + f"  (total {sum(counts.values())})"
    )
    print(f"failovers:   {monitor.failovers}")
    print(f"violations:  {len(monitor.violations)}")
    for violation in monitor.violations:
        print(f"  {violation}")
    print(
        "RSS MiB:     start "
        + ", ".join(f"{n} {v:.1f}" for n, v in rss_start.items())
        + "; end "
        + ", ".join(f"{n} {v:.1f}" for n, v in rss_end.items())
    )
    print(f"samples:     {monitor.samples} invariant checks")
    unobserved = sum(r.unobserved_ms for r in monitor.records) / 1000
    print(f"unobserved:  {unobserved:.1f} s in all (listed per fault kind below)")
    print("\n" + "\n".join(monitor.summary()))
    return 1 if monitor.violations else 0


if __name__ == "__main__":
    sys.exit(main())
