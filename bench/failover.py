"""`make bench`: how fast and how safely the VIP moves, side by side with the Go original.

Runs on the test bed: three real Consul servers on a bridge, and per node a
network namespace with its own Consul client agent, an HTTP health endpoint
registered as a check (1 s interval), vip-elector and real vip-manager
managing the VIP on eth0. Seed defaults: ttl 10s, lock-delay 1s.

Scenarios, each repeated:
  H  the leader's HTTP check starts failing
  G  the leader's vip-elector gets SIGTERM
  K  the leader's vip-elector is SIGKILLed (K3: with --liveness-ttl 3s)
  N  the leader's Consul agent is SIGKILLed (node failure)
  L  the Consul leader server is killed (the lock must NOT move)
  R  the leader's vip-elector is SIGKILLed and started again 2 s later, as
     systemd's Restart=always, RestartSec=2 does (the lock must NOT move)
  U  the leader's vip-elector restarts in place (SIGUSR2), the upgrade path
     (the lock must NOT move)
  T  every daemon's token file gets a new token, then SIGHUP (the lock must
     NOT move)
  S  `vip-elector switchover --to <the other node>`: times from the request

A scale row: takeover time on SIGTERM and Consul writes for that failover
with 2, 10 and 30 candidates of distinct priorities on one key. The writes are
the growth of raft's applied index from just before the SIGTERM to 3 s after the
takeover, less what in that window the failover did not cause (see scale_run):
the SIGTERM waits until the candidates' start-up writes are done, and member
heartbeats and Consul's own coordinate updates that fall into the window are
left out. A failover writes the same whatever the number of candidates (8 on
2026-12-06: see scale_run); a row that grows with N is a finding.

Each fault comes at a random moment of vip-manager's cycle, as in real life
(see Bench._random_phase): the bench's own steps would otherwise put it at the
same point of vip-manager's cycle in every run.

Per run: time from the fault to the new leader's key write and to the VIP on
the new node; how long nobody / two nodes held the VIP; whether the lock moved
(L, R, U, T: any change of the key's value, session or ModifyIndex counts).
Plus start-up, shutdown, idle RSS/CPU and Consul requests per minute.

The Go original (yuuki/vip-elector v0.1.4) runs the same scenarios when a
binary is given with --original or VIP_ELECTOR_GO_BIN (the Go module proxy
reachable here refuses that module, so it is not built by this project).

--mode fenced (or both) runs vip-elector also in the fenced mode: vip-manager
v5 in `dcs-type: patroni` follows each daemon's /leader (--status-addr), with
lock-delay 5 s, the price of a fence that survives a Consul leader election.
"""

from __future__ import annotations

import argparse
import base64
import compileall
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tests.testbed import netns as netns_mod
from tests.testbed.agents import ConsulAgent, dev_agent, free_port
from tests.testbed.binaries import vip_manager_bin, vip_manager_has_patroni_mode
from tests.testbed.configs import write_vip_manager_config
from tests.testbed.consul_http import ConsulHTTP
from tests.testbed.elector import clean_environment, vip_elector_argv
from tests.testbed.fault_proxy import FaultProxy
from tests.testbed.health import HealthCheck, HealthEndpoint
from tests.testbed.key_watch import KeyWatcher
from tests.testbed.processes import ManagedProcess, kill_all
from tests.testbed.vip_watch import VipWatcher
from tests.testbed.waiting import ConditionTimeout, wait_until
from vip_elector.decision import REPORT_MIN_GAP

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results"
NODES = ["a", "b"]
TTL, LOCK_DELAY = "10s", "1s"
FENCED_LOCK_DELAY = "5s"  # the fenced mode's bound: lock-delay - interval - margin
TTL_SECONDS = 10.0
FAILOVER_TIMEOUT = 45.0
_NEVER = threading.Event()
# Longer than vip-manager's cycle (the bench's interval 100 ms, plus up to 0.4 s
# that /leader may hold a request): the spread of a fault's random moment.
PHASE_SPREAD = 1.0

SCENARIOS = {
    "H": "leader's HTTP check fails",
    "G": "leader's daemon gets SIGTERM",
    "K": "leader's daemon SIGKILLed",
    "K3": "K with --liveness-ttl 3s",
    "N": "leader's Consul agent SIGKILLed",
    "L": "Consul leader server killed",
    "R": "leader's daemon SIGKILLed, restarted 2 s later (as systemd does)",
    "U": "leader's daemon restarts in place (SIGUSR2, the upgrade path)",
    "T": "token rotation by SIGHUP (new token file contents)",
    "S": "switchover to the other node (vip-elector switchover --to)",
}
# Scenarios in which the lock must not move at all (and the VIP must stay put).
STAY = ("L", "R", "U", "T")
# Ours only: the Go original has no --liveness-ttl, no in-place restart and no
# reload (SIGHUP's default action ends a Go program).
OURS_ONLY = ("K3", "U", "T", "S")
# The fenced mode changes what vip-manager follows, not the election: the rows
# that tell its price (H: lock-delay 5 s) and its gain (L), and G, N and S.
FENCED_SCENARIOS = ("H", "G", "N", "L", "S")


# -- the implementations under test -----------------------------------------------


