"""--notify hooks: keepalived-style scripts run on every state change.

Each transition queues one run of ``CMD STATE KEY VALUE`` (the same in
``VIP_ELECTOR_*`` environment variables). A single thread runs them one at a
time, never on the election path. If a hook is still running when the next
change comes, it is terminated (SIGTERM, then SIGKILL) and that is logged; a
hook running past ``--notify-timeout`` is killed too. Exit code and duration
are logged. ACL tokens are not passed on to hooks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import subprocess
import threading
import time

from vip_elector.state import DaemonState, Transition
from vip_elector.worker import Worker

log = logging.getLogger("vip_elector")

KILL_GRACE = 1.0  # SIGTERM, then SIGKILL after this
SECRET_VARIABLES = ("CONSUL_HTTP_TOKEN", "VIP_ELECTOR_TOKEN")


class NotifyRunner(Worker):
    """The notify thread. ``__call__`` and ``close`` may be called from any thread
    (they only queue); everything else runs on the notify thread."""

    # Hooks are off the election path: if this thread fails, hooks stop
    # running (logged), the lock is not affected.
    critical = False

    def __init__(self, command: tuple[str, ...], timeout: float, state: DaemonState) -> None:
        super().__init__("notify", state, threading.Event())
        self.command = command
        self.timeout = timeout
        self._queue: queue.SimpleQueue[Transition | None] = queue.SimpleQueue()
        self._pending = threading.Event()  # set when a newer transition is queued

    def __call__(self, change: Transition) -> None:
        """A state listener: queue the hook (never blocks the caller)."""
        self._queue.put(change)
        self._pending.set()

    def close(self) -> None:
        self._queue.put(None)
        self._pending.set()

    def work(self) -> None:
        while True:
            change = self._queue.get()
            if change is None:
                return
            if self._queue.empty():
                self._pending.clear()
            self._run_hook(change)

    def _environment(self, change: Transition) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
        env.update(
            VIP_ELECTOR_STATE=change.new.name,
            VIP_ELECTOR_PREVIOUS_STATE=change.old.name,
            VIP_ELECTOR_KEY=change.key,
            VIP_ELECTOR_VALUE=change.value,
            VIP_ELECTOR_CAUSE=change.cause.value,
            VIP_ELECTOR_SESSION=change.session or "",
        )
        return env

    def _run_hook(self, change: Transition) -> None:
        argv = [*self.command, change.new.name, change.key, change.value]
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                argv,
                env=self._environment(change),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            log.error(
                "notify hook %s could not start: %s",
                argv[0],
                exc,
                extra={"event": "notify_failed", "state": change.new.value},
            )
            return
        deadline = started + self.timeout
        outcome = ""
        while process.poll() is None:
            if self._pending.wait(0.05) and not self._queue.empty():
                outcome = "terminated: the next state change came while it ran"
                break
            if time.monotonic() >= deadline:
                outcome = f"killed after the {self.timeout:g}s timeout"
                break
        if outcome:
            self._terminate(process)
        took = (time.monotonic() - started) * 1000
        level = logging.INFO if not outcome and process.returncode == 0 else logging.WARNING
        log.log(
            level,
            "notify hook %s %s: exit %s in %.0f ms%s",
            argv[0],
            change.new.name,
            process.returncode,
            took,
            f" ({outcome})" if outcome else "",
            extra={"event": "notify", "state": change.new.value, "cause": change.cause.value},
        )

    @staticmethod
    def _terminate(process: subprocess.Popen[bytes]) -> None:
        """SIGTERM the hook's process group, SIGKILL it if it lingers."""
        for signum in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signum)
            try:
                process.wait(KILL_GRACE)
                return
            except subprocess.TimeoutExpired:
                continue
