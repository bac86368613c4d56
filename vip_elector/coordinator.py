"""The main thread: pre-flight, the two worker threads, signals and the clean release.

Signal handlers only set Events; this thread acts on them. On SIGTERM/SIGINT
a leader deletes the trigger-key with ``cas`` at the index it holds it at
(vip-manager drops the VIP at once and, unlike destroying the session, this
sets no lock-delay, so another node takes over immediately), then destroys
its session; a follower destroys its session. The process exits within 2 s
in every state, even with a worker thread sitting in a long poll (they are
daemon threads and never write after the stop). A second signal exits at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType

from vip_elector.config import Settings
from vip_elector.consul_adapter import REQUEST_TIMEOUT, ConsulAdapter, ConsulError
from vip_elector.election import Election
from vip_elector.liveness import LivenessCheck, LivenessReporter
from vip_elector.session import SessionKeeper
from vip_elector.state import Cause, DaemonState, Role, Transition
from vip_elector.systemd import SystemdNotifier

log = logging.getLogger("vip_elector")

EXIT_OK = 0
EXIT_FAILURE = 1
SHUTDOWN_LOCK_WAIT = 0.5  # how long to wait for an in-flight acquire/create
SHUTDOWN_CALL_TIMEOUT = 0.3  # per Consul call while stopping
TICK = 1.0
STARTUP_GRACE = 10.0
THREADS = ("renewer", "election")


class Coordinator:
    """Runs one vip-elector daemon until it is told to stop."""

    def __init__(self, settings: Settings, notifier: SystemdNotifier | None = None) -> None:
        self.settings = settings
        self.notifier = notifier or SystemdNotifier()
        self.state = DaemonState(settings.trigger_key, settings.lock_value)
        self.stop = threading.Event()
        self.write_lock = threading.Lock()
        self._signals_seen = 0
        self.keeper: SessionKeeper | None = None
        self.liveness: LivenessCheck | None = None
        self.election: Election | None = None
        self.state.subscribe(self._on_transition)

    # -- signals -------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals_seen += 1
        if self._signals_seen > 1:
            # The one thing a handler does besides setting an Event: an operator
            # asked twice, so leave now (the session expires after 2 x TTL).
            os.write(2, b"vip-elector: second signal, exiting immediately without releasing\n")
            os._exit(128 + signum)
        self.stop.set()

    # -- the run -------------------------------------------------------------
    def run(self) -> int:
        """Run until stopped.

        The main thread never blocks on Consul (a signal must be acted on at
        once) except in the bounded release at the end.
        """
        self.install_signal_handlers()
        log.info(
            "vip-elector starting: %s",
            self.settings.describe(),
            extra={"event": "starting", "key": self.settings.trigger_key},
        )
        preflight_passed = threading.Event()
        if self.settings.liveness_ttl:
            self.liveness = LivenessCheck(
                ConsulAdapter(
                    self.settings.consul,
                    timeout=min(REQUEST_TIMEOUT, self.settings.liveness_ttl / 3),
                ),
                self.settings.trigger_key,
                self.settings.lock_value,
                self.settings.liveness_ttl,
            )
        self.keeper = SessionKeeper(
            self.settings,
            # Renewals must end well inside the TTL they protect.
            ConsulAdapter(self.settings.consul, timeout=min(5.0, self.settings.ttl / 4)),
            self.state,
            self.stop,
            self.write_lock,
            on_first_session=self._on_first_session,
            liveness=self.liveness,
            may_start=preflight_passed,
        )
        self.election = Election(
            self.settings,
            ConsulAdapter(self.settings.consul),
            self.keeper,
            self.state,
            self.stop,
            self.write_lock,
            preflight_passed=preflight_passed,
        )
        # Every worker gets a first deadline before it runs.
        for name in THREADS:
            self.state.beat(name, STARTUP_GRACE)
        self.keeper.start()
        self.election.start()
        if self.liveness is not None:
            LivenessReporter(self.liveness, self.healthy, self.stop).start()

        interval = TICK
        if self.notifier.watchdog_interval:
            interval = min(TICK, self.notifier.watchdog_interval / 3)
        while not self.stop.wait(interval):
            self._tick()
        return self.shutdown(ConsulAdapter(self.settings.consul, timeout=SHUTDOWN_CALL_TIMEOUT))

    def _on_first_session(self) -> None:
        self.notifier.ready(f"follower of {self.settings.trigger_key}")

    def _on_transition(self, change: Transition) -> None:
        self.notifier.status(f"{change.new.value} of {change.key} ({change.cause.value})")

    def _tick(self) -> None:
        for thread in (self.keeper, self.election):
            if thread is not None and not thread.is_alive() and not self.stop.is_set():
                log.error("the %s thread died; stopping", thread.name)
                self.stop.set()
                return
        stalled = self.state.stalled_threads(THREADS)
        if stalled:
            log.warning(
                "no progress from thread(s) %s; not feeding the watchdog",
                ", ".join(stalled),
                extra={"event": "stalled"},
            )
        else:
            self.notifier.watchdog()

    def healthy(self) -> bool:
        """Every worker thread keeps its promise to make progress."""
        return not self.state.stalled_threads(THREADS)

    # -- the clean release ---------------------------------------------------
    def shutdown(self, adapter: ConsulAdapter) -> int:
        started = time.monotonic()
        self.stop.set()
        self.notifier.stopping()
        failed = any(t is not None and t.failure is not None for t in (self.keeper, self.election))
        held = self.state.leader_index()
        session_id = self.state.session_id
        self.state.transition(Role.STOPPING, Cause.SHUTDOWN)
        # Let an in-flight acquire or session create finish, so that what it
        # wrote is released below; both re-check the stop flag under this lock.
        got_lock = self.write_lock.acquire(timeout=SHUTDOWN_LOCK_WAIT)
        try:
            session_id = self._release(adapter, held, session_id)
            sessions = [session_id] if session_id else []
            if self.keeper is not None:
                sessions += [s for s in self.keeper.doomed_sessions() if s not in sessions]
            for sid in sessions:
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
                self.write_lock.release()
        log.info(
            "vip-elector stopped in %.0f ms",
            (time.monotonic() - started) * 1000,
            extra={"event": "stopped"},
        )
        return EXIT_FAILURE if failed else EXIT_OK

    def _release(
        self, adapter: ConsulAdapter, held: tuple[str, int] | None, session_id: str | None
    ) -> str | None:
        """Delete the trigger-key if our session holds it; return the session to destroy."""
        key_name = self.settings.trigger_key
        current = self.keeper.lease if self.keeper is not None else None
        session_id = session_id or (current.id if current else None)
        if session_id is None:
            return None
        cas = held[1] if held and held[0] == session_id else None
        try:
            # The state may not know we hold it (an acquire whose answer was
            # lost); one quick read settles it and gives the exact index.
            key = adapter.get_key(key_name, consistent=False)
            if key.session == session_id:
                cas = key.modify_index
            elif key.exists:
                cas = None  # someone else's now: leave it alone
        except ConsulError as exc:
            log.debug("reading the trigger-key while stopping failed: %s", exc)
        if cas:
            try:
                if adapter.delete_key(key_name, cas=cas):
                    log.info(
                        "released the lock: deleted %s at index %d",
                        key_name,
                        cas,
                        extra={"event": "lock_released", "key": key_name, "session": session_id},
                    )
                else:
                    log.warning(
                        "the trigger-key changed since index %d; not deleting it "
                        "(destroying the session releases it)",
                        cas,
                    )
            except ConsulError as exc:
                log.warning(
                    "could not delete the trigger-key (%s); destroying the session "
                    "releases it after lock-delay",
                    exc,
                    extra={"event": "shutdown_error"},
                )
        return session_id
