"""vip-elector daemons under test: real processes, observed through logs and Consul."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.testbed.processes import ManagedProcess

REPO_ROOT = Path(__file__).resolve().parents[2]


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment without any CONSUL_* / VIP_ELECTOR_* settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CONSUL_", "VIP_ELECTOR_", "NOTIFY_SOCKET", "WATCHDOG_"))
    }
    # Run the package from this checkout whatever Python runs the tests.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def vip_elector_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "vip_elector", *args]


class Elector:
    """One vip-elector daemon."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        config: Path,
        *,
        check_id: str | None = None,
        addr: str | None = None,
        hostname: str | None = None,
        ttl: str | None = None,
        lock_delay: str | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        netns: str | None = None,
    ) -> None:
        self.name = name
        self.lock_value = hostname or name
        argv = ["--vip-manager-config", str(config), "--hostname", self.lock_value]
        if check_id:
            argv += ["--check-id", check_id]
        if addr:
            argv += ["--addr", addr]
        if ttl:
            argv += ["--ttl", ttl]
        if lock_delay:
            argv += ["--lock-delay", lock_delay]
        argv += list(args)
        self.process = ManagedProcess(
            f"elector-{name}",
            vip_elector_argv(*argv),
            workdir / f"elector-{name}.log",
            env=clean_environment(env),
            netns=netns,
            cwd=REPO_ROOT,
        )

    def __repr__(self) -> str:
        return f"<Elector {self.name} pid={self.process.pid}>"

    def start(self) -> Elector:
        self.process.start()
        return self

    def running(self) -> bool:
        return self.process.running()

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait for the exit code."""
        return self.process.stop(signal.SIGTERM, timeout)

    def kill(self) -> None:
        self.process.kill()

    def wait_log(self, pattern: str, timeout: float = 30.0, count: int = 1) -> str:
        return self.process.wait_for_log(pattern, timeout, count)

    def count(self, pattern: str) -> int:
        return self.process.count(pattern)

    def log(self) -> str:
        return self.process.log_text()


def run_vip_elector(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run a short-lived vip-elector command (--help, status, check-config...)."""
    return subprocess.run(
        vip_elector_argv(*args),
        capture_output=True,
        text=True,
        env=clean_environment(env),
        cwd=REPO_ROOT,
        timeout=timeout,
        check=False,
    )
