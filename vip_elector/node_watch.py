"""The node watcher: Consul's maintenance mode for this node, as it happens.

`consul maint -enable` (the node) or `consul maint -enable -service <id>` (the
service the --check-id check belongs to) registers a critical check that no
session names, so Consul itself would not move the lock. This thread follows
the node's checks with a blocking query on /v1/health/node/<node> (one
request per change, or per 5 minutes) and tells ``Standby``: a leader then
steps down at once (no lock-delay, as with the maintenance file) and the node
stays out until maintenance is disabled.

The node is the local agent's (/v1/agent/self), or, with a token that may not
read the agent, the one our session lives on. The first answer is always
posted, "no maintenance" included, and so is a failed request (``known``
False): the election does not take a free key until the next answer
(decision.CONSUL_MAINTENANCE_WAIT), so a process started on a node in
maintenance, or a node whose agent was down while `consul maint` was run,
never leads for a moment.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from vip_elector.consul_adapter import ConsulAdapter, ConsulError
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
# Until an answer comes the election does not take a free key: retry often (the
# local agent; the key watch retries as often).
FIRST_RETRY = 0.1
RETRY_MAX = 2.0
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
        node = self._find_node()
        if node is None:
            return
        index = 0
        current: str | None = None
        known = [False]  # the election has our last answer, not a failure since

        def query() -> tuple[int, list[dict[str, Any]]]:
            try:
                return self.adapter.node_health(node, index or None, WATCH_WAIT)
            except ConsulError:
                if known[0]:
                    known[0] = False
                    self.post(ConsulMaintenance(current, known=False))
                raise

        while not self.stop.is_set():
            answered, checks = self._retrier.call(
                "Watching this node's checks for Consul maintenance failed",
                query,
                self.stop.is_set,
                initial=FIRST_RETRY,
                maximum=RETRY_MAX,
                quiet_first=2,
                # The key watch warns about the same agent; an acquire this holds
                # up is warned about by the election (CONSUL_MAINTENANCE_WAIT).
                level=logging.INFO,
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
            if reason != current or not known[0]:
                changed, ended = reason != current, reason is None and current is not None
                current, known[0] = reason, True
                self.post(ConsulMaintenance(reason))
                if reason is not None and changed:
                    log.info(
                        "%s: not competing until it is disabled",
                        reason,
                        extra={"event": "consul_maintenance"},
                    )
                elif ended:
                    log.info(
                        "Consul maintenance mode ended (checked again within %s)",
                        format_duration(WATCH_WAIT),
                        extra={"event": "consul_maintenance"},
                    )

    def _find_node(self) -> str | None:
        """This node's Consul name, asked until known (None: stopping). Not only
        from the session: it may come late or its read-back may fail (sim F5, F6)."""
        delay = FIRST_RETRY
        while True:
            node = self._node_name()
            if node:
                return node
            if self.stop.wait(delay):
                return None
            delay = min(delay * 2, RETRY_MAX)

    def _node_name(self) -> str | None:
        if self.state.node:
            return self.state.node
        try:
            return self.adapter.node_name()
        except ConsulError as exc:
            # A token without agent read (docs/acl.md does not ask for it): our session's node.
            log.debug("this node's name from the agent: %s", exc)
        session = self.state.session_id
        try:
            info = self.adapter.session_info(session) if session else None
        except ConsulError as exc:
            log.debug("this node's name from session %s: %s", session, exc)
            return None
        return info.node if info is not None else None
