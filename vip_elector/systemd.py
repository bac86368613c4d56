"""sd_notify(3) without libsystemd: READY=1, STATUS=, WATCHDOG=1, STOPPING=1.

All of it is a no-op when the daemon does not run under systemd with
``Type=notify`` (no NOTIFY_SOCKET).
"""

from __future__ import annotations

import logging
import os
import socket
import threading

log = logging.getLogger("vip_elector")


class SystemdNotifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace socket
        self._address = address or None
        # STATUS= comes from several threads; READY=1 must not overwrite a
        # status that already says more than "starting".
        self._lock = threading.Lock()
        self._status_is_provisional = True
        self._watchdog_usec = 0
        if env.get("WATCHDOG_USEC", "").isdigit():
            pid = env.get("WATCHDOG_PID", "")
            if not pid or pid == str(os.getpid()):
                self._watchdog_usec = int(env["WATCHDOG_USEC"])

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds within which systemd expects WATCHDOG=1, or None."""
        return self._watchdog_usec / 1e6 if self._watchdog_usec else None

    def notify(self, *lines: str) -> None:
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall("\n".join(lines).encode())
        except OSError as exc:
            log.debug("sd_notify failed: %s", exc)

    def ready(self, status: str) -> None:
        """READY=1, with ``status`` unless a real one was sent already."""
        with self._lock:
            if self._status_is_provisional:
                self.notify("READY=1", f"STATUS={status}")
                self._status_is_provisional = False
            else:
                self.notify("READY=1")

    def status(self, status: str, provisional: bool = False) -> None:
        """STATUS=; ``provisional``: one that READY=1 may replace."""
        with self._lock:
            self.notify(f"STATUS={status}")
            self._status_is_provisional = provisional

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")
