"""--status-addr: /status (JSON), /metrics (Prometheus), /healthz, /leader and /primary.

/leader is the fenced leadership endpoint for vip-manager's `dcs-type:
patroni` mode: 200 while this node is the leader and proved it recently
enough (``DaemonState.fenced``), 503 otherwise. With a lock-delay too short
for a fence (the default) it never answers 200. It holds vip-manager's request
while the answer agrees with the VIP on this host and answers the moment it
would not (``Fence.wait_for_news``, at most LEADER_HOLD): vip-manager then
adds or drops the VIP at once instead of after its next poll.

/primary is for load balancers' health checks, as Patroni's /primary is: 200
while this node's role is LEADER, fence or not (so for a moment after a
partition two nodes may say 200; vip-manager must use /leader), and never
past the lease of the session it holds the lock with (the renewer's TTL rule:
last good renewal + TTL), even while the election thread is still waiting
for Consul to decide on its loss (``DaemonState.snapshot``). Every 503 says
why in its body.

Read-only views of the daemon's state machine, served from their own
threads. The server is bounded so that its clients can never starve the
daemon, nor each other: at most MAX_CONNECTIONS at once (idle clients cannot
use up file descriptors the daemon needs for Consul), REQUEST_DEADLINE for
the whole request head however slowly it trickles in, and when every slot
is taken a new client takes the slot of the oldest one still sending its
request: slow or idle clients, however many, cannot keep vip-manager from
/leader. Errors of a client (a disconnect, a malformed request) are logged
as one escaped DEBUG line.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from vip_elector.logs import untrusted

log = logging.getLogger("vip_elector")

# /metrics: (Accept, Accept-Encoding) -> the body and its Content-* headers.
MetricsRenderer = Callable[[str, str], tuple[bytes, dict[str, str]]]

MAX_CONNECTIONS = 16
# /leader holds a request while its answer agrees with the VIP on this host
# (``Fence.wait_for_news``), so vip-manager hears of a change at once rather
# than after its next poll (up to its `interval` later). At most this long:
# vip-manager (patroni mode) gives up on a request after 1 s and then drops the
# VIP, so the hold stays well inside that, with room for a loaded host.
LEADER_HOLD = 0.4
# Requests held at once: vip-manager has one in flight; any more are answered
# at once, so held requests never take the slots other clients need.
MAX_HELD = 2
# Seconds a client has to send its whole request head (and then for each
# write of the answer): a request is one short line and a few headers.
REQUEST_DEADLINE = 2.0


def format_address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


class BoundedServer(ThreadingHTTPServer):
    """A threading HTTP server with a connection cap, for IPv4 and IPv6.

    ``inherited`` is a listening socket handed over by the process we were
    re-executed from (SIGUSR2): clients wait in its backlog meanwhile instead
    of being refused, so vip-manager polling /leader sees no gap.
    """

    daemon_threads = True
    request_queue_size = 16

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        inherited: socket.socket | None = None,
    ) -> None:
        # The connections being served, oldest first: True once the request head is read.
        self._connections: dict[socket.socket, bool] = {}
        self._guard = threading.Lock()
        if inherited is not None:
            self.address_family = inherited.family
            super().__init__(inherited.getsockname()[:2], handler, bind_and_activate=False)
            self.socket.close()
            self.socket = inherited
            self.server_address = inherited.getsockname()
            self.server_name, self.server_port = str(address[0]), int(self.server_address[1])
            return
        host = address[0]
        try:
            infos = socket.getaddrinfo(host, address[1], type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise OSError(exc.errno, f"cannot resolve {host!r}: {exc.strerror}") from None
        self.address_family = infos[0][0]
        resolved = infos[0][4]
        super().__init__((str(resolved[0]), int(resolved[1])), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._admit(request):
            log.debug(
                "status endpoint: %d requests being answered already; closing a connection from %s",
                MAX_CONNECTIONS,
                client_address[0],
            )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def _admit(self, request: socket.socket) -> bool:
        """A slot for ``request``: a free one, or the slot of the oldest connection
        still sending its request head (it is cut off). False when every slot is
        answering a request already (that takes milliseconds)."""
        slow = None
        with self._guard:
            if len(self._connections) >= MAX_CONNECTIONS:
                slow = next(
                    (c for c, answering in self._connections.items() if not answering), None
                )
                if slow is None:
                    return False
                del self._connections[slow]
            self._connections[request] = False
        if slow is not None:
            # Its thread, blocked reading, reads the end of the stream and ends.
            with contextlib.suppress(OSError):
                slow.shutdown(socket.SHUT_RDWR)
        return True

    def head_read(self, request: socket.socket) -> None:
        """``request`` sent its request head: from now on it keeps its slot."""
        with self._guard:
            if request in self._connections:
                self._connections[request] = True

    def _forget(self, request: socket.socket) -> None:
        with self._guard:
            self._connections.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (BrokenPipeError, reset) is not the daemon's
        # problem: one line at DEBUG instead of a traceback on stderr.
        log.debug("status endpoint: a request from %s failed", client_address[0])


class StatusServer:
    def __init__(
        self,
        address: tuple[str, int],
        status: Callable[[], dict[str, Any]],
        metrics: MetricsRenderer,
        healthy: Callable[[], bool],
        leader: Callable[[], float] = lambda: 0.0,
        inherited: socket.socket | None = None,
        fence_bound: Callable[[], float] | None = None,
        news: LeaderNews | None = None,
    ) -> None:
        """``leader``: the seconds of fence left (``DaemonState.fenced``);
        ``fence_bound``: ``Settings.fence_bound`` of the running settings, so a
        503 on /leader can say whether a fence is possible at all; ``news``:
        the fence itself, for /leader to hold vip-manager's request until its
        answer is news (without it /leader answers at once)."""
        self.news = news
        self.holds = _Holds(news) if news is not None else None
        handler = _make_handler(status, metrics, healthy, leader, fence_bound, self.holds)
        self.server = BoundedServer(address, handler, inherited)
        self.thread = threading.Thread(target=self.server.serve_forever, name="status", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> StatusServer:
        self.thread.start()
        log.info(
            "status endpoint on http://%s/ (/status, /metrics, /healthz, /leader for "
            "vip-manager, /primary for load balancers)",
            format_address(self.address),
            extra={"event": "status_server"},
        )
        if not is_loopback(self.address[0]):
            log.warning(
                "the status endpoint listens on %s, not on loopback: /status and /metrics "
                "need no authentication, so anyone who can reach it can read them",
                format_address(self.address),
                extra={"event": "status_server_exposed"},
            )
        return self

    def close(self) -> None:
        if self.holds is not None:
            self.holds.release()
        # serve_forever looks at its stop flag only when select() returns, every
        # 0.5 s: each stop took up to that much longer. A listening socket shut
        # down reads as ready at once (Linux), so the loop sees the flag now.
        with contextlib.suppress(OSError):
            self.server.socket.shutdown(socket.SHUT_RDWR)
        self.server.shutdown()
        self.server.server_close()

    def hand_over(self) -> int:
        """Stop serving but keep listening; the socket's fd, inheritable across exec."""
        if self.holds is not None:
            # A held request whose connection the exec closed would read as an
            # error to vip-manager, which then drops the VIP: answer them first.
            self.holds.release()
        self.server.shutdown()
        fd = self.server.socket.fileno()
        os.set_inheritable(fd, True)
        return fd