@dataclass(frozen=True)
class Implementation:
    key: str
    label: str
    binary: Path | None  # None: the Python package of this checkout
    fenced: bool = False  # vip-manager follows /leader (patroni mode)

    def argv(self, config: Path, check_id: str, hostname: str, extra: list[str]) -> list[str]:
        if self.binary is None:
            return vip_elector_argv(
                "--vip-manager-config",
                str(config),
                "--check-id",
                check_id,
                "--hostname",
                hostname,
                "--ttl",
                TTL,
                "--lock-delay",
                FENCED_LOCK_DELAY if self.fenced else LOCK_DELAY,
                *extra,
            )
        return [
            str(self.binary),
            "-vip-manager-config",
            str(config),
            "-check-id",
            check_id,
            "-hostname",
            hostname,
            "-ttl",
            TTL,
            "-lock-delay",
            LOCK_DELAY,
            *extra,
        ]


PYTHON = Implementation("py", "vip-elector (this project)", None)
PYTHON_FENCED = Implementation(
    "pyf", f"vip-elector, fenced mode (/leader, lock-delay {FENCED_LOCK_DELAY})", None, True
)


# -- observing ------------------------------------------------------------------------


# -- one run ------------------------------------------------------------------------------


@dataclass
class Run:
    scenario: str
    key_ms: float | None = None  # fault -> new leader's value in the key
    vip_ms: float | None = None  # fault -> VIP on the new leader's host only
    zero_ms: float = 0.0  # no host had the VIP
    two_ms: float = 0.0  # two hosts had it
    unobserved_ms: float = 0.0  # a host's VIP was not watched (its monitor restarting)
    moved: bool = False  # L: the lock moved


@dataclass
class Results:
    impl: Implementation
    runs: dict[str, list[Run]] = field(default_factory=dict)
    never: dict[str, int] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)


