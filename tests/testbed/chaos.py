"""Fault injection with invariants checked all the time, for the fault suite and the soak.

A ChaosLab is the VIP lab with three Consul servers and three hosts; each
host runs vip-elector with --status-addr on its own address, and host ``a``
reaches its agent through a FaultProxy. An InvariantMonitor polls every
daemon's /status, the trigger-key and the servers' view of every node's
checks, ten times a second, and records each violation of:

1. two daemons report LEADER at once for longer than the renewal rule allows
   (one TTL, plus a second of slack);
2. the key names a node whose check (or serfHealth) has been critical for
   longer than lock-delay + 1 s (Consul must have invalidated its session);
3. after a fault is healed, every daemon runs and is FOLLOWER or LEADER, and
   one of them leads, within RECOVERY_TIMEOUT;
4. no sessions are left over when the daemons stop; no traceback in any log.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.testbed.agents import HTTP_PORT
from tests.testbed.elector import Elector
from tests.testbed.fault_proxy import FaultProxy
from tests.testbed.netns import VipLab
from tests.testbed.waiting import ConditionTimeout, wait_until

STATUS_PORT = 9100
TTL_SECONDS = 10.0
LOCK_DELAY_SECONDS = 1.0
RECOVERY_TIMEOUT = 60.0
_NEVER = threading.Event()


@dataclass
class Violation:
    at: float
    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.detail}"


class ChaosLab:
    """VipLab(servers=3, hosts a b c) with one vip-elector per host."""

    def __init__(self, workdir: Path, names: tuple[str, ...] = ("a", "b", "c")) -> None:
        self.workdir = workdir
        self.lab = VipLab(list(names), workdir, "service/chaos/vip", servers=3)
        self.proxy: FaultProxy | None = None
        self.electors: dict[str, Elector] = {}
        self.names = names

    def start(self) -> ChaosLab:
        self.lab.start()
        for node in self.lab.nodes.values():
            node.check.register()
            node.check.wait_status("passing")
        # Host a talks to its agent through the fault proxy, on the bridge.
        first = self.lab.nodes[self.names[0]]
        self.proxy = FaultProxy(first.host.ip, HTTP_PORT, host=self.lab.network.gateway_ip)
        for name in self.names:
            self.start_elector(name)
        return self

    def start_elector(self, name: str) -> Elector:
        node = self.lab.nodes[name]
        args = ["--status-addr", f"{node.host.ip}:{STATUS_PORT}"]
        if name == self.names[0] and self.proxy is not None:
            args += ["--addr", self.proxy.address]
        elector = Elector(
            name,
            self.workdir,
            self.lab.config_paths[name],
            check_id=node.check.check_id,
            args=args,
            netns=node.host.netns,
        ).start()
        self.electors[name] = elector
        return elector

    def status(self, name: str) -> dict[str, Any] | None:
        host = self.lab.nodes[name].host
        try:
            answer = requests.get(f"http://{host.ip}:{STATUS_PORT}/status", timeout=0.5)
            return dict(answer.json())
        except (requests.RequestException, ValueError):
            return None

    @property
    def api(self) -> Any:
        assert self.lab.cluster is not None
        for server in self.lab.cluster.servers:
            if server.running():
                return server.api()
        raise RuntimeError("no Consul server running")

    def stop(self) -> None:
        if self.proxy:
            self.proxy.close()
        self.lab.stop()


@dataclass
class InvariantMonitor:
    chaos: ChaosLab
    violations: list[Violation] = field(default_factory=list)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _leaders_since: float | None = None
    _critical_since: dict[str, float] = field(default_factory=dict)
    holder: str | None = None  # the last node seen in the key
    failovers: int = 0  # times the key went to another node

    def start(self) -> InvariantMonitor:
        self._thread = threading.Thread(target=self._run, name="invariants", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def violate(self, invariant: str, detail: str) -> None:
        self.violations.append(Violation(time.monotonic(), invariant, detail))

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self._sample()
                self.samples += 1
            _NEVER.wait(0.1)

    def _sample(self) -> None:
        now = time.monotonic()
        # 1. at most one daemon reports LEADER, beyond the renewal rule.
        leaders = [
            n
            for n in self.chaos.names
            if (s := self.chaos.status(n)) is not None and s["state"] == "leader"
        ]
        if len(leaders) > 1:
            if self._leaders_since is None:
                self._leaders_since = now
            elif now - self._leaders_since > TTL_SECONDS + 1.0:
                self.violate(
                    "two-leaders",
                    f"{leaders} all report LEADER for "
                    f"{now - self._leaders_since:.1f}s (> TTL + 1 s)",
                )
                self._leaders_since = now
        else:
            self._leaders_since = None
        # 2. the key does not name a node whose check has long been critical.
        api = self.chaos.api
        entry = api.kv_get(self.chaos.lab.trigger_key, consistent=False)
        if entry is not None and entry.text != self.holder:
            if self.holder is not None:
                self.failovers += 1
            self.holder = entry.text
        for name in self.chaos.names:
            statuses = [
                api.catalog_check_status(name, "serfHealth"),
                api.catalog_check_status(name, self.chaos.lab.nodes[name].check.check_id),
            ]
            if "critical" in statuses:
                self._critical_since.setdefault(name, now)
            else:
                self._critical_since.pop(name, None)
        if entry is not None and entry.text in self._critical_since:
            critical_for = now - self._critical_since[entry.text]
            if critical_for > LOCK_DELAY_SECONDS + 1.0:
                self.violate(
                    "critical-holder",
                    f"the key names {entry.text}, whose check has "
                    f"been critical for {critical_for:.1f}s",
                )
                self._critical_since[entry.text] = now

    def wait_recovered(self, timeout: float = RECOVERY_TIMEOUT) -> str:
        """Invariant 3: all daemons run and are FOLLOWER/LEADER, one leads the key."""

        def recovered() -> str | None:
            states = {}
            for name, elector in self.chaos.electors.items():
                if not elector.running():
                    return None
                status = self.chaos.status(name)
                if status is None or status["state"] not in ("follower", "leader"):
                    return None
                states[name] = status["state"]
            leaders = [n for n, s in states.items() if s == "leader"]
            if len(leaders) != 1:
                return None
            entry = self.chaos.api.kv_get(self.chaos.lab.trigger_key)
            return leaders[0] if entry is not None and entry.text == leaders[0] else None

        try:
            return str(wait_until(recovered, timeout, "recovery", interval=0.2))
        except ConditionTimeout:
            states = {n: (self.chaos.status(n) or {}).get("state") for n in self.chaos.names}
            self.violate("recovery", f"not recovered within {timeout:.0f}s: {states}")
            return ""

    def check_logs(self) -> None:
        """Invariant 4b: no unhandled exception in any daemon's log."""
        for name, elector in self.chaos.electors.items():
            text = elector.log()
            if "Traceback" in text or "thread failed" in text:
                self.violate("exception", f"{name}'s log has a traceback")

    def check_no_sessions_left(self) -> None:
        """Invariant 4a: stop every daemon cleanly; no vip-elector session remains."""
        for elector in self.chaos.electors.values():
            elector.terminate(timeout=10)

        def none_left() -> bool:
            return not [
                s for s in self.chaos.api.sessions() if s["Name"].startswith("vip-elector@")
            ]

        try:
            # Sessions of daemons killed during the run expire at 2 x TTL.
            wait_until(none_left, 2 * TTL_SECONDS + 5, "no sessions left", interval=0.5)
        except ConditionTimeout:
            left = [s["Name"] for s in self.chaos.api.sessions()]
            self.violate("sessions", f"sessions left after stopping: {left}")


