"""One generation of worker threads for one configuration: the renewer, the
election thread (the lock's owner) with its key watch, the node watch and the
liveness reporter.

The main thread starts a generation for the configuration it runs and ends
it with ``stop`` (release everything, or retire: leave the session and the
key to the next generation or process). Requests reach the election thread
as events (``post``); the main thread never writes to Consul itself.

Thread contract: every method here is called by the main thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from vip_elector.consul_adapter import REQUEST_TIMEOUT, ConsulAdapter
from vip_elector.continuity import Inheritance
from vip_elector.decision import Event, Memory, StopAsked
from vip_elector.election import SHUTDOWN_CALL_TIMEOUT as HAND_OVER_CALL
from vip_elector.election import Election
from vip_elector.fence import Fence
from vip_elector.liveness import LivenessCheck, LivenessReporter
from vip_elector.node_watch import NodeWatch
from vip_elector.renewer import Renewer
from vip_elector.runtime_dir import SessionRecord
from vip_elector.settings import Settings
from vip_elector.state import DaemonState
from vip_elector.worker import WorkerContext

if TYPE_CHECKING:
    from vip_elector.metrics import Metrics  # imported only with --status-addr

STARTUP_GRACE = 10.0
THREADS = ("renewer", "election", "key-watch")  # the threads the watchdog follows
STOP_WAIT = 1.2  # how long a stop waits for the election thread to release
RENEWER_WAIT = 0.5  # for a session create in flight


class Generation:
    """One generation of worker threads for one configuration."""

    def __init__(
        self,
        settings: Settings,
        state: DaemonState,
        fence: Fence,
        metrics: Metrics | None,
        on_agent_answered: Callable[[], None],
        on_status: Callable[[str], None],
        inherit: Inheritance | None = None,
        inspect_previous: bool = False,
        memory: Memory | None = None,
    ) -> None:
        record = SessionRecord(settings.consul.address, settings.trigger_key, settings.lock_value)
        self.context = WorkerContext(settings, state, threading.Event(), record=record)
        self.settings = settings
        self.state = state
        self.stop = self.context.stop
        observer = metrics.observe_request if metrics else None
        self.liveness: LivenessCheck | None = None
        if settings.liveness_ttl:
            self.liveness = LivenessCheck(
                ConsulAdapter(
                    settings.consul,
                    timeout=min(REQUEST_TIMEOUT, settings.liveness_ttl / 3),
                    observer=observer,
                ),
                settings.trigger_key,
                settings.lock_value,
                settings.liveness_ttl,
            )
        ready = threading.Event()
        self._election: Election | None = None
        self.renewer = Renewer(
            self.context,
            # Renewals must end well inside the TTL they protect.
            ConsulAdapter(settings.consul, timeout=min(5.0, settings.ttl / 4), observer=observer),
            post=self.post,
            on_status=on_status,
            liveness=self.liveness,
            may_start=ready,
        )
        self.election = Election(
            self.context,
            ConsulAdapter(settings.consul, observer=observer),
            ConsulAdapter(settings.consul, observer=observer),
            self.renewer,
            fence,
            liveness=self.liveness,
            inherit=inherit,
            inspect_previous=inspect_previous,
            memory=memory,
            ready=ready,
            on_ready=on_agent_answered,
        )
        self._election = self.election
        self.node_watch = NodeWatch(
            settings,
            ConsulAdapter(settings.consul, observer=observer),
            state,
            self.stop,
            self.post,
        )
        self.adapters = [
            self.renewer.adapter,
            self.election.adapter,
            self.election.watch.key.adapter,
            self.node_watch.adapter,
        ]
        if self.liveness is not None:
            self.adapters.append(self.liveness.adapter)

    def post(self, event: Event) -> None:
        """An event for the election thread (from any thread)."""
        if self._election is not None:
            self._election.post(event)

    def start(self) -> Generation:
        # Every worker gets a first deadline before it runs.
        for name in THREADS:
            self.state.beat(name, STARTUP_GRACE)
        self.renewer.start()
        self.election.start()
        self.node_watch.start()
        if self.liveness is not None:
            LivenessReporter(self.liveness, self.healthy, self.state, self.stop).start()
        return self

    def healthy(self) -> bool:
        """Every worker thread keeps its promise to make progress."""
        threads = THREADS if self.election.watch.is_alive() else THREADS[:2]
        return not self.state.stalled_threads(threads)

    def failure(self) -> BaseException | None:
        return self.renewer.failure or self.election.failure or self.election.watch.failure

    def dead_thread(self) -> str | None:
        for thread in (self.renewer, self.election):
            if not thread.is_alive() and not self.election.done.is_set():
                return thread.name
        return None

    def swap_consul(self, settings: Settings) -> None:
        """A rotated token, new TLS files, another address of the agent: every
        worker's adapter uses them from its next call on; the session, the lock
        and the threads stay as they are."""
        for adapter in self.adapters:
            adapter.reconfigure(settings.consul)

    def end(self, stop: StopAsked) -> None:
        """Stop the threads: the election thread releases (or retires) first,
        bounded in time; a dead election thread's release runs here."""
        # No new session from here on; one being made is told to the election
        # thread before the stop, so the release destroys it too.
        self.stop.set()
        self.renewer.wake()  # it waits for its next renewal on its own Event
        self.renewer.join(RENEWER_WAIT)
        if self.election.is_alive():
            self.post(stop)
            # A leader may hand the lock over first: it waits for its VIP to go,
            # at most the hand-over gap, plus two short writes.
            self.election.done.wait(STOP_WAIT + self.settings.handover_gap + 2 * HAND_OVER_CALL)
        elif self.election.failure is not None and not stop.retire:
            self.election.release_after_failure()
