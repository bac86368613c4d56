"""Who has the VIP, on every host, at every moment: the ground truth the tests judge by.

A :class:`VipWatcher` runs ``ip -n <netns> -o -4 monitor address`` for every
host: the kernel reports each address added or deleted as it happens, so a
change is seen within milliseconds, not at the next poll (a poll every 20 ms
spawns 150 processes a second for three hosts and still misses short
overlaps). Each change is stamped with ``time.monotonic()`` when it arrives.
Every second each host's addresses are also listed outright and compared
with what the events said, so a lost event cannot go unnoticed.

Whenever a host's monitor is not running (it died, or it is being
restarted), that host is *unobserved*: the interval is recorded with its
length and reported, never silently skipped.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from tests.testbed.netns import Host

RECONCILE_EVERY = 1.0
EVENT_LAG_MAX = 1.0  # an event this late is lost (the reconciler corrects the state)
_NEVER = threading.Event()


@dataclass(frozen=True)
class Interval:
    start: float
    end: float
    detail: str = ""

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class VipMeasure:
    """What the VIP did in a window of time."""

    nobody: list[Interval] = field(default_factory=list)  # no host had it
    two: list[Interval] = field(default_factory=list)  # two or more hosts had it
    unobserved: list[Interval] = field(default_factory=list)  # some host was not watched

    @property
    def nobody_ms(self) -> float:
        return sum(i.seconds for i in self.nobody) * 1000

    @property
    def two_ms(self) -> float:
        return sum(i.seconds for i in self.two) * 1000

    @property
    def longest_two_ms(self) -> float:
        return max((i.seconds for i in self.two), default=0.0) * 1000

    @property
    def unobserved_ms(self) -> float:
        return sum(i.seconds for i in self.unobserved) * 1000


def _has_vip(line: str, vip: str) -> bool | None:
    """True/False for an event line about ``vip``, None for other addresses."""
    if f" {vip}/" not in line:
        return None
    return not line.startswith("Deleted")


class VipWatcher:
    """The VIP on every host, from kernel events (see the module docstring)."""

    def __init__(self, hosts: Iterable[Host], vip: str) -> None:
        self.hosts = {host.name: host for host in hosts}
        self.vip = vip
        self._lock = threading.Lock()
        self._has: dict[str, bool] = {}
        # (time, holders) each time the set of holders changed; starts unknown.
        self._timeline: list[tuple[float, tuple[str, ...]]] = []
        self._unobserved: list[Interval] = []
        self._blind_since: dict[str, float] = {}
        self._processes: dict[str, subprocess.Popen[str]] = {}
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self.mismatches: list[str] = []  # reconciliation found an event missing

    # -- running -------------------------------------------------------------
    def start(self) -> VipWatcher:
        now = time.monotonic()
        for name in self.hosts:
            self._blind_since[name] = now
            thread = threading.Thread(target=self._watch, args=(name,), daemon=True)
            thread.start()
            self._threads.append(thread)
        reconciler = threading.Thread(target=self._reconcile, daemon=True)
        reconciler.start()
        self._threads.append(reconciler)
        return self

    def wait_watching(self, timeout: float = 10.0) -> VipWatcher:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._blind_since:
                    return self
            _NEVER.wait(0.02)
        raise TimeoutError(f"VIP monitors not running after {timeout}s: {self._blind_since}")

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            processes = list(self._processes.values())
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        for thread in self._threads:
            thread.join(5)

    def _list(self, name: str) -> bool:
        """Is the VIP on ``name``'s eth0 now (an outright listing)?"""
        out = subprocess.run(
            ["ip", "-n", self.hosts[name].netns, "-o", "-4", "addr", "show", "dev", "eth0"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        return any(_has_vip(line, self.vip) for line in out.splitlines())

    def _watch(self, name: str) -> None:
        host = self.hosts[name]
        while not self._stopped.is_set():
            # stdbuf: one line per event, flushed at once, also into a pipe.
            process = subprocess.Popen(
                ["stdbuf", "-oL", "ip", "-n", host.netns, "-o", "-4", "monitor", "address"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            with self._lock:
                self._processes[name] = process
            try:
                # Listed after the monitor started: no change falls in between.
                _NEVER.wait(0.05)
                self._set(name, self._list(name), time.monotonic(), seen=True)
                assert process.stdout is not None
                for line in process.stdout:
                    stamp = time.monotonic()
                    has = _has_vip(line, self.vip)
                    if has is not None:
                        self._set(name, has, stamp)
            except (OSError, subprocess.SubprocessError, ValueError):
                pass
            finally:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()
            if not self._stopped.is_set():
                with self._lock:
                    self._blind_since.setdefault(name, time.monotonic())
                _NEVER.wait(0.1)

    def _reconcile(self) -> None:
        while not self._stopped.wait(RECONCILE_EVERY):
            for name in self.hosts:
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    listed = self._list(name)
                    with self._lock:
                        believed = self._has.get(name)
                        watching = name not in self._blind_since
                    if watching and believed is not None and listed != believed:
                        self._confirm_lost_event(name, listed)

    def _confirm_lost_event(self, name: str, listed: bool) -> None:
        """The listing and the events disagree. An event can also be on its way
        (the reader thread lags on a loaded machine): lost only if they still
        disagree after EVENT_LAG_MAX with the listing unchanged."""
        deadline = time.monotonic() + EVENT_LAG_MAX
        while True:
            _NEVER.wait(0.1)
            now_listed = self._list(name)
            with self._lock:
                believed = self._has.get(name)
            if believed == now_listed or now_listed != listed:
                return  # caught up, or the VIP moved again: the next round looks
            if time.monotonic() >= deadline:
                self.mismatches.append(f"{name}: events say {believed}, the listing says {listed}")
                self._set(name, listed, time.monotonic())
                return

    def _set(self, name: str, has: bool, stamp: float, seen: bool = False) -> None:
        with self._lock:
            if seen and name in self._blind_since:
                since = self._blind_since.pop(name)
                self._unobserved.append(Interval(since, stamp, f"{name}'s VIP monitor"))
            self._has[name] = has
            holders = tuple(sorted(n for n, on in self._has.items() if on))
            if not self._timeline or self._timeline[-1][1] != holders:
                self._timeline.append((stamp, holders))

    # -- reading -------------------------------------------------------------
    def holders(self) -> tuple[str, ...]:
        """The hosts that have the VIP now (as the events said)."""
        with self._lock:
            return tuple(sorted(n for n, on in self._has.items() if on))

    def window(self, t0: float, t1: float) -> list[tuple[float, tuple[str, ...]]]:
        """The holder sets in [t0, t1]: the one in force at t0, then every change."""
        with self._lock:
            timeline = list(self._timeline)
        before = [(max(t, t0), h) for t, h in timeline if t < t0][-1:]
        return before + [(t, h) for t, h in timeline if t0 <= t <= t1]

    def first(self, t0: float, holders: tuple[str, ...]) -> float | None:
        """When, at or after ``t0``, exactly ``holders`` first had the VIP."""
        for t, current in self.window(t0, time.monotonic()):
            if current == holders:
                return t
        return None

    def measure(self, t0: float, t1: float) -> VipMeasure:
        """Nobody / two holders / unobserved in [t0, t1]."""
        result = VipMeasure()
        changes = self.window(t0, t1)
        for (start, holders), end in zip(changes, [t for t, _ in changes[1:]] + [t1], strict=True):
            if end <= start:
                continue
            if not holders:
                result.nobody.append(Interval(start, end))
            elif len(holders) > 1:
                result.two.append(Interval(start, end, ", ".join(holders)))
        with self._lock:
            blind = [*self._unobserved]
            blind += [Interval(s, t1, f"{n}'s VIP monitor") for n, s in self._blind_since.items()]
        for interval in blind:
            start, end = max(interval.start, t0), min(interval.end, t1)
            if end > start:
                result.unobserved.append(Interval(start, end, interval.detail))
        return result