class Bench:
    """One implementation on one lab."""

    def __init__(self, impl: Implementation, lab: netns_mod.VipLab, workdir: Path) -> None:
        self.impl = impl
        self.lab = lab
        self.workdir = workdir
        self.electors: dict[str, ManagedProcess] = {}
        self.extra_args: list[str] = []
        assert lab.cluster is not None
        self.cluster = lab.cluster
        self.watcher = KeyWatcher(self.cluster.servers, lab.trigger_key)
        self.vip = VipWatcher(lab.network.hosts, lab.vip).start().wait_watching()
        self.watcher.start()
        self.generation = 0
        self.token_file = workdir / "consul.token"  # scenario T rotates it
        self.token_file.write_text(f"{uuid.uuid4()}\n")

    def close(self) -> None:
        self.watcher.stopped.set()
        self.vip.stop()
        for process in self.electors.values():
            process.kill()

    # -- processes -----------------------------------------------------------
    def start_elector(self, name: str) -> None:
        node = self.lab.nodes[name]
        self.generation += 1
        extra = list(self.extra_args)
        extra += self._mode_args(name)
        process = ManagedProcess(
            f"{self.impl.key}-{name}-{self.generation}",
            self.impl.argv(self.lab.config_paths[name], node.check.check_id, name, extra),
            self.workdir / f"{self.impl.key}-elector-{name}.log",
            env=clean_environment(),
            netns=node.host.netns,
            cwd=REPO_ROOT,
        )
        self.electors[name] = process.start()

    def ensure_electors(self) -> None:
        for name in NODES:
            process = self.electors.get(name)
            if process is None or not process.running():
                self.start_elector(name)

    def restart_all(self, extra_args: list[str]) -> None:
        for process in self.electors.values():
            process.kill()
        self.electors.clear()
        self.extra_args = extra_args
        with contextlib.suppress(Exception):
            self.cluster.servers[0].api().kv_delete(self.lab.trigger_key)
        for name in NODES:
            self.start_elector(name)
            # The first one started becomes the leader.
            if name == NODES[0]:
                wait_until(
                    lambda: self.watcher.current()[0] == NODES[0], 60, "the first node leads"
                )

    # -- steady state ----------------------------------------------------------
    def node_has_session(self, name: str) -> bool:
        for server in self.cluster.servers:
            if server.running():
                with contextlib.suppress(Exception):
                    return bool(server.api().ok("GET", f"/v1/session/node/{name}"))
        return False

    def steady(self, timeout: float = 90.0) -> str:
        """Every node runs a daemon with a session, its check passes, one node
        holds the key and only its host has the VIP. Returns the leader."""
        self.ensure_electors()

        def settled() -> str | None:
            value, session = self.watcher.current()
            if value not in NODES or not session:
                return None
            if self.vip.holders() != (value,):
                return None
            if not all(self.node_has_session(n) for n in NODES):
                return None
            if not all(self.lab.nodes[n].check.status() == "passing" for n in NODES):
                return None
            return value

        # After a server restart, autopilot needs a while to make it a voter again;
        # the next fault must not find the cluster one server short of a quorum.
        self.cluster.wait_healthy(timeout)
        leader = wait_until(
            settled,
            timeout,
            lambda: f"steady state (key: {self.watcher.current()}, VIP: {self.vip.holders()})",
            interval=0.2,
        )
        _NEVER.wait(1.0)  # let followers settle into their blocking queries
        return str(leader)

    # -- scenarios -----------------------------------------------------------
    def run(self, scenario: str) -> Run | None:
        """One run; None when nothing moved within the timeout (for L: expected)."""
        leader = self.steady()
        other = next(n for n in NODES if n != leader)
        node = self.lab.nodes[leader]
        self._random_phase(other)
        t0 = time.monotonic()
        restore: Callable[[], object]
        if scenario == "H":
            node.check.set("500")
            restore = lambda: node.check.set("200")  # noqa: E731
        elif scenario == "G":
            stopped = self.electors[leader]
            stopped.send_signal(signal.SIGTERM)
            # ensure_electors restarts it once it has exited: a leader that hands
            # the lock over exits just after the VIP moved, not before.
            restore = partial(stopped.wait, 10.0)
        elif scenario in ("K", "K3"):
            self.electors[leader].kill()
            restore = lambda: None  # noqa: E731
        elif scenario == "N":
            node.agent.kill()
            restore = lambda: node.agent.start().wait_ready(60)  # noqa: E731
        elif scenario == "L":
            server = self.cluster.leader_server()
            server.kill()
            restore = lambda: server.start().wait_ready(60)  # noqa: E731
        elif scenario in ("R", "U", "T"):
            self._continuity(scenario, leader)
            restore = lambda: None  # noqa: E731
        elif scenario == "S":
            # From the moment the request is written (the command's own clock).
            t0 = self._switchover(leader, other)
            restore = lambda: None  # noqa: E731
        else:
            raise ValueError(scenario)

        result = Run(scenario)
        if scenario == "L":
            window = 2 * 10.0 + 2.0  # Consul restarts session timers at 2 x TTL
            _NEVER.wait(window)
            t_end = t0 + window
        elif scenario in STAY:
            # Past the next renewals of the kept (or re-credentialed) session.
            _NEVER.wait(TTL_SECONDS)
            t_end = time.monotonic()
        else:
            try:
                t_key = wait_until(
                    lambda: self._first(t0, other), FAILOVER_TIMEOUT, "failover", interval=0.01
                )
            except ConditionTimeout:
                restore()
                return None
            result.key_ms = (t_key - t0) * 1000
            try:
                t_vip = wait_until(
                    lambda: self.vip.first(t0, (other,)), 15, "VIP moves", interval=0.01
                )
                result.vip_ms = (t_vip - t0) * 1000
                t_end = t_vip
            except ConditionTimeout:
                t_end = time.monotonic()
        measure = self.vip.measure(t0, t_end)
        result.zero_ms, result.two_ms = measure.nobody_ms, measure.two_ms
        result.unobserved_ms = measure.unobserved_ms
        restore()
        if scenario in STAY:
            # The lock must not have moved at any time, until all is healthy again.
            self.steady()
            states = {(e.value, e.session, e.modify_index) for e in self.watcher.since(t0)}
            result.moved = len(states) > 1
        return result

    def _mode_args(self, name: str) -> list[str]:
        """The fenced mode's vip-manager.yml asks for /leader: commands say where it is."""
        return (
            ["--status-addr", self.lab.status_addr(self.lab.nodes[name].host)]
            if self.impl.fenced
            else []
        )

    def _random_phase(self, other: str) -> None:
        """The fault at a random moment of vip-manager's cycle, as in real life.

        The bench's own steps take about the same time in every run, so without
        this the fault would fall at the same point of vip-manager's cycle each
        time. In the fenced mode vip-manager polls /leader every interval (and
        /leader may hold a request up to 0.4 s), and the lab starts both nodes'
        vip-managers together, so they would poll in step too: every run would
        measure one phase (after a poll on both nodes: two full intervals). So
        the follower's vip-manager is restarted at a random moment first (it has
        no VIP: its restart changes nothing but its phase), then the fault waits
        a random time longer than any of these cycles.
        """
        interval = self.lab.vip_manager_interval_ms / 1000
        if self.impl.fenced:
            _NEVER.wait(random.uniform(0, PHASE_SPREAD))
            manager = self.lab.vip_managers[other]
            manager.stop()
            manager.start()
            _NEVER.wait(5 * interval)  # its first polls answered (503: it adds nothing)
            if self.vip.holders() != (next(n for n in NODES if n != other),):
                raise RuntimeError(f"the VIP moved while {other}'s vip-manager restarted")
        _NEVER.wait(random.uniform(0, PHASE_SPREAD))

    def _switchover(self, leader: str, other: str) -> float:
        """Run `vip-elector switchover --to other`; the monotonic time of its request."""
        server = self.cluster.servers[0]
        started = time.monotonic()
        result = subprocess.run(
            vip_elector_argv(
                "switchover", "--vip-manager-config", str(self.lab.config_paths[leader]),
                "--hostname", leader, "--to", other, "--yes", "--addr", server.http_addr,
                *self._mode_args(leader),
            ),
            capture_output=True, text=True, env=clean_environment(), cwd=REPO_ROOT,
            timeout=30, check=False,
        )  # fmt: skip
        finished = time.monotonic()
        match = re.search(r" in (\d+) ms", result.stdout)
        if result.returncode != 0 or match is None:
            raise RuntimeError(f"switchover failed: {result.stdout} {result.stderr}")
        # The command reports request -> key; the key is seen before it exits.
        seen = self._first(started, other) or finished
        return seen - int(match.group(1)) / 1000

    def _continuity(self, scenario: str, leader: str) -> None:
        """R, U, T on the leader: each must keep the key exactly as it is."""
        process = self.electors[leader]
        if scenario == "R":
            process.kill()
            _NEVER.wait(2.0)  # RestartSec=2
            self.start_elector(leader)
            self.electors[leader].wait_for_log(r"LOCK KEPT|LOCK ACQUIRED", 30)
        elif scenario == "U":
            seen = process.count("LOCK KEPT")
            process.send_signal(signal.SIGUSR2)
            process.wait_for_log("LOCK KEPT", 30, count=seen + 1)
        else:
            seen = process.count("swapped in place")
            self.token_file.write_text(f"{uuid.uuid4()}\n")
            for name in NODES:  # every node rotates, as an operator would
                self.electors[name].send_signal(signal.SIGHUP)
            process.wait_for_log("swapped in place", 10, count=seen + 1)

    def _first(self, t0: float, value: str) -> float | None:
        for event in self.watcher.since(t0):
            if event.t >= t0 and event.value == value:
                return event.t
        return None


