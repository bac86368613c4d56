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

The interface is followed by name, not by the index it had at start: a bond,
VLAN or bridge that ifupdown or systemd-networkd deletes and creates again
(or a NIC driver reloaded) comes back with a new index. The link group's
RTM_NEWLINK/RTM_DELLINK events say so: an interface that goes means the VIP
is not here (``VipSeen(False)``), one that comes back (or first appears) is
dumped again and its addresses told. An interface renamed away is still
there, with any VIP on it: unobserved (``VipSeen(None)``) until the name is
back. The name may be an alternative name (``ip link property add ...
altname``), which link events list apart from the primary name. Only the
interface's own link messages (family AF_UNSPEC) count: a port leaving a
bridge gets an AF_BRIDGE RTM_DELLINK although it stays. One INFO line per
change of the interface.

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
RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x2, 0x300, 0x10
RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x1, 0x10, 0x100
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFLA_IFNAME, IFLA_PROP_LIST, IFLA_ALT_IFNAME = 3, 52, 53
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED (0x8000) and NLA_F_NET_BYTEORDER (0x4000)
_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, interface index, flags, change mask
_RTATTR = struct.Struct("=HH")  # length, type
# What if_nametoindex raises for a name no interface has: CPython's own error
# (no errno), or the kernel's (ENODEV; ENXIO on some libcs).
_NO_SUCH_INTERFACE = (None, errno.ENODEV, errno.ENXIO)
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
class LinkEvent:
    """An interface created or changed (``new``: RTM_NEWLINK, also sent for a change
    of its flags or name) or deleted (RTM_DELLINK), with its index, its name and
    its alternative names (``ip link property add ... altname``, Linux 5.5)."""

    new: bool
    index: int
    name: str
    altnames: tuple[str, ...] = ()

    def named(self, name: str) -> bool:
        """Whether ``name`` is one of its names (if_nametoindex takes either kind)."""
        return name == self.name or name in self.altnames


@dataclass(frozen=True)
class DumpEnd:
    """The dump is complete; ``interrupted``: the addresses changed during it."""

    interrupted: bool


def _align(length: int) -> int:
    return (length + 3) & ~3


def parse_messages(data: bytes) -> Iterator[AddressEvent | LinkEvent | DumpEnd]:
    """The address and link messages and dump ends in one read of a NETLINK_ROUTE
    socket (anything else is skipped; a truncated message ends the read)."""
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
        elif kind in (RTM_NEWLINK, RTM_DELLINK) and len(body) >= _IFINFOMSG.size:
            link = _link(kind == RTM_NEWLINK, body)
            if link is not None:
                yield link


