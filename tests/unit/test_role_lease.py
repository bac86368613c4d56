"""The role as /status, /primary and the metrics report it is bounded by the
session's lease (last good renewal + TTL, the renewer's TTL rule), as /leader
is by the fence: time ends it even while the election thread, which alone
writes the role, is still waiting for a hung agent (the soak's two leaders on
/primary for 1.6 s)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest

from tests.testbed.waiting import wait_until
from tests.unit.settings_factory import make_settings
from tests.unit.test_metrics_endpoint import fetch, scrape
from vip_elector.consul_adapter import ConsulAdapter, SessionGone, Unavailable
from vip_elector.decision import Event, SessionDown
from vip_elector.metrics import Metrics
from vip_elector.renewer import Renewer, Session
from vip_elector.roles import Cause, Role
from vip_elector.state import DaemonState
from vip_elector.status_server import StatusServer
from vip_elector.worker import WorkerContext

SESSION = "sess-a"


def leader(lease_left: float) -> DaemonState:
    """A LEADER (as the election thread made it) whose session's lease ends in
    ``lease_left`` seconds."""
    state = DaemonState("service/x/vip", "node-a")
    state.lease(SESSION, time.monotonic() + lease_left)
    state.transition(Role.FOLLOWER, Cause.SESSION_CREATED)
    state.transition(Role.LEADER, Cause.ACQUIRED)
    state.sync(SESSION, 11, time.time(), adopted=False, node="node-a")
    return state


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[StatusServer] = []

    def start(state: DaemonState) -> StatusServer:
        server = StatusServer(
            ("127.0.0.1", 0), state.snapshot, lambda *_: (b"", {}), lambda: True
        ).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def get(server: StatusServer, path: str) -> tuple[int, str]:
    answer, body = fetch(server, path)
    return answer.status, body.decode()


def test_primary_and_status_stop_claiming_leadership_when_the_lease_runs_out(serve: Any) -> None:
    state = leader(lease_left=0.5)
    server = serve(state)
    assert get(server, "/primary") == (200, "leader\n")
    # Nobody writes anything: the election thread is blocked, the role machine
    # still says LEADER; the lease's end is enough.
    wait_until(lambda: get(server, "/primary")[0] == 503, 5.0, "/primary still says leader")
    assert state.role == Role.LEADER
    assert get(server, "/primary") == (
        503,
        "not the leader: session lease expired, stepping down\n",
    )
    status = state.snapshot()
    assert (status["state"], status["role"], status["cause"]) == (
        "follower",
        "leader",
        "renew_timeout",
    )
    assert status["detail"] == "session lease expired, stepping down"


def test_the_leader_gauge_follows_the_lease_too() -> None:
    state = leader(lease_left=60.0)
    metrics = Metrics(state, dict)
    assert scrape(metrics)[("vip_elector_state", (("state", "leader"),))] == 1
    state.lease(SESSION, time.monotonic() - 0.001)  # renewed more than a TTL ago
    found = scrape(metrics)
    assert found[("vip_elector_state", (("state", "leader"),))] == 0
    assert found[("vip_elector_state", (("state", "follower"),))] == 1


def test_a_new_session_does_not_renew_the_claim_of_the_lost_one(serve: Any) -> None:
    # The renewer made its next session while the election thread, blocked, still
    # leads with the old one: that session holds no lock.
    state = leader(lease_left=60.0)
    state.lease_ended(SESSION, Cause.SESSION_LOST)
    state.lease("sess-b", time.monotonic() + 60.0)
    assert get(serve(state), "/primary") == (
        503,
        f"not the leader: session {SESSION} lost, stepping down\n",
    )


class Agent:
    """The renewer's Consul calls: renewals fail with ``error``."""

    timeout = 5.0

    def __init__(self, error: Exception) -> None:
        self.error = error

    def renew_session(self, *_: Any, **__: Any) -> None:
        raise self.error


def renewer_of(state: DaemonState, agent: Agent, posted: list[Event]) -> Renewer:
    context = WorkerContext(make_settings(), state, threading.Event())
    return Renewer(context, cast(ConsulAdapter, agent), posted.append)


@pytest.mark.parametrize(
    ("error", "renewed_ago", "detail"),
    [
        (Unavailable("Read timed out (5.0)", "timeout"), 9.95, "session lease expired"),
        (SessionGone("Session id not found"), 6.0, f"session {SESSION} lost"),
    ],
    ids=["ttl-rule", "consul-lost-it"],
)
def test_the_renewer_ends_the_claim_before_the_election_thread_decides(
    error: Exception, renewed_ago: float, detail: str
) -> None:
    state = leader(lease_left=60.0)
    posted: list[Event] = []
    renewer = renewer_of(state, Agent(error), posted)
    session = Session(SESSION, 10.0, renewed_at=time.monotonic() - renewed_ago)
    renewer._set_session(session)
    assert state.snapshot()["state"] == "leader"

    def one_turn() -> bool:  # the renewer's loop, one turn at a time
        renewer._renew_when_due(session)
        return session.ended

    wait_until(one_turn, 5.0, "the renewer did not end the session")
    assert [type(event) for event in posted] == [SessionDown]
    # The election thread has not decided on it (the role machine says LEADER):
    # the readers do not say leader any more.
    assert state.role == Role.LEADER
    snapshot = state.snapshot()
    assert snapshot["state"] == "follower"
    assert snapshot["detail"] == f"{detail}, stepping down"


def test_while_the_lock_moves_to_a_new_session_the_old_sessions_lease_bounds_the_claim(
    serve: Any,
) -> None:
    # A reload with a new TTL: the key is still held by the old session (no longer
    # renewed: its generation retired) until the move; the new one is fresh.
    state = leader(lease_left=0.5)
    state.lease("sess-new", time.monotonic() + 60.0)
    state.sync("sess-new", 11, time.time(), adopted=False, node="node-a", lock_session=SESSION)
    server = serve(state)
    assert get(server, "/primary") == (200, "leader\n")
    wait_until(lambda: get(server, "/primary")[0] == 503, 5.0, "the old lease never ended")
    # Moved: the new session holds the key, and its lease counts.
    state.sync("sess-new", 12, time.time(), adopted=False, node="node-a")
    assert get(server, "/primary") == (200, "leader\n")
