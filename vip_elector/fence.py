"""The fence behind /leader: until when this node may say "leader".

Written by the election thread only (the lock's one owner, from what the
decision core decided), read by the status server at every request. See
docs/design.md, "The fence behind /leader", for why the bound is safe.

It also keeps whether the VIP is on this host (the address watch's view, as
the election thread last decided on it), so that /leader can hold vip-manager's
request while its answer agrees with the VIP here and answer the moment either
changes (``wait_for_news``): vip-manager then acts at once instead of after its
next poll.
"""

from __future__ import annotations

import threading
import time


class Fence:
    """A monotonic deadline; 0 means no fence."""

    def __init__(self, until: float = 0.0) -> None:
        self._changed = threading.Condition()
        self._until = until
        self._vip: bool | None = None  # None: not observed (no hold)

    def set(self, until: float) -> None:
        with self._changed:
            if until != self._until:
                self._until = until
                self._changed.notify_all()

    def observe(self, vip: bool | None) -> None:
        """Whether the VIP is on this host now (None: it cannot be observed)."""
        with self._changed:
            if vip is not self._vip:
                self._vip = vip
                self._changed.notify_all()

    def wake(self) -> None:
        """Wake every waiter at once (the status server closes: they see ``done``)."""
        with self._changed:
            self._changed.notify_all()

    @property
    def until(self) -> float:
        with self._changed:
            return self._until

    def left(self) -> float:
        """Seconds /leader may still answer 200 (0: not the fenced leader)."""
        return max(0.0, self.until - time.monotonic())

    def wait_for_news(self, seconds: float, done: threading.Event) -> float:
        """``left()``, once it would tell vip-manager something new, or after ``seconds``.

        While the answer agrees with the VIP on this host (fenced with the VIP
        here, or not fenced without it) vip-manager has nothing to do, so the
        answer waits: it goes out the moment the fence is set or dropped, the
        VIP comes or goes, or the fence runs out (its deadline ends the wait), and
        at the latest after ``seconds``. It is computed when it is sent, as an
        immediate answer would be: a 200 never goes out without the fence.
        Where the VIP is not observed, or they disagree, it is answered at once.
        """
        deadline = time.monotonic() + seconds
        with self._changed:
            while True:
                now = time.monotonic()
                left = max(0.0, self._until - now)
                if self._vip is None or self._vip != (left > 0) or now >= deadline or done.is_set():
                    return left
                wait = deadline - now
                if left > 0:
                    wait = min(wait, left)
                self._changed.wait(wait)