# -- start-up, shutdown, idle cost --------------------------------------------------


def measure_startup_and_shutdown(
    impl: Implementation, agent: ConsulAgent, workdir: Path, repeat: int
) -> dict[str, list[float]]:
    """Start to leader on a free key; SIGTERM to exit as leader and as follower."""
    out: dict[str, list[float]] = {"start": [], "stop_leader": [], "stop_follower": []}
    api = agent.api()
    health = [HealthEndpoint(f"{impl.key}-s{i}", workdir).start() for i in range(2)]
    checks = [
        HealthCheck(agent, h, f"{impl.key}-start-{i}").register() for i, h in enumerate(health)
    ]
    for check in checks:
        check.wait_status("passing")
    try:
        for n in range(repeat):
            key = f"bench/startup/{impl.key}-{n}-{uuid.uuid4().hex[:6]}"
            config = write_vip_manager_config(
                workdir / f"{impl.key}-start.yml", trigger_key=key, endpoint=agent.http_url
            )
            procs = []
            for i, check in enumerate(checks):
                argv = impl.argv(config, check.check_id, f"n{i}", mode_args(impl))
                procs.append(
                    ManagedProcess(
                        f"{impl.key}-start-{i}",
                        argv,
                        workdir / f"{impl.key}-start-{i}.log",
                        env=clean_environment(),
                        cwd=REPO_ROOT,
                    )
                )
            started = time.monotonic()
            procs[0].start()
            wait_until(partial(leads, api, key, "n0"), 30, "leader on a free key", interval=0.005)
            out["start"].append((time.monotonic() - started) * 1000)
            procs[1].start()
            wait_until(lambda: bool(api.ok("GET", f"/v1/session/node/{agent.name}")), 10, "")
            _NEVER.wait(1.5)
            for name, proc in (("stop_follower", procs[1]), ("stop_leader", procs[0])):
                out[name].append(time_to_exit(proc))
            with contextlib.suppress(Exception):
                api.kv_delete(key)
    finally:
        for check in checks:
            with contextlib.suppress(Exception):
                check.deregister()
        for h in health:
            h.stop()
    return out


def mode_args(impl: Implementation) -> list[str]:
    """The fenced mode serves /leader (its watch then returns every third of the bound)."""
    return ["--status-addr", f"127.0.0.1:{free_port()}"] if impl.fenced else []


def time_to_exit(proc: ManagedProcess, limit: float = 30.0) -> float:
    """SIGTERM, then a blocking wait for the exit: ms, without polling granularity
    (Popen.wait with a timeout polls in steps of up to 50 ms)."""
    assert proc.popen is not None
    killer = threading.Timer(limit, proc.kill)
    killer.start()
    started = time.monotonic()
    proc.popen.send_signal(signal.SIGTERM)
    proc.popen.wait()
    took = (time.monotonic() - started) * 1000
    killer.cancel()
    proc.kill()  # reaped already; forget it
    return took


def leads(api: ConsulHTTP, key: str, value: str) -> bool:
    return api.kv_value(key) == value


