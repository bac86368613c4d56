"""One generation of worker threads: the renewer, the election and the liveness
reporter of one configuration, and what it takes to step down or release them.

The main thread creates a generation for the configuration it runs, asks it
to step down (SIGUSR1, maintenance), and at shutdown or on a reload that
needs a new session releases it: the threads stop and nothing they wrote is
left in Consul.

Thread contract: ``start``, ``step_down``, ``release``, ``healthy``,
``failure`` and ``dead_thread`` are called by the main thread;
``step_down_cause`` by the election thread. ``_step_down`` is written by the
main thread before the key is deleted and read by the election thread after
it sees the key go (a single reference assignment).

A step-down leaves LEADER only once the key is really gone: the election
thread sees it go and records the transition with the cause given here. Until
then /status says leader (and ``stepping_down``), because the key still says
this node and vip-manager keeps the VIP here; a delete that cannot reach
Consul is retried, and the renewal rule ends leadership if Consul stays away.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from vip_elector.consul_adapter import REQUEST_TIMEOUT, ConsulAdapter, ConsulError
from vip_elector.continuity import Inheritance
from vip_elector.election import Election
from vip_elector.liveness import LivenessCheck, LivenessReporter
from vip_elector.node_watch import NodeWatch
from vip_elector.renewer import Renewer
from vip_elector.retrying import Interrupted, Retrier
from vip_elector.runtime_dir import SessionRecord
from vip_elector.settings import Settings
from vip_elector.standby import Standby
from vip_elector.state import Cause, DaemonState, Role, StepDown
from vip_elector.trigger_key import TriggerKey
from vip_elector.worker import WorkerContext

if TYPE_CHECKING:
    from vip_elector.metrics import Metrics  # imported only with --status-addr

log = logging.getLogger("vip_elector")

SHUTDOWN_LOCK_WAIT = 0.5  # how long to wait for an in-flight acquire/create
STARTUP_GRACE = 10.0
THREADS = ("renewer", "election")  # the threads whose progress the watchdog follows
STEP_DOWN_CALL_TIMEOUT = 2.0


class Generation:
    """One generation of worker threads for one configuration."""

    def __init__(
        self,
        settings: Settings,
        state: DaemonState,
        standby: Standby,
        metrics: Metrics | None,
        on_agent_answered: Callable[[], None],
        on_status: Callable[[str], None],
        inherit: Inheritance | None = None,
        inspect_previous: bool = False,
        on_maintenance: Callable[[], None] = lambda: None,
    ) -> None:
        record = SessionRecord(settings.consul.address, settings.trigger_key, settings.lock_value)
        self.context = WorkerContext(
            settings, state, threading.Event(), threading.Lock(), record=record
        )
        self.settings = settings
        self.state = state
        self.stop = self.context.stop
        self._step_down: StepDown | None = None
        observer = metrics.observe_request if metrics else None
        self.liveness: LivenessCheck | None = None
        self.adapters: list[ConsulAdapter] = []
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
        preflight_passed = threading.Event()
        self.renewer = Renewer(
            self.context,
            # Renewals must end well inside the TTL they protect.
            ConsulAdapter(settings.consul, timeout=min(5.0, settings.ttl / 4), observer=observer),
            on_status=on_status,
            liveness=self.liveness,
            may_start=preflight_passed,
            inherit=inherit,
            inspect_previous=inspect_previous,
            standby_reason=standby.reason,
        )
        self.election = Election(
            self.context,
            ConsulAdapter(settings.consul, observer=observer),
            self.renewer,
            standby_reason=standby.reason,
            step_down_cause=self.step_down_cause,
            preflight_passed=preflight_passed,
            on_preflight_passed=on_agent_answered,
        )

        self.node_watch = NodeWatch(
            settings,
            ConsulAdapter(settings.consul, observer=observer),
            state,
            self.stop,
            standby,
            on_maintenance,
        )
        self.adapters += [self.renewer.adapter, self.election.adapter, self.node_watch.adapter]
        if self.liveness is not None:
            self.adapters.append(self.liveness.adapter)

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
        return not self.state.stalled_threads(THREADS)

    def failure(self) -> BaseException | None:
        return self.renewer.failure or self.election.failure

    def dead_thread(self) -> str | None:
        for thread in (self.renewer, self.election):
            if not thread.is_alive():
                return thread.name
        return None

    # -- stepping down -------------------------------------------------------
    def step_down(self, cause: Cause, detail: str, new: Role = Role.FOLLOWER) -> None:
        """Delete the key we hold (cas), off the main thread; the election thread
        sees it go and leaves LEADER for ``new``. Once per held session."""
        held = self.state.leader_index()
        if held is None or self.stepping_down(held[0]):
            return
        self._step_down = StepDown(held[0], cause, detail, new)
        self.state.unfence()  # /leader says no before the key is deleted
        log.info(
            "stepping down (%s): deleting %s at index %d",
            cause.value,
            self.settings.trigger_key,
            held[1],
            extra={"event": "stepping_down", "key": self.settings.trigger_key},
        )
        threading.Thread(
            target=self._delete_held_key, args=(held,), name="step-down", daemon=True
        ).start()

    def stepping_down(self, session_id: str | None = None) -> bool:
        """A step-down of ``session_id`` (default: the current one) is under way."""
        step = self._step_down
        session_id = session_id or self.state.session_id
        return step is not None and step.session == session_id

    def step_down_cause(self, session_id: str) -> StepDown | None:
        """Why the key went, if we deleted it ourselves while ``session_id`` held it."""
        step = self._step_down
        return step if step and step.session == session_id else None

    def _delete_held_key(self, held: tuple[str, int]) -> None:
        session_id, index = held
        settings = self.settings
        adapter = ConsulAdapter(settings.consul, timeout=STEP_DOWN_CALL_TIMEOUT)
        key = TriggerKey(adapter, settings.trigger_key, settings.lock_value)
        retrier = Retrier(self.stop, settings.consul.address, settings.trigger_key)
        try:
            deleted = retrier.call(
                "Stepping down (deleting the trigger-key) failed",
                lambda: key.delete_at(index),
                lambda: self.stop.is_set() or self.state.session_id != session_id,
            )
        except Interrupted:
            return
        finally:
            adapter.close()
        if deleted:
            log.info(
                "deleted %s at index %d: another node can take over at once",
                settings.trigger_key,
                index,
                extra={"event": "lock_released", "key": settings.trigger_key},
            )

    # -- changing without a release ------------------------------------------
    def swap_consul(self, settings: Settings) -> None:
        """A rotated token, new TLS files, another address of the agent: every
        worker's adapter uses them from its next call on; the session, the lock
        and the threads stay as they are."""
        for adapter in self.adapters:
            adapter.reconfigure(settings.consul)
        self.settings = settings
        self.renewer.settings = settings
        self.election.settings = settings

    def retire(self) -> list[str]:
        """Stop the threads *without* releasing anything (the next generation
        takes the session over); returns the sessions that are to be destroyed."""
        self.stop.set()
        write_lock = self.context.write_lock
        got_lock = write_lock.acquire(timeout=SHUTDOWN_LOCK_WAIT)
        if got_lock:
            write_lock.release()
        return self.renewer.doomed_sessions()

    # -- the clean release ---------------------------------------------------
    def release(self, adapter: ConsulAdapter, held: tuple[str, int] | None) -> None:
        """Stop the threads and leave nothing behind in Consul (bounded time).

        ``held`` is (session, ModifyIndex) if we led, taken before the state
        left LEADER.
        """
        session_id = self.state.session_id
        self.stop.set()
        # Let an in-flight acquire or session create finish, so that what it
        # wrote is released below; both re-check the stop flag under this lock.
        write_lock = self.context.write_lock
        got_lock = write_lock.acquire(timeout=SHUTDOWN_LOCK_WAIT)
        try:
            current = self.renewer.session
            session_id = session_id or (current.id if current else None)
            key = TriggerKey(adapter, self.settings.trigger_key, self.settings.lock_value)
            if session_id is not None:
                known = held[1] if held and held[0] == session_id else None
                key.release(session_id, known)
            inherited = self.renewer.inherited_session()
            if inherited is not None:  # stopped while moving the lock to a new session
                key.release(inherited, None)
            sessions = [s for s in (session_id, inherited) if s]
            sessions += [s for s in self.renewer.doomed_sessions() if s not in sessions]
            for sid in sessions:
                if not key.release_failed:  # while Consul answers: spare the next start
                    try:  # a lock-delay on our candidate entry
                        key.drop_entry(sid)
                    except ConsulError:
                        key.release_failed = True
                try:
                    adapter.destroy_session(sid)
                    log.info(
                        "session %s destroyed",
                        sid,
                        extra={"event": "session_destroyed", "session": sid},
                    )
                except ConsulError as exc:
                    log.warning(
                        "could not destroy session %s (%s); Consul expires it within 2 x TTL",
                        sid,
                        exc,
                        extra={"event": "shutdown_error"},
                    )
            if self.context.record is not None:
                self.context.record.clear()  # nothing left for a next run to adopt
            if self.liveness is not None:
                # Last: deregistering the check earlier would invalidate a session
                # still holding the key, and lock-delay would apply.
                try:
                    adapter.deregister_service(self.liveness.service_id)
                except ConsulError as exc:
                    log.warning(
                        "could not deregister the liveness check (%s)",
                        exc,
                        extra={"event": "shutdown_error"},
                    )
        finally:
            if got_lock:
                write_lock.release()
