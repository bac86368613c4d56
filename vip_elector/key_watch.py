"""The key watch: the election thread's blocking reads of the trigger-key.

A blocking query holds its connection for up to a minute; the election
thread must meanwhile act on a stop, a step-down or a timer at once. So the
read runs here and each answer is posted to the election thread's inbox,
where it waits together with the requests. The watch only reads; what the
answer means is decided by the election thread.

A follower reads the key alone (any change of it returns the read); the
leader reads the key and everything under its prefix (candidates, switchover
requests, conflict flags), consistently, and with /leader fenced at least
every FENCE_REFRESH of the fencing bound, so that each answer renews the
fence. The next read is sent only once the election thread has decided on
the last answer (``proceed``), so it has the mode that answer led to; a
write of the election thread changes what is watched, so a read in flight
returns right after it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from vip_elector.consul_adapter import blocking_timeout
from vip_elector.decision import KeyRead
from vip_elector.key_entries import next_index
from vip_elector.retrying import Interrupted, Retrier
from vip_elector.state import DaemonState
from vip_elector.trigger_key import TriggerKey
from vip_elector.worker import Worker

# Blocking-query wait: a change returns at once anyway, so a longer wait only
# saves requests (1 a minute). It also bounds how long a connection that died
# without a word goes unnoticed (rare: the agent is local).
POLL_WAIT = 60.0
# The fenced leader's watch returns every tenth of the fencing bound. The
# proof behind /leader dates from the start of the last answered read, so when
# Consul stops answering just before an answer was due it is two waits old:
# a wait of B/10 leaves /leader at least 0.8 B to ride out a Consul leader
# election (B/3 left only a third, and measured Consul elections here take 3 s
# and more). The price: 60/(B/10) consistent reads a minute from the leader
# (about 130 with lock-delay 5 s), in the fenced mode only.
FENCE_REFRESH = 0.1
MIN_FENCE_WAIT = 0.1
READ_BUDGET = blocking_timeout(POLL_WAIT) + 1.0  # longest a key read can take
WATCH_SLACK = 0.01  # a blocking read back this much before its wait changed something


class KeyWatch(Worker):
    """Thread contract: ``follow``, ``lead`` (the mode of the next read) and
    ``proceed`` are called by the election thread; everything else runs here."""

    def __init__(
        self,
        key: TriggerKey,
        state: DaemonState,
        stop: threading.Event,
        retrier: Retrier,
        post: Callable[[KeyRead], None],
        fence_bound: float,
    ) -> None:
        super().__init__("key-watch", state, stop)
        self.key = key
        self.retrier = retrier
        self.post = post
        self.fence_bound = fence_bound
        self._leader = False  # a single reference, written by the election thread
        self._proceed = threading.Event()  # the election decided on the last answer

    def follow(self) -> None:
        self._leader = False

    def lead(self) -> None:
        self._leader = True

    def proceed(self) -> None:
        """The last answer is decided on: send the next read."""
        self._proceed.set()

    def _wait(self, leader: bool) -> float:
        if leader and self.fence_bound > 0:
            return min(POLL_WAIT, max(MIN_FENCE_WAIT, self.fence_bound * FENCE_REFRESH))
        return POLL_WAIT

    def work(self) -> None:
        index = 0
        while not self.stop.is_set():
            leader = self._leader
            wait = self._wait(leader)
            try:
                read = self._read(index, leader, wait)
            except Interrupted:
                return
            index = next_index(index, read.key.index)
            self._proceed.clear()
            self.post(read)
            while not self._proceed.wait(1.0):
                self.beat(READ_BUDGET)
                if self.stop.is_set():
                    return

    def _read(self, index: int, leader: bool, wait: float) -> KeyRead:
        """One answer, retried until it comes. A fenced leader tries again every
        few tenths of a second, so one answer from a live server (a Consul
        leader election, a dead server the agent still dials) renews the fence
        before it runs out."""
        attempts = 0
        urgent = leader and self.fence_bound > 0

        def attempt() -> KeyRead:
            nonlocal attempts
            attempts += 1
            self.beat(READ_BUDGET)
            # After a failure (a Consul leader election, a snapshot restore) the
            # index may have gone backwards: a blocking read with the old one
            # would wait its full time. Read at once, then block again.
            at = index if attempts == 1 else 0
            started, wall = time.monotonic(), time.time()
            if leader:
                tree = self.key.read_all(at, wait, consistent=True)
                answered = time.monotonic()
                return KeyRead(
                    tree.key,
                    started,
                    wall,
                    early=at > 0 and answered < started + wait - WATCH_SLACK,
                    consistent=True,
                    tree=True,
                    candidates=tree.candidates,
                    request=tree.request,
                    conflict=tree.conflict,
                    answered=answered,
                    resumed=attempts > 1,
                    members=tree.members,
                )
            key = self.key.read(at, wait, consistent=False)
            answered = time.monotonic()
            early = at > 0 and answered < started + wait - WATCH_SLACK
            return KeyRead(key, started, wall, early=early, answered=answered, resumed=attempts > 1)

        return self.retrier.call(
            "Reading the trigger-key failed",
            attempt,
            self.stop.is_set,
            initial=0.1 if urgent else 0.25,
            maximum=0.4 if urgent else 2.0,
            quiet_first=3 if urgent else 1,
        )
