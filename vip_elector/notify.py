"""--notify hooks: keepalived-style scripts run on every state change.

Each transition queues one run of ``CMD STATE KEY VALUE`` (the same in
``VIP_ELECTOR_*`` environment variables). A single thread runs them one at a
time, never on the election path. If a hook is still running when the next
change comes, it is superseded once it has run for a second: terminated
(SIGTERM, then SIGKILL), which is normal and logged at INFO; a hook running
past ``--notify-timeout`` is killed, logged as a WARNING. At shutdown the
STOPPING hook still gets its full timeout (the lock is released before).
Exit code and duration are logged, and each run's outcome is counted for
/metrics (``HookOutcomes``); what a hook prints is captured and
logged line by line, escaped and bounded, so it can neither flood nor forge
the daemon's log. The ACL token is not passed on to hooks, in whatever
variable it was given.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from typing import IO

from vip_elector.logs import untrusted
from vip_elector.state import DaemonState, Transition
from vip_elector.worker import Worker

log = logging.getLogger("vip_elector")

KILL_GRACE = 1.0  # SIGTERM, then SIGKILL after this
# A hook runs this long (half its timeout at most) before the next change ends it.
SUPERSEDE_AFTER = 1.0
SECRET_VARIABLES = ("CONSUL_HTTP_TOKEN", "VIP_ELECTOR_TOKEN", "CONSUL_HTTP_AUTH")
OUTPUT_LINE_LIMIT = 500  # characters of one output line that are logged
OUTPUT_LINES = 20  # lines of one run that are logged; the rest are counted
READ_CHUNK = 4096

# How a hook run ended (a metrics label): it exited 0, exited non-zero or died
# of a signal, was killed past --notify-timeout, was ended by the next state
# change (normal), or could not be started at all.
OUTCOMES = ("ok", "failed", "timeout", "superseded", "not_started")


class HookOutcomes:
    """How many hook runs ended each way; thread-safe.

    One per process (``HOOK_OUTCOMES``): a daemon has one notify thread, and
    /metrics reads the counts from here whether or not hooks are configured
    (all 0 then), so an alert sees the first failure as an increase.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(OUTCOMES, 0)

    def count(self, outcome: str) -> None:
        with self._lock:
            self._counts[outcome] += 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


HOOK_OUTCOMES = HookOutcomes()


def hook_environment(
    environ: dict[str, str], secrets: tuple[str, ...], change: Transition
) -> dict[str, str]:
    """The hook's environment: ours without anything that carries the token."""
    env = {
        name: value
        for name, value in environ.items()
        if name not in SECRET_VARIABLES
        # VIP_ELECTOR_OPTS="--token=..." and the like: drop by value too.
        and not any(len(secret) >= 4 and secret in value for secret in secrets)
    }
    env.update(
        VIP_ELECTOR_STATE=change.new.name,
        VIP_ELECTOR_PREVIOUS_STATE=change.old.name,
        VIP_ELECTOR_KEY=change.key,
        VIP_ELECTOR_VALUE=change.value,
        VIP_ELECTOR_CAUSE=change.cause.value,
        VIP_ELECTOR_SESSION=change.session or "",
    )
    return env


class NotifyRunner(Worker):
    """The notify thread. ``__call__`` and ``close`` may be called from any thread
    (they only queue); everything else runs on the notify thread."""

    # Hooks are off the election path: if this thread fails, hooks stop
    # running (logged), the lock is not affected.
    critical = False

    def __init__(
        self,
        command: tuple[str, ...],
        timeout: float,
        state: DaemonState,
        secrets: tuple[str, ...] = (),
        outcomes: HookOutcomes = HOOK_OUTCOMES,
    ) -> None:
        super().__init__("notify", state, threading.Event())
        self.command = command
        self.timeout = timeout
        self.secrets = secrets
        self.outcomes = outcomes
        self._waiting: deque[Transition] = deque()  # under _changed
        self._closed = False  # under _changed
        self._changed = threading.Condition()

    def __call__(self, change: Transition) -> None:
        """A state listener: queue the hook (never blocks the caller)."""
        with self._changed:
            self._waiting.append(change)
            self._changed.notify_all()

    def close(self) -> None:
        """Run what is queued (each with its full timeout), then end.

        Closing does not supersede the running hook: it is not a state change.
        """
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def work(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting or self._closed)
                if not self._waiting:
                    return  # closed, and nothing left to run
                change = self._waiting.popleft()
            self._run_hook(change)

    def _next_change_waits(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for a newer transition; True if one is queued."""
        with self._changed:
            return bool(self._changed.wait_for(lambda: self._waiting, timeout))

    def _run_hook(self, change: Transition) -> None:
        argv = [*self.command, change.new.name, change.key, change.value]
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                argv,
                env=hook_environment(dict(os.environ), self.secrets, change),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            log.error(
                "notify hook %s could not start: %s",
                argv[0],
                exc,
                extra={"event": "notify_failed", "state": change.new.value},
            )
            self.outcomes.count("not_started")
            return
        assert process.stdout is not None
        reader = threading.Thread(
            target=self._log_output,
            args=(process.stdout, argv[0], change),
            name="notify-output",
            daemon=True,
        )
        reader.start()
        deadline = started + self.timeout
        # Never the whole timeout: a hook the next change ends is superseded, not timed out.
        supersede_after = min(SUPERSEDE_AFTER, self.timeout / 2)
        outcome, level, counted = "", logging.INFO, "ok"
        while process.poll() is None:
            if time.monotonic() - started < supersede_after:
                # Not superseded yet: a change right behind this one (FOLLOWER,
                # then FAULT a few ms later) would kill it before it ran a line.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(0.05)
            elif self._next_change_waits(0.05):
                outcome = "terminated: the next state change came while it ran"
                counted = "superseded"
                break
            if time.monotonic() >= deadline:
                outcome, level = f"killed after the {self.timeout:g}s timeout", logging.WARNING
                counted = "timeout"
                break
        if outcome:
            self._terminate(process)
        reader.join(KILL_GRACE)
        took = (time.monotonic() - started) * 1000
        if not outcome and process.returncode != 0:
            level, counted = logging.WARNING, "failed"
        self.outcomes.count(counted)
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
    def _log_output(stream: IO[bytes], program: str, change: Transition) -> None:
        """Log what the hook prints, one record per line, escaped and bounded."""
        logged = dropped = 0

        def say(line: bytes) -> None:
            nonlocal logged, dropped
            if logged >= OUTPUT_LINES:
                dropped += 1
                return
            logged += 1
            log.info(
                "notify hook %s %s says: %s",
                program,
                change.new.name,
                untrusted(line.decode("utf-8", "replace"), OUTPUT_LINE_LIMIT),
                extra={"event": "notify_output", "state": change.new.value},
            )

        pending = b""
        with contextlib.suppress(OSError, ValueError):
            while True:
                chunk = stream.read1(READ_CHUNK)  # type: ignore[attr-defined]
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if len(pending) > OUTPUT_LINE_LIMIT * 4:  # a line without end: cut it
                    lines.append(pending)
                    pending = b""
                for line in lines:
                    say(line)
        if pending:
            say(pending)
        if dropped:
            log.info(
                "notify hook %s %s: %d more output lines not logged",
                program,
                change.new.name,
                dropped,
                extra={"event": "notify_output", "state": change.new.value},
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
