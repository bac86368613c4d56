"""The election loop with an agent that hangs: a session loss (or a stop) is
decided on after the one call in flight, not behind the bookkeeping writes the
same decision still had to send (the soak's 1.6 s of two leaders on /primary).

The real Election and decision core run on their own thread, as in the daemon;
the trigger-key protocol is a fake whose writes block until the test lets the
"agent" answer, so nothing depends on a timing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest

from tests.testbed.waiting import wait_until
from tests.unit.settings_factory import make_settings
from vip_elector.consul_adapter import ConsulAdapter, Unavailable
from vip_elector.decision import Memory, SessionDown, StopAsked, Tick
from vip_elector.election import Election
from vip_elector.fence import Fence
from vip_elector.key_entries import LOCK_FLAG, KeyState
from vip_elector.renewer import Renewer
from vip_elector.roles import Cause, Role
from vip_elector.state import DaemonState
from vip_elector.trigger_key import TriggerKey
from vip_elector.worker import WorkerContext

SESSION = "sess-a"
WAIT = 5.0  # the longest the test waits for the loop (it takes milliseconds)


class HungAgent:
    """The trigger-key protocol on an agent that does not answer until ``answer``
    is set: every write blocks until then, and then fails as a timeout would.
    ``calls`` lists (call, the role the daemon had when it was made)."""

    def __init__(self, state: DaemonState, name: str, value: str) -> None:
        self.state, self.name, self.value = state, name, value
        self.answer = threading.Event()
        self.calls: list[tuple[str, str]] = []
        self.entered = threading.Event()  # the first call is in flight

    def _call(self, name: str) -> bool:
        self.calls.append((name, self.state.role.value))
        self.entered.set()
        self.answer.wait(WAIT)
        raise Unavailable("Read timed out (5.0)", "timeout")

    def publish(self, *_: Any) -> bool:
        return self._call("publish")

    def report(self, entry: dict[str, Any]) -> bool:
        return self._call(f"report {entry['state']}")

    def append_history(self, _: Any) -> bool:
        return self._call("append_history")

    def drop_entry(self, _: str) -> bool:
        return self._call("drop_entry")

    def candidate_entry_holder(self) -> str | None:
        return None


class Adapter:
    """Consul's session calls, on the same hung agent: each fails at once."""

    timeout = 5.0

    def destroy_session(self, *_: Any) -> None:
        raise Unavailable("Read timed out (5.0)", "timeout")

    list_sessions = session_info = destroy_session


class QuietRenewer:
    def discard(self, *_: Any) -> None:
        pass


@pytest.fixture
def leading() -> Iterator[tuple[Election, HungAgent, DaemonState, threading.Thread]]:
    """A leader's election loop running on its thread; stopped (retired) at the end."""
    settings = make_settings()
    state = DaemonState(settings.trigger_key, settings.lock_value)
    state.transition(Role.FOLLOWER, Cause.SESSION_CREATED)
    state.transition(Role.LEADER, Cause.ACQUIRED)
    key = KeyState(11, True, b"node-a", LOCK_FLAG, SESSION, modify_index=11)
    memory = Memory(
        role=Role.LEADER,
        leading=True,
        session=SESSION,
        node="node-a",
        held_index=11,
        key=key,
        watching=True,
        consul_maintenance_known=True,
        leader_since=1.0,
    )
    context = WorkerContext(settings, state, threading.Event())
    adapter = cast(ConsulAdapter, Adapter())
    election = Election(
        context, adapter, adapter, cast(Renewer, QuietRenewer()), Fence(), memory=memory
    )
    agent = HungAgent(state, settings.trigger_key, settings.lock_value)
    election.key = cast(TriggerKey, agent)
    election._retire = lambda sessions: None  # type: ignore[method-assign]
    failures: list[BaseException] = []

    def run() -> None:
        try:
            election._run()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, name="election", daemon=True)
    thread.start()
    yield election, agent, state, thread
    agent.answer.set()
    election.post(StopAsked(retire=True))
    thread.join(WAIT)
    assert not thread.is_alive(), "the election loop did not end on a stop"
    assert not failures, f"the election loop failed: {failures[0]!r}"


def publishing(election: Election, agent: HungAgent) -> None:
    """Make the leader decide to publish its candidacy, then report "leader" (its
    member entry), and wait until the publish hangs."""
    election.post(Tick())
    wait_until(agent.entered.is_set, WAIT, "the leader never published its candidacy")
    assert agent.calls == [("publish", "leader")]


def test_a_session_loss_is_decided_on_after_the_call_in_flight_not_the_reports_behind_it(
    leading: tuple[Election, HungAgent, DaemonState, threading.Thread],
) -> None:
    election, agent, state, _ = leading
    publishing(election, agent)
    # The renewer's TTL rule gives the session up while the publish hangs.
    election.post(SessionDown(SESSION, Cause.RENEW_TIMEOUT, "no successful renewal for 10s"))
    agent.answer.set()  # the publish times out
    wait_until(lambda: state.role == Role.FOLLOWER, WAIT, "the leader never stepped down")
    wait_until(lambda: ("report follower", "follower") in agent.calls, WAIT, "no report")
    # Nothing was sent as the leader after the hung call: the loss came first.
    assert agent.calls[:2] == [("publish", "leader"), ("drop_entry", "follower")]
    assert ("report leader", "leader") not in agent.calls


def test_a_stop_is_not_held_up_by_the_reports_behind_a_hung_call(
    leading: tuple[Election, HungAgent, DaemonState, threading.Thread],
) -> None:
    election, agent, _, thread = leading
    publishing(election, agent)
    election.post(StopAsked(retire=True))
    agent.answer.set()
    wait_until(lambda: not thread.is_alive(), WAIT, "the loop did not end on the stop")
    assert agent.calls == [("publish", "leader")]
