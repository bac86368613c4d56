"""When this node must not compete: maintenance, or a step-down hold.

Maintenance is either the maintenance file (like ExaBGP's healthcheck
`--disable FILE`) or Consul's own (`consul maint -enable` for the node, or for
the service of the --check-id check), which the node watcher reports here;
while either lasts the node stays out of the election and a leader steps
down. SIGUSR1 makes a leader step down and stay out for ``--step-down-hold``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path


class Standby:
    """Thread-safe answers to "may this node compete now?"."""

    def __init__(self, maintenance_file: Path | None) -> None:
        self.maintenance_file = maintenance_file
        self._lock = threading.Lock()
        self._hold_until = 0.0  # monotonic
        self._hold_reason = ""
        self._consul_maintenance: str | None = None  # written by the node watcher

    def set_consul_maintenance(self, reason: str | None) -> None:
        with self._lock:
            self._consul_maintenance = reason

    def maintenance(self) -> str | None:
        """Why the node is in maintenance, or None."""
        if self.maintenance_file is not None and self.maintenance_file.exists():
            return f"maintenance file {self.maintenance_file} exists"
        with self._lock:
            return self._consul_maintenance

    def in_maintenance(self) -> bool:
        return self.maintenance() is not None

    def hold(self, seconds: float, reason: str) -> str:
        """Stay out for ``seconds``; returns the text that says until when."""
        until = time.strftime("%H:%M:%S", time.localtime(time.time() + seconds))
        with self._lock:
            self._hold_until = time.monotonic() + seconds
            # A fixed text (not a countdown), so it is logged once, not every second.
            self._hold_reason = f"{reason}; competing again at {until} (after {seconds:g}s)"
            return self._hold_reason

    def hold_left(self) -> float:
        with self._lock:
            return max(0.0, self._hold_until - time.monotonic())

    def reason(self) -> str | None:
        """Why the node must not compete now, or None."""
        maintenance = self.maintenance()
        if maintenance is not None:
            return maintenance
        if self.hold_left() > 0:
            with self._lock:
                return self._hold_reason
        return None