class LeaderNews(Protocol):
    """What /leader's hold needs of the fence (``Fence``)."""

    def wait_for_news(self, seconds: float, done: threading.Event) -> float: ...

    def wake(self) -> None: ...


class _Holds:
    """/leader's held requests: at most MAX_HELD at once, all answered at once
    when the server closes or hands its socket over (``release``)."""

    def __init__(self, news: LeaderNews) -> None:
        self.news = news
        self.slots = threading.BoundedSemaphore(MAX_HELD)
        self.released = threading.Event()
        self.count = 0
        self.idle = threading.Condition()

    def answer(self, immediate: Callable[[], float], send: Callable[[float], None]) -> None:
        """Send the fence left once it is news (or at once without a free slot)."""
        if self.released.is_set() or not self.slots.acquire(blocking=False):
            send(immediate())
            return
        with self.idle:
            self.count += 1
        try:
            send(self.news.wait_for_news(LEADER_HOLD, self.released))
        finally:
            self.slots.release()
            with self.idle:
                self.count -= 1
                self.idle.notify_all()

    def release(self, timeout: float = 1.0) -> None:
        """Answer every held request now; wait (briefly) until they are sent."""
        self.released.set()
        self.news.wake()
        with self.idle:
            self.idle.wait_for(lambda: self.count == 0, timeout)


