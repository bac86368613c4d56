"""Fault injection with invariants checked all the time, for the fault suite and the soak.

A ChaosLab is the VIP lab with three Consul servers and three hosts; each
host runs vip-elector (with --status-addr on its own address) and real
vip-manager managing the VIP on its eth0, and host ``a`` reaches its agent
through a FaultProxy. A VipWatcher sees every change of the VIP on every
host as the kernel reports it. The InvariantMonitor also polls every
daemon's /status, the trigger-key and the servers' view of every node's
checks ten times a second, and judges:

VIP level (what users notice)
1. **two holders**: no two hosts have the VIP at once. vip-manager notices a
   change of the key up to its interval (100 ms here) late; the daemon does
   not take a freed key before max(lock-delay, that interval + margin) has
   passed since it saw it go, so the old holder has dropped the VIP first.
   The bound is therefore 0, held to the observation's resolution
   (TWO_HOLDER_SLACK): two event readers stamp changes on arrival.
   One fault is different: a *partitioned* holder's vip-manager cannot see
   the key go. Its read (a 1 s blocking query) hangs in the local agent until
   the agent gives up on the unreachable servers (Consul's rpc_hold_timeout,
   7 s; measured 8.1 s from the partition to the VIP gone) and only then
   drops the VIP, while the other side may already have taken over. In the
   trigger-key mode that window is unavoidable (the fenced mode closes it);
   it must end within PARTITION_VIP_BOUND of the partition, and its length
   is reported. In the fenced mode (vip-manager follows /leader) the bound
   is 0 for every fault, the partition included.
2. **VIP on a critical node**: no host keeps the VIP longer than check
   interval + lock-delay + vip-manager interval + margin after the servers
   see its check (or serfHealth) critical (a partitioned holder in the
   trigger-key mode: PARTITION_VIP_BOUND, see 1).
3. **recovery**: after a fault is healed, the VIP is on exactly one host, the
   leader's, whose checks pass, within VIP_RECOVERY_DEADLINE. Judged on the
   VIP alone; the next fault waits until every node is a candidate again
   (*settled*: a partitioned node's agent may need serf's 30 s reconnect
   interval), and that wait counts to the fault that caused it.

Daemon level
4. **two leaders**: two daemons report LEADER at once only while a fault cuts
   one of them off from Consul (CUT_OFF_FAULTS: it cannot know it lost the
   lock), and then no longer than the renewal rule (one TTL) plus slack.
   Every such window is reported with its fault and length.
5. **critical holder**: the key does not name a node whose check has been
   critical for longer than lock-delay + 1 s.
6. no sessions are left when the daemons stop; no traceback in any log.

Nothing is skipped silently: a sample that fails (a /status that does not
answer, Consul without a leader, a VIP monitor restarting) is an
*unobserved* interval, recorded with its length and reported.
"""

from __future__ import annotations

import random
import signal
import statistics
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
from tests.testbed.netns import STATUS_PORT, VipLab
from tests.testbed.vip_watch import Interval, VipWatcher
from tests.testbed.waiting import ConditionTimeout, wait_until
from vip_elector.durations import format_duration

TTL_SECONDS = 10.0
LOCK_DELAY_SECONDS = 1.0
FENCED_LOCK_DELAY = 5.0
CHECK_INTERVAL_SECONDS = 1.0
VIP_MANAGER_INTERVAL_SECONDS = 0.1  # VipLab's vip-manager.yml `interval`
SAMPLE_EVERY = 0.1
RECOVERY_TIMEOUT = 60.0
# After the heal: a session through the health gate, an acquire after
# lock-delay, vip-manager's next poll. The slowest heal (a killed agent that
# rejoins) takes about 10 s on the test bed.
VIP_RECOVERY_DEADLINE = 30.0
# Every node a candidate again. A partitioned agent's serfHealth can stay
# critical until serf's next reconnect attempt (every 30 s), and its daemon
# has no session until then (measured: 34 s after the heal).
SETTLE_TIMEOUT = 90.0
TWO_HOLDER_SLACK = 0.020
RPC_HOLD_TIMEOUT = 7.0  # Consul's default rpc_hold_timeout
VIP_MANAGER_WAIT = 1.0  # vip-manager v5's blocking-query wait on the trigger-key
PARTITION_VIP_BOUND = RPC_HOLD_TIMEOUT + VIP_MANAGER_WAIT + VIP_MANAGER_INTERVAL_SECONDS + 1.0
# Faults that cut the VIP holder's vip-manager off from the Consul servers.
VIP_CUT_OFF_FAULTS = frozenset({"partition"})


