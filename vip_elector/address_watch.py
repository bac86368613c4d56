"""The address watch: whether the VIP is on this host's interface, as it changes.

vip-manager adds the VIP (`ip`/`netmask` of vip-manager.yml) to `interface`
when the key carries this node's value and deletes it otherwise; vip-elector
never touches the address, it only looks. This thread follows the kernel's
own account through a NETLINK_ROUTE socket: one RTM_GETADDR dump at start,
then the RTM_NEWADDR/RTM_DELADDR events of the IPv4 and IPv6 address groups,
so a change is known at once and nothing is polled. When the kernel dropped
events (ENOBUFS: the socket's buffer overflowed) or a dump was interrupted,
it dumps again. It tells the election thread ``VipSeen(True/False)`` once at
start and on every change; the decision core reports a leader without its
VIP, or a VIP on a node that does not lead.

The kernel interface is used directly (the stdlib's AF_NETLINK sockets and
struct) rather than pyroute2: about a hundred lines for one message family,
and no new dependency for the Debian package nor for the lowest-versions job.

Where the VIP cannot be observed (another `manager-type`, no `ip` or
`interface`, no such interface here, netlink refused by the service's
sandbox) it tells ``VipSeen(None)`` and says so once at INFO: vip-elector
then works as it did before it looked.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from vip_elector.decision import Memory, VipSeen
from vip_elector.settings import Settings, VipManagerConfig
from vip_elector.state import DaemonState
from vip_elector.worker import Worker

log = logging.getLogger("vip_elector")

# linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 1, 2, 3, 4
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x2, 0x300, 0x10
RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x10, 0x100
IFA_ADDRESS, IFA_LOCAL = 1, 2
_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index
_RTATTR = struct.Struct("=HH")  # length, type
RECEIVE_BUFFER = 1 << 20  # bytes: room for a burst of events before ENOBUFS
READ_SIZE = 1 << 16


@dataclass(frozen=True)
class AddressEvent:
    """One address message: added (``new``) or deleted, on interface ``index``.
    ``dump``: part of the answer to our dump (else a change as it happened)."""

    new: bool
    index: int
    address: str
    prefix: int
    dump: bool = False


@dataclass(frozen=True)
class DumpEnd:
    """The dump is complete; ``interrupted``: the addresses changed during it."""

    interrupted: bool


def _align(length: int) -> int:
    return (length + 3) & ~3


def parse_messages(data: bytes) -> Iterator[AddressEvent | DumpEnd]:
    """The address messages and dump ends in one read of a NETLINK_ROUTE socket
    (anything else is skipped; a truncated message ends the read)."""
    interrupted = False
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, flags, _, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            return
        body = data[offset + _NLMSGHDR.size : offset + length]
        offset += _align(length)
        interrupted = interrupted or bool(flags & NLM_F_DUMP_INTR)
        if kind == NLMSG_DONE:
            yield DumpEnd(interrupted)
            interrupted = False
        elif kind == NLMSG_ERROR:
            code = -struct.unpack_from("=i", body)[0] if len(body) >= 4 else errno.EIO
            if code:
                raise OSError(code, f"netlink: {errno.errorcode.get(code, code)}")
        elif kind in (RTM_NEWADDR, RTM_DELADDR) and len(body) >= _IFADDRMSG.size:
            # A dump's answers are multi-part; a change as it happens is not (and
            # carries the sequence number of the request that made it: no help).
            event = _address(kind == RTM_NEWADDR, body, dump=bool(flags & NLM_F_MULTI))
            if event is not None:
                yield event


def _address(new: bool, body: bytes, dump: bool) -> AddressEvent | None:
    family, prefix, _, _, index = _IFADDRMSG.unpack_from(body)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    found: dict[int, bytes] = {}
    offset = _IFADDRMSG.size
    while offset + _RTATTR.size <= len(body):
        length, kind = _RTATTR.unpack_from(body, offset)
        if length < _RTATTR.size:
            break
        found[kind] = body[offset + _RTATTR.size : offset + length]
        offset += _align(length)
    # IFA_LOCAL is the address itself (IFA_ADDRESS the peer's on a point-to-point
    # link); IPv6 has IFA_ADDRESS only.
    raw = found.get(IFA_LOCAL) or found.get(IFA_ADDRESS)
    if raw is None or len(raw) not in (4, 16):
        return None
    return AddressEvent(new, index, str(ipaddress.ip_address(raw)), prefix, dump)


def dump_request(sequence: int, family: int = socket.AF_UNSPEC) -> bytes:
    """RTM_GETADDR for every address of ``family``."""
    body = _IFADDRMSG.pack(family, 0, 0, 0, 0)
    header = _NLMSGHDR.pack(
        _NLMSGHDR.size + len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, sequence, 0
    )
    return header + body


# The decision core's kinds of a misplaced VIP, as /status and the metric name them.
MISPLACED = {"missing": "leader_without_vip", "stray": "vip_on_non_leader"}


def unobservable_reason(config: VipManagerConfig) -> str | None:
    """Why the VIP cannot be followed from vip-manager.yml alone, or None."""
    if config.manager_type.lower() != "basic":
        return (
            f"vip-manager's manager-type is {config.manager_type!r}: the VIP is not an address "
            "of this host's interface"
        )
    if config.vip is None or config.interface is None:
        return f"{config.path} does not set both `ip` and `interface`"
    return None


class AddressWatch(Worker):
    """Thread contract: runs on its own; tells the election thread (``post``);
    :meth:`close` (any thread) ends it."""

    critical = False  # without it only the VIP goes unobserved: today's behaviour

    def __init__(
        self,
        config: VipManagerConfig,
        state: DaemonState,
        stop: threading.Event,
        post: Callable[[VipSeen], None],
    ) -> None:
        super().__init__("address-watch", state, stop)
        self.config = config
        self.post = post
        self._wake_read, self._wake_write = socket.socketpair()

    def close(self) -> None:
        """Wake the thread so it sees ``stop`` (it waits for the kernel otherwise)."""
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")

    def work(self) -> None:
        try:
            self._watch()
        finally:
            self._wake_read.close()
            self._wake_write.close()  # a close() after this is a no-op

    def _watch(self) -> None:
        config = self.config
        reason = unobservable_reason(config)
        sock = None
        if reason is None:
            assert config.interface is not None
            try:
                index = socket.if_nametoindex(config.interface)
                sock = self._open()
            except OSError as exc:
                reason = self._why(exc)
        if sock is None or reason is not None:
            self._unobservable(reason or "netlink is not available")
            return
        try:
            log.info(
                "following the VIP %s on %s through netlink (kernel address events)",
                config.vip,
                config.interface,
                extra={"event": "vip_watch"},
            )
            self._follow(sock, index)
        except OSError as exc:
            if not self.stop.is_set():
                log.warning(
                    "the address watch stopped (%s): whether this host has the VIP is no "
                    "longer known; vip-elector works on without it",
                    exc,
                    extra={"event": "vip_unobserved"},
                )
                self.post(VipSeen(None))
        finally:
            sock.close()

    def _why(self, exc: OSError) -> str:
        if exc.errno in (errno.EAFNOSUPPORT, errno.EPERM, errno.EACCES):
            return (
                f"netlink is refused ({exc.strerror}): allow AF_NETLINK in the unit's "
                "RestrictAddressFamilies="
            )
        return (
            f"this host has no interface {self.config.interface!r} ({exc.strerror or exc}): "
            "vip-manager.yml's `interface` must name one of this host's interfaces (and "
            "vip-elector must run in vip-manager's network namespace)"
        )

    def _unobservable(self, reason: str) -> None:
        log.info(
            "not watching the VIP: %s; leaders without their VIP (and a VIP on a node that "
            "does not lead) are not reported, and hand-overs wait vip-manager's interval "
            "as before",
            reason,
            extra={"event": "vip_unobserved"},
        )
        self.post(VipSeen(None))

    def _open(self) -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            # Subscribed before the dump: no change between the two is missed.
            sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        except OSError:
            sock.close()
            raise
        return sock

    def _follow(self, sock: socket.socket, index: int) -> None:
        sequence = 1
        sock.send(dump_request(sequence))
        dumping, again = True, False  # a dump under way; another one wanted after it
        current: set[int] | None = None  # prefix lengths of the VIP on the interface
        dumped: set[int] = set()  # what the dump under way found so far
        # Until close(), not until the stop: a stopping leader's hand-over waits
        # for the VIP to go (the election thread closes the watch when it ends).
        while True:
            ready, _, _ = select.select([sock, self._wake_read], [], [])
            if self._wake_read in ready:
                return
            try:
                messages = list(parse_messages(sock.recv(READ_SIZE)))
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                # The kernel dropped events: only a new dump says how it is now
                # (after the one under way: one dump at a time per socket).
                messages = [DumpEnd(interrupted=True)] if not dumping else []
                again = dumping
            for message in messages:
                if isinstance(message, DumpEnd):
                    if message.interrupted or again:
                        sequence += 1
                        dumped, dumping, again = set(), True, False
                        sock.send(dump_request(sequence))
                        continue
                    before, current, dumping = current, dumped, False
                    if before is None or bool(before) != bool(current):
                        self.post(VipSeen(bool(current), time.monotonic()))
                elif message.index == index and message.address == self.config.vip:
                    if message.dump or dumping:
                        self._apply(message, dumped)
                    if not message.dump and current is not None:
                        was = bool(current)
                        self._apply(message, current)
                        if bool(current) != was:
                            self.post(VipSeen(bool(current), time.monotonic()))

    @staticmethod
    def _apply(message: AddressEvent, prefixes: set[int]) -> None:
        if message.new:
            prefixes.add(message.prefix)
        else:
            prefixes.discard(message.prefix)


def vip_status(memory: Memory) -> dict[str, object]:
    """/status's view of the VIP on this host: present, absent or unobserved, and
    the problem the decision core reported (a leader without it, a VIP on a node
    that does not lead), or None."""
    seen = {True: "present", False: "absent", None: "unobserved"}[memory.vip]
    misplaced = None
    if memory.vip_problem is not None and memory.vip_wrong is not None:
        misplaced = MISPLACED[memory.vip_wrong[0]]
    return {"vip": seen, "vip_problem": memory.vip_problem, "vip_misplaced": misplaced}


def vip_rules(settings: Settings) -> dict[str, Any]:
    """The decision rules about the VIP's place, from vip-manager.yml."""
    config = settings.vip_manager
    address = config.vip or "the VIP"
    if config.vip is not None and config.netmask is not None:
        address = f"{config.vip}/{config.netmask}"
    return {
        "vip_grace": settings.vip_grace,
        "vip_address": address,
        "vip_interface": config.interface or "",
    }
