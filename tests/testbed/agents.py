"""Real Consul agents for the tests: a dev agent, a multi-node cluster, ACL and TLS.

Every agent listens on its own loopback address (127.X.Y.Z, random X.Y per
run) with Consul's standard ports, so several agents and several test runs
never fight over ports, and each node of a cluster has its own address the
way real nodes do.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.testbed.binaries import consul_bin
from tests.testbed.consul_http import ConsulHTTP
from tests.testbed.processes import ManagedProcess
from tests.testbed.waiting import wait_until

HTTP_PORT = 8500
HTTPS_PORT = 8501
SERVER_PORT = 8300
SERF_LAN_PORT = 8301
SERF_WAN_PORT = 8302

_used_subnets: set[tuple[int, int]] = set()


def loopback_subnet() -> str:
    """A fresh 127.X.Y prefix for one group of agents."""
    while True:
        pair = (random.randint(100, 254), random.randint(0, 254))
        if pair not in _used_subnets:
            _used_subnets.add(pair)
            return f"127.{pair[0]}.{pair[1]}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class TLSFiles:
    """A CA and certificates made by `consul tls` at test time."""

    directory: Path
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def create(cls, directory: Path, server_ips: list[str]) -> TLSFiles:
        directory.mkdir(parents=True, exist_ok=True)
        consul = str(consul_bin())

        def run(*args: str) -> None:
            subprocess.run([consul, "tls", *args], cwd=directory, check=True, capture_output=True)

        run("ca", "create", "-days", "30")
        server_args = ["cert", "create", "-server", "-dc", "dc1", "-days", "30"]
        for ip in server_ips:
            server_args += ["-additional-ipaddress", ip]
        run(*server_args)
        run("cert", "create", "-client", "-dc", "dc1", "-days", "30")
        return cls(
            directory=directory,
            ca_file=directory / "consul-agent-ca.pem",
            server_cert=directory / "dc1-server-consul-0.pem",
            server_key=directory / "dc1-server-consul-0-key.pem",
            client_cert=directory / "dc1-client-consul-0.pem",
            client_key=directory / "dc1-client-consul-0-key.pem",
        )


@dataclass
class AgentSpec:
    """What one agent is: its name, address and role."""

    name: str
    ip: str
    server: bool = False
    dev: bool = False
    bootstrap_expect: int | None = None
    retry_join: list[str] = field(default_factory=list)
    netns: str | None = None
    acl_management_token: str | None = None
    tls: TLSFiles | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ConsulAgent:
    """One real `consul agent` process."""

    def __init__(self, spec: AgentSpec, workdir: Path) -> None:
        self.spec = spec
        self.workdir = workdir / spec.name
        self.data_dir = self.workdir / "data"
        self.config_file = self.workdir / "agent.json"
        self.process: ManagedProcess | None = None

    def __repr__(self) -> str:
        return f"<ConsulAgent {self.spec.name} {self.spec.ip}>"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def http_host(self) -> str:
        return self.spec.ip

    @property
    def http_addr(self) -> str:
        """host:port of the HTTP API (plain HTTP, or HTTPS for a TLS agent)."""
        port = HTTPS_PORT if self.spec.tls else HTTP_PORT
        return f"{self.http_host}:{port}"

    @property
    def http_url(self) -> str:
        scheme = "https" if self.spec.tls else "http"
        return f"{scheme}://{self.http_addr}"

    def config(self) -> dict[str, Any]:
        spec = self.spec
        ports: dict[str, int] = {
            "http": -1 if spec.tls else HTTP_PORT,
            "https": HTTPS_PORT if spec.tls else -1,
            "dns": -1,
            "grpc": -1,
            "grpc_tls": -1,
            "serf_lan": SERF_LAN_PORT,
            "serf_wan": SERF_WAN_PORT if spec.server else -1,
            "server": SERVER_PORT,
        }
        config: dict[str, Any] = {
            "node_name": spec.name,
            "datacenter": "dc1",
            "bind_addr": spec.ip,
            "advertise_addr": spec.ip,
            "client_addr": self.http_host,
            "ports": ports,
            "server": spec.server,
            "log_level": "INFO",
            "disable_update_check": True,
            "enable_script_checks": False,
            # raft_multiplier 1 is HashiCorp's production recommendation; it
            # makes a Consul leader election take about a second.
            "performance": {"raft_multiplier": 1},
            "ui_config": {"enabled": False},
            "connect": {"enabled": False},
        }
        if not spec.dev:
            config["data_dir"] = str(self.data_dir)
        if spec.bootstrap_expect:
            config["bootstrap_expect"] = spec.bootstrap_expect
        if spec.retry_join:
            config["retry_join"] = spec.retry_join
            config["retry_interval"] = "1s"
        if spec.acl_management_token:
            config["acl"] = {
                "enabled": True,
                "default_policy": "deny",
                "down_policy": "extend-cache",
                "enable_token_persistence": False,
                "tokens": {
                    "initial_management": spec.acl_management_token,
                    "agent": spec.acl_management_token,
                },
            }
        if spec.tls:
            config["tls"] = {
                "defaults": {
                    "ca_file": str(spec.tls.ca_file),
                    "cert_file": str(spec.tls.server_cert),
                    "key_file": str(spec.tls.server_key),
                    "verify_incoming": True,
                    "verify_outgoing": True,
                },
                "internal_rpc": {"verify_server_hostname": False},
            }
        config.update(spec.extra)
        return config

    def start(self) -> ConsulAgent:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps(self.config(), indent=2))
        argv = [str(consul_bin()), "agent", "-config-file", str(self.config_file)]
        if self.spec.dev:
            argv.insert(2, "-dev")
        self.process = ManagedProcess(
            f"consul-{self.name}", argv, self.workdir / "consul.log", netns=self.spec.netns
        ).start()
        return self

    def api(self, token: str | None = None) -> ConsulHTTP:
        """A test-side client for this agent (management token on ACL agents)."""
        tls = self.spec.tls
        return ConsulHTTP(
            self.http_url,
            token=token or self.spec.acl_management_token,
            verify=str(tls.ca_file) if tls else True,
            cert=(str(tls.client_cert), str(tls.client_key)) if tls else None,
        )

    def ready(self) -> bool:
        api = self.api()
        if not api.leader():
            return False
        return api.request("GET", f"/v1/catalog/node/{self.name}").json() is not None

    def wait_ready(self, timeout: float = 60.0) -> ConsulAgent:
        """Wait until this agent sees a Consul leader and is in the catalog."""
        wait_until(
            self.ready,
            timeout,
            lambda: (
                f"consul agent {self.name} not ready; log tail:\n"
                + (self.process.tail() if self.process else "(not started)")
            ),
            interval=0.1,
        )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.running()

    def kill(self) -> None:
        """SIGKILL: the node just dies (no leave, its sessions stay until serf notices)."""
        if self.process:
            self.process.kill()

    def stop(self) -> None:
        """A clean stop (SIGINT = graceful leave): Consul invalidates the node's sessions."""
        if self.process:
            self.process.stop(signal.SIGINT, timeout=15)

    def restart(self, timeout: float = 60.0) -> ConsulAgent:
        self.stop()
        self.start()
        return self.wait_ready(timeout)