def critical_vip_bound(lock_delay: float) -> float:
    """Invariant 2's bound: check interval + lock-delay + vip-manager interval + 0.5 s."""
    return CHECK_INTERVAL_SECONDS + lock_delay + VIP_MANAGER_INTERVAL_SECONDS + 0.5


LEADER_OVERLAP_BOUND = TTL_SECONDS + 1.0
# Faults that cut a daemon off from Consul: it cannot know that Consul gave
# the lock away until its renewal rule fires.
CUT_OFF_FAULTS = frozenset({"partition", "kill-agent", "restart-agent"})
_NEVER = threading.Event()


@dataclass
class Violation:
    at: float
    invariant: str
    detail: str
    fault: str = ""

    def __str__(self) -> str:
        during = f" (during {self.fault})" if self.fault else ""
        return f"[{self.invariant}]{during} {self.detail}"


@dataclass
class FaultRecord:
    """One injected fault, from injection to recovery."""

    kind: str
    started: float
    healed: float = 0.0
    recovered: float = 0.0  # the VIP on one healthy leader; 0: never
    settled: float = 0.0  # every daemon a candidate again; 0: never
    vip_nobody_ms: float = 0.0
    vip_two_ms: float = 0.0  # longest single window
    unobserved_ms: float = 0.0
    leader_overlaps: list[float] = field(default_factory=list)  # seconds each

    @property
    def recovery_s(self) -> float | None:
        return self.recovered - self.healed if self.recovered else None

    @property
    def settled_s(self) -> float | None:
        return self.settled - self.healed if self.settled else None


class ChaosLab:
    """VipLab(servers=3, hosts a b c) with vip-elector and vip-manager on every host.

    ``fenced``: vip-manager follows vip-elector's /leader (patroni mode), with
    lock-delay 5 s so that a Consul leader election costs no VIP outage.
    """

    def __init__(
        self, workdir: Path, names: tuple[str, ...] = ("a", "b", "c"), fenced: bool = False
    ) -> None:
        self.workdir = workdir
        self.fenced = fenced
        self.lock_delay = FENCED_LOCK_DELAY if fenced else LOCK_DELAY_SECONDS
        self.lab = VipLab(list(names), workdir, "service/chaos/vip", servers=3, fenced=fenced)
        self.proxy: FaultProxy | None = None
        self.electors: dict[str, Elector] = {}
        self.names = names
        self.vip: VipWatcher | None = None

    def start(self) -> ChaosLab:
        try:
            return self._start()
        except BaseException:
            self.stop()  # a half-started lab must not leave namespaces behind
            raise

    def _start(self) -> ChaosLab:
        self.lab.start()
        for node in self.lab.nodes.values():
            node.check.register()
            node.check.wait_status("passing")
        self.vip = VipWatcher(self.lab.network.hosts, self.lab.vip).start().wait_watching()
        self.lab.start_vip_managers()
        # Host a talks to its agent through the fault proxy, on the bridge.
        first = self.lab.nodes[self.names[0]]
        self.proxy = FaultProxy(first.host.ip, HTTP_PORT, host=self.lab.network.gateway_ip)
        for name in self.names:
            self.start_elector(name)
        return self

    def start_elector(self, name: str) -> Elector:
        node = self.lab.nodes[name]
        # On the observation link: a partition must not blind the monitor.
        args = ["--status-addr", self.lab.status_addr(node.host)]
        args += ["--lock-delay", format_duration(self.lock_delay)]
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
            answer = requests.get(f"http://{host.mgmt_ip}:{STATUS_PORT}/status", timeout=0.5)
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
        if self.vip:
            self.vip.stop()
        if self.proxy:
            self.proxy.close()
        self.lab.stop()