def proc_cpu_rss(pid: int) -> tuple[float, int]:
    """(CPU seconds used, RSS in KiB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return cpu, rss


def raft_index(api: ConsulHTTP) -> int:
    """The agent's applied raft index: one per write to the cluster's state."""
    return int(api.ok("GET", "/v1/agent/self")["Stats"]["raft"]["applied_index"])


# The scale rows. Before the SIGTERM, raft is still for SCALE_SETTLE: each
# candidate's member entry says "starting" when its daemon starts and "follower"
# REPORT_MIN_GAP later (a node writes it at most that often), so a SIGTERM sooner
# after the start counts one start-up write per candidate (8 + N - 2 on
# 2026-12-06: 8, 16 and 36 for 2, 10 and 30); and the new leader's own report,
# held back by that gap too, would fall after the window.
SCALE_SETTLE = REPORT_MIN_GAP + 1.0
SCALE_SETTLE_TIMEOUT = 120.0
SCALE_WINDOW = 3.0  # after the takeover: everything the failover caused has been written
# A member entry rewritten unchanged this close to (or after) its heartbeat's due
# time is the heartbeat (the writer's clock is this host's: same machine).
HEARTBEAT_SLACK = 1.0


@dataclass(frozen=True)
class MemberSeen:
    """One member entry (<key>/members/<value>) as the bench read it."""

    modify_index: int
    view: tuple[tuple[str, str], ...]  # what it says, but when it was written
    at: float  # the writer's wall clock
    heartbeat: float  # how often it is written at the latest


def member_entries(api: ConsulHTTP, key: str) -> dict[str, MemberSeen]:
    response = api.request("GET", f"/v1/kv/{key}/members/", params={"recurse": ""})
    if response.status_code == 404:
        return {}
    if response.status_code != 200:
        raise RuntimeError(f"GET the member entries: {response.status_code} {response.text}")
    found = {}
    for item in response.json():
        body = json.loads(base64.b64decode(item["Value"]))
        view = tuple(sorted((k, json.dumps(v)) for k, v in body.items() if k != "at"))
        found[item["Key"]] = MemberSeen(
            int(item["ModifyIndex"]), view, float(body["at"]), float(body["heartbeat"])
        )
    return found


def heartbeats(before: dict[str, MemberSeen], after: dict[str, MemberSeen], since: int) -> int:
    """Member entries written again after raft index ``since`` with nothing changed
    since ``before`` was read, when their heartbeat was due: periodic writes, not
    the failover's. An entry written again unchanged *before* it was due counts as
    the failover's (a follower that writes on a change of leader is what the row
    must show)."""
    return sum(
        1
        for name, new in after.items()
        if (old := before.get(name)) is not None
        and new.modify_index > max(since, old.modify_index)
        and new.view == old.view
        and new.at >= old.at + old.heartbeat - HEARTBEAT_SLACK
    )


def coordinate_index(api: ConsulHTTP) -> int:
    """The raft index of Consul's last network-coordinate update: the agent sends
    its coordinate every 15 s or more, and the servers apply them in one batch (a
    raft write nobody here asked for)."""
    response = api.request("GET", "/v1/coordinate/nodes")
    return int(response.headers.get("X-Consul-Index", "0"))


def raft_still(api: ConsulHTTP, seconds: float, timeout: float) -> bool:
    """Wait until raft has applied nothing for ``seconds``; False after ``timeout``."""
    last = [raft_index(api), time.monotonic()]

    def still() -> bool:
        index = raft_index(api)
        if index != last[0]:
            last[:] = [index, time.monotonic()]
        return time.monotonic() - last[1] >= seconds

    try:
        wait_until(still, timeout, "raft still", interval=0.2)
    except ConditionTimeout:
        return False
    return True


@dataclass(frozen=True)
class ScaleRun:
    took_ms: float  # SIGTERM -> the second candidate's value in the key
    writes: int  # raft writes the failover caused
    growth: int  # raft's applied index over the window
    heartbeats: int  # member heartbeats in the window
    coordinates: int  # Consul's own coordinate updates in the window
    settled: bool  # raft was still for SCALE_SETTLE before the SIGTERM


def measure_scale(workdir: Path, counts: list[int]) -> dict[int, tuple[float, int]]:
    """Takeover time on SIGTERM of the leader, and writes to Consul for it, with N
    candidates of distinct priorities on one key (no health check: the cost of the
    election itself). Returns {N: (takeover ms, raft writes)}."""
    out = {}
    for count in counts:
        run = scale_run(workdir, count)
        out[count] = (run.took_ms, run.writes)
        print(
            f"  scale {count}: takeover {run.took_ms:.0f} ms, {run.writes} writes (raft "
            f"+{run.growth}, less {run.heartbeats} member heartbeats and {run.coordinates} "
            "Consul coordinate updates in the window"
            f"{'' if run.settled else '; raft was NOT still before the SIGTERM'})"
        )
    return out


def scale_run(workdir: Path, count: int) -> ScaleRun:
    """One scale row. What a failover writes (the simulation's count, 2026-12-06,
    the same for 2, 10 and 30 candidates): the stopping leader drops its candidate
    entry (so nobody holds back for it), deletes the key with cas, destroys its
    session, appends "shutdown" to the history and writes "stopped" in its member
    entry; the next candidate acquires the key (one txn), appends "acquired" to the
    history and writes "leader" in its member entry: 8. The other candidates write
    nothing (they read: the candidates, the sessions, the new holder's lock-delay).
    Raft's applied index also counts writes Consul refused (a cas or an acquire
    that lost), which are the failover's too."""
    agent = dev_agent(workdir / f"scale-{count}", f"scale{count}").start().wait_ready(60)
    key = f"bench/scale/{count}-{uuid.uuid4().hex[:6]}"
    config = write_vip_manager_config(
        workdir / f"scale-{count}.yml", trigger_key=key, endpoint=agent.http_url
    )
    api = agent.api()
    procs: dict[str, ManagedProcess] = {}
    watcher = KeyWatcher([agent], key)

    def start(value: str) -> None:
        argv = vip_elector_argv(
            "--vip-manager-config", str(config), "--hostname", value,
            "--priority", str(10 + int(value[1:])),
        )  # fmt: skip
        procs[value] = ManagedProcess(
            f"scale-{value}", argv, workdir / f"scale-{count}-{value}.log",
            env=clean_environment(), cwd=REPO_ROOT,
        ).start()  # fmt: skip

    def published() -> bool:
        entries = api.ok("GET", f"/v1/kv/{key}/candidates/", params={"keys": ""}) or []
        return len(entries) == count

    try:
        for i in range(count):
            start(f"c{i:02d}")
        top, second = f"c{count - 1:02d}", f"c{count - 2:02d}"
        wait_until(lambda: api.kv_value(key) is not None, 60, "a leader")
        # The first to start may lead (nopreempt): restart leaders until the top one does.
        while (leader := str(api.kv_value(key))) != top:
            procs[leader].stop(signal.SIGTERM, 10)
            start(leader)
            wait_until(lambda: api.kv_value(key) not in (None, leader), 60, "another leader")
        wait_until(published, 120, "every candidate published")
        watcher.start_watching()
        settled = raft_still(api, SCALE_SETTLE, SCALE_SETTLE_TIMEOUT)
        members = member_entries(api, key)
        before = raft_index(api)
        t0 = time.monotonic()
        procs[top].send_signal(signal.SIGTERM)
        wait_until(lambda: watcher.current()[0] == second, 30, "takeover", interval=0.005)
        took = next(e.t for e in watcher.since(t0) if e.value == second) - t0
        _NEVER.wait(SCALE_WINDOW)  # everything the failover caused has been written
        growth = raft_index(api) - before
        beats = heartbeats(members, member_entries(api, key), since=before)
        coordinates = 1 if coordinate_index(api) > before else 0
        return ScaleRun(
            took * 1000, growth - beats - coordinates, growth, beats, coordinates, settled
        )
    finally:
        watcher.stop()
        for proc in procs.values():
            proc.kill()
        agent.kill()


