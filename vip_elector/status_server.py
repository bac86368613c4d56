"""--status-addr: /status (JSON), /metrics (Prometheus text) and /healthz.

Read-only views of the daemon's state machine, served from their own thread.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("vip_elector")


class StatusServer:
    def __init__(
        self,
        address: tuple[str, int],
        status: Callable[[], dict[str, Any]],
        metrics: Callable[[], bytes],
        healthy: Callable[[], bool],
    ) -> None:
        handler = _make_handler(status, metrics, healthy)
        self.server = ThreadingHTTPServer(address, handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="status", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> StatusServer:
        self.thread.start()
        host, port = self.address
        log.info(
            "status endpoint on http://%s:%d/ (/status, /metrics, /healthz)",
            host,
            port,
            extra={"event": "status_server"},
        )
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _make_handler(
    status: Callable[[], dict[str, Any]], metrics: Callable[[], bytes], healthy: Callable[[], bool]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "vip-elector"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/status":
                self._send(200, "application/json", json.dumps(status(), indent=2).encode() + b"\n")
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics())
            elif path == "/healthz":
                ok = healthy()
                self._send(
                    200 if ok else 503,
                    "text/plain",
                    b"ok\n" if ok else b"threads are not making progress\n",
                )
            else:
                self._send(404, "text/plain", b"try /status, /metrics or /healthz\n")

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("status endpoint: " + format, *args)

    return Handler
