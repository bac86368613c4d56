"""The main thread: signals, the worker threads, step-downs, reloads and the clean release.

Signal handlers only set Events; this thread acts on them. On SIGTERM/SIGINT
a leader deletes the trigger-key with ``cas`` at the index it holds it at
(vip-manager drops the VIP at once and, unlike destroying the session, this
sets no lock-delay, so another node takes over immediately), then destroys
its session; a follower destroys its session. The process exits within 2 s
in every state, even with a worker thread sitting in a long poll (they are
daemon threads and never write after their stop). A second signal exits at
once.

The workers of one configuration form a :class:`Generation`; a SIGHUP that
changes a setting marked ``Reload.HANDOVER`` in the option table releases
the old generation cleanly and starts a new one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from vip_elector import __version__
from vip_elector.consul_adapter import ConsulAdapter, ConsulError, TokenUnknown
from vip_elector.continuity import Inheritance
from vip_elector.decision import Memory, StepDownAsked, StopAsked
from vip_elector.durations import format_duration
from vip_elector.fence import Fence
from vip_elector.generation import THREADS, Generation
from vip_elector.logs import apply_settings, setup_logging, stop_logging
from vip_elector.options import RELOAD_WORDS, Reload, reload_plan, running_settings
from vip_elector.roles import Cause, Role
from vip_elector.runtime_dir import AlreadyRunning, InstanceLock
from vip_elector.settings import ConfigError, Settings
from vip_elector.state import DaemonState, Transition
from vip_elector.systemd import SystemdNotifier

if TYPE_CHECKING:
    # Imported where configured: a daemon without --status-addr or --notify does
    # not pay for prometheus_client, http.server or subprocess at start-up.
    from vip_elector.metrics import Metrics
    from vip_elector.notify import NotifyRunner
    from vip_elector.status_server import StatusServer

log = logging.getLogger("vip_elector")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
# What a process restarting in place hands to its successor (not for hooks).
INHERITED_STATUS_FD = "VIP_ELECTOR_INHERITED_STATUS_FD"
INHERITED_FENCE = "VIP_ELECTOR_INHERITED_FENCE"
# Requests that came while restarting in place, for the successor to act on.
INHERITED_REQUESTS = "VIP_ELECTOR_INHERITED_REQUESTS"
INHERITED = (INHERITED_STATUS_FD, INHERITED_FENCE, INHERITED_REQUESTS)
# Blocked from the start of a restart in place until the successor has its
# handlers: one of them meanwhile waits instead of killing a process without any.
HANDLED_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2}
PRE_RESTART_CHECK_TIMEOUT = 20.0
RELOAD_CHECK_TIMEOUT = 2.0  # asking Consul about a rotated token at SIGHUP
AGENT_ID_TIMEOUT = 1.0  # asking the agent its node ID for the instance lock
TICK = 1.0


class Coordinator:
    """Runs one vip-elector daemon until it is told to stop."""

    def __init__(
        self,
        settings: Settings,
        notifier: SystemdNotifier | None = None,
        reload_settings: Callable[[], Settings] | None = None,
    ) -> None:
        self.settings = settings
        self.notifier = notifier or SystemdNotifier()
        self.reload_settings = reload_settings
        self.state = DaemonState(settings.trigger_key, settings.lock_value)
        self.fence = Fence()  # written by the election thread only
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.step_down_request = threading.Event()
        self.restart_request = threading.Event()
        self.wake = threading.Event()  # any of the above, or a thread failure
        self._signals_seen = 0
        self._ready = False
        self.metrics: Metrics | None = None
        self.status_server: StatusServer | None = None
        self.notify_runner: NotifyRunner | None = None
        self.workers: Generation | None = None
        self.instance_lock: InstanceLock | None = None
        self.state.subscribe(self._on_transition)

    # -- signals -------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        # Without a handler SIGHUP and SIGUSR1 would kill the daemon.
        signal.signal(signal.SIGHUP, lambda *_: self._wake_for(self.reload))
        signal.signal(signal.SIGUSR1, lambda *_: self._wake_for(self.step_down_request))
        signal.signal(signal.SIGUSR2, lambda *_: self._wake_for(self.restart_request))
        # After a restart in place: what the predecessor was asked and had no time
        # for, then the signals that waited, blocked, across the exec.
        for name in os.environ.pop(INHERITED_REQUESTS, "").split(","):
            event = self._requests().get(name)
            if event is not None:
                self._wake_for(event)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)

    def _requests(self) -> dict[str, threading.Event]:
        return {
            "stop": self.stop,
            "reload": self.reload,
            "step_down": self.step_down_request,
            "restart": self.restart_request,
        }

    def _wake_for(self, event: threading.Event) -> None:
        event.set()
        self.wake.set()

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals_seen += 1
        if self._signals_seen > 1:
            # The one thing a handler does besides setting an Event: an operator
            # asked twice, so leave now (the session expires after 2 x TTL).
            os.write(2, b"vip-elector: second signal, exiting immediately without releasing\n")
            os._exit(128 + signum)
        self._wake_for(self.stop)

    # -- the run -------------------------------------------------------------
    def run(self) -> int:
        """Run until stopped.

        The main thread never blocks on Consul (a signal must be acted on at
        once) except in the bounded release at the end.
        """
        self.install_signal_handlers()
        log.info(
            "vip-elector starting: version=%s %s",
            __version__,
            self.settings.describe(),
            extra={"event": "starting", "key": self.settings.trigger_key},
        )
        problem = self._take_instance_lock(self.settings)
        if problem is not None:
            log.error("configuration error: %s", problem, extra={"event": "already_running"})
            return EXIT_CONFIG
        try:
            self._start_side_services()
        except OSError as exc:
            from vip_elector.status_server import format_address

            # Like any other unusable setting: exit 2, and systemd does not restart it.
            log.error(
                "configuration error: cannot serve --status-addr %s: %s; choose a free port "
                "(and an address of this host), or leave --status-addr out",
                format_address(self.settings.status_addr or ("?", 0)),
                exc.strerror or exc,
                extra={"event": "status_server_failed"},
            )
            return EXIT_CONFIG
        self.notifier.status(
            f"starting: pre-flight check of {self.settings.trigger_key}", provisional=True
        )
        # A session the previous run left holding the key is adopted (continuity.py).
        self.workers = self._start_workers(self.settings, inspect_previous=True)
        interval = TICK
        if self.notifier.watchdog_interval:
            interval = min(TICK, self.notifier.watchdog_interval / 3)
        while not self.stop.is_set():
            self.wake.wait(interval)
            self.wake.clear()
            if self.stop.is_set():
                break
            if self.reload.is_set():
                self.reload.clear()
                self._reload()
            if self.step_down_request.is_set():
                self.step_down_request.clear()
                self._step_down_on_signal()
            if self.restart_request.is_set():
                self.restart_request.clear()
                self._restart_in_place()
            self._tick()
        return self.shutdown()

    def _start_side_services(self) -> None:
        settings = self.settings
        if settings.notify:
            from vip_elector.notify import NotifyRunner

            self.notify_runner = NotifyRunner(
                settings.notify,
                settings.notify_timeout,
                self.state,
                secrets=(settings.consul.token,) if settings.consul.token else (),
            )
            self.notify_runner.start()
            self.state.subscribe(self.notify_runner)
        if settings.status_addr:
            from vip_elector.metrics import Metrics

            self.metrics = Metrics(self.state, self._status_extra)
        # Also without --status-addr: nothing of a restart in place's hand-over
        # may stay open or reach the hooks' environment.
        self._restart_side_services()

    def _restart_side_services(self) -> None:
        inherited_fd = os.environ.pop(INHERITED_STATUS_FD, None)
        fence = os.environ.pop(INHERITED_FENCE, None)
        if not self.settings.status_addr and inherited_fd and inherited_fd.isdigit():
            # Restarted into a configuration without --status-addr: clients of
            # the old port are refused, not left hanging in a backlog nobody reads.
            with contextlib.suppress(OSError):
                os.close(int(inherited_fd))
        if self.settings.status_addr and self.metrics is not None:
            from vip_elector.status_server import StatusServer, inherited_socket

            inherited = inherited_socket(inherited_fd, self.settings.status_addr)
            if inherited is not None and fence:
                # The same clock, the same proof: the election thread keeps it only
                # if it adopts the session as it is (and clamps it to its bound).
                with contextlib.suppress(ValueError):
                    self.fence.set(float(fence))
            self.status_server = StatusServer(
                self.settings.status_addr,
                self.status,
                self.metrics.render,
                self.healthy,
                self.fence.left,
                inherited=inherited,
                fence_bound=lambda: self.settings.fence_bound,
                news=self.fence,
            ).start()
            if self.settings.fence_bound <= 0:
                log.info(
                    "/leader will not answer 200: with lock-delay %s and vip-manager's "
                    "interval %d ms there is no room for a fence; for vip-manager's "
                    "patroni mode raise --lock-delay (e.g. 5s)",
                    format_duration(self.settings.lock_delay),
                    self.settings.vip_manager.interval_ms,
                    extra={"event": "no_fence"},
                )

    def _start_workers(
        self,
        settings: Settings,
        inherit: Inheritance | None = None,
        inspect_previous: bool = False,
        memory: Memory | None = None,
    ) -> Generation:
        # A carried fence (restart in place) is the election thread's to keep or drop.
        memory = memory or Memory(
            role=self.state.role, ttl=settings.ttl, fence_until=self.fence.until
        )
        return Generation(
            settings,
            self.state,
            self.fence,
            self.metrics,
            self._on_agent_answered,
            self.notifier.status,
            inherit=inherit,
            inspect_previous=inspect_previous,
            memory=memory,
        ).start()

    def _on_agent_answered(self) -> None:
        """READY=1 once the configuration is valid and the agent answered the
        pre-flight read: started, whether or not this node can compete yet (a
        check critical at boot must not hold up `systemctl start` and the boot).
        Candidacy is told by STATUS= and the metrics from then on."""
        if not self._ready:
            self._ready = True
            self.notifier.ready(f"started: pre-flight check of {self.state.trigger_key} passed")

    def _on_transition(self, change: Transition) -> None:
        if change.new == Role.FAULT:
            # What `systemctl status` shows last must say why (the check's text).
            self.notifier.status(f"not competing: {change.detail}")
        else:
            self.notifier.status(f"{change.new.value} of {change.key} ({change.cause.value})")

    def _tick(self) -> None:
        workers = self.workers
        assert workers is not None
        dead = workers.dead_thread()
        if dead is not None or workers.failure() is not None:
            log.error(
                "the %s thread stopped; stopping",
                dead or "a worker",
                extra={"event": "thread_failed"},
            )
            self.stop.set()
            return
        if workers.healthy():
            self.notifier.watchdog()
        else:
            log.warning(
                "no progress from thread(s) %s; not feeding the watchdog",
                ", ".join(self.state.stalled_threads(THREADS)),
                extra={"event": "stalled"},
            )

    def healthy(self) -> bool:
        return self.workers is not None and self.workers.healthy()

    def _take_instance_lock(self, settings: Settings) -> str | None:
        """One daemon per (agent, key, value) on this machine; the problem, or None.

        The agent is named by what it is, its node ID, not by how its address is
        spelled (`http://127.0.0.1:8500` and `localhost:8500` are one agent, and two
        daemons on it would share one session name and liveness check); by the
        address only while the agent does not answer."""
        agent = settings.consul.address
        with (
            ConsulAdapter(settings.consul, timeout=AGENT_ID_TIMEOUT) as adapter,
            contextlib.suppress(ConsulError, KeyError, TypeError),
        ):
            agent = f"node {adapter.agent_self()['Config']['NodeID']}"
        lock = InstanceLock(agent, settings.trigger_key, settings.lock_value)
        if self.instance_lock is not None and lock.name == self.instance_lock.name:
            return None
        try:
            lock.acquire()
        except AlreadyRunning as exc:
            return (
                f"another vip-elector already runs for trigger-key {settings.trigger_key} with "
                f"value {settings.lock_value!r} against {settings.consul.address} ({exc}); "
                "two would share one session name and liveness check and take the lock "
                "from each other: stop the other one, or give this one its own "
                "configuration"
            )
        except OSError as exc:
            return f"cannot take the instance lock in the runtime directory: {exc}"
        if self.instance_lock is not None:
            self.instance_lock.release()
        self.instance_lock = lock
        return None

    # -- status --------------------------------------------------------------
    def _status_extra(self) -> dict[str, Any]:
        # A FOLLOWER whose session is gone (its agent unreachable, or rejoining
        # after a partition) cannot take the VIP until a new session exists.
        extra: dict[str, Any] = {
            "candidate": False,
            "eligible": False,
            "standby_reason": None,
            "stepping_down": False,
            "maintenance": False,
            "step_down_hold_left": 0.0,
            "vip": "unobserved",
            "vip_problem": None,
            "vip_misplaced": None,
            **self.settings.status_fields(),
        }
        if self.workers is not None:
            extra.update(self.workers.election.status())
        extra["priority"] = self.settings.priority
        extra["healthy"] = self.healthy()
        extra["fenced_for"] = round(self.fence.left(), 3)
        return extra

    def status(self) -> dict[str, Any]:
        """What /status serves."""
        snapshot = self.state.snapshot()
        snapshot.update(self._status_extra())
        snapshot["stalled_threads"] = self.state.stalled_threads(THREADS)
        return snapshot

    # -- step-down ------------------------------------------------------------
    def _step_down_on_signal(self) -> None:
        """SIGUSR1: the election thread steps down if it leads, and stays out for
        --step-down-hold. The STEPPED DOWN line says when the node competes
        again, as a fixed text (the wall clock is read here, not in the core)."""
        assert self.workers is not None
        seconds = self.settings.step_down_hold
        until = time.strftime("%H:%M:%S", time.localtime(time.time() + seconds))
        detail = f"SIGUSR1; competing again at {until} (after {seconds:g}s)"
        self.workers.post(StepDownAsked(detail, seconds))

    # -- reload --------------------------------------------------------------
    def _reload(self) -> None:
        if self.reload_settings is None:
            return
        try:
            new = self.reload_settings()
        except ConfigError as error:
            for line in error.problems:
                log.error("configuration reload failed: %s", line, extra={"event": "reload_failed"})
            log.error("keeping the running configuration", extra={"event": "reload_failed"})
            return
        except SystemExit:
            log.error(
                "configuration reload failed: invalid command line; keeping the "
                "running configuration",
                extra={"event": "reload_failed"},
            )
            return
        except Exception as exc:
            # Whatever a file did to the parser, the daemon and its lock live on.
            log.error(
                "configuration reload failed (%s); keeping the running configuration",
                exc.__class__.__name__,
                extra={"event": "reload_failed"},
            )
            return
        problem = self._take_instance_lock(new)
        if problem is not None:
            log.error(
                "configuration reload refused: %s; keeping the running configuration",
                problem,
                extra={"event": "reload_failed"},
            )
            return
        apply_settings(new.log_level, new.log_format)
        for warning in new.warnings:
            log.warning("%s", warning, extra={"event": "config_warning"})
        plan = reload_plan(self.settings, new)
        new = running_settings(self.settings, new)
        old, self.settings = self.settings, new
        if Reload.RESTART in plan:
            log.warning(
                "configuration reloaded; %s changed: %s",
                ", ".join(plan[Reload.RESTART]),
                RELOAD_WORDS[Reload.RESTART],
                extra={"event": "reload_needs_restart"},
            )
        workers = self.workers
        assert workers is not None
        workers.election.maintenance_file = new.maintenance_file
        workers.election.reload_rules(new)
        if Reload.HANDOVER in plan:
            self._hand_over(old, new, plan[Reload.HANDOVER])
        elif Reload.NEW_SESSION in plan:
            self._move_to_new_session(old, new, plan[Reload.NEW_SESSION])
        elif Reload.IN_PLACE in plan:
            refused = self._new_token_refused(old, new)
            if refused is not None:
                log.error(
                    "configuration reload refused: %s; keeping the running configuration and "
                    "its token (renewals go on with it)",
                    refused,
                    extra={"event": "reload_failed"},
                )
                self.settings = old
                return
            workers.swap_consul(new)
            log.info(
                "configuration reloaded; %s changed: %s",
                ", ".join(plan[Reload.IN_PLACE]),
                RELOAD_WORDS[Reload.IN_PLACE],
                extra={"event": "reloaded"},
            )
        else:
            log.info("configuration reloaded: %s", new.describe(), extra={"event": "reloaded"})

    def _hand_over(self, old: Settings, new: Settings, changed: list[str]) -> None:
        """What is elected changed: release it all and compete again."""
        log.info(
            "configuration reloaded; %s changed: handing over and starting again",
            ", ".join(changed),
            extra={"event": "reloaded"},
        )
        workers = self.workers
        assert workers is not None
        workers.end(StopAsked(cause=Cause.CONFIG_RELOAD, detail=f"{', '.join(changed)} changed"))
        self.state.configure(new.trigger_key, new.lock_value)
        self.workers = self._start_workers(new)

    def _new_token_refused(self, old: Settings, new: Settings) -> str | None:
        """A rotated token Consul does not know would fail every renewal from now on
        and move the VIP a TTL later: ask Consul about it before using it."""
        if new.consul.token == old.consul.token:
            return None
        with ConsulAdapter(new.consul, timeout=RELOAD_CHECK_TIMEOUT) as adapter:
            try:
                adapter.token_self()
            except TokenUnknown as exc:
                return f"Consul does not know the new token ({exc})"
            except ConsulError as exc:
                log.warning(
                    "could not check the new token (%s); using it",
                    exc,
                    extra={"event": "reload_token_unchecked"},
                )
        return None

    def _move_to_new_session(self, old: Settings, new: Settings, changed: list[str]) -> None:
        """A session property changed: a leader moves the lock to a session made with
        the new settings in one transaction (never free); a follower just starts over."""
        workers = self.workers
        assert workers is not None
        held = self.state.session_id if self.state.role == Role.LEADER else None
        if held is None:
            log.info(
                "configuration reloaded; %s changed: a new session (not leader, nothing to keep)",
                ", ".join(changed),
                extra={"event": "reloaded"},
            )
            workers.end(StopAsked(cause=Cause.CONFIG_RELOAD))
            self.workers = self._start_workers(new)
            return
        log.info(
            "configuration reloaded; %s changed: %s",
            ", ".join(changed),
            RELOAD_WORDS[Reload.NEW_SESSION],
            extra={"event": "reloaded"},
        )
        since = self.state.leader_since
        # The old fence was proven under the old settings: none until the new
        # session's first read proves the lock again.
        workers.end(StopAsked(retire=True))
        inherit = Inheritance(
            held, holds_key=True, matches=False, leader_since=since, reason=", ".join(changed)
        )
        memory = Memory(role=Role.LEADER, leading=True, ttl=new.ttl, leader_since=since)
        self.workers = self._start_workers(new, inherit=inherit, memory=memory)

    # -- restarting in place -------------------------------------------------
    def _restart_in_place(self) -> None:
        """SIGUSR2: exec the code on disk, keeping the session and the lock.

        The workers stop without releasing anything; the new process (same pid,
        so systemd sees no restart) finds the session in the runtime directory
        and adopts it. The trigger-key never changes: the VIP does not move.
        """
        workers = self.workers
        assert workers is not None
        problem = self._check_before_restart()
        if problem is not None:
            log.error(
                "SIGUSR2: not restarting in place: %s; carrying on with the running code and "
                "configuration",
                problem,
                extra={"event": "restart_refused"},
            )
            return
        # From here until the successor has its handlers, these signals wait.
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        argv = [sys.executable, *sys.orig_argv[1:]]
        log.info(
            "SIGUSR2: restarting in place into the code on disk, keeping session %s and the "
            "lock: the VIP does not move",
            self.state.session_id or "(none yet)",
            extra={"event": "restarting_in_place", "session": self.state.session_id},
        )
        self.notifier.status("restarting in place (SIGUSR2)")
        elsewhere = self._elects_elsewhere()
        if elsewhere is not None:
            # What is elected changes: the lock is released now, as SIGHUP would,
            # not left to its session's TTL.
            log.info(
                "SIGUSR2: %s changed: releasing the lock before restarting in place",
                elsewhere,
                extra={"event": "restarting_in_place"},
            )
            workers.end(StopAsked(cause=Cause.CONFIG_RELOAD, detail=f"{elsewhere} changed"))
        else:
            workers.end(StopAsked(retire=True, keep_fence=True))
        environ = {k: v for k, v in os.environ.items() if k not in INHERITED}
        pending = [name for name, event in self._requests().items() if event.is_set()]
        environ[INHERITED_REQUESTS] = ",".join(pending)
        if self.status_server is not None:
            # The listening socket and the fence go with us: vip-manager polling
            # /leader waits in the backlog for a moment instead of being refused.
            environ[INHERITED_STATUS_FD] = str(self.status_server.hand_over())
            environ[INHERITED_FENCE] = repr(self.fence.until)
        stop_logging()
        try:
            os.execve(sys.executable, argv, environ)  # noqa: S606 - ourselves, as started
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
            setup_logging(self.settings.log_level, self.settings.log_format)
            log.error(
                "restarting in place failed (%s); carrying on with the running code",
                exc,
                extra={"event": "restart_failed"},
            )
            if self.status_server is not None:
                self.status_server.close()
            self._restart_side_services()
            self.workers = self._start_workers(self.settings, inspect_previous=True)

    def _check_before_restart(self) -> str | None:
        """Would the code on disk start with this command line and environment?
        Its own `check-config` says (a configuration SIGHUP would refuse, a broken
        install): None, or what is wrong."""
        import subprocess  # only here: a daemon that never restarts in place does not load it

        command = [sys.executable, "-m", "vip_elector", "check-config", "--defaults-file="]
        try:
            result = subprocess.run(
                [*command, *sys.argv[1:]],
                capture_output=True,
                text=True,
                timeout=PRE_RESTART_CHECK_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the new code could not check the configuration ({exc})"
        if result.returncode in (0, 1):  # 1: an online check; none was asked for
            return None
        said = [line.strip() for line in (result.stdout + result.stderr).splitlines()]
        problems = [line for line in said if line and not line.startswith(("OK", "WARN"))]
        return "; ".join(problems[:5]) or f"check-config exited {result.returncode}"

    def _elects_elsewhere(self) -> str | None:
        """What the successor would elect differently (trigger-key, value, agent), if
        anything: then it cannot adopt our session, and the lock is released first."""
        if self.reload_settings is None:
            return None
        try:
            new = self.reload_settings()
        except (ConfigError, SystemExit, Exception):  # checked before: not expected here
            return None
        changed = [
            name
            for name, old_value, new_value in (
                ("trigger-key", self.settings.trigger_key, new.trigger_key),
                ("trigger-value", self.settings.lock_value, new.lock_value),
                ("the agent's address", self.settings.consul.address, new.consul.address),
            )
            if old_value != new_value
        ]
        return ", ".join(changed) or None

    # -- the clean release ---------------------------------------------------
    def shutdown(self) -> int:
        started = time.monotonic()
        self.stop.set()
        self.notifier.stopping()
        workers = self.workers
        failed = workers is not None and workers.failure() is not None
        if workers is not None:
            workers.end(StopAsked())
        if self.status_server is not None:
            self.status_server.close()
        if self.notify_runner is not None:
            from vip_elector.notify import KILL_GRACE

            # The lock is released already; the STOPPING hook gets its full timeout.
            self.notify_runner.close()
            self.notify_runner.join(timeout=self.settings.notify_timeout + 2 * KILL_GRACE + 0.5)
        log.info(
            "vip-elector stopped in %.0f ms",
            (time.monotonic() - started) * 1000,
            extra={"event": "stopped"},
        )
        return EXIT_FAILURE if failed else EXIT_OK