def measure_idle(
    impl: Implementation, agent: ConsulAgent, workdir: Path, seconds: float
) -> dict[str, float]:
    """Idle leader and follower, each behind a counting proxy, for ``seconds``."""
    key = f"bench/idle/{impl.key}-{uuid.uuid4().hex[:6]}"
    config = write_vip_manager_config(
        workdir / f"{impl.key}-idle.yml", trigger_key=key, endpoint=agent.http_url
    )
    host, port = agent.http_addr.rsplit(":", 1)
    out: dict[str, float] = {}
    procs: list[tuple[str, ManagedProcess, FaultProxy]] = []
    health: list[HealthEndpoint] = []
    try:
        for role in ("leader", "follower"):
            endpoint = HealthEndpoint(f"{impl.key}-idle-{role}", workdir).start()
            health.append(endpoint)
            check = HealthCheck(agent, endpoint, f"{impl.key}-idle-{role}").register()
            check.wait_status("passing")
            proxy = FaultProxy(host, int(port))
            addr_flag = "-addr" if impl.binary else "--addr"
            argv = impl.argv(
                config, check.check_id, role, [addr_flag, proxy.address, *mode_args(impl)]
            )
            proc = ManagedProcess(
                f"{impl.key}-idle-{role}",
                argv,
                workdir / f"{impl.key}-idle-{role}.log",
                env=clean_environment(),
                cwd=REPO_ROOT,
            ).start()
            procs.append((role, proc, proxy))
            if role == "leader":
                wait_until(lambda: agent.api().kv_value(key) == "leader", 30, "idle leader")
        _NEVER.wait(5.0)  # past start-up
        before = {
            role: (proxy.requests_forwarded, *proc_cpu_rss(p.pid or 0)) for role, p, proxy in procs
        }
        _NEVER.wait(seconds)
        for role, proc, proxy in procs:
            requests0, cpu0, _ = before[role]
            cpu1, rss = proc_cpu_rss(proc.pid or 0)
            out[f"{role}_requests_per_min"] = (proxy.requests_forwarded - requests0) * 60 / seconds
            out[f"{role}_cpu_percent"] = (cpu1 - cpu0) / seconds * 100
            out[f"{role}_rss_mib"] = rss / 1024
    finally:
        for _, proc, proxy in procs:
            proc.stop(signal.SIGTERM, 10)
            proxy.close()
        for endpoint in health:
            endpoint.stop()
    return out


# -- statistics and the report ---------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def fmt_ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{percentile(values, 50):.0f} / {percentile(values, 95):.0f} / {max(values):.0f}"


