"""The common shape of vip-elector's threads.

Every thread (renewer, election, liveness, notify) is a :class:`Worker`: a
named daemon thread whose unexpected exception is captured, logged once with
its traceback and, for the threads the lock depends on, stops the daemon
(which then releases cleanly) instead of dying silently. A worker promises
progress with :meth:`Worker.beat`; the main thread feeds the systemd watchdog
and /healthz from those promises.

The workers of one configuration share one :class:`WorkerContext`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from vip_elector.retrying import Interrupted
from vip_elector.runtime_dir import SessionRecord
from vip_elector.settings import Settings
from vip_elector.state import DEFAULT_BEAT, DaemonState

log = logging.getLogger("vip_elector")


@dataclass(frozen=True)
class WorkerContext:
    """What the workers of one configuration share; nothing in it is reassigned.

    ``stop`` ends this generation of workers (set by the main thread, or by a
    worker that failed). ``record`` keeps the session id (and since when it
    leads) for the next daemon.
    """

    settings: Settings
    state: DaemonState
    stop: threading.Event
    record: SessionRecord | None = None  # the session record in the runtime directory


class Fatal(Exception):
    """A worker must stop the daemon for a reason that is not a bug (no traceback)."""

    def __init__(self, message: str, event: str, key: str | None = None) -> None:
        super().__init__(message)
        self.event = event
        self.key = key


class Worker(threading.Thread):
    """A named daemon thread with failure capture and a heartbeat.

    ``failure`` is written once, by this thread, when it fails; any thread may
    read it. Subclasses implement :meth:`work`.
    """

    # A failure of a critical worker stops the daemon: the lock depends on it.
    critical = True

    def __init__(self, name: str, state: DaemonState, stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.state = state
        self.stop = stop
        self.failure: BaseException | None = None

    def work(self) -> None:
        raise NotImplementedError

    def beat(self, within: float = DEFAULT_BEAT) -> None:
        """This thread makes progress and will beat again within ``within`` seconds."""
        self.state.beat(self.name, within)

    def run(self) -> None:
        try:
            self.work()
        except Interrupted:
            pass  # told to stop while waiting
        except Fatal as exc:
            self.failure = exc
            log.error("%s", exc, extra={"event": exc.event, "key": exc.key})
            self.stop.set()
        except BaseException as exc:
            self.failure = exc
            if self.critical:
                log.exception("%s thread failed; stopping the daemon", self.name)
                self.stop.set()
            else:
                log.exception("%s thread failed; it no longer runs", self.name)
