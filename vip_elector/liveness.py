"""--liveness-ttl: tie the session to a TTL check that only a live daemon passes.

Without it, a vip-elector killed on a healthy node keeps the lock until
Consul's session TTL timer fires (up to 2 x TTL). With it, the daemon
registers a small service with a TTL check on the local agent, names the
check in its session, and passes it several times per TTL, but only while
its threads keep making progress. A dead or wedged daemon stops passing, the
check goes critical after about the liveness TTL, Consul invalidates the
session and the key goes with it.

The check belongs to its own service (``vip-elector``) rather than the node:
a critical node-level check would mark every service on the node unhealthy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from vip_elector.consul_adapter import ConsulAdapter, ConsulError
from vip_elector.durations import format_duration
from vip_elector.runtime_dir import instance_id
from vip_elector.state import DaemonState
from vip_elector.worker import Worker

log = logging.getLogger("vip_elector")

SERVICE_NAME = "vip-elector"
PASSES_PER_TTL = 3
LOG_FAILURES_EVERY = 60.0


def liveness_ids(trigger_key: str, lock_value: str) -> tuple[str, str]:
    """(service id, check id): one per trigger-key and lock value on an agent, so
    several VIPs per host (template units) each have their own, and a restarted
    daemon finds its old one again. Unambiguous (``instance_id``)."""
    service_id = f"vip-elector-{instance_id(trigger_key, lock_value)}"
    return service_id, f"{service_id}-liveness"


class LivenessCheck:
    """Registers, passes and deregisters the daemon's own TTL check."""

    def __init__(
        self, adapter: ConsulAdapter, trigger_key: str, lock_value: str, ttl: float
    ) -> None:
        self.adapter = adapter
        self.ttl = ttl
        self.trigger_key = trigger_key
        self.service_id, self.check_id = liveness_ids(trigger_key, lock_value)

    def register(self) -> None:
        """Register (or reset to passing) the service and its TTL check."""
        self.adapter.register_liveness_service(
            self.service_id,
            SERVICE_NAME,
            self.check_id,
            self.ttl,
            notes=f"passed by vip-elector for {self.trigger_key} while its threads make "
            "progress; critical = the daemon is dead or wedged",
        )

    def passed(self) -> None:
        self.adapter.pass_ttl_check(self.check_id)


class LivenessReporter(Worker):
    """Passes the check every TTL/3 while ``healthy()`` says the threads progress.

    Not watched by the watchdog itself (it reports the others' progress); if it
    fails, the check goes critical and Consul ends the session, as intended.
    """

    def __init__(
        self,
        check: LivenessCheck,
        healthy: Callable[[], bool],
        state: DaemonState,
        stop: threading.Event,
    ) -> None:
        super().__init__("liveness", state, stop)
        self.check = check
        self.healthy = healthy

    def work(self) -> None:
        interval = self.check.ttl / PASSES_PER_TTL
        withheld = False
        failing_since: float | None = None  # failures are logged once, then every minute
        last_logged = 0.0
        while not self.stop.wait(interval):
            if not self.healthy():
                if not withheld:
                    log.error(
                        "threads are not making progress: no longer passing the liveness "
                        "check %s; Consul will invalidate the session within %s",
                        self.check.check_id,
                        format_duration(self.check.ttl),
                        extra={"event": "liveness_withheld"},
                    )
                withheld = True
                continue
            withheld = False
            try:
                self.check.passed()
            except ConsulError as exc:
                now = time.monotonic()
                if failing_since is None or now - last_logged >= LOG_FAILURES_EVERY:
                    failing_since = failing_since or now
                    last_logged = now
                    log.warning(
                        "passing the liveness check %s failed: %s (failing for %.0fs; "
                        "logged again in %.0fs if it goes on)",
                        self.check.check_id,
                        exc,
                        now - failing_since,
                        LOG_FAILURES_EVERY,
                        extra={"event": "liveness_failed", "cause": exc.kind},
                    )
                continue
            if failing_since is not None:
                log.info(
                    "liveness check %s passed again after %.0fs of failures",
                    self.check.check_id,
                    time.monotonic() - failing_since,
                    extra={"event": "liveness_recovered"},
                )
                failing_since = None
