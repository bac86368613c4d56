"""The fault-injection suite (pytest -m faults): each fault on the real 3-server
cluster, in namespaces, with real vip-manager on every host, and the VIP-level
and daemon-level invariants checked continuously (tests/testbed/chaos.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import FAULT_SUMMARY
from tests.testbed import netns as netns_mod
from tests.testbed.binaries import vip_manager_has_patroni_mode
from tests.testbed.chaos import FAULTS, ChaosLab, InvariantMonitor, run_fault

pytestmark = [pytest.mark.faults, pytest.mark.netns, pytest.mark.integration]


@pytest.fixture(scope="module", params=["trigger-key", "fenced"])
def chaos(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> Iterator[tuple[ChaosLab, InvariantMonitor]]:
    """Every fault in both modes: vip-manager reading the trigger-key, and vip-manager
    following vip-elector's fenced /leader (needs vip-manager v5)."""
    reason = netns_mod.unavailable_reason()
    if reason:
        pytest.skip(f"network namespaces unavailable: {reason}")
    fenced = request.param == "fenced"
    if fenced and (reason := vip_manager_has_patroni_mode()):
        pytest.skip(f"the fenced mode needs vip-manager v5: {reason}")
    lab = ChaosLab(tmp_path_factory.mktemp(f"chaos-{request.param}"), fenced=fenced).start()
    monitor = InvariantMonitor(lab).start()
    try:
        monitor.wait_settled()
        yield lab, monitor
        # Invariant 6: clean stops leave no session; no traceback anywhere.
        monitor.finish()
        monitor.check_logs()
        monitor.check_no_sessions_left()
        summary = pytestconfig.stash.get(FAULT_SUMMARY, [])
        pytestconfig.stash[FAULT_SUMMARY] = [*summary, f"mode: {request.param}", *monitor.summary()]
        violations = [str(v) for v in monitor.violations]
        assert not violations, "invariants violated:\n" + "\n".join(violations)
    finally:
        monitor.stop()
        lab.stop()


@pytest.mark.parametrize("fault", list(FAULTS))
def test_invariants_hold_through(chaos: tuple[ChaosLab, InvariantMonitor], fault: str) -> None:
    lab, monitor = chaos
    before = len(monitor.violations)
    leader = run_fault(lab, monitor, fault)
    record = monitor.records[-1]
    print(monitor.record_line(record))  # shown with -rP, and on failure
    assert leader, "the cluster recovered with a leader and the VIP on its host"
    violations = [str(v) for v in monitor.violations[before:]]
    assert not violations, "invariants violated:\n" + "\n".join(violations)
    assert monitor.samples > 0
    for name, elector in lab.electors.items():
        assert elector.running(), f"{name} is still running"
