"""A TCP fault proxy between one vip-elector and its Consul agent.

For the faults a real agent cannot be made to show on demand, injected at the
adapter boundary (the HTTP connection), never inside vip-elector:

- ``pass``: forward both ways;
- ``latency``: forward, each chunk delayed by ``latency`` seconds;
- ``blackhole``: connections are accepted and stay open, nothing is forwarded
  either way (a partition: requests time out);
- ``reset``: every connection is reset at once (agent restarting);
- ``http500``: every HTTP request is answered ``500 No cluster leader``
  (what Consul says during a server election) without reaching the agent.

Every switch resets the open connections, so the client's next request meets
the new behaviour (and a healed partition does not leave requests hanging).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

MODES = ("pass", "latency", "blackhole", "reset", "http500")
NO_LEADER = b"No cluster leader"
_NEVER = threading.Event()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server((host, 0))
        self.host = host
        self.port = int(self._listener.getsockname()[1])
        self.mode = "pass"
        self.latency = 0.0
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._closed = threading.Event()
        self.requests_answered_500 = 0
        self.requests_forwarded = 0  # HTTP requests passed to the agent (for rate measurements)
        threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True).start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def set(self, mode: str, latency: float = 0.0) -> None:
        assert mode in MODES, mode
        with self._lock:
            changed = (mode, latency) != (self.mode, self.latency)
            self.mode = mode
            self.latency = latency
            drop = list(self._connections) if changed else []
        for sock in drop:
            _reset(sock)

    @contextlib.contextmanager
    def fault(self, mode: str, latency: float = 0.0) -> Iterator[None]:
        self.set(mode, latency)
        try:
            yield
        finally:
            self.set("pass")

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for sock in connections:
            _reset(sock)

    # -- internals -----------------------------------------------------------
    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._connections.update(socks)

    def _untrack(self, *socks: socket.socket) -> None:
        with self._lock:
            self._connections.difference_update(socks)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            mode = self.mode
            if mode == "reset":
                _reset(client)
                continue
            if mode == "http500":
                self._track(client)
                threading.Thread(target=self._answer_500, args=(client,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=2)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            self._track(client, upstream)
            for src, dst, count in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, count), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                if count:
                    self.requests_forwarded += chunk.count(b" HTTP/1.1\r\n")
                mode, latency = self.mode, self.latency
                if mode == "blackhole":
                    continue  # swallowed: the other side waits for its timeout
                if mode == "latency" and latency > 0:
                    _NEVER.wait(latency)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            self._untrack(src, dst)

    def _answer_500(self, client: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip() or 0)
                while len(buffer) < length:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                buffer = buffer[length:]
                client.sendall(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: " + str(len(NO_LEADER)).encode() + b"\r\n\r\n" + NO_LEADER
                )
                self.requests_answered_500 += 1
        except OSError:
            pass
        finally:
            self._untrack(client)