class ConsulCluster:
    """Three servers and some client agents, on a fresh loopback /24 unless
    ``server_ips`` places the servers elsewhere (e.g. on a bridge)."""

    def __init__(
        self,
        workdir: Path,
        clients: int = 3,
        servers: int = 3,
        extra: Mapping[str, Any] | None = None,
        server_ips: list[str] | None = None,
    ) -> None:
        prefix = loopback_subnet()
        server_ips = server_ips or [f"{prefix}.{11 + i}" for i in range(servers)]
        servers = len(server_ips)
        join = self.join_addresses = [f"{ip}:{SERF_LAN_PORT}" for ip in server_ips]
        self.servers = [
            ConsulAgent(
                AgentSpec(
                    name=f"server-{i + 1}",
                    ip=ip,
                    server=True,
                    bootstrap_expect=servers,
                    retry_join=join,
                    extra=dict(extra or {}),
                ),
                workdir,
            )
            for i, ip in enumerate(server_ips)
        ]
        self.clients = [
            ConsulAgent(
                AgentSpec(
                    name=f"node-{chr(ord('a') + i)}",
                    ip=f"{prefix}.{21 + i}",
                    retry_join=join,
                    extra=dict(extra or {}),
                ),
                workdir,
            )
            for i in range(clients)
        ]

    @property
    def agents(self) -> list[ConsulAgent]:
        return self.servers + self.clients

    def start(self, timeout: float = 90.0) -> ConsulCluster:
        for agent in self.agents:
            agent.start()
        for agent in self.agents:
            agent.wait_ready(timeout)
        return self

    def stop(self) -> None:
        for agent in reversed(self.agents):
            if agent.process:
                agent.process.kill()

    def leader_server(self) -> ConsulAgent:
        """The server that is the Consul (raft) leader now."""
        for server in self.servers:
            if not server.running():
                continue
            try:
                leader = server.api().leader()
            except Exception:  # noqa: S112 - ask the next server
                continue
            for candidate in self.servers:
                if leader.startswith(f"{candidate.spec.ip}:"):
                    return candidate
        raise RuntimeError("no Consul leader")

    def healthy(self) -> bool:
        """Every server is up and a healthy raft voter (autopilot's view).

        After a server restarts, autopilot first adds it as a non-voter and
        promotes it only after it has been stable for a while; killing another
        server before that leaves the cluster without a quorum. Faults must
        wait for this between them, as an operator would.
        """
        server = next((s for s in self.servers if s.running()), None)
        if server is None:
            return False
        health = server.api().ok("GET", "/v1/operator/autopilot/health")
        voters = [s for s in health.get("Servers") or [] if s.get("Voter") and s.get("Healthy")]
        return bool(health.get("Healthy")) and len(voters) == len(self.servers)

    def wait_healthy(self, timeout: float = 90.0) -> None:
        wait_until(self.healthy, timeout, "every Consul server is a healthy voter", interval=0.5)

    def wait_leader(
        self, timeout: float = 60.0, not_this: ConsulAgent | None = None
    ) -> ConsulAgent:
        def new_leader() -> ConsulAgent | None:
            leader = self.leader_server()
            return None if leader is not_this else leader

        return wait_until(new_leader, timeout, "the cluster elects a Consul leader", interval=0.1)


def dev_agent(
    workdir: Path, name: str = "dev", acl_token: str | None = None, tls: bool = False
) -> ConsulAgent:
    """A single `consul agent -dev` on a fresh loopback address (not started)."""
    ip = f"{loopback_subnet()}.10"
    tls_files = TLSFiles.create(workdir / f"{name}-tls", [ip]) if tls else None
    return ConsulAgent(
        AgentSpec(
            name=name, ip=ip, server=True, dev=True, acl_management_token=acl_token, tls=tls_files
        ),
        workdir,
    )


def new_token() -> str:
    return str(uuid.uuid4())


def create_acl_token(api: ConsulHTTP, name: str, rules: str) -> str:
    """Create a policy with ``rules`` and a token for it; return the token's secret."""
    policy = api.ok("PUT", "/v1/acl/policy", body={"Name": name, "Rules": rules})
    token = api.ok(
        "PUT",
        "/v1/acl/token",
        body={"Description": name, "Policies": [{"ID": policy["ID"]}]},
    )
    return str(token["SecretID"])


def iter_logs(agents: list[ConsulAgent]) -> Iterator[tuple[str, str]]:
    for agent in agents:
        if agent.process:
            yield agent.name, agent.process.tail()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
