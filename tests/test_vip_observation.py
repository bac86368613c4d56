"""vip-elector watches the VIP it moves (the address watch, netlink): a leader
without its VIP and a VIP on a node that does not lead are reported in the
log, /status, /metrics and `vip-elector status`; where the VIP cannot be
observed it says so once and fails over as before. Real vip-manager, hosts in
network namespaces."""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.test_vip_failover import has_session
from tests.testbed.elector import Elector, run_vip_elector
from tests.testbed.netns import Host, VipLab, _ip
from tests.testbed.waiting import sample, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.integration, pytest.mark.slow]

GRACE = 2 * 0.1 + 1.0  # Settings.vip_grace with the lab's vip-manager interval (100 ms)
MISSING = "leader without its VIP"
STRAY = "has the VIP .* but does not lead"


def start(lab: VipLab, name: str, config: Path | None = None, args: Sequence[str] = ()) -> Elector:
    node = lab.nodes[name]
    node.check.register()
    node.check.wait_status("passing")
    elector = Elector(
        name,
        lab.workdir,
        config or lab.config_paths[name],
        check_id=node.check.check_id,
        args=["--status-addr", lab.status_addr(node.host), *args],
        netns=node.host.netns,
    ).start()
    wait_until(partial(has_session, lab, name), 30, f"{name} has a session")
    return elector


def status_of(host: Host) -> dict[str, Any]:
    answer = requests.get(f"{VipLab.leader_endpoint(host)}/status", timeout=2)
    return dict(answer.json())


def metric(host: Host, name: str) -> str:
    """The lines of /metrics that start with ``name``."""
    text = requests.get(f"{VipLab.leader_endpoint(host)}/metrics", timeout=2).text
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


def vip_elector_status(lab: VipLab, name: str) -> tuple[int, str]:
    host = lab.nodes[name].host
    result = run_vip_elector(
        "status",
        "--vip-manager-config",
        str(lab.config_paths[name]),
        "--hostname",
        name,
        "--addr",
        f"http://{host.ip}:8500",
    )
    return result.returncode, result.stdout + result.stderr


def a_leads(vip_lab: Callable[..., VipLab]) -> tuple[VipLab, dict[str, Elector]]:
    """Hosts a and b with vip-manager and vip-elector each; a leads, with the VIP."""
    lab = vip_lab(["a", "b"])
    lab.start_vip_managers()
    electors = {name: start(lab, name) for name in ("a", "b")}
    wait_until(lambda: lab.holders() == ["a"], 20, "the VIP is on a")
    return lab, electors


def test_a_leader_whose_vip_manager_stopped_is_reported_everywhere(
    vip_lab: Callable[..., VipLab],
) -> None:
    lab, electors = a_leads(vip_lab)
    host = lab.nodes["a"].host
    wait_until(lambda: status_of(host)["vip"] == "present", 10, "a sees its VIP")
    assert "vip_elector_vip_present 1.0" in metric(host, "vip_elector_vip_present")
    assert electors["a"].count(MISSING) == 0

    lab.vip_managers["a"].stop()  # SIGINT: vip-manager drops the VIP and exits
    wait_until(lambda: lab.holders() == [], 10, "the VIP is gone from a")
    line = electors["a"].wait_log(MISSING, timeout=GRACE + 10)
    assert "WARNING" in line
    assert "systemctl status vip-manager" in line
    status = status_of(host)
    assert status["state"] == "leader"
    assert status["vip"] == "absent"
    assert status["vip_problem"].startswith(f"{MISSING} ({lab.vip}/24 on eth0)")
    assert 'vip_elector_vip_misplaced{problem="leader_without_vip"} 1.0' in metric(
        host, "vip_elector_vip_misplaced"
    )
    assert "vip_elector_vip_present 0.0" in metric(host, "vip_elector_vip_present")

    def reported() -> tuple[int, str] | None:
        code, text = vip_elector_status(lab, "b")
        return (code, text) if "a has not (leader)" in text else None

    code, text = wait_until(reported, 15, "`vip-elector status` shows a without its VIP")
    assert code == 1, text
    assert f"PROBLEM       node a {MISSING}" in text

    # vip-manager back: the VIP returns, and so does a clean status.
    lab.vip_managers["a"].start()
    electors["a"].wait_log("this leader has its VIP again", timeout=15)
    assert electors["a"].count(MISSING) == 1  # said once
    wait_until(lambda: vip_elector_status(lab, "b")[0] == 0, 15, "status is healthy again")


