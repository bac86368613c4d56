"""Child processes of the test bed: started with a log file, always reaped.

Every process started here is remembered until it is stopped, and an atexit
hook kills whatever is left, so an aborted test run does not leave Consul
agents or daemons behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.testbed.waiting import wait_until

_LIVE: set[ManagedProcess] = set()
_LIVE_LOCK = threading.Lock()


class ManagedProcess:
    """One child process whose stdout and stderr go to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        netns: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.netns = netns
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def __repr__(self) -> str:
        return f"<{self.name} pid={self.pid}>"

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> ManagedProcess:
        argv = self.argv
        if self.netns:
            # `ip netns exec` execs the command after setns, so the pid is the
            # command's own and signals reach it directly.
            argv = ["ip", "netns", "exec", self.netns, *argv]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        with _LIVE_LOCK:
            _LIVE.add(self)
        return self

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def send_signal(self, signum: int) -> None:
        if self.running():
            assert self.popen is not None
            self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; raise TimeoutExpired after ``timeout``."""
        assert self.popen is not None
        code = self.popen.wait(timeout)
        self._forget()
        return code

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Send ``signum``, wait up to ``timeout`` s, then SIGKILL. Returns the exit code."""
        if self.popen is None:
            return None
        if self.running():
            self.popen.send_signal(signum)
            try:
                return self.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        return self.kill()

    def kill(self) -> int | None:
        if self.popen is None:
            return None
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        code = self.popen.wait(10)
        self._forget()
        return code

    def _forget(self) -> None:
        with _LIVE_LOCK:
            _LIVE.discard(self)

    # -- the log -------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self) -> list[str]:
        return self.log_text().splitlines()

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.log_text()))

    def wait_for_log(self, pattern: str, timeout: float, count: int = 1) -> str:
        """Wait until ``pattern`` (a regex) has matched ``count`` lines; return the last match."""

        def found() -> str | None:
            matches = [line for line in self.log_lines() if re.search(pattern, line)]
            return matches[count - 1] if len(matches) >= count else None

        return wait_until(
            found,
            timeout,
            lambda: (
                f"{self.name}: no log line matching {pattern!r} (x{count});"
                f" exit={self.returncode()}; log tail:\n{self.tail()}"
            ),
        )

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_lines()[-lines:])


def kill_all(netns: set[str] | None = None) -> None:
    """Kill every process still running, or only those inside the given namespaces."""
    with _LIVE_LOCK:
        live = [p for p in _LIVE if netns is None or p.netns in netns]
    for process in live:
        process.kill()


atexit.register(kill_all)