# -- the faults ------------------------------------------------------------------------


Fault = Callable[[ChaosLab, str], Callable[[], object]]  # (lab, leader) -> heal


def flap_check(chaos: ChaosLab, leader: str) -> Callable[[], object]:
    """The leader's check flaps between 500 and 200 every second for 8 s."""
    check = chaos.lab.nodes[leader].check
    for turn in range(8):
        check.set("500" if turn % 2 == 0 else "200")
        _NEVER.wait(1.0)
    return lambda: check.set("200")


def kill_elector(chaos: ChaosLab, leader: str) -> Callable[[], object]:
    chaos.electors[leader].kill()
    return lambda: chaos.start_elector(leader)


def kill_agent(chaos: ChaosLab, leader: str) -> Callable[[], object]:
    agent = chaos.lab.nodes[leader].agent
    agent.kill()
    _NEVER.wait(2.0)
    return lambda: agent.start().wait_ready(60)


def restart_agent(chaos: ChaosLab, leader: str) -> Callable[[], object]:
    """A clean restart of the leader's local agent (invalidates its sessions)."""
    chaos.lab.nodes[leader].agent.restart()
    return lambda: None


def kill_consul_leader(chaos: ChaosLab, leader: str) -> Callable[[], object]:
    assert chaos.lab.cluster is not None
    server = chaos.lab.cluster.leader_server()
    server.kill()
    chaos.lab.cluster.wait_leader(30, not_this=server)

    def heal() -> None:
        server.start().wait_ready(60)
        assert chaos.lab.cluster is not None
        chaos.lab.cluster.wait_healthy()

    return heal


def partition(chaos: ChaosLab, leader: str) -> Callable[[], object]:
    """The leader's host loses the network (its veth goes down) for 15 s."""
    host = chaos.lab.nodes[leader].host
    host.partition()
    _NEVER.wait(15.0)
    return host.heal


def proxy_fault(mode: str, seconds: float, latency: float = 0.0) -> Fault:
    def inject(chaos: ChaosLab, leader: str) -> Callable[[], object]:
        assert chaos.proxy is not None
        chaos.proxy.set(mode, latency)
        _NEVER.wait(seconds)
        return lambda: chaos.proxy.set("pass") if chaos.proxy else None

    inject.__name__ = f"proxy_{mode}"
    return inject


FAULTS: dict[str, Fault] = {
    "check-flapping": flap_check,
    "kill-elector": kill_elector,
    "kill-agent": kill_agent,
    "restart-agent": restart_agent,
    "kill-consul-leader": kill_consul_leader,
    "partition": partition,
    "proxy-latency": proxy_fault("latency", 6.0, latency=0.4),
    "proxy-reset": proxy_fault("reset", 5.0),
    "proxy-blackhole": proxy_fault("blackhole", 14.0),
    "proxy-no-leader": proxy_fault("http500", 5.0),
}

# Faults that need the proxied host (a) to be the leader to bite.
PROXY_FAULTS = {name for name in FAULTS if name.startswith("proxy-")}


def make_leader(chaos: ChaosLab, monitor: InvariantMonitor, name: str) -> None:
    """Hand the lock to ``name`` by stepping the others down (SIGUSR1)."""
    for _ in range(len(chaos.names)):
        leader = monitor.wait_recovered()
        if leader == name or not leader:
            return
        chaos.electors[leader].process.send_signal(signal.SIGUSR1)
        _NEVER.wait(0.5)


def run_fault(chaos: ChaosLab, monitor: InvariantMonitor, fault: str) -> str:
    """Inject one fault on the current leader, heal it, wait for recovery."""
    if fault in PROXY_FAULTS:
        make_leader(chaos, monitor, chaos.names[0])
    leader = monitor.wait_recovered()
    heal = FAULTS[fault](chaos, leader or random.choice(chaos.names))
    heal()
    return monitor.wait_recovered()