def scenario_row(scenario: str, results: Results) -> tuple[str, ...]:
    runs = results.runs.get(scenario, [])
    never = results.never.get(scenario, 0)
    if scenario not in results.runs and scenario not in results.never:
        return (results.impl.label, "not run", "", "", "", "", "")
    if scenario in STAY:
        moved = sum(r.moved for r in runs)
        return (
            results.impl.label,
            f"{len(runs)}",
            "-",
            "-",
            f"{moved} of {len(runs)}",
            fmt_ms([r.zero_ms for r in runs]),
            fmt_ms([r.two_ms for r in runs]),
        )
    key = [r.key_ms for r in runs if r.key_ms is not None]
    vip = [r.vip_ms for r in runs if r.vip_ms is not None]
    count = f"{len(runs)}" + (
        f" (+{never} never failed over in {FAILOVER_TIMEOUT:.0f} s)" if never else ""
    )
    if not runs and never:
        return (results.impl.label, count, "never", "never", "-", "-", "-")
    return (
        results.impl.label,
        count,
        fmt_ms(key),
        fmt_ms(vip),
        "-",
        fmt_ms([r.zero_ms for r in runs]),
        fmt_ms([r.two_ms for r in runs]),
    )


def ratio(scenario: str, all_results: list[Results]) -> str:
    ours = all_results[0]
    original = next((r for r in all_results if r.impl.binary is not None), None)
    if original is None:
        return ""
    a = [r.key_ms for r in ours.runs.get(scenario, []) if r.key_ms is not None]
    b = [r.key_ms for r in original.runs.get(scenario, []) if r.key_ms is not None]
    if a and b:
        return f"original / ours (p50 key): {statistics.median(b) / statistics.median(a):.1f}x"
    if a and original.never.get(scenario):
        return "the original never fails over"
    return ""


def runs(scenario: str, impl: Implementation) -> bool:
    """Whether ``impl`` runs ``scenario`` (and has a row for it)."""
    if scenario in OURS_ONLY and impl.binary is not None:
        return False
    return not (impl.fenced and scenario not in FENCED_SCENARIOS)


def report(
    all_results: list[Results],
    args: argparse.Namespace,
    elapsed: float,
    missing_original: str | None,
) -> str:
    lines = [
        f"# Failover benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{' '.join(['make bench'] if not args.cmdline else args.cmdline)}`  ",
        f"Machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, Consul 1.14.5, vip-manager "
        f"{vip_manager_bin().parent.name.removeprefix('vip-manager-')}  ",
        f"Set-up: 3 Consul servers, {len(NODES)} nodes in network namespaces (own client "
        f"agent, HTTP check interval 1s timeout 1s, vip-manager interval 100 ms), "
        f"ttl {TTL}, lock-delay {LOCK_DELAY} (fenced mode: {FENCED_LOCK_DELAY}), "
        f"{args.repeat} runs per scenario, "
        f"took {elapsed / 60:.1f} min.",
        "",
        "Times are p50 / p95 / max in ms from the fault. *key*: the new leader's value "
        "is in the trigger-key; *VIP*: the VIP is on the new leader's host (and only there); "
        "*nobody* / *two*: how long no host / two hosts had the VIP. Each fault comes "
        "at a random moment of vip-manager's cycle (in the fenced mode also after the "
        "follower's vip-manager was restarted at a random moment, so the two poll out of step).",
        "",
    ]
    if missing_original:
        lines += [f"The Go original was not run: {missing_original}", ""]
    lines += [
        "| scenario | implementation | runs | key | VIP | lock moved | nobody | two |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for scenario, title in SCENARIOS.items():
        for results in all_results:
            if not runs(scenario, results.impl):
                continue
            row = scenario_row(scenario, results)
            lines.append(f"| {scenario}: {title} | " + " | ".join(row) + " |")
        note = ratio(scenario, all_results)
        if note:
            lines.append(f"| | {note} | | | | | | |")
    lines += [
        "",
        "| measure | " + " | ".join(r.impl.label for r in all_results) + " |",
        "| --- |" + " --- |" * len(all_results),
    ]
    keys = sorted({k for r in all_results for k in r.extra})
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(r.extra.get(key, "-") for r in all_results) + " |")
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------------------------


