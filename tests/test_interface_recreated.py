"""The address watch follows vip-manager.yml's `interface` by name: a bridge (or
bond, VLAN) that ifupdown or systemd-networkd deletes and creates again comes
back with a new index, and the leader's "without its VIP" report clears once
the VIP is on it again; an interface created after vip-elector started is
followed from then on. Real kernel (a bridge in the host's network namespace),
real Consul; the test adds the VIP with `ip addr add`, as vip-manager would."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.test_vip_observation import GRACE, MISSING, start, status_of
from tests.testbed.elector import Elector
from tests.testbed.netns import Host, VipLab, _ip
from tests.testbed.waiting import wait_until

pytestmark = [pytest.mark.netns, pytest.mark.integration, pytest.mark.slow]

BRIDGE = "vip0"


def create(host: Host, vip: str) -> int:
    """The interface (again), with the VIP on it as a /32 (no route beside eth0's)."""
    _ip("link", "add", BRIDGE, "type", "bridge", netns=host.netns)
    _ip("addr", "add", f"{vip}/32", "dev", BRIDGE, netns=host.netns)
    out = _ip("-o", "link", "show", "dev", BRIDGE, netns=host.netns)
    return int(out.split(":", 1)[0])


def leader_on_bridge(lab: VipLab, interface: str = BRIDGE) -> Elector:
    """a leads, with vip-elector watching the VIP on ``interface`` (its own copy of
    the lab's vip-manager.yml; no vip-manager runs: the test plays it)."""
    config = lab.workdir / "elector-a.yml"
    config.write_text(
        lab.config_paths["a"].read_text().replace("interface: eth0", f"interface: {interface}")
    )
    elector = start(lab, "a", config)
    host = lab.nodes["a"].host
    wait_until(lambda: status_of(host)["state"] == "leader", 30, "a leads")
    return elector


def test_a_re_created_interface_is_followed_and_the_missing_vip_report_clears(
    vip_lab: Callable[..., VipLab],
) -> None:
    lab = vip_lab(["a"])
    host = lab.nodes["a"].host
    first = create(host, lab.vip)
    elector = leader_on_bridge(lab)
    wait_until(lambda: status_of(host)["vip"] == "present", 10, "a sees its VIP")

    _ip("link", "del", BRIDGE, netns=host.netns)
    assert "WARNING" in elector.wait_log(MISSING, timeout=GRACE + 10)
    assert status_of(host)["vip"] == "absent"

    second = create(host, lab.vip)
    assert second != first, "the kernel gave the re-created interface the same index"
    elector.wait_log("this leader has its VIP again", timeout=10)
    status = status_of(host)
    assert (status["vip"], status["vip_problem"]) == ("present", None)
    assert (
        elector.count(
            f"INFO.*interface {BRIDGE} was re-created \\(index {first} -> {second}\\): following it"
        )
        == 1
    )
    assert elector.count(f"INFO.*interface {BRIDGE} is gone \\(index {first}\\)") == 1
    assert elector.count(MISSING) == 1


def test_an_interface_created_after_the_start_is_followed(
    vip_lab: Callable[..., VipLab],
) -> None:
    lab = vip_lab(["a"])
    host = lab.nodes["a"].host
    elector = leader_on_bridge(lab)
    assert status_of(host)["vip"] == "unobserved"
    assert elector.count(f"INFO.*not watching the VIP: this host has no interface '{BRIDGE}'") == 1

    index = create(host, lab.vip)
    elector.wait_log(f"INFO.*interface {BRIDGE} appeared \\(index {index}\\): following it", 10)
    wait_until(lambda: status_of(host)["vip"] == "present", 10, "a sees its VIP")
    _ip("addr", "del", f"{lab.vip}/32", "dev", BRIDGE, netns=host.netns)
    assert "WARNING" in elector.wait_log(MISSING, timeout=GRACE + 10)


def still_followed(lab: VipLab, elector: Elector, device: str) -> None:
    """The VIP goes from ``device`` and comes back: both seen, and the interface
    was never taken for gone."""
    host = lab.nodes["a"].host
    _ip("addr", "del", f"{lab.vip}/32", "dev", device, netns=host.netns)
    wait_until(lambda: status_of(host)["vip"] == "absent", 10, "a sees its VIP go")
    _ip("addr", "add", f"{lab.vip}/32", "dev", device, netns=host.netns)
    wait_until(lambda: status_of(host)["vip"] == "present", 10, "a sees its VIP back")
    assert elector.count("INFO.*interface .* is gone") == 0
    assert elector.count("INFO.*interface .* was renamed") == 0


def test_an_interface_named_by_an_alternative_name_stays_followed(
    vip_lab: Callable[..., VipLab],
) -> None:
    """vip-manager.yml names the interface by an altname (Linux 5.5): its link
    events carry the primary name, and list the altname apart."""
    lab = vip_lab(["a"])
    host = lab.nodes["a"].host
    create(host, lab.vip)
    _ip("link", "property", "add", "dev", BRIDGE, "altname", "vipalt", netns=host.netns)
    elector = leader_on_bridge(lab, "vipalt")
    wait_until(lambda: status_of(host)["vip"] == "present", 10, "a sees its VIP")
    _ip("link", "set", BRIDGE, "mtu", "1400", netns=host.netns)  # a link event
    still_followed(lab, elector, BRIDGE)


def test_a_port_leaving_its_bridge_keeps_its_vip(vip_lab: Callable[..., VipLab]) -> None:
    """The kernel tells a port's leaving a bridge with an AF_BRIDGE RTM_DELLINK of
    the port, which stays."""
    lab = vip_lab(["a"])
    host = lab.nodes["a"].host
    _ip("link", "add", "vipport", "type", "veth", "peer", "name", "vippeer", netns=host.netns)
    _ip("link", "add", BRIDGE, "type", "bridge", netns=host.netns)
    _ip("link", "set", "vipport", "master", BRIDGE, netns=host.netns)
    _ip("addr", "add", f"{lab.vip}/32", "dev", "vipport", netns=host.netns)
    elector = leader_on_bridge(lab, "vipport")
    wait_until(lambda: status_of(host)["vip"] == "present", 10, "a sees its VIP")
    _ip("link", "set", "vipport", "nomaster", netns=host.netns)
    still_followed(lab, elector, "vipport")
