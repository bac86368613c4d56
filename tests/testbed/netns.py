"""Test hosts in network namespaces, joined by veth to one bridge.

Each host is a namespace with ``eth0`` (a veth whose peer sits on a bridge in
the root namespace) on the 198.18.X.0/24 benchmarking range (RFC 2544), so
nothing here can clash with a real network. A host runs its own Consul client
agent, health endpoint, vip-elector and vip-manager; the VIP is an address of
the same /24, and a test sees it move by listing ``eth0``'s addresses.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.testbed.agents import SERF_LAN_PORT, AgentSpec, ConsulAgent, ConsulCluster
from tests.testbed.binaries import vip_manager_bin
from tests.testbed.configs import write_vip_manager_config
from tests.testbed.health import HealthCheck, HealthEndpoint
from tests.testbed.processes import ManagedProcess, kill_all

STATUS_PORT = 9100  # vip-elector's --status-addr port on every host (the mgmt0 address)


def _ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *args] if netns is None else ["ip", "-n", netns, *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result.stdout


def _free_subnet() -> str:
    """A 198.18.X prefix no route in the root namespace uses yet: another lab
    running, or one left behind by a killed run, would otherwise collide."""
    routes = _ip("-4", "route", "show", check=False)
    used = {int(x) for x in re.findall(r"^198\.1[89]\.(\d+)\.", routes, re.MULTILINE)}
    free = [x for x in range(1, 255) if x not in used]
    if not free:
        raise RuntimeError("every 198.18.X.0/24 is in use: remove left-over vebr* bridges")
    return f"198.18.{random.choice(free)}"


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` command is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    probe = f"vipe-probe-{uuid.uuid4().hex[:6]}"
    result = subprocess.run(
        ["ip", "netns", "add", probe], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        return f"`ip netns add` failed: {result.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


@dataclass
class Host:
    """One test host: a namespace with its address on the shared /24.

    ``mgmt_ip`` is the host's end of a point-to-point link to the root
    namespace only (``mgmt0``, a /31 of 198.19.X.0/24): the tests observe the
    host through it (status endpoints), and a partition does not cut it.
    Nothing routes between it and the shared /24, so it is no way around a
    partition for Consul or vip-manager.
    """

    name: str
    netns: str
    ip: str
    host_veth: str  # the peer in the root namespace; setting it down partitions the host
    mgmt_ip: str = ""
    mgmt_veth: str = ""

    def addresses(self) -> list[str]:
        """IPv4 addresses on the host's eth0."""
        out = _ip("-o", "-4", "addr", "show", "dev", "eth0", netns=self.netns)
        return [line.split()[3].split("/")[0] for line in out.splitlines()]

    def has_address(self, address: str) -> bool:
        return address in self.addresses()

    def partition(self) -> None:
        _ip("link", "set", self.host_veth, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_veth, "up")


class Network:
    """A bridge and N hosts; :meth:`teardown` removes every trace."""

    def __init__(self, names: list[str]) -> None:
        self.id = uuid.uuid4().hex[:6]
        self.subnet = _free_subnet()
        self.bridge = f"vebr{self.id}"
        self.gateway_ip = f"{self.subnet}.1"
        self.vip = f"{self.subnet}.100"
        self.mgmt_subnet = self.subnet.replace("198.18.", "198.19.", 1)
        self.hosts = [
            Host(
                name=name,
                netns=f"vipe{self.id}{name}",
                ip=f"{self.subnet}.{11 + i}",
                host_veth=f"ve{self.id}{i}",
                mgmt_ip=f"{self.mgmt_subnet}.{2 * i + 1}",
                mgmt_veth=f"vm{self.id}{i}",
            )
            for i, name in enumerate(names)
        ]

    def setup(self) -> Network:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway_ip}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for host in self.hosts:
            _ip("netns", "add", host.netns)
            _ip(
                "link",
                "add",
                host.host_veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                host.netns,
            )
            _ip("link", "set", host.host_veth, "master", self.bridge)
            _ip("link", "set", host.host_veth, "up")
            _ip("addr", "add", f"{host.ip}/24", "dev", "eth0", netns=host.netns)
            _ip("link", "set", "eth0", "up", netns=host.netns)
            _ip("link", "set", "lo", "up", netns=host.netns)
            self._add_mgmt_link(host)
        return self

    def _add_mgmt_link(self, host: Host) -> None:
        """The observation link: root side .2i, host side .2i+1 of a /31."""
        root_ip = host.mgmt_ip.rsplit(".", 1)[0] + f".{int(host.mgmt_ip.rsplit('.', 1)[1]) - 1}"
        _ip(
            "link", "add", host.mgmt_veth, "type", "veth", "peer", "name", "mgmt0",
            "netns", host.netns,
        )  # fmt: skip
        _ip("addr", "add", f"{root_ip}/31", "dev", host.mgmt_veth)
        _ip("link", "set", host.mgmt_veth, "up")
        _ip("addr", "add", f"{host.mgmt_ip}/31", "dev", "mgmt0", netns=host.netns)
        _ip("link", "set", "mgmt0", "up", netns=host.netns)

    def add_bridge_addresses(self, count: int) -> list[str]:
        """``count`` more addresses on the bridge (.2, .3, ...) for services in the root ns."""
        ips = [f"{self.subnet}.{2 + i}" for i in range(count)]
        for ip in ips:
            _ip("addr", "add", f"{ip}/24", "dev", self.bridge)
        return ips

    def teardown(self) -> None:
        for host in self.hosts:
            _ip("netns", "del", host.netns, check=False)
            _ip("link", "del", host.host_veth, check=False)
            _ip("link", "del", host.mgmt_veth, check=False)
        _ip("link", "del", self.bridge, check=False)

    def holders(self, address: str | None = None) -> list[str]:
        """Names of the hosts that have ``address`` (default: the VIP) right now."""
        address = address or self.vip
        return [host.name for host in self.hosts if host.has_address(address)]


