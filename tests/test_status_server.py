"""The status server under clients that do not play along, and what /leader and
/primary say. It runs in-process on loopback with stub views of the daemon
(tests/test_fenced.py asks a real daemon).

It waits out real deadlines of seconds, so it stands beside the integration
tests rather than in the unit layer (which stays under 10 s).
"""

from __future__ import annotations

import http.client
import http.server
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit.settings_factory import make_settings
from vip_elector.status_report import local_daemon
from vip_elector.status_server import REQUEST_DEADLINE, StatusServer


class Daemon:
    """What the stub daemon says: its state and the fence left."""

    def __init__(self) -> None:
        self.state = "leader"
        self.fence = 3.0

    def status(self) -> dict[str, Any]:
        return {"state": self.state}

    def leader(self) -> float:
        return self.fence


@pytest.fixture
def daemon() -> Daemon:
    return Daemon()


@pytest.fixture
def server(daemon: Daemon) -> Iterator[StatusServer]:
    running = StatusServer(
        ("127.0.0.1", 0),
        daemon.status,
        lambda accept, encoding: (b"", {}),
        lambda: True,
        daemon.leader,
    ).start()
    yield running
    running.close()


def get(server: StatusServer, path: str, timeout: float = 5.0) -> tuple[int, str]:
    connection = http.client.HTTPConnection(*server.address, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


# -- clients that do not play along -------------------------------------------------------------


def test_leader_answers_within_a_second_with_50_slow_clients_connected(
    server: StatusServer,
) -> None:
    # Each sends the start of a request and never the end of its head: 16 of
    # them once took every slot, and vip-manager's /leader was refused.
    slow = []
    try:
        for _ in range(50):
            sock = socket.create_connection(server.address, timeout=2)
            sock.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)
        for _ in range(3):  # not just once
            started = time.monotonic()
            assert get(server, "/leader", timeout=1.0)[0] == 200
            assert time.monotonic() - started < 1.0
    finally:
        for sock in slow:
            sock.close()


def test_a_client_trickling_its_request_is_cut_off_at_the_deadline(server: StatusServer) -> None:
    # One header line every half second: a timeout per read never fires.
    with socket.create_connection(server.address, timeout=2) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /status HTTP/1.1\r\n")
        closed_after = None
        while time.monotonic() - started < REQUEST_DEADLINE + 4:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:  # reset: the server closed it
                closed_after = time.monotonic() - started
                break
            readable, _, _ = select.select([sock], [], [], 0.5)
            if readable:
                try:
                    data = sock.recv(1000)
                except OSError:
                    data = b""
                assert not data.startswith(b"HTTP/1.0 200"), "answered a request never finished"
                closed_after = time.monotonic() - started
                break
        assert closed_after is not None, "the trickling client kept its connection"
        assert closed_after < REQUEST_DEADLINE + 1.0


# -- /leader (fenced, for vip-manager) and /primary (by role, for load balancers) ----------------


def start(daemon: Daemon, fence_bound: float | None) -> StatusServer:
    return StatusServer(
        ("127.0.0.1", 0),
        daemon.status,
        lambda accept, encoding: (b"", {}),
        lambda: True,
        daemon.leader,
        fence_bound=None if fence_bound is None else (lambda: fence_bound),
    ).start()


@pytest.mark.parametrize(
    ("state", "fence", "bound", "leader", "primary"),
    [
        ("leader", 3.0, 4.5, (200, "leader (fenced for 3.0s)"), (200, "leader")),
        (
            "leader",
            0.0,
            -0.2,  # the default lock-delay: no room for a fence
            (
                503,
                "leader, but lock-delay leaves no fence: use /primary for load balancers "
                "(vip-manager's patroni mode needs a longer --lock-delay)",
            ),
            (200, "leader"),
        ),
        (
            "leader",
            0.0,
            4.5,
            (
                503,
                "leader, but not fenced now: Consul has not confirmed the lock within the "
                "fence, or the VIP is being handed over",
            ),
            (200, "leader"),
        ),
        (
            "leader",
            0.0,
            None,  # not told the bound
            (
                503,
                "leader, but not fenced: lock-delay leaves no fence (use /primary for load "
                "balancers), or Consul has not confirmed the lock lately",
            ),
            (200, "leader"),
        ),
        (
            "follower",
            0.0,
            4.5,
            (503, "not the leader (state follower)"),
            (503, "not the leader (state follower)"),
        ),
        (
            "fault",
            0.0,
            -0.2,
            (503, "not the leader (state fault)"),
            (503, "not the leader (state fault)"),
        ),
    ],
)
def test_leader_and_primary_say_what_they_mean(
    daemon: Daemon,
    state: str,
    fence: float,
    bound: float | None,
    leader: tuple[int, str],
    primary: tuple[int, str],
) -> None:
    daemon.state, daemon.fence = state, fence
    server = start(daemon, bound)
    try:
        assert get(server, "/leader") == (leader[0], leader[1] + "\n")
        assert get(server, "/primary") == (primary[0], primary[1] + "\n")
        connection = http.client.HTTPConnection(*server.address, timeout=5)
        connection.request("HEAD", "/primary")
        head = connection.getresponse()
        assert (head.status, head.read()) == (primary[0], b"")
        connection.close()
    finally:
        server.close()


# -- `status` reading a daemon's /status: whatever answers on that port ------------------------


@pytest.mark.parametrize("body", [b"[" * 100_000, b"[1, 2]", b'"leader"', b"{", b"\xff"])
def test_status_ignores_a_status_port_that_answers_something_else(body: bytes) -> None:
    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        settings = make_settings(status_addr=("127.0.0.1", other.server_address[1]))
        assert local_daemon(settings) is None
    finally:
        other.shutdown()
        other.server_close()
