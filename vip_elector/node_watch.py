"""The node watcher: Consul's maintenance mode for this node, as it happens.

`consul maint -enable` (the node) or `consul maint -enable -service <id>` (the
service the --check-id check belongs to) registers a critical check that no
session names, so Consul itself would not move the lock. This thread follows
the node's checks with a blocking query on /v1/health/node/<node> (one
request per change, or per 5 minutes) and tells ``Standby``: a leader then
steps down at once (no lock-delay, as with the maintenance file) and the node
stays out until maintenance is disabled.

The node is the one our sessions live on (known once the first session
exists).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from vip_elector.consul_adapter import ConsulAdapter
from vip_elector.decision import ConsulMaintenance
from vip_elector.durations import format_duration
from vip_elector.key_entries import next_index
from vip_elector.logs import Reminder, untrusted
from vip_elector.retrying import Retrier
from vip_elector.settings import Settings
from vip_elector.state import DaemonState
from vip_elector.worker import Worker

log = logging.getLogger("vip_elector")

WATCH_WAIT = 300.0  # blocking-query wait: a change returns at once anyway
BLIND_REMIND = 600.0  # the missing right is said again this often
NODE_MAINTENANCE = "_node_maintenance"
# Consul answers /v1/health/node/<node> with an empty list, not an error, when
# the token may not read the node; our own node always has serfHealth.
NODE_READ_RULE = (
    'the token lacks node read (Consul answers an empty list): add node_prefix "" '
    '{ policy = "read" } to its policy (docs/acl.md)'
)
SERVICE_MAINTENANCE = "_service_maintenance:"


def maintenance_reason(checks: list[dict[str, Any]], check_id: str | None) -> str | None:
    """Consul maintenance that concerns this node's election, from a node's checks."""
    services = {str(c.get("ServiceID") or "") for c in checks if c.get("CheckID") == check_id}
    for check in checks:
        check_id_ = str(check.get("CheckID", ""))
        notes = str(check.get("Notes") or "").strip()
        why = f" ({untrusted(notes, 120)})" if notes else ""
        if check_id_ == NODE_MAINTENANCE:
            return f"the node is in Consul maintenance mode{why}"
        if check_id_.startswith(SERVICE_MAINTENANCE):
            service = check_id_[len(SERVICE_MAINTENANCE) :]
            if service and service in services:
                return f"service {service} is in Consul maintenance mode{why}"
    return None


class NodeWatch(Worker):
    """Thread contract: runs on its own; tells the election thread (``post``)."""

    critical = False  # without it only Consul maintenance goes unnoticed: logged

    def __init__(
        self,
        settings: Settings,
        adapter: ConsulAdapter,
        state: DaemonState,
        stop: threading.Event,
        post: Callable[[ConsulMaintenance], None],
    ) -> None:
        super().__init__("node-watch", state, stop)
        self.settings = settings
        self.adapter = adapter
        self.post = post
        self._retrier = Retrier(stop, settings.consul.address, settings.trigger_key)
        self._blind_reminder = Reminder(BLIND_REMIND)

    def work(self) -> None:
        while self.state.node is None:
            if self.stop.wait(0.5):
                return
        node = self.state.node
        index = 0
        current: str | None = None
        while not self.stop.is_set():
            answered, checks = self._retrier.call(
                "Watching this node's checks for Consul maintenance failed",
                functools.partial(self.adapter.node_health, node, index or None, WATCH_WAIT),
                self.stop.is_set,
                initial=1.0,
                maximum=30.0,
                quiet_first=2,
            )
            index = next_index(index, answered)
            if not checks and self._blind_reminder.due(node):
                log.error(
                    "cannot see this node's checks: %s; Consul maintenance (`consul maint`) "
                    "is not noticed until then",
                    NODE_READ_RULE,
                    extra={"event": "node_checks_hidden"},
                )
            reason = maintenance_reason(checks, self.settings.check_id)
            if reason != current:
                current = reason
                self.post(ConsulMaintenance(reason))
                if reason is not None:
                    log.info(
                        "%s: not competing until it is disabled",
                        reason,
                        extra={"event": "consul_maintenance"},
                    )
                else:
                    log.info(
                        "Consul maintenance mode ended (checked again within %s)",
                        format_duration(WATCH_WAIT),
                        extra={"event": "consul_maintenance"},
                    )