def inherited_socket(fd_text: str | None, address: tuple[str, int]) -> socket.socket | None:
    """The listening socket a re-executed predecessor left at fd ``fd_text``, if it
    still listens on ``address``'s port (else it is closed: the address changed)."""
    if not fd_text or not fd_text.isdigit():
        return None
    try:
        sock = socket.socket(fileno=int(fd_text))
    except OSError:
        return None
    if sock.type != socket.SOCK_STREAM or sock.getsockname()[1] != address[1]:
        sock.close()
        return None
    sock.set_inheritable(False)
    return sock


class _DeadlineReader(io.RawIOBase):
    """A socket's input that ends at ``deadline`` (monotonic), however it trickles."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self.sock = sock
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the request was not complete within {REQUEST_DEADLINE:g}s")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


def not_leader_reason(state: str, fence_bound: float | None) -> str:
    """Why /leader (fenced) answers 503 in ``state``."""
    if state != "leader":
        return f"not the leader (state {state})"
    if fence_bound is not None and fence_bound <= 0:
        return (
            "leader, but lock-delay leaves no fence: use /primary for load balancers "
            "(vip-manager's patroni mode needs a longer --lock-delay)"
        )
    if fence_bound is not None:
        return (
            "leader, but not fenced now: Consul has not confirmed the lock within the "
            "fence, or the VIP is being handed over"
        )
    return (
        "leader, but not fenced: lock-delay leaves no fence (use /primary for load "
        "balancers), or Consul has not confirmed the lock lately"
    )


def _make_handler(
    status: Callable[[], dict[str, Any]],
    metrics: MetricsRenderer,
    healthy: Callable[[], bool],
    leader: Callable[[], float],
    fence_bound: Callable[[], float] | None,
    holds: _Holds | None = None,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "vip-elector"
        sys_version = ""  # no Python version in the Server header
        timeout = REQUEST_DEADLINE  # for each write of the answer

        def setup(self) -> None:
            super().setup()
            # A timeout per read would let a client keep its connection for ever
            # by sending a byte now and then: one deadline for the whole head.
            deadline = time.monotonic() + REQUEST_DEADLINE
            self.rfile = io.BufferedReader(_DeadlineReader(self.connection, deadline))

        def parse_request(self) -> bool:
            complete = super().parse_request()
            if complete and isinstance(self.server, BoundedServer):
                self.server.head_read(self.connection)
            return complete

        def version_string(self) -> str:
            # Without the space BaseHTTPRequestHandler puts before sys_version.
            return self.server_version

        def do_GET(self) -> None:
            self._answer(with_body=True)

        def do_HEAD(self) -> None:
            # The headers a GET would get (Content-Length included), no body.
            self._answer(with_body=False)

        def _answer(self, with_body: bool) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/status":
                body = json.dumps(status(), indent=2).encode() + b"\n"
                self._send(200, {"Content-Type": "application/json"}, body, with_body)
            elif path == "/metrics":
                body, headers = metrics(
                    self.headers.get("Accept", ""), self.headers.get("Accept-Encoding", "")
                )
                self._send(200, headers, body, with_body)
            elif path == "/leader":
                if holds is None:
                    self._leader(leader(), with_body)
                else:
                    holds.answer(leader, lambda left: self._leader(left, with_body))
            elif path == "/primary":
                now = status()
                state = str(now.get("state"))
                if state == "leader":
                    self._text(200, "leader", with_body)
                elif now.get("role") == "leader":
                    # The role machine has not decided on it yet; the lease has ended.
                    self._text(503, f"not the leader: {now.get('detail')}", with_body)
                else:
                    self._text(503, not_leader_reason(state, None), with_body)
            elif path == "/healthz":
                ok = healthy()
                self._send(
                    200 if ok else 503,
                    {"Content-Type": "text/plain"},
                    b"ok\n" if ok else b"threads are not making progress\n",
                    with_body,
                )
            else:
                self._text(404, "try /status, /metrics, /healthz, /leader or /primary", with_body)

        def _leader(self, left: float, with_body: bool) -> None:
            if left > 0:
                self._text(200, f"leader (fenced for {left:.1f}s)", with_body)
            else:
                bound = fence_bound() if fence_bound is not None else None
                self._text(503, not_leader_reason(self._state(), bound), with_body)

        def _state(self) -> str:
            return str(status().get("state"))

        def _text(self, code: int, text: str, with_body: bool) -> None:
            body = f"{text}\n".encode()
            self._send(code, {"Content-Type": "text/plain"}, body, with_body)

        def _send(self, code: int, headers: dict[str, str], body: bytes, with_body: bool) -> None:
            self.send_response(code)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # The request line is the client's text: escaped, one line, cut short.
            log.debug("status endpoint: %s", untrusted(format % args))

    return Handler