class VipManager:
    """Real vip-manager in a host's namespace, configured by a vip-manager.yml."""

    def __init__(self, host: Host, config_path: Path, workdir: Path) -> None:
        self.host = host
        self.config_path = config_path
        self.process = ManagedProcess(
            f"vip-manager-{host.name}",
            [str(vip_manager_bin()), "--config", str(config_path)],
            workdir / f"vip-manager-{host.name}.log",
            netns=host.netns,
        )

    def start(self) -> VipManager:
        self.process.start()
        return self

    def stop(self) -> None:
        # SIGINT is the signal on which vip-manager removes the VIP.
        self.process.stop(signal.SIGINT, timeout=5)


class NetnsNode:
    """A host with its Consul client agent and health endpoint (check registered)."""

    def __init__(
        self,
        host: Host,
        join: list[str],
        workdir: Path,
        check_id: str = "vip-http",
        health_port: int = 9000,
    ) -> None:
        self.host = host
        self.workdir = workdir / host.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.agent = ConsulAgent(
            # Local programs use 127.0.0.1 inside the namespace, as on a real
            # host; the test process reaches the agent on the host's address.
            AgentSpec(
                name=host.name,
                ip=host.ip,
                netns=host.netns,
                retry_join=join,
                extra={"client_addr": f"127.0.0.1 {host.ip}"},
            ),
            self.workdir,
        )
        self.health = HealthEndpoint(host.name, self.workdir, port=health_port, netns=host.netns)
        self.check = HealthCheck(self.agent, self.health, check_id)

    def start(self) -> NetnsNode:
        self.health.start()
        self.agent.start()
        return self

    def stop(self) -> None:
        self.agent.kill()
        self.health.stop()


class VipLab:
    """Hosts in namespaces, a Consul server on the bridge, a client agent,
    health endpoint and vip-manager per host: the whole VIP path for real."""

    def __init__(
        self,
        names: list[str],
        workdir: Path,
        trigger_key: str,
        servers: int = 1,
        vip_manager_interval_ms: int = 100,
        fenced: bool = False,
    ) -> None:
        self.workdir = workdir
        self.trigger_key = trigger_key
        # vip-manager follows vip-elector's /leader (patroni mode) instead of the key.
        self.fenced = fenced
        self.network = Network(names)
        self.server_count = servers
        self.vip_manager_interval_ms = vip_manager_interval_ms
        self.server: ConsulAgent | None = None  # the one the lab observes Consul through
        self.cluster: ConsulCluster | None = None  # with servers > 1
        self.nodes: dict[str, NetnsNode] = {}
        self.vip_managers: dict[str, VipManager] = {}
        self.config_paths: dict[str, Path] = {}

    @property
    def vip(self) -> str:
        return self.network.vip

    @staticmethod
    def leader_endpoint(host: Host) -> str:
        """Where vip-elector serves /leader on ``host`` (its --status-addr)."""
        return f"http://{host.mgmt_ip}:{STATUS_PORT}"

    @staticmethod
    def status_addr(host: Host) -> str:
        return f"{host.mgmt_ip}:{STATUS_PORT}"

    def start(self, timeout: float = 60.0) -> VipLab:
        self.network.setup()
        if self.server_count == 1:
            self.server = (
                ConsulAgent(
                    AgentSpec(name="server", ip=self.network.gateway_ip, server=True, dev=True),
                    self.workdir,
                )
                .start()
                .wait_ready(timeout)
            )
            join = [f"{self.network.gateway_ip}:{SERF_LAN_PORT}"]
        else:
            # Real servers (raft, 3-way quorum) on extra addresses of the bridge.
            ips = self.network.add_bridge_addresses(self.server_count)
            self.cluster = ConsulCluster(self.workdir, clients=0, server_ips=ips).start(timeout)
            self.server = self.cluster.servers[0]
            join = self.cluster.join_addresses
        for host in self.network.hosts:
            self.nodes[host.name] = NetnsNode(host, join, self.workdir).start()
            self.config_paths[host.name] = write_vip_manager_config(
                self.workdir / f"vip-manager-{host.name}.yml",
                trigger_key=self.trigger_key,
                trigger_value=host.name,
                vip=self.vip,
                interface="eth0",
                interval_ms=self.vip_manager_interval_ms,
                leader_endpoint=self.leader_endpoint(host) if self.fenced else None,
            )
        for node in self.nodes.values():
            node.agent.wait_ready(timeout)
        return self

    def start_vip_managers(self) -> None:
        for name, node in self.nodes.items():
            self.vip_managers[name] = VipManager(
                node.host, self.config_paths[name], self.workdir
            ).start()

    def holders(self) -> list[str]:
        return self.network.holders()

    def stop(self) -> None:
        kill_all({host.netns for host in self.network.hosts})
        if self.cluster:
            self.cluster.stop()
        elif self.server:
            self.server.kill()
        self.network.teardown()
