"""A controllable HTTP health endpoint for Consul HTTP checks.

Run as ``python -m tests.testbed.health_server --addr A --port P --state-file F``
(inside a network namespace when needed). Every request reads ``F``:
``200`` answers 200, ``500`` answers 500, ``hang`` holds the request open
until the client gives up, so a Consul check with a timeout goes critical.
A file is the control channel so a test, the demo and the benchmark can flip
endpoints that run in other processes and namespaces.
"""

from __future__ import annotations

import argparse
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HANG_SECONDS = 60.0
_hang = threading.Event()  # never set: hanging requests wait on it


def make_handler(state_file: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                mode = state_file.read_text().strip()
            except FileNotFoundError:
                mode = "500"
            if mode == "hang":
                _hang.wait(HANG_SECONDS)
                return
            status = 200 if mode == "200" else 500
            body = f"{mode}\n".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per Consul check run would drown the logs

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addr", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-file", type=Path, required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.addr, args.port), make_handler(args.state_file))
    server.daemon_threads = True
    print(f"health endpoint listening on {args.addr}:{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
