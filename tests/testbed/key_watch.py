"""Every state of the trigger-key, as blocking queries see it: the key-level ground truth.

A KeyWatcher long-polls the key (rotating over the servers given, so it
carries on through a Consul leader election) and records each distinct
state: value, holder session and ModifyIndex, or absent. A test asserts on
the whole window ("the key was never free", "it never changed"), not on a
sample.
"""

from __future__ import annotations

import base64
import threading
import time
from typing import NamedTuple

from tests.testbed.agents import ConsulAgent

_NEVER = threading.Event()


class KeyEvent(NamedTuple):
    t: float  # time.monotonic() when seen
    value: str | None  # None: the key does not exist
    session: str | None
    modify_index: int


class KeyWatcher(threading.Thread):
    """Blocking queries on the key; records every distinct state with its time."""

    def __init__(self, servers: list[ConsulAgent], key: str) -> None:
        super().__init__(daemon=True)
        self.servers = servers
        self.key = key
        self.events: list[KeyEvent] = []
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.errors = 0  # reads that failed (e.g. during a Consul leader election)

    def run(self) -> None:
        index, turn = 0, 0
        last: tuple[str | None, str | None, int] | None = None
        while not self.stopped.is_set():
            server = self.servers[turn % len(self.servers)]
            api = server.api()  # with the management token on an ACL agent
            try:
                params = {"index": str(index), "wait": "5s"} if index else {}
                response = api.request("GET", f"/v1/kv/{self.key}", params=params)
                if response.status_code not in (200, 404):
                    raise RuntimeError(response.text)
            except Exception:
                self.errors += 1
                turn += 1
                index = 0
                _NEVER.wait(0.05)
                continue
            new_index = int(response.headers.get("X-Consul-Index", "0"))
            index = new_index if new_index >= index else 0
            current: tuple[str | None, str | None, int] = (None, None, 0)
            if response.status_code == 200:
                item = response.json()[0]
                value = base64.b64decode(item["Value"]).decode() if item.get("Value") else ""
                current = (value, item.get("Session"), int(item["ModifyIndex"]))
            if current != last:
                with self.lock:
                    self.events.append(KeyEvent(time.monotonic(), *current))
                last = current

    def start_watching(self, timeout: float = 10.0) -> KeyWatcher:
        """Start, and wait for the first state."""
        self.start()
        deadline = time.monotonic() + timeout
        while not self.events and time.monotonic() < deadline:
            _NEVER.wait(0.02)
        return self

    def stop(self) -> None:
        self.stopped.set()

    def current(self) -> tuple[str | None, str | None]:
        with self.lock:
            return (self.events[-1].value, self.events[-1].session) if self.events else (None, None)

    def since(self, t0: float) -> list[KeyEvent]:
        """The state in force at ``t0`` and every one after."""
        with self.lock:
            before = [e for e in self.events if e.t < t0][-1:]
            return before + [e for e in self.events if e.t >= t0]