def _attribute_list(body: bytes, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """The route attributes of a message body from ``offset`` on, in order, each
    type without its flag bits (a nested attribute carries NLA_F_NESTED)."""
    while offset + _RTATTR.size <= len(body):
        length, kind = _RTATTR.unpack_from(body, offset)
        if length < _RTATTR.size:
            break
        yield kind & NLA_TYPE_MASK, body[offset + _RTATTR.size : offset + length]
        offset += _align(length)


def _attributes(body: bytes, offset: int) -> dict[int, bytes]:
    """The route attributes of a message body from ``offset`` on, by type."""
    return dict(_attribute_list(body, offset))


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def _link(new: bool, body: bytes) -> LinkEvent | None:
    family, _, index, _, _ = _IFINFOMSG.unpack_from(body)
    if family != socket.AF_UNSPEC:
        # AF_BRIDGE (a port joining or leaving a bridge: RTM_DELLINK for a port
        # that still exists), AF_INET6 (its IPv6 settings): not the interface's
        # own life.
        return None
    found = _attributes(body, _IFINFOMSG.size)
    raw = found.get(IFLA_IFNAME)
    if raw is None:
        return None
    # The alternative names come only in IFLA_PROP_LIST, one IFLA_ALT_IFNAME each.
    altnames = tuple(
        _name(value)
        for kind, value in _attribute_list(found.get(IFLA_PROP_LIST, b""))
        if kind == IFLA_ALT_IFNAME
    )
    return LinkEvent(new, index, _name(raw), altnames)


def _address(new: bool, body: bytes, dump: bool) -> AddressEvent | None:
    family, prefix, _, _, index = _IFADDRMSG.unpack_from(body)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    found = _attributes(body, _IFADDRMSG.size)
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


@dataclass
class Interface:
    """vip-manager.yml's ``interface`` as the kernel's link events tell it: its
    index now (None while this host has no interface of that name), the one it
    had before (for the log line), and whether it went by a rename (the device,
    and any VIP on it, is still there under another name). ``resolve`` asks the
    kernel which index the name has now (None: none), for a link event that
    does not carry the name."""

    name: str
    index: int | None
    last: int | None = None
    renamed: bool = False
    resolve: Callable[[], int | None] | None = None

    def follow(self, link: LinkEvent) -> str | None:
        """Take in one link event; what to say (once per change of the interface),
        or None when it does not change which interface the VIP is watched on."""
        if link.index == self.index and not link.new:
            self.last, self.index, self.renamed = self.index, None, False
            return (
                f"interface {self.name} is gone (index {self.last}): the VIP is not on this "
                "host until it is back"
            )
        if link.index == self.index and not link.named(self.name) and not self._still_ours():
            self.last, self.index, self.renamed = self.index, None, True
            return (
                f"interface {self.name} was renamed to {link.name} (index {self.last}): "
                f"whether the VIP is on it is no longer watched, until an interface named "
                f"{self.name} is there again"
            )
        if link.new and link.named(self.name) and link.index != self.index:
            before = self.index if self.index is not None else self.last
            self.index, self.renamed = link.index, False
            if before is None:
                return f"interface {self.name} appeared (index {link.index}): following it"
            if before == link.index:
                return f"interface {self.name} is back (index {link.index}): following it"
            return (
                f"interface {self.name} was re-created (index {before} -> {link.index}): "
                "following it"
            )
        return None

    def _still_ours(self) -> bool:
        """Whether the name still maps to the followed index (a name the event does
        not carry: the kernel knows it)."""
        return self.resolve is not None and self.resolve() == self.index

    def resync(self, index: int | None) -> list[LinkEvent]:
        """The link event that makes up for lost ones, given the index the name has
        now (None: no such interface), or none when it is still the one followed."""
        if index is not None and index != self.index:
            return [LinkEvent(True, index, self.name)]
        if index is None and self.index is not None:
            return [LinkEvent(False, self.index, self.name)]
        return []


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
        """Wake the thread so it sees ``stop`` (it waits for the kernel otherwise);
        never started (the election failed before it), its socket pair is closed
        here."""
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")
        if self.ident is None:
            self._wake_read.close()
            self._wake_write.close()

    def work(self) -> None:
        try:
            self._watch()
        finally:
            self._wake_read.close()
            self._wake_write.close()  # a close() after this is a no-op

    def _watch(self) -> None:
        config = self.config
        reason = unobservable_reason(config)
        if reason is not None:
            self._unobservable(reason)
            return
        assert config.interface is not None
        try:
            sock = self._open()
        except OSError as exc:
            self._unobservable(self._why(exc))
            return
        try:
            try:
                index: int | None = socket.if_nametoindex(config.interface)
            except OSError as exc:
                # Not there (yet): ifupdown or systemd-networkd may create it after
                # us. Unobserved until its link event says it is there.
                index = None
                later = "; it is followed as soon as it appears"
                self._unobservable(
                    self._why(exc) + (later if exc.errno in _NO_SUCH_INTERFACE else "")
                )
            else:
                log.info(
                    "following the VIP %s on %s through netlink (kernel address events)",
                    config.vip,
                    config.interface,
                    extra={"event": "vip_watch"},
                )
            self._follow(sock, Interface(config.interface, index, resolve=self._index))
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
        if exc.errno not in _NO_SUCH_INTERFACE:
            # Out of descriptors (EMFILE, ENFILE) or memory (ENOMEM, ENOBUFS):
            # this process's or the host's trouble, not vip-manager.yml's.
            return (
                f"the kernel refused a netlink socket or an interface look-up "
                f"({exc.strerror or exc}): out of file descriptors or memory? Restart "
                "vip-elector once that is fixed to watch the VIP again"
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
            sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        except OSError:
            sock.close()
            raise
        return sock

    def _index(self) -> int | None:
        """The interface's index now (None: this host has none of that name)."""
        assert self.config.interface is not None
        try:
            return socket.if_nametoindex(self.config.interface)
        except OSError:
            return None

    def _follow(self, sock: socket.socket, interface: Interface) -> None:
        sequence = 0
        dumping, again = False, False  # a dump under way; another one wanted after it
        current: set[int] | None = None  # prefix lengths of the VIP on the interface
        dumped: set[int] = set()  # what the dump under way found so far

        def dump() -> None:
            nonlocal sequence, dumping, again, dumped
            if dumping:
                again = True  # one dump at a time per socket: after the one under way
                return
            sequence += 1
            dumped, dumping, again = set(), True, False
            sock.send(dump_request(sequence))

        def tell(present: bool) -> None:
            self.post(VipSeen(present, time.monotonic()))

        dump()
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
                # The kernel dropped events: only a new dump says how it is now, and
                # the interface's index is asked again (its link events may be lost;
                # a change of it asks for the dump itself).
                messages = list(interface.resync(self._index()))
                if not messages:
                    dump()
            for message in messages:
                if isinstance(message, DumpEnd):
                    dumping = False
                    if message.interrupted or again:
                        dump()
                    elif interface.index is not None:
                        before, current = current, dumped
                        if before is None or bool(before) != bool(current):
                            tell(bool(current))
                elif isinstance(message, LinkEvent):
                    said = interface.follow(message)
                    if said is None:
                        continue  # another interface, or a change of its flags
                    log.info("%s", said, extra={"event": "vip_interface"})
                    if interface.renamed:
                        # The device is still there (and the VIP with it, if it
                        # was): not "absent", unobserved.
                        self.post(VipSeen(None))
                        current = None
                    elif interface.index is None:
                        if current is None or current:
                            tell(False)  # no interface, no VIP on it
                        current = set()
                    else:
                        current = None  # told once its addresses are dumped
                        dump()
                elif message.index == interface.index and message.address == self.config.vip:
                    if message.dump or dumping:
                        self._apply(message, dumped)
                    if not message.dump and current is not None:
                        was = bool(current)
                        self._apply(message, current)
                        if bool(current) != was:
                            tell(bool(current))

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
