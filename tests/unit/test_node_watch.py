"""The node watch: what it tells the election about Consul maintenance, and when
(sim findings F5, F6: the election takes no free key before its answer)."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from tests.unit.settings_factory import make_settings
from vip_elector.consul_adapter import ConsulError, PermissionDenied, SessionInfo, Unavailable
from vip_elector.decision import ConsulMaintenance
from vip_elector.node_watch import NODE_MAINTENANCE, NodeWatch
from vip_elector.retrying import Interrupted
from vip_elector.state import DaemonState

MAINTENANCE = [{"CheckID": NODE_MAINTENANCE, "Notes": "upgrade"}]


class FakeAdapter:
    """An agent that may not be read (no agent rule in the token) and answers the
    node's checks from a script: a list of checks, or a ConsulError to raise."""

    timeout = 5.0

    def __init__(self, answers: list[list[dict[str, Any]] | ConsulError], stop: threading.Event):
        self.answers = answers
        self.stop = stop
        self.asked: list[str] = []

    def node_name(self) -> str:
        raise PermissionDenied("Permission denied: token lacks permission 'agent:read'")

    def session_info(self, session_id: str, consistent: bool = False) -> SessionInfo | None:
        return SessionInfo(session_id, "vip", "node-a", "10s", 1.0, "delete", ())

    def node_health(
        self, node: str, index: int | None = None, wait: float | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        self.asked.append(node)
        if not self.answers:
            self.stop.set()
            raise Unavailable("stopping the test", "unreachable")
        answer = self.answers.pop(0)
        if isinstance(answer, ConsulError):
            raise answer
        return len(self.asked), answer


def run(answers: list[list[dict[str, Any]] | ConsulError]) -> tuple[list[object], FakeAdapter]:
    stop = threading.Event()
    state = DaemonState("k", "node-a")
    # The renewer's read-back of the session failed (F6): state.node stays None.
    state.sync("sess-1", None, None, False, None)
    posted: list[object] = []
    adapter = FakeAdapter(answers, stop)
    watch = NodeWatch(make_settings(), adapter, state, stop, posted.append)  # type: ignore[arg-type]

    def work() -> None:
        with contextlib.suppress(Interrupted):
            watch.work()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(5.0)  # the script takes well under a second
    stop.set()
    thread.join(5.0)
    assert adapter.asked, "the node's checks were never asked for: the node is not known"
    return posted, adapter


def test_the_node_is_found_without_the_sessions_read_back_or_the_agent_rule() -> None:
    posted, adapter = run([[]])
    assert set(adapter.asked) == {"node-a"}
    # The first answer is posted though nothing changed: the election waits for it.
    assert posted[0] == ConsulMaintenance(None)


def test_a_failed_request_is_posted_as_not_known_until_the_next_answer() -> None:
    posted, _ = run([[], Unavailable("connection refused", "unreachable"), MAINTENANCE])
    reason = "the node is in Consul maintenance mode (upgrade)"
    assert posted == [
        ConsulMaintenance(None),
        ConsulMaintenance(None, known=False),
        ConsulMaintenance(reason),
        ConsulMaintenance(reason, known=False),  # the test's own end
    ]
