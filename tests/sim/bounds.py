"""Every bound the simulation's invariants use, in one place.

The same numbers as the fault suite's where it states one (a VIP leaves a
node whose check failed within the vip-manager interval plus a read; one
healthy holder within a TTL-scale deadline after faults heal).
"""

from __future__ import annotations

# vip-manager (trigger-key mode) reads with this blocking wait, then sleeps `interval`.
VM_WAIT = 1.0
# The maintenance file is polled this often (election.MAINTENANCE_POLL) plus a margin.
MAINTENANCE_NOTICE = 1.0 + 0.1
# A requested step-down (SIGUSR1, maintenance) frees the key within this, when
# nothing else goes wrong meanwhile (notice + a delete + a retry).
STEP_DOWN_BOUND = MAINTENANCE_NOTICE + 3.0
# After a restart, in-place restart, reload or token rotation of the leader (no
# other fault meanwhile) the key keeps the leader's value for this long at least.
KEEP_WINDOW = 30.0
# A TTL-rule leader must not say LEADER longer than TTL (+ one renewer poll)
# after its last good renewal.
SELF_FENCE_SLACK = 1.1
# More acquires refused for lock-delay than this from one session for one
# freeing of the key: the core does not wait out the holder's lock-delay (it
# hammers Consul). The core retries once at its estimate, then backs off from
# 50 ms when the estimate was short (a holder whose lock-delay it could not read).
MAX_LOCK_DELAY_REFUSALS = 6
# A node in maintenance (its agent working) no longer holds the key after this.
MAINTENANCE_BOUND = STEP_DOWN_BOUND
# Quiet time at the end of every schedule (no faults, no operator actions).
QUIET = 120.0


def critical_vip_bound(fence_bound: float, interval: float) -> float:
    """How long the VIP may stay on a node whose check is critical: the fence (if
    fenced), vip-manager's interval and blocking wait, and a margin."""
    return max(fence_bound, 0.0) + interval + VM_WAIT + 1.0


def heal_deadline(ttl: float, lock_delay: float, gap: float) -> float:
    """Exactly one healthy holder this long after every fault healed: an orphan
    session's 2 x TTL, then its lock-delay, the hand-over gap, and reads."""
    return 2 * ttl + lock_delay + gap + 10.0


# Hand-overs (preemptions) of the key in any 60 s while no operator acts: a
# flapping check must not bounce the VIP back and forth.
MAX_MOVES_PER_MINUTE = 2