def test_a_follower_that_holds_the_vip_is_an_error_and_status_exits_1(
    vip_lab: Callable[..., VipLab],
) -> None:
    lab, electors = a_leads(vip_lab)
    b = lab.nodes["b"].host
    # A vip-manager that no longer follows the key, and the address added by hand
    # (b's own vip-manager would remove it within 10 s).
    lab.vip_managers["b"].process.stop(signal.SIGKILL, timeout=5)
    _ip("addr", "add", f"{lab.vip}/24", "dev", "eth0", netns=b.netns)
    assert sorted(lab.holders()) == ["a", "b"]

    line = electors["b"].wait_log(STRAY, timeout=GRACE + 10)
    assert "ERROR" in line
    assert f"`ip addr del {lab.vip}/24 dev eth0`" in line
    assert status_of(b)["vip_problem"].startswith(f"has the VIP ({lab.vip}/24 on eth0)")
    assert 'vip_elector_vip_misplaced{problem="vip_on_non_leader"} 1.0' in metric(
        b, "vip_elector_vip_misplaced"
    )

    def reported() -> tuple[int, str] | None:
        code, text = vip_elector_status(lab, "a")
        return (code, text) if "PROBLEM       node b has the VIP" in text else None

    code, text = wait_until(reported, 15, "`vip-elector status` reports b")
    assert code == 1, text
    assert "b has it" in text
    assert electors["a"].count(MISSING) == 0

    _ip("addr", "del", f"{lab.vip}/24", "dev", "eth0", netns=b.netns)
    electors["b"].wait_log("is no longer on this node", timeout=10)
    assert electors["b"].count(STRAY) == 1
    wait_until(lambda: vip_elector_status(lab, "a")[0] == 0, 15, "status is healthy again")


def test_an_unobservable_vip_is_said_once_and_failover_works_as_before(
    vip_lab: Callable[..., VipLab],
) -> None:
    lab = vip_lab(["a", "b"])
    lab.start_vip_managers()
    # vip-elector's own copies of vip-manager.yml: an interface this host does
    # not have (a), another manager-type (b); vip-manager uses the lab's.
    configs = {}
    for name, change in (("a", ("eth0", "nosuch0")), ("b", ("manager-type", None))):
        text = lab.config_paths[name].read_text()
        if change[1] is None:
            text += "manager-type: hetzner\n"
        else:
            text = text.replace(f"interface: {change[0]}", f"interface: {change[1]}")
        configs[name] = lab.workdir / f"elector-{name}.yml"
        configs[name].write_text(text)
    electors = {name: start(lab, name, configs[name]) for name in ("a", "b")}
    wait_until(lambda: lab.holders() == ["a"], 20, "the VIP is on a")
    assert electors["a"].count("INFO.*not watching the VIP: this host has no interface") == 1
    assert electors["b"].count("INFO.*not watching the VIP: vip-manager.s manager-type") == 1
    assert status_of(lab.nodes["a"].host)["vip"] == "unobserved"
    assert metric(lab.nodes["a"].host, "vip_elector_vip_present ") == ""

    # The failover of test_vip_failover: a's check fails, the VIP moves to b.
    lab.nodes["a"].check.set("500")
    holders = sample(lab.holders, 8.0, interval=0.05)
    assert holders[-1] == ["b"], holders
    assert all(len(h) <= 1 for h in holders), f"the VIP was on two hosts at once: {holders}"
    for elector in electors.values():
        assert elector.count("not watching the VIP") == 1
        assert elector.count(MISSING) + elector.count(STRAY) == 0


def test_with_step_down_without_vip_the_other_node_takes_the_vip(
    vip_lab: Callable[..., VipLab],
) -> None:
    """Off at start, turned on by SIGHUP: a leader whose vip-manager stopped steps
    down, b takes the VIP, never two holders; a holds back."""
    lab = vip_lab(["a", "b"])
    lab.start_vip_managers()
    options = lab.workdir / "elector-a.options"
    options.write_text("")
    electors = {
        "a": start(lab, "a", args=["--config", str(options)]),
        "b": start(lab, "b"),
    }
    wait_until(lambda: lab.holders() == ["a"], 20, "the VIP is on a")
    a = lab.nodes["a"].host

    lab.vip_managers["a"].stop()
    electors["a"].wait_log(MISSING, timeout=GRACE + 10)
    # Off by default: reported only; a keeps the lock and nobody has the VIP.
    assert all(h == [] for h in sample(lab.holders, 2 * GRACE, interval=0.1))
    assert status_of(a)["state"] == "leader"
    assert electors["a"].count("STEPPED DOWN") == 0

    options.write_text("step-down-without-vip = true\n")
    electors["a"].process.send_signal(signal.SIGHUP)
    line = electors["a"].wait_log("stepping down so that 'b' can take the VIP", timeout=10)
    assert "WARNING" in line
    assert "systemctl status vip-manager" in line
    electors["a"].wait_log("STEPPED DOWN .*cause=vip_missing", timeout=10)
    holders = sample(lab.holders, 5.0, interval=0.05)
    assert holders[-1] == ["b"], holders
    assert all(len(h) <= 1 for h in holders), f"the VIP was on two hosts at once: {holders}"
    assert status_of(lab.nodes["b"].host)["state"] == "leader"
    status = status_of(a)
    assert status["state"] == "follower"
    assert status["vip_hold_left"] > 250  # holds back (5 minutes)
    assert electors["b"].count(MISSING) == 0
