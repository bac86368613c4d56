"""The fence behind /leader: until when this node may say "leader".

Written by the election thread only (the lock's one owner, from what the
decision core decided), read by the status server at every request. See
docs/design.md, "The fence behind /leader", for why the bound is safe.
"""

from __future__ import annotations

import threading
import time


class Fence:
    """A monotonic deadline; 0 means no fence."""

    def __init__(self, until: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._until = until

    def set(self, until: float) -> None:
        with self._lock:
            self._until = until

    @property
    def until(self) -> float:
        with self._lock:
            return self._until

    def left(self) -> float:
        """Seconds /leader may still answer 200 (0: not the fenced leader)."""
        return max(0.0, self.until - time.monotonic())