class Blind:
    """Consecutive failed samples of one source, as unobserved intervals."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.since: float | None = None
        self.intervals: list[Interval] = []

    def failed(self, now: float) -> None:
        if self.since is None:
            self.since = now

    def ok(self, now: float) -> None:
        if self.since is not None:
            self.intervals.append(Interval(self.since, now, self.what))
            self.since = None

    def within(self, t0: float, t1: float) -> list[Interval]:
        found = [*self.intervals]
        if self.since is not None:
            found.append(Interval(self.since, t1, self.what))
        return [
            Interval(max(i.start, t0), min(i.end, t1), i.detail)
            for i in found
            if min(i.end, t1) > max(i.start, t0)
        ]


@dataclass
class InvariantMonitor:
    chaos: ChaosLab
    violations: list[Violation] = field(default_factory=list)
    samples: int = 0
    records: list[FaultRecord] = field(default_factory=list)
    holder: str | None = None  # the last node seen in the key
    failovers: int = 0  # times the key went to another node
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _leaders_since: float | None = None
    _leaders_fault: str = ""
    _critical_since: dict[str, float] = field(default_factory=dict)
    _reported_vip_critical: set[tuple[str, float]] = field(default_factory=set)
    _holder_reported: dict[str, float] = field(default_factory=dict)  # critical-holder re-arm
    _blind: dict[str, Blind] = field(default_factory=dict)
    _current: FaultRecord | None = None
    _judged_until: float = 0.0  # the VIP's two-holder rule is judged up to here

    def start(self) -> InvariantMonitor:
        self._judged_until = time.monotonic()
        for name in self.chaos.names:
            self._blind[f"status-{name}"] = Blind(f"{name}'s /status")
        self._blind["consul"] = Blind("the key and checks in Consul")
        self._thread = threading.Thread(target=self._run, name="invariants", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    @property
    def fault(self) -> str:
        return self._current.kind if self._current else ""

    def violate(self, invariant: str, detail: str) -> None:
        self.violations.append(Violation(time.monotonic(), invariant, detail, self.fault))

    # -- sampling ------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self._sample(started)
            self.samples += 1
            _NEVER.wait(max(0.0, SAMPLE_EVERY - (time.monotonic() - started)))

    def _sample(self, now: float) -> None:
        leaders = []
        for name in self.chaos.names:
            status = self.chaos.status(name)
            blind = self._blind[f"status-{name}"]
            if status is None:
                blind.failed(now)
                continue
            blind.ok(now)
            if status["state"] == "leader":
                leaders.append(name)
        self._check_leaders(now, leaders)
        try:
            self._check_consul(now)
        except Exception:  # Consul without a leader, a server just killed: unobserved
            self._blind["consul"].failed(now)
        else:
            self._blind["consul"].ok(now)
        self._check_vip_on_critical(now)

    def _check_leaders(self, now: float, leaders: list[str]) -> None:
        """Invariant 4: two daemons LEADER only when cut off, for one TTL at most."""
        if len(leaders) > 1:
            if self._leaders_since is None:
                self._leaders_since, self._leaders_fault = now, self.fault
            return
        if self._leaders_since is None:
            return
        lasted = now - self._leaders_since
        fault, self._leaders_since = self._leaders_fault, None
        if self._current is not None:
            self._current.leader_overlaps.append(lasted)
        # One sample's worth is the resolution of /status polling.
        if fault not in CUT_OFF_FAULTS and lasted > SAMPLE_EVERY * 1.5:
            self.violate(
                "two-leaders",
                f"two daemons reported LEADER for {lasted:.1f}s though no fault cut "
                "either off from Consul",
            )
        elif lasted > LEADER_OVERLAP_BOUND:
            self.violate(
                "two-leaders",
                f"two daemons reported LEADER for {lasted:.1f}s (> TTL + 1 s)",
            )

    def _check_consul(self, now: float) -> None:
        """Invariant 5, and the servers' view of every node's checks."""
        api = self.chaos.api
        entry = api.kv_get(self.chaos.lab.trigger_key, consistent=False)
        critical: dict[str, float] = {}
        for name in self.chaos.names:
            statuses = [
                api.catalog_check_status(name, "serfHealth"),
                api.catalog_check_status(name, self.chaos.lab.nodes[name].check.check_id),
            ]
            if "critical" in statuses:
                critical[name] = self._critical_since.get(name, now)
        self._critical_since = critical
        if entry is not None and entry.text != self.holder:
            if self.holder is not None:
                self.failovers += 1
            self.holder = entry.text
        # Reported again every lock-delay + 1 s while it lasts; the time it went
        # critical stays as it is (invariant 2 measures from it).
        self._holder_reported = {n: t for n, t in self._holder_reported.items() if n in critical}
        if entry is not None and entry.text in critical:
            critical_for = now - critical[entry.text]
            last = self._holder_reported.get(entry.text, critical[entry.text])
            if now - last > self.chaos.lock_delay + 1.0:
                self.violate(
                    "critical-holder",
                    f"the key names {entry.text}, whose check has "
                    f"been critical for {critical_for:.1f}s",
                )
                self._holder_reported[entry.text] = now

    def _check_vip_on_critical(self, now: float) -> None:
        """Invariant 2: the VIP leaves a critical node within the bound."""
        assert self.chaos.vip is not None
        for name in self.chaos.vip.holders():
            since = self._critical_since.get(name)
            if since is None or (name, since) in self._reported_vip_critical:
                continue
            bound = critical_vip_bound(self.chaos.lock_delay)
            fault = self._current
            if fault is not None and fault.kind in VIP_CUT_OFF_FAULTS and not self.chaos.fenced:
                # A partitioned holder's vip-manager cannot see the key go (invariant 1).
                bound = max(bound, fault.started + PARTITION_VIP_BOUND - since)
            if now - since > bound:
                self._reported_vip_critical.add((name, since))
                self.violate(
                    "vip-on-critical",
                    f"{name} has the VIP {now - since:.1f}s after its check went critical "
                    f"(bound {bound:.1f}s)",
                )

    # -- faults ----------------------------------------------------------------
    def begin(self, kind: str) -> FaultRecord:
        self._current = FaultRecord(kind, time.monotonic())
        self.records.append(self._current)
        return self._current

    def healed(self) -> None:
        assert self._current is not None
        self._current.healed = time.monotonic()

    def end(self) -> None:
        """Invariant 1 over the fault's window (to now: the settling included),
        and its record (the VIP measured to the recovery)."""
        record = self._current
        assert record is not None
        assert self.chaos.vip is not None
        now = time.monotonic()
        t1 = record.recovered or now
        measure = self.chaos.vip.measure(record.started, t1)
        record.vip_nobody_ms = measure.nobody_ms
        record.vip_two_ms = measure.longest_two_ms
        blind = [*measure.unobserved]
        for source in self._blind.values():
            blind += source.within(record.started, t1)
        record.unobserved_ms = sum(i.seconds for i in blind) * 1000
        self._judge_two_holders(now, record)
        self._current = None

    def _judge_two_holders(self, t1: float, record: FaultRecord | None = None) -> None:
        """Invariant 1 over everything since it was last judged (faults and the
        quiet time between them alike)."""
        assert self.chaos.vip is not None
        for window in self.chaos.vip.measure(self._judged_until, t1).two:
            during = record if record is not None and window.end > record.started else None
            if window.seconds <= TWO_HOLDER_SLACK:
                continue
            # The fenced mode has no exemption: /leader is the fence.
            if during is not None and during.kind in VIP_CUT_OFF_FAULTS and not self.chaos.fenced:
                if window.end - during.started <= PARTITION_VIP_BOUND:
                    continue  # the partitioned side's vip-manager could not know
                detail = (
                    f"{window.detail} had the VIP at once until "
                    f"{window.end - during.started:.1f}s into the {during.kind} "
                    f"(bound {PARTITION_VIP_BOUND:.1f}s)"
                )
            else:
                detail = f"{window.detail} had the VIP at once for {window.seconds * 1000:.0f} ms"
            self.violations.append(
                Violation(window.start, "two-vip-holders", detail, during.kind if during else "")
            )
        self._judged_until = t1

    def finish(self) -> None:
        """Judge the time since the last fault, and what could not be watched."""
        self._judge_two_holders(time.monotonic())
        assert self.chaos.vip is not None
        for mismatch in self.chaos.vip.mismatches:
            self.violate("vip-watch", f"a VIP change was not reported by the kernel: {mismatch}")

    def _vip_recovered(self) -> str | None:
        """Invariant 3's condition: one daemon is LEADER, the key names it, its
        checks pass and the VIP is on its host only; its name, or None."""
        assert self.chaos.vip is not None
        leaders = []
        for name, elector in self.chaos.electors.items():
            status = self.chaos.status(name) if elector.running() else None
            if status is not None and status["state"] == "leader":
                leaders.append(name)
        if len(leaders) != 1:
            return None
        entry = self.chaos.api.kv_get(self.chaos.lab.trigger_key)
        if entry is None or entry.text != leaders[0]:
            return None
        if self.chaos.vip.holders() != (leaders[0],) or leaders[0] in self._critical_since:
            return None
        return leaders[0]

    def _settled(self) -> str | None:
        """Recovered, and every daemon a candidate again: running, FOLLOWER or
        LEADER, with a session."""
        for name, elector in self.chaos.electors.items():
            status = self.chaos.status(name) if elector.running() else None
            if status is None or status["state"] not in ("follower", "leader"):
                return None
            if not status.get("session"):
                return None  # e.g. its agent is still rejoining after a partition
        return self._vip_recovered()

    def _wait(self, condition: Callable[[], str | None], timeout: float, what: str) -> str:
        try:
            return str(wait_until(condition, timeout, what, interval=0.1))
        except ConditionTimeout:
            assert self.chaos.vip is not None
            states = {
                n: {k: (self.chaos.status(n) or {}).get(k) for k in ("state", "session")}
                for n in self.chaos.names
            }
            self.violate(
                "recovery",
                f"not {what} within {timeout:.0f}s: daemons {states}, VIP on "
                f"{list(self.chaos.vip.holders())}",
            )
            return ""

    def wait_recovered(self, timeout: float = RECOVERY_TIMEOUT) -> str:
        """Invariant 3: after the heal, the VIP is on exactly one healthy node, the
        leader's, within VIP_RECOVERY_DEADLINE. Judged on the VIP alone: a node
        still rejoining (see wait_settled) does not hold the VIP up."""
        started = time.monotonic()
        leader = self._wait(self._vip_recovered, timeout, "recovered")
        record = self._current
        if record is None or not leader:
            return leader
        record.recovered = time.monotonic()
        took = record.recovered - started
        if took > VIP_RECOVERY_DEADLINE:
            self.violate(
                "recovery",
                f"the VIP was on exactly one healthy node only {took:.1f}s after the heal "
                f"(deadline {VIP_RECOVERY_DEADLINE:.0f}s)",
            )
        return leader

    def wait_settled(self, timeout: float = SETTLE_TIMEOUT) -> str:
        """Every daemon is a candidate again and the VIP is recovered: waited for
        before the next fault (and inside a fault's window, after its recovery), so
        that one fault's tail is judged as part of that fault, not of the next one."""
        leader = self._wait(self._settled, timeout, "settled")
        if self._current is not None and leader:
            self._current.settled = time.monotonic()
        return leader

    # -- after the run -----------------------------------------------------------
    def check_logs(self) -> None:
        """Invariant 6b: no unhandled exception in any daemon's log."""
        for name, elector in self.chaos.electors.items():
            text = elector.log()
            if "Traceback" in text or "thread failed" in text:
                self.violate("exception", f"{name}'s log has a traceback")

    def check_no_sessions_left(self) -> None:
        """Invariant 6a: stop every daemon cleanly; no vip-elector session remains."""
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

    def summary(self) -> list[str]:
        """Per fault kind: VIP outage p50/max, two-holder max, unobserved, leader overlaps."""
        lines = [
            "fault kind            n  VIP outage ms p50/max  two holders ms max  "
            "unobserved ms  two LEADERs s max  recovery s max  settled s max"
        ]
        kinds = sorted({r.kind for r in self.records})
        for kind in kinds:
            records = [r for r in self.records if r.kind == kind]
            outage = [r.vip_nobody_ms for r in records]
            overlaps = [o for r in records for o in r.leader_overlaps]
            recovery = [r.recovery_s for r in records if r.recovery_s is not None]
            settled = [r.settled_s for r in records if r.settled_s is not None]
            lines.append(
                f"{kind:<20} {len(records):>2}  {statistics.median(outage):>8.0f} / "
                f"{max(outage):<8.0f}  {max(r.vip_two_ms for r in records):>17.0f}  "
                f"{sum(r.unobserved_ms for r in records):>13.0f}  "
                f"{max(overlaps, default=0.0):>17.1f}  {max(recovery, default=0.0):>14.1f}  "
                f"{max(settled, default=0.0):>13.1f}"
            )
        return lines

    def record_line(self, record: FaultRecord) -> str:
        recovery = f"{record.recovery_s:.1f}s" if record.recovery_s is not None else "never"
        settled = f"{record.settled_s:.1f}s" if record.settled_s is not None else "never"
        overlaps = ", ".join(f"{o:.1f}s" for o in record.leader_overlaps) or "none"
        return (
            f"{record.kind}: VIP outage {record.vip_nobody_ms:.0f} ms, two holders "
            f"{record.vip_two_ms:.0f} ms, unobserved {record.unobserved_ms:.0f} ms, "
            f"two LEADERs {overlaps}, recovered {recovery} after the heal, "
            f"all candidates again after {settled}"
        )


# -- the faults ------------------------------------------------------------------------


Fault = Callable[[ChaosLab, str], Callable[[], object]]  # (lab, leader) -> heal


def fail_check(chaos: ChaosLab, leader: str) -> Callable[[], object]:
    """The leader's service fails (its check answers 500) for 8 s: the failover
    the product exists for (the VIP must leave within invariant 2's bound)."""
    check = chaos.lab.nodes[leader].check
    check.set("500")
    _NEVER.wait(8.0)
    return lambda: check.set("200")


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
    "check-fails": fail_check,
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


STEP_DOWN = "sigusr1-step-down"  # not a fault: how the lab moves the lock on purpose


def make_leader(chaos: ChaosLab, monitor: InvariantMonitor, name: str) -> None:
    """Hand the lock to ``name`` by stepping the others down (SIGUSR1); each
    step-down is judged like a fault (it moves the VIP)."""
    for _ in range(len(chaos.names)):
        leader = monitor.wait_settled()
        if leader == name or not leader:
            return
        monitor.begin(STEP_DOWN)
        chaos.electors[leader].process.send_signal(signal.SIGUSR1)
        monitor.healed()
        monitor.wait_recovered()
        monitor.wait_settled()
        monitor.end()


def run_fault(chaos: ChaosLab, monitor: InvariantMonitor, fault: str) -> str:
    """Inject one fault on the current leader, heal it, wait for recovery (the
    VIP, judged) and for every node to be a candidate again; the fault's window
    runs from the injection to then (the VIP outage: to the recovery)."""
    if fault in PROXY_FAULTS:
        make_leader(chaos, monitor, chaos.names[0])
    leader = monitor.wait_settled()
    monitor.begin(fault)
    heal = FAULTS[fault](chaos, leader or random.choice(chaos.names))
    heal()
    monitor.healed()
    leader = monitor.wait_recovered()
    leader = monitor.wait_settled() or leader
    monitor.end()
    return leader
