"""sd_notify: READY=1 tells systemd the daemon started, and never hides the status
that says why this node does not compete."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from vip_elector.systemd import SystemdNotifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(2)
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().splitlines()


def notifier(sock: socket.socket) -> SystemdNotifier:
    return SystemdNotifier({"NOTIFY_SOCKET": str(sock.getsockname())})


def test_ready_replaces_the_starting_status(notify_socket: socket.socket) -> None:
    sd = notifier(notify_socket)
    sd.status("starting: pre-flight check of k", provisional=True)
    sd.ready("started: pre-flight check of k passed")
    assert received(notify_socket) == ["STATUS=starting: pre-flight check of k"]
    assert received(notify_socket) == ["READY=1", "STATUS=started: pre-flight check of k passed"]


def test_ready_keeps_a_status_that_says_why_the_node_does_not_compete(
    notify_socket: socket.socket,
) -> None:
    sd = notifier(notify_socket)
    sd.status("starting: pre-flight check of k", provisional=True)
    sd.status("not competing: check 'vip-http' is critical")
    sd.ready("started: pre-flight check of k passed")
    received(notify_socket)
    assert received(notify_socket) == ["STATUS=not competing: check 'vip-http' is critical"]
    assert received(notify_socket) == ["READY=1"]


def test_without_systemd_nothing_is_sent() -> None:
    sd = SystemdNotifier({})
    assert not sd.enabled
    sd.ready("ignored")  # no socket, no error