def bench_implementation(impl: Implementation, args: argparse.Namespace, workdir: Path) -> Results:
    results = Results(impl)
    print(f"\n== {impl.label}", flush=True)
    lab = netns_mod.VipLab(
        NODES, workdir / f"lab-{impl.key}", f"bench/{impl.key}/vip", servers=3, fenced=impl.fenced
    )
    try:
        lab.start()
        for node in lab.nodes.values():
            node.check.register()
            node.check.wait_status("passing")
        lab.start_vip_managers()
        bench = Bench(impl, lab, workdir)
        try:
            for scenario in args.scenarios:
                if not runs(scenario, impl):
                    continue
                extra = {
                    "K3": ["--liveness-ttl", "3s"],
                    "T": ["--token-file", str(bench.token_file)],
                }
                bench.restart_all(extra.get(scenario, []))
                for n in range(args.repeat):
                    run = bench.run(scenario)
                    if run is None:
                        results.never[scenario] = results.never.get(scenario, 0) + 1
                        print(
                            f"  {scenario} #{n + 1}: no failover in {FAILOVER_TIMEOUT:.0f}s",
                            flush=True,
                        )
                        if results.never[scenario] >= 2 and not results.runs.get(scenario):
                            print(
                                f"  {scenario}: never fails over; skipping the other runs",
                                flush=True,
                            )
                            break
                        continue
                    results.runs.setdefault(scenario, []).append(run)
                    print(
                        f"  {scenario} #{n + 1}: key {run.key_ms or 0:.0f} ms, VIP "
                        f"{run.vip_ms or 0:.0f} ms, nobody {run.zero_ms:.0f} ms, two "
                        f"{run.two_ms:.0f} ms, moved={run.moved}",
                        flush=True,
                    )
        finally:
            bench.close()
    finally:
        lab.stop()
    if args.failover_only:
        return results

    agent = dev_agent(workdir / f"dev-{impl.key}", f"dev-{impl.key}").start().wait_ready(60)
    try:
        timing = measure_startup_and_shutdown(impl, agent, workdir, args.startup_repeat)
        results.extra["start to leader on a free key, ms (p50 / p95 / max)"] = fmt_ms(
            timing["start"]
        )
        results.extra["shutdown as leader, ms"] = fmt_ms(timing["stop_leader"])
        results.extra["shutdown as follower, ms"] = fmt_ms(timing["stop_follower"])
        print(f"  start/stop: {timing}", flush=True)
        if impl.binary is None and not impl.fenced and args.scale:
            for count, (took, writes) in measure_scale(workdir, args.scale).items():
                results.extra[f"scale: takeover on SIGTERM with {count} candidates, ms"] = (
                    f"{took:.0f}"
                )
                results.extra[f"scale: Consul writes for that failover, {count} candidates"] = (
                    f"{writes}"
                )
        idle = measure_idle(impl, agent, workdir, args.idle_seconds)
        print(f"  idle: {idle}", flush=True)
        for role in ("leader", "follower"):
            results.extra[f"idle {role}: Consul requests / min"] = (
                f"{idle[f'{role}_requests_per_min']:.0f}"
            )
            results.extra[f"idle {role}: CPU % over {args.idle_seconds:.0f} s"] = (
                f"{idle[f'{role}_cpu_percent']:.2f}"
            )
            results.extra[f"idle {role}: RSS MiB"] = f"{idle[f'{role}_rss_mib']:.1f}"
    finally:
        agent.kill()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument(
        "--quick", action="store_true", help="2 runs per scenario, short idle window (for CI)"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated subset of " + ",".join(SCENARIOS),
    )
    parser.add_argument(
        "--original",
        type=Path,
        default=os.environ.get("VIP_ELECTOR_GO_BIN") or None,
        help="binary of the Go original v0.1.4 to run side by side (default: $VIP_ELECTOR_GO_BIN)",
    )
    parser.add_argument(
        "--mode",
        choices=("trigger-key", "fenced", "both"),
        default="trigger-key",
        help="vip-manager follows the trigger-key (default), vip-elector's /leader "
        "(fenced, needs vip-manager v5), or both side by side",
    )
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument(
        "--failover-only",
        action="store_true",
        help="only the scenarios: no start-up, shutdown, scale or idle measures",
    )
    parser.add_argument(
        "--scale",
        default="2,10,30",
        help="candidate counts for the scale rows (empty: none; default: %(default)s)",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="do not write bench/results/<date>.md"
    )
    parser.add_argument(
        "--name",
        default="",
        help="write bench/results/<date>-<name>.md instead (a second run the same day)",
    )
    args = parser.parse_args(argv)
    args.cmdline = ["python -m bench.failover", *(argv if argv is not None else sys.argv[1:])]
    if args.quick:
        args.repeat, args.idle_seconds = 2, 20.0
    args.startup_repeat = min(args.repeat, 5)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.scale = [int(n) for n in args.scale.split(",") if n.strip()]

    reason = netns_mod.unavailable_reason()
    if reason:
        print(
            f"make bench needs network namespaces for real vip-manager: {reason}", file=sys.stderr
        )
        return 1
    implementations = [] if args.mode == "fenced" else [PYTHON]
    if args.mode in ("fenced", "both"):
        problem = vip_manager_has_patroni_mode()
        if problem:
            print(f"--mode {args.mode}: {problem}", file=sys.stderr)
            return 1
        implementations.append(PYTHON_FENCED)
    missing = None
    if args.original and Path(args.original).is_file():
        implementations.append(
            Implementation("go", "yuuki/vip-elector v0.1.4 (Go original)", Path(args.original))
        )
    else:
        missing = (
            "no binary given (--original or VIP_ELECTOR_GO_BIN). `go install "
            "github.com/yuuki/vip-elector@v0.1.4` fails here: the Go module proxy "
            "answers 403 'This module version is not available'."
        )
        print(f"note: {missing}", flush=True)

    # Start times as installed: the .deb byte-compiles at install (dh_python3), while
    # a checkout run with PYTHONDONTWRITEBYTECODE would compile every module on
    # every start (about 50 ms more here).
    compileall.compile_dir(REPO_ROOT / "vip_elector", quiet=1)

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="vip-elector-bench-"))
    all_results = []
    try:
        for impl in implementations:
            all_results.append(bench_implementation(impl, args, workdir))
    finally:
        kill_all()
    text = report(all_results, args, time.monotonic() - started, missing)
    print("\n" + text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        suffix = f"-{args.name}" if args.name else ""
        path = RESULTS / f"{dt.datetime.now(dt.UTC):%Y-%m-%d}{suffix}.md"
        path.write_text(text)
        print(f"written to {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
