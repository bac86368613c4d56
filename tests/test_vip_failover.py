"""End to end: vip-elector + real vip-manager in network namespaces; the VIP
address itself moves between hosts."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from tests.testbed.elector import Elector
from tests.testbed.netns import VipLab
from tests.testbed.waiting import sample, wait_until


def has_session(lab: VipLab, name: str) -> bool:
    assert lab.server is not None
    marker = f"value={name} key={lab.trigger_key}"
    return any(s["Name"].endswith(marker) for s in lab.server.api().sessions())


def start_electors(lab: VipLab) -> dict[str, Elector]:
    """One vip-elector per host, started in order (so the first one leads)."""
    electors = {}
    for name, node in lab.nodes.items():
        node.check.register()
        node.check.wait_status("passing")
        electors[name] = Elector(
            name,
            lab.workdir,
            lab.config_paths[name],
            check_id=node.check.check_id,
            netns=node.host.netns,
        ).start()
        wait_until(partial(has_session, lab, name), 30, f"{name} has a session")
    return electors


def test_the_vip_follows_the_healthy_leader(vip_lab: Callable[..., VipLab]) -> None:
    lab = vip_lab(["a", "b"])
    lab.start_vip_managers()
    electors = start_electors(lab)
    wait_until(lambda: lab.holders() == ["a"], 20, "the VIP is on a")

    # a's HTTP check fails: the VIP must move to b, never sitting on both.
    lab.nodes["a"].check.set("500")
    holders = sample(lab.holders, 8.0, interval=0.05)
    assert holders[-1] == ["b"], holders
    assert all(len(h) <= 1 for h in holders), f"the VIP was on two hosts at once: {holders}"
    assert electors["a"].count("LOCK LOST") == 1

    # a is healthy again and competes; b stops cleanly: the VIP is back on a at once.
    lab.nodes["a"].check.set("200")
    wait_until(lambda: has_session(lab, "a"), 30, "a competes again")
    stopped = time.monotonic()
    assert electors["b"].terminate() == 0
    wait_until(lambda: lab.holders() == ["a"], 10, "the VIP is back on a")
    assert time.monotonic() - stopped < 3.0
