"""An HTTP reverse proxy in front of a Consul agent that wants basic auth.

What CONSUL_HTTP_AUTH is for (nginx or the like in front of the agent):
requests without the right ``Authorization: Basic`` header get 401, the
others go to the agent as they are (blocking queries included) and its
answer comes back. Consul itself does not check basic auth, so only such a
proxy shows whether the header is sent.
"""

from __future__ import annotations

import base64
import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

# Consul's blocking queries are held up to their wait (10 s here) plus jitter.
UPSTREAM_TIMEOUT = 30.0
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host"}


class BasicAuthProxy:
    def __init__(self, upstream: str, user: str, password: str) -> None:
        host, port = upstream.rsplit(":", 1)
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.forwarded = 0
        self.refused = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as requests uses it

            def _relay(self) -> None:
                if self.headers.get("Authorization") != expected:
                    proxy.refused += 1
                    self._reply(401, {"Content-Type": "text/plain"}, b"authentication required\n")
                    return
                proxy.forwarded += 1
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                agent = http.client.HTTPConnection(host, int(port), timeout=UPSTREAM_TIMEOUT)
                try:
                    agent.request(self.command, self.path, body=body or None, headers=headers)
                    answer = agent.getresponse()
                    content = answer.read()
                    kept = {
                        k: v
                        for k, v in answer.getheaders()
                        if k.lower() not in HOP_BY_HOP | {"content-length"}
                    }
                    self._reply(answer.status, kept, content)
                finally:
                    agent.close()

            def _reply(self, code: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = _relay  # noqa: N815 - http.server names

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="auth-proxy", daemon=True).start()

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> BasicAuthProxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
