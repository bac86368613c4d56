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
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.testbed.waiting import wait_until
from tests.unit.settings_factory import make_settings
from vip_elector.fence import Fence
from vip_elector.status_report import local_daemon
from vip_elector.status_server import LEADER_HOLD, MAX_HELD, REQUEST_DEADLINE, StatusServer


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


# -- /leader holds vip-manager's request until its answer is news ------------------------------


@pytest.fixture
def fenced() -> Iterator[tuple[Fence, StatusServer]]:
    """A real fence behind /leader, as the daemon has it (not fenced, the VIP absent)."""
    fence = Fence()
    fence.observe(False)
    running = StatusServer(
        ("127.0.0.1", 0),
        lambda: {"state": "follower"},
        lambda accept, encoding: (b"", {}),
        lambda: True,
        fence.left,
        fence_bound=lambda: 4.5,
        news=fence,
    ).start()
    yield fence, running
    running.close()


def timed_get(server: StatusServer) -> tuple[int, float]:
    """/leader's status and how long it took to come, measured from the request."""
    started = time.monotonic()
    status, _ = get(server, "/leader", timeout=2.0)
    return status, time.monotonic() - started


def lead_with_vip(fence: Fence, seconds: float = 4.5) -> None:
    """The fenced leader for ``seconds`` more, its VIP on the host."""
    fence.set(time.monotonic() + seconds)
    fence.observe(True)


def later(seconds: float, change: Callable[[], object]) -> threading.Timer:
    timer = threading.Timer(seconds, change)
    timer.start()
    return timer


def test_a_follower_s_vip_manager_hears_200_the_moment_the_fence_is_set(
    fenced: tuple[Fence, StatusServer],
) -> None:
    # The receiving node of a hand-over: vip-manager asked just before the
    # fence came; answered at once it would hear 503 and wait a whole interval.
    fence, server = fenced
    later(0.1, lambda: fence.set(time.monotonic() + 4.5))
    status, took = timed_get(server)
    assert status == 200
    assert 0.08 <= took < 0.3


def test_a_leader_s_vip_manager_hears_503_the_moment_the_fence_is_dropped(
    fenced: tuple[Fence, StatusServer],
) -> None:
    # The leader handing over: its vip-manager drops the VIP at once.
    fence, server = fenced
    lead_with_vip(fence)
    later(0.1, lambda: fence.set(0.0))
    status, took = timed_get(server)
    assert status == 503
    assert 0.08 <= took < 0.3


def test_a_held_200_ends_when_the_fence_runs_out_not_later(
    fenced: tuple[Fence, StatusServer],
) -> None:
    # Nobody sets or drops it (Consul went quiet): the deadline itself ends the
    # hold with 503, as an immediate answer after it would have.
    fence, server = fenced
    lead_with_vip(fence, 0.15)
    status, took = timed_get(server)
    assert status == 503
    assert 0.13 <= took < 0.3


def test_a_vip_appearing_on_a_node_without_the_fence_gets_503_at_once(
    fenced: tuple[Fence, StatusServer],
) -> None:
    fence, server = fenced
    later(0.1, lambda: fence.observe(True))
    status, took = timed_get(server)
    assert status == 503
    assert took < 0.3


@pytest.mark.parametrize(
    ("vip", "fence_left"), [(None, 4.5), (None, 0.0), (True, 0.0), (False, 4.5)]
)
def test_leader_answers_at_once_when_the_vip_is_unobserved_or_disagrees(
    fenced: tuple[Fence, StatusServer], vip: bool | None, fence_left: float
) -> None:
    fence, server = fenced
    fence.set(time.monotonic() + fence_left if fence_left else 0.0)
    fence.observe(vip)
    status, took = timed_get(server)
    assert status == (200 if fence_left else 503)
    assert took < 0.2


def test_with_nothing_new_leader_answers_within_the_hold_far_inside_vip_manager_s_timeout(
    fenced: tuple[Fence, StatusServer],
) -> None:
    # vip-manager gives up after 1 s and then drops the VIP.
    fence, server = fenced
    lead_with_vip(fence)
    status, took = timed_get(server)
    assert status == 200
    assert LEADER_HOLD - 0.05 <= took < LEADER_HOLD + 0.2 < 1.0


def test_held_requests_are_answered_before_the_socket_is_handed_over(
    fenced: tuple[Fence, StatusServer],
) -> None:
    # A restart in place (SIGUSR2) execs: a held connection it closed would
    # read as an error to vip-manager, which drops the VIP on errors.
    fence, server = fenced
    lead_with_vip(fence)
    answers: list[tuple[int, float]] = []
    client = threading.Thread(target=lambda: answers.append(timed_get(server)))
    client.start()
    assert server.holds is not None
    holds = server.holds
    wait_until(lambda: holds.count == 1, 2.0, "the request is held")
    server.hand_over()
    client.join(2)
    assert answers
    assert answers[0][0] == 200
    assert answers[0][1] < 0.3


def test_only_a_few_requests_are_held_at_once(fenced: tuple[Fence, StatusServer]) -> None:
    _, server = fenced
    results: list[tuple[int, float]] = []
    clients = [
        threading.Thread(target=lambda: results.append(timed_get(server)))
        for _ in range(MAX_HELD + 3)
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join(3)
    quick = [took for _, took in results if took < 0.2]
    assert len(results) == MAX_HELD + 3
    assert len(quick) >= 3


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
