"""The confirmed hand-over on the VIP lab (real vip-manager in network
namespaces, interval 100 ms): a stopping leader that sees its VIP gives the
lock to the other node as soon as the VIP has left its interface, sooner than
the hand-over gap a freed key waits, and never with two holders."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.test_vip_failover import start_electors
from tests.testbed.key_watch import KeyWatcher
from tests.testbed.netns import VipLab
from tests.testbed.vip_watch import VipWatcher
from tests.testbed.waiting import wait_until


def test_sigterm_hands_the_lock_over_once_the_vip_is_seen_gone(
    vip_lab: Callable[..., VipLab],
) -> None:
    lab = vip_lab(["a", "b"])
    lab.start_vip_managers()
    electors = start_electors(lab)
    wait_until(lambda: lab.holders() == ["a"], 20, "the VIP is on a")
    electors["a"].wait_log("following the VIP", 10)
    assert lab.server is not None
    keys = KeyWatcher([lab.server], lab.trigger_key).start_watching()
    vips = VipWatcher(lab.network.hosts, lab.vip).start().wait_watching()
    try:
        stopped = time.monotonic()
        assert electors["a"].terminate() == 0
        wait_until(lambda: vips.holders() == ("b",), 10, "the VIP is on b")
        done = time.monotonic()
        events = keys.since(stopped)
        measure = vips.measure(stopped, done)
    finally:
        keys.stop()
        vips.stop()
    values = [e.value for e in events]
    assert None not in values, f"the key was free: {events}"  # handed, never deleted
    blank = next(e.t for e in events if e.value == "")
    handed = next(e.t for e in events if e.value == "b")
    gap = lab.vip_manager_interval_ms / 1000 + 0.2
    assert handed - blank < gap, f"b's value came {handed - blank:.3f}s after the blank"
    gone = vips.first(stopped, ())
    assert gone is not None
    assert gone <= handed, "b's value came before the VIP left a"
    assert measure.two_ms == 0, f"two holders for {measure.two_ms} ms"
    log = electors["a"].log()
    assert "handed the lock to 'b' (shutdown)" in log
    assert "once the VIP had left this host" in log
    assert "vip_still_seen" not in log
