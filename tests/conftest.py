"""pytest fixtures: real Consul agents, controllable health, namespaces.

Every fixture starts real processes and always cleans them up. Integration
tests are marked ``integration`` (and ``cluster`` / ``netns``) automatically
by the fixtures they use.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.testbed import netns as netns_mod
from tests.testbed.agents import ConsulAgent, ConsulCluster, dev_agent, new_token
from tests.testbed.binaries import TestbedMissing, consul_bin, vip_manager_bin
from tests.testbed.configs import write_vip_manager_config
from tests.testbed.elector import Elector
from tests.testbed.fault_proxy import FaultProxy
from tests.testbed.health import HealthCheck, HealthEndpoint
from tests.testbed.waiting import wait_until

INTEGRATION_FIXTURES = {
    "consul_dev": "integration",
    "election": "integration",
    "consul_acl": "integration",
    "consul_tls": "integration",
    "consul_cluster": "cluster",
    "vip_lab": "netns",
}


# The fault suite's per-fault summary, printed at the end of the run.
FAULT_SUMMARY = pytest.StashKey[list[str]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(FAULT_SUMMARY, None)
    if lines:
        terminalreporter.section("fault suite: the VIP per fault kind")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        for fixture, marker in INTEGRATION_FIXTURES.items():
            if fixture in fixtures:
                item.add_marker(pytest.mark.integration)
                item.add_marker(getattr(pytest.mark, marker))


def _require_consul() -> None:
    try:
        consul_bin()
    except TestbedMissing as exc:
        # Not a skip: the README's test command builds the test bed first, so a
        # missing binary is a broken setup that must not pass silently.
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def session_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("testbed")


@pytest.fixture(scope="session")
def consul_dev(session_workdir: Path) -> Iterator[ConsulAgent]:
    """One `consul agent -dev` for the whole run; tests isolate by key prefix."""
    _require_consul()
    agent = dev_agent(session_workdir, "dev").start().wait_ready(60)
    yield agent
    agent.kill()


@pytest.fixture(scope="session")
def consul_acl(session_workdir: Path) -> Iterator[ConsulAgent]:
    """A dev agent with ACLs on, default deny (bootstrap token: ``spec.acl_management_token``)."""
    _require_consul()
    agent = dev_agent(session_workdir, "acl", acl_token=new_token()).start().wait_ready(60)
    yield agent
    agent.kill()


@pytest.fixture(scope="session")
def consul_tls(session_workdir: Path) -> Iterator[ConsulAgent]:
    """A dev agent serving HTTPS only, verifying client certificates (CA made at test time)."""
    _require_consul()
    agent = dev_agent(session_workdir, "tls", tls=True).start().wait_ready(60)
    yield agent
    agent.kill()


@pytest.fixture
def consul_cluster(tmp_path: Path) -> Iterator[ConsulCluster]:
    """A fresh 3-server + 3-client cluster per test: tests kill nodes and leaders."""
    _require_consul()
    cluster = ConsulCluster(tmp_path / "cluster").start()
    yield cluster
    cluster.stop()


@pytest.fixture
def key_prefix(request: pytest.FixtureRequest, consul_dev: ConsulAgent) -> Iterator[str]:
    """A key prefix only this test uses on the shared dev agent."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:60]
    prefix = f"vip-elector-test/{name}-{uuid.uuid4().hex[:8]}"
    yield prefix
    consul_dev.api().kv_delete(prefix, recurse=True)


HealthFactory = Callable[..., HealthCheck]


@pytest.fixture
def health(tmp_path: Path) -> Iterator[HealthFactory]:
    """Make a health endpoint plus a Consul HTTP check for it on an agent.

    ``health(agent, name)`` returns a registered :class:`HealthCheck` whose
    endpoint answers 200; the check and endpoint are removed afterwards.
    """
    made: list[HealthCheck] = []

    def make(
        agent: ConsulAgent,
        name: str,
        register: bool = True,
        mode: str = "200",
        interval: str = "1s",
        timeout: str = "1s",
        service: str | None = None,
    ) -> HealthCheck:
        endpoint = HealthEndpoint(f"{name}-{uuid.uuid4().hex[:6]}", tmp_path).start(mode)
        check = HealthCheck(
            agent,
            endpoint,
            f"vip-http-{name}-{uuid.uuid4().hex[:6]}",
            interval=interval,
            timeout=timeout,
            service=service,
        )
        if register:
            check.register()
        made.append(check)
        return check

    yield make
    for check in made:
        try:
            if check.agent.running():
                check.deregister()
        except Exception:  # noqa: S110 - the agent may be gone on purpose
            pass
        check.endpoint.stop()


