"""Controllable health: an HTTP endpoint per node, registered as a Consul HTTP check."""

from __future__ import annotations

import sys
from pathlib import Path

import requests

from tests.testbed.agents import ConsulAgent, free_port
from tests.testbed.processes import ManagedProcess
from tests.testbed.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


class HealthEndpoint:
    """An HTTP endpoint whose answer the test flips: 200, 500 or hang."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        addr: str = "127.0.0.1",
        port: int | None = None,
        netns: str | None = None,
    ) -> None:
        self.name = name
        self.addr = addr
        self.port = port or free_port(addr)
        self.netns = netns
        self.state_file = workdir / f"health-{name}.state"
        self.process = ManagedProcess(
            f"health-{name}",
            [
                sys.executable,
                "-m",
                "tests.testbed.health_server",
                "--addr",
                addr,
                "--port",
                str(self.port),
                "--state-file",
                str(self.state_file),
            ],
            workdir / f"health-{name}.log",
            netns=netns,
            cwd=REPO_ROOT,
        )

    @property
    def url(self) -> str:
        return f"http://{self.addr}:{self.port}/healthz"

    def set(self, mode: str) -> None:
        """``200``, ``500`` or ``hang``; written atomically, read on every request."""
        assert mode in ("200", "500", "hang"), mode
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(mode)
        tmp.replace(self.state_file)

    def start(self, mode: str = "200") -> HealthEndpoint:
        self.set(mode)
        self.process.start()
        if self.netns is None:
            wait_until(self._answers, 10, f"health endpoint {self.name} answers", interval=0.05)
        else:
            self.process.wait_for_log("listening", 10)
        return self

    def _answers(self) -> bool:
        requests.get(self.url, timeout=1)
        return True

    def stop(self) -> None:
        self.process.kill()


class HealthCheck:
    """A Consul HTTP check on ``agent`` that polls ``endpoint``."""

    def __init__(
        self,
        agent: ConsulAgent,
        endpoint: HealthEndpoint,
        check_id: str,
        interval: str = "1s",
        timeout: str = "1s",
        service: str | None = None,
    ) -> None:
        self.agent = agent
        self.endpoint = endpoint
        self.check_id = check_id
        self.interval = interval
        self.timeout = timeout
        self.service = service  # register as this service's check (as the Go original's docs do)

    def register(self) -> HealthCheck:
        api = self.agent.api()
        if self.service:
            api.register_service(
                self.service,
                self.endpoint.port,
                {
                    "CheckID": self.check_id,
                    "Name": f"{self.service} HTTP",
                    "HTTP": self.endpoint.url,
                    "Interval": self.interval,
                    "Timeout": self.timeout,
                },
            )
        else:
            api.register_http_check(
                self.check_id, self.endpoint.url, interval=self.interval, timeout=self.timeout
            )
        return self

    def deregister(self) -> None:
        if self.service:
            self.agent.api().ok("PUT", f"/v1/agent/service/deregister/{self.service}")
        else:
            self.agent.api().deregister_check(self.check_id)

    def status(self) -> str | None:
        """The status the Consul servers hold (what session create and invalidation use)."""
        return self.agent.api().catalog_check_status(self.agent.name, self.check_id)

    def wait_status(self, status: str, timeout: float = 20.0) -> None:
        wait_until(
            lambda: self.status() == status,
            timeout,
            lambda: f"check {self.check_id} becomes {status} (is {self.status()})",
            interval=0.05,
        )

    def set(self, mode: str) -> None:
        self.endpoint.set(mode)