@pytest.fixture
def vip_lab(tmp_path: Path) -> Iterator[Callable[..., netns_mod.VipLab]]:
    """Make a :class:`VipLab` (hosts in namespaces with Consul, health and
    vip-manager); skipped, with the reason, where namespaces cannot be made."""
    reason = netns_mod.unavailable_reason()
    if reason:
        pytest.skip(f"network namespaces unavailable: {reason}")
    _require_consul()
    try:
        vip_manager_bin()
    except TestbedMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    labs: list[netns_mod.VipLab] = []

    def make(
        names: list[str], trigger_key: str = "service/vip-test/leader", servers: int = 1
    ) -> netns_mod.VipLab:
        lab = netns_mod.VipLab(names, tmp_path / f"lab{len(labs)}", trigger_key, servers)
        labs.append(lab)
        return lab.start()

    yield make
    for lab in labs:
        lab.stop()


@dataclass
class Candidate:
    """One node competing for the lock: a vip-elector and its health check."""

    name: str
    elector: Elector
    check: HealthCheck | None
    agent: ConsulAgent | None = None  # the local agent it talks to

    @property
    def value(self) -> str:
        return self.elector.lock_value


class Election:
    """Several vip-electors competing for one trigger-key.

    Each candidate talks to its own agent (``add(..., agent=...)``; the dev
    agent by default) and has a health check there; ``api`` observes Consul
    through the agent given here.
    """

    def __init__(self, agent: ConsulAgent, workdir: Path, key: str, health: HealthFactory) -> None:
        self.agent = agent
        self.workdir = workdir
        self.key = key
        self.health = health
        self.api = agent.api()
        self.config = write_vip_manager_config(
            workdir / "vip-manager.yml", trigger_key=key, endpoint=agent.http_url
        )
        self.candidates: dict[str, Candidate] = {}

    def add(
        self,
        name: str,
        *,
        check: bool = True,
        start: bool = True,
        addr: str | None = None,
        agent: ConsulAgent | None = None,
        **kwargs: Any,
    ) -> Candidate:
        local = agent or self.agent
        health_check = self.health(local, name) if check else None
        if health_check is not None:
            health_check.wait_status("passing")
        elector = Elector(
            name,
            self.workdir,
            kwargs.pop("config", self.config),
            check_id=kwargs.pop("check_id", health_check.check_id if health_check else None),
            addr=addr or (local.http_addr if agent is not None else None),
            **kwargs,
        )
        candidate = Candidate(name, elector, health_check)
        candidate.agent = local
        self.candidates[name] = candidate
        if start:
            elector.start()
        return candidate

    def holder(self) -> str | None:
        """The value in the trigger-key now (consistent read)."""
        return self.api.kv_value(self.key)

    def wait_holder(self, timeout: float = 30.0, among: list[str] | None = None) -> Candidate:
        names = among or list(self.candidates)
        value = wait_until(
            lambda: self.holder() in names and self.holder(),
            timeout,
            lambda: (
                f"one of {names} holds {self.key} (holder: {self.holder()})"
                + "".join(
                    f"\n--- {n}:\n{c.elector.process.tail(15)}" for n, c in self.candidates.items()
                )
            ),
        )
        return self.candidates[str(value)]

    def sessions_of(self, candidate: Candidate) -> list[dict[str, Any]]:
        """Live sessions created by ``candidate`` (matched by lock value and key)."""
        marker = f"value={candidate.value} key={self.key}"
        return [s for s in self.api.sessions() if s["Name"].endswith(marker)]

    def stop_all(self) -> None:
        for candidate in self.candidates.values():
            candidate.elector.kill()


@pytest.fixture
def election(
    consul_dev: ConsulAgent, tmp_path: Path, key_prefix: str, health: HealthFactory
) -> Iterator[Election]:
    """Electors on the shared dev agent, competing for a key of their own."""
    race = Election(consul_dev, tmp_path, f"{key_prefix}/leader", health)
    yield race
    race.stop_all()


@pytest.fixture
def cluster_election(
    consul_cluster: ConsulCluster, tmp_path: Path, health: HealthFactory
) -> Iterator[Election]:
    """Electors on the per-test 3-server cluster, observed through a server: it stays up
    when a node's client agent is killed."""
    race = Election(consul_cluster.servers[0], tmp_path, "service/cluster-test/leader", health)
    yield race
    race.stop_all()


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[ConsulAgent], FaultProxy]]:
    """A TCP fault proxy in front of an agent's HTTP port (see testbed/fault_proxy.py)."""
    proxies: list[FaultProxy] = []

    def make(agent: ConsulAgent) -> FaultProxy:
        host, port = agent.http_addr.rsplit(":", 1)
        proxy = FaultProxy(host, int(port))
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()
