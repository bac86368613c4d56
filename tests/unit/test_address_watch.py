"""The address watch: netlink messages as the kernel sends them, and what the
watch tells the election thread from them.

The byte strings were captured from a NETLINK_ROUTE socket in a network
namespace (Linux 6.x): a dump of a host with eth0 (index 3,
198.18.7.11/24, 2001:db8::11/64) and eth1; `ip addr add 198.18.7.100/24 dev
eth0`, its `ip addr del`, and `ip -6 addr add 2001:db8::100/64 dev eth0`; then
a second dump, read together with the notification of an add just before it.
The link messages were captured the same way (`ip link add vip0 type bridge`,
then `ip link del vip0`: RTM_NEWLINK and RTM_DELLINK of index 2), cut after
their first attribute (the name) and their length set to match.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vip_elector.address_watch import (
    RTM_GETADDR,
    AddressEvent,
    AddressWatch,
    DumpEnd,
    Interface,
    LinkEvent,
    parse_messages,
    unobservable_reason,
)
from vip_elector.decision import VipSeen
from vip_elector.settings import ConfigError, VipManagerConfig
from vip_elector.state import DaemonState
from vip_elector.vip_manager_config import read_vip_manager_config

DUMP = bytes.fromhex(
    "5000000014000200010000003f420000021880000300000008000100c612070b08000200c612070b09000300"
    "6574683000000000080008008000000014000600ffffffffffffffffdf541200df5412005000000014000200"
    "010000003f4200000a40c0fd0200000014000100fe8000000000000030b0cefffed5f91714000600ffffffff"
    "ffffffffde541200de54120008000800c000000005000b00030000004800000014000200010000003f420000"
    "0a408200030000001400010020010db800000000000000000000001114000600ffffffffffffffffe0541200"
    "e054120008000800820000005000000014000200010000003f4200000a40c0fd0300000014000100fe800000"
    "00000000f88006fffed8c61314000600ffffffffffffffffde541200de54120008000800c000000005000b00"
    "030000001400000003000200010000003f42000000000000"
)
NEW = bytes.fromhex(
    "50000000140000005fea146bc1420000021881000300000008000100c612076408000200c612076409000300"
    "6574683000000000080008008100000014000600fffffffffffffffffe541200fe541200"
)
DEL = bytes.fromhex(
    "50000000150000005fea146bc5420000021881000300000008000100c612076408000200c612076409000300"
    "6574683000000000080008008100000014000600fffffffffffffffffe541200fe541200"
)
NEW6 = bytes.fromhex(
    "480000001400000000000000000000000a408200030000001400010020010db8000000000000000000000100"
    "14000600ffffffffffffffffff541200ff5412000800080082000000"
)
DUMP2 = bytes.fromhex(
    "50000000140000005fea146b19430000021881000300000008000100c612076408000200c612076409000300"
    "6574683000000000080008008100000014000600ffffffffffffffffff541200ff5412005000000014000200"
    "020000003f420000021880000300000008000100c612070b08000200c612070b090003006574683000000000"
    "080008008000000014000600ffffffffffffffffdf541200df5412005000000014000200020000003f420000"
    "021881000300000008000100c612076408000200c61207640900030065746830000000000800080081000000"
    "14000600ffffffffffffffffff541200ff5412005000000014000200020000003f4200000a40c0fd02000000"
    "14000100fe8000000000000030b0cefffed5f91714000600ffffffffffffffffde541200de54120008000800"
    "c000000005000b00030000004800000014000200020000003f4200000a408200030000001400010020010db8"
    "00000000000000000000010014000600ffffffffffffffffff541200ff541200080008008200000048000000"
    "14000200020000003f4200000a408200030000001400010020010db800000000000000000000001114000600"
    "ffffffffffffffffe0541200e054120008000800820000005000000014000200020000003f4200000a40c0fd"
    "0300000014000100fe80000000000000f88006fffed8c61314000600ffffffffffffffffde541200de541200"
    "08000800c000000005000b00030000001400000003000200020000003f42000000000000"
)

NEWLINK = bytes.fromhex(
    "2c000000100000000000000000000000000001000200000002100000ffffffff090003007669703000000000"
)
DELLINK = bytes.fromhex(
    "2c000000110000000000000000000000000001000200000002100000ffffffff090003007669703000000000"
)

VIP = "198.18.7.100"
ETH0 = 3


def addresses(data: bytes) -> list[tuple[bool, int, str, int, bool]]:
    return [
        (m.new, m.index, m.address, m.prefix, m.dump)
        for m in parse_messages(data)
        if isinstance(m, AddressEvent)
    ]


# -- parsing ---------------------------------------------------------------------------


def test_a_dump_lists_every_address_of_every_interface_and_ends() -> None:
    found = addresses(DUMP)
    assert (True, ETH0, "198.18.7.11", 24, True) in found
    assert (True, ETH0, "2001:db8::11", 64, True) in found
    assert (True, 2, "fe80::30b0:ceff:fed5:f917", 64, True) in found  # eth1
    assert all(dump for *_, dump in found)
    assert isinstance(list(parse_messages(DUMP))[-1], DumpEnd)
    assert VIP not in {address for _, _, address, _, _ in found}


def test_an_address_added_and_deleted_is_told_as_a_change() -> None:
    assert addresses(NEW) == [(True, ETH0, VIP, 24, False)]
    assert addresses(DEL) == [(False, ETH0, VIP, 24, False)]
    assert addresses(NEW6) == [(True, ETH0, "2001:db8::100", 64, False)]


def test_a_change_read_with_a_dump_is_told_apart_from_the_dump() -> None:
    found = addresses(DUMP2)
    assert found[0] == (True, ETH0, VIP, 24, False)  # the add's notification
    assert (True, ETH0, VIP, 24, True) in found[1:]  # the dump, which has it too
    assert list(parse_messages(DUMP2))[-1] == DumpEnd(interrupted=False)


def test_a_truncated_read_ends_without_an_error() -> None:
    assert addresses(DUMP[:100]) == addresses(DUMP[:80])  # the first message only
    assert list(parse_messages(NEW[:-4])) == []


def test_an_interrupted_dump_says_so() -> None:
    # NLM_F_DUMP_INTR (0x10) on the last address message: the addresses changed
    # while the kernel was answering.
    data = bytearray(DUMP)
    offset = 0
    last_address = 0
    while offset < len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if kind == 20:
            last_address = offset
        offset += (length + 3) & ~3
    flags = struct.unpack_from("=H", data, last_address + 6)[0]
    struct.pack_into("=H", data, last_address + 6, flags | 0x10)
    assert list(parse_messages(bytes(data)))[-1] == DumpEnd(interrupted=True)


def attribute(kind: int, raw: bytes) -> bytes:
    """One route attribute, padded to 4 bytes."""
    data = struct.pack("=HH", 4 + len(raw), kind) + raw
    return data + bytes(-len(data) % 4)


def link(
    new: bool, index: int, name: str, family: int = 0, altnames: tuple[str, ...] = ()
) -> bytes:
    """RTM_NEWLINK/RTM_DELLINK as the kernel lays it out (ifinfomsg, then IFLA_IFNAME,
    then the alternative names in IFLA_PROP_LIST, nested: NLA_F_NESTED)."""
    attributes = attribute(3, name.encode() + b"\0")
    if altnames:
        listed = b"".join(attribute(53, alt.encode() + b"\0") for alt in altnames)
        attributes += attribute(52 | 0x8000, listed)
    body = struct.pack("=BxHiII", family, 1, index, 0x1002, 0xFFFFFFFF) + attributes
    return struct.pack("=IHHII", 16 + len(body), 16 if new else 17, 0, 0, 0) + body


def moved(message: bytes, index: int, dump: bool = False) -> bytes:
    """An address message of the captures, on interface ``index`` (and as part of a
    dump's answer: NLM_F_MULTI)."""
    data = bytearray(message)
    struct.pack_into("=I", data, 20, index)
    if dump:
        struct.pack_into("=H", data, 6, 2)
    return bytes(data)


DONE = DUMP[-20:]  # NLMSG_DONE


def test_an_interface_created_and_deleted_is_told_with_its_index_and_name() -> None:
    assert list(parse_messages(NEWLINK)) == [LinkEvent(True, 2, "vip0")]
    assert list(parse_messages(DELLINK)) == [LinkEvent(False, 2, "vip0")]
    assert list(parse_messages(link(True, 7, "bond0") + DELLINK)) == [
        LinkEvent(True, 7, "bond0"),
        LinkEvent(False, 2, "vip0"),
    ]


def test_the_interface_is_followed_by_name_once_per_change() -> None:
    bond = Interface("bond0", 4)
    assert bond.follow(LinkEvent(True, 4, "bond0")) is None  # its flags changed
    assert bond.follow(LinkEvent(True, 5, "eth1")) is None  # another interface
    assert bond.follow(LinkEvent(False, 5, "eth1")) is None
    assert str(bond.follow(LinkEvent(False, 4, "bond0"))).startswith(
        "interface bond0 is gone (index 4)"
    )
    assert bond.index is None
    assert bond.follow(LinkEvent(False, 4, "bond0")) is None  # told once
    assert bond.follow(LinkEvent(True, 9, "bond0")) == (
        "interface bond0 was re-created (index 4 -> 9): following it"
    )
    assert bond.follow(LinkEvent(True, 9, "bond0")) is None
    # Re-created with no deletion seen (events lost), then renamed away.
    assert bond.follow(LinkEvent(True, 11, "bond0")) == (
        "interface bond0 was re-created (index 9 -> 11): following it"
    )
    assert bond.follow(LinkEvent(True, 11, "bond-old")) is not None
    assert bond.index is None


def test_an_interface_is_known_by_its_alternative_names_too() -> None:
    # `ip link property add dev v0 altname vipalt`: every link event of v0 then
    # carries vipalt in IFLA_PROP_LIST, and if_nametoindex("vipalt") finds v0.
    (event,) = parse_messages(link(True, 3, "v0", altnames=("vipalt", "vip-long-name")))
    assert event == LinkEvent(True, 3, "v0", ("vipalt", "vip-long-name"))
    alt = Interface("vipalt", 3)
    assert alt.follow(event) is None  # its MTU or carrier changed: still followed
    assert alt.index == 3
    assert str(alt.follow(LinkEvent(False, 3, "v0", ("vipalt",)))).startswith(
        "interface vipalt is gone (index 3)"
    )
    assert alt.follow(LinkEvent(True, 5, "v1", ("vipalt",))) == (
        "interface vipalt was re-created (index 3 -> 5): following it"
    )


def test_a_link_event_without_the_name_asks_the_kernel_before_letting_go() -> None:
    # A name the event does not carry (an alternative name on a kernel that does
    # not list it): if the name still has the followed index, it is still ours.
    alt = Interface("vipalt", 3, resolve=lambda: 3)
    assert alt.follow(LinkEvent(True, 3, "v0")) is None
    assert alt.index == 3
    gone = Interface("vipalt", 3, resolve=lambda: None)
    assert gone.follow(LinkEvent(True, 3, "v0")) is not None
    assert gone.index is None


def test_bridge_port_messages_are_not_the_interfaces_own_life() -> None:
    # A port leaving a bridge: RTM_DELLINK with ifi_family AF_BRIDGE for a port
    # that still exists; so are IPv6 (AF_INET6) link messages.
    assert list(parse_messages(link(False, 3, "eth0", family=socket.AF_BRIDGE))) == []
    assert list(parse_messages(link(True, 3, "eth0", family=socket.AF_BRIDGE))) == []
    assert list(parse_messages(link(True, 3, "eth0", family=socket.AF_INET6))) == []
    assert list(parse_messages(link(False, 3, "eth0"))) == [LinkEvent(False, 3, "eth0")]


def test_an_interface_back_on_the_same_index_is_said_so() -> None:
    eth = Interface("eth0", 3)
    eth.follow(LinkEvent(True, 3, "eth0-old"))  # renamed away
    assert eth.follow(LinkEvent(True, 3, "eth0")) == (
        "interface eth0 is back (index 3): following it"
    )


def test_an_interface_missing_at_start_is_followed_once_it_appears() -> None:
    vlan = Interface("vlan42", None)
    assert vlan.follow(LinkEvent(True, 6, "vlan42")) == (
        "interface vlan42 appeared (index 6): following it"
    )
    assert vlan.resync(6) == []
    assert vlan.resync(None) == [LinkEvent(False, 6, "vlan42")]
    assert vlan.resync(8) == [LinkEvent(True, 8, "vlan42")]


def test_a_netlink_error_is_raised() -> None:
    error = struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", -errno.EPERM) + bytes(16)
    with pytest.raises(OSError, match="EPERM"):
        list(parse_messages(error))


# -- what the watch tells ----------------------------------------------------------------


class Kernel:
    """The watch's netlink socket replaced by one end of a datagram pair: the test
    plays the kernel with the captured messages (and can overflow it once)."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.overflow = False

    def fileno(self) -> int:
        return self.theirs.fileno()

    def send(self, data: bytes) -> int:
        return self.theirs.send(data)

    def recv(self, size: int) -> bytes:
        data = self.theirs.recv(size)
        if self.overflow:
            self.overflow = False
            raise OSError(errno.ENOBUFS, "No buffer space available")
        return data

    def close(self) -> None:
        self.theirs.close()

    def request(self) -> int:
        """The next request the watch sent: a dump of the addresses (its type)."""
        self.ours.settimeout(5)
        return int(struct.unpack_from("=IH", self.ours.recv(1024))[1])


def config(**changes: object) -> VipManagerConfig:
    fields: dict[str, object] = {
        "path": Path("/etc/vip-manager.yml"),
        "trigger_key": "service/x/vip",
        "trigger_value": "a",
        "endpoints": (),
        "vip": VIP,
        "netmask": 24,
        "interface": "eth0",
    }
    fields.update(changes)
    return VipManagerConfig(**fields)  # type: ignore[arg-type]


class Seen:
    def __init__(self) -> None:
        self.events: list[VipSeen] = []
        self.changed = threading.Condition()

    def post(self, event: VipSeen) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait(self, count: int) -> list[bool | None]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.events) >= count, 5), self.events
            return [e.present for e in self.events]


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Kernel, Seen, AddressWatch]]:
    kernel, seen = Kernel(), Seen()
    watch = AddressWatch(config(), DaemonState("k", "v"), threading.Event(), seen.post)
    monkeypatch.setattr(socket, "if_nametoindex", lambda name: ETH0)
    monkeypatch.setattr(watch, "_open", lambda: kernel)
    watch.start()
    yield kernel, seen, watch
    watch.stop.set()
    watch.close()
    watch.join(5)
    assert not watch.is_alive()


def test_the_watch_tells_at_start_and_on_every_change(
    watched: tuple[Kernel, Seen, AddressWatch],
) -> None:
    kernel, seen, _ = watched
    assert kernel.request() == RTM_GETADDR
    kernel.ours.send(DUMP)
    assert seen.wait(1) == [False]
    kernel.ours.send(NEW6)  # another address: nothing to tell
    kernel.ours.send(NEW)
    assert seen.wait(2) == [False, True]
    kernel.ours.send(DEL)
    assert seen.wait(3) == [False, True, False]


def test_dropped_events_are_made_up_for_by_a_new_dump(
    watched: tuple[Kernel, Seen, AddressWatch],
) -> None:
    kernel, seen, _ = watched
    kernel.request()
    kernel.ours.send(DUMP)
    assert seen.wait(1) == [False]
    kernel.overflow = True  # the add's notification is lost to ENOBUFS
    kernel.ours.send(NEW)
    assert kernel.request() == RTM_GETADDR
    kernel.ours.send(DUMP2)
    assert seen.wait(2) == [False, True]


def test_an_interface_that_does_not_exist_is_told_as_unobserved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen = Seen()
    watch = AddressWatch(
        config(interface="nosuch0"), DaemonState("k", "v"), threading.Event(), seen.post
    )
    with caplog.at_level(logging.INFO, logger="vip_elector"):
        watch.start()
        assert seen.wait(1) == [None]
        watch.stop.set()
        watch.close()
        watch.join(5)
    assert not watch.is_alive()
    said = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    assert len(said) == 1, said
    assert "no interface 'nosuch0'" in said[0]
    assert "followed as soon as it appears" in said[0]


def test_an_interface_re_created_is_followed_on_its_new_index(
    watched: tuple[Kernel, Seen, AddressWatch], caplog: pytest.LogCaptureFixture
) -> None:
    """A bond re-created by ifupdown: its addresses go, then the interface, then
    it comes back on another index, where vip-manager adds the VIP again."""
    kernel, seen, _ = watched
    kernel.request()
    kernel.ours.send(DUMP)
    kernel.ours.send(NEW)
    assert seen.wait(2) == [False, True]
    with caplog.at_level(logging.INFO, logger="vip_elector"):
        kernel.ours.send(DEL + link(False, ETH0, "eth0"))
        assert seen.wait(3) == [False, True, False]
        kernel.ours.send(link(True, 9, "eth0") + link(True, 9, "eth0"))  # up, then flags
        assert kernel.request() == RTM_GETADDR  # the new index's addresses
        kernel.ours.send(moved(DUMP, 9, dump=True) + DONE)
        assert seen.wait(4) == [False, True, False, False]  # told once dumped
        kernel.ours.send(moved(NEW, 9))
        assert seen.wait(5) == [False, True, False, False, True]
        kernel.ours.send(moved(DEL, ETH0))  # the old index: not ours any more
        kernel.ours.send(link(True, 9, "eth0"))
        kernel.ours.send(moved(DEL, 9))
        assert seen.wait(6)[-1] is False
    said = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    assert said == [
        "interface eth0 is gone (index 3): the VIP is not on this host until it is back",
        "interface eth0 was re-created (index 3 -> 9): following it",
    ]


@contextlib.contextmanager
def watching(
    monkeypatch: pytest.MonkeyPatch, interface: str
) -> Iterator[tuple[Kernel, Seen, dict[str, int]]]:
    """A watch of ``interface`` (index ETH0), which has told that the VIP is there;
    the names the kernel knows, by index, may be changed."""
    kernel, seen = Kernel(), Seen()
    watch = AddressWatch(
        config(interface=interface), DaemonState("k", "v"), threading.Event(), seen.post
    )
    names = {interface: ETH0}

    def if_nametoindex(name: str) -> int:
        if name not in names:
            raise OSError("no interface with this name")  # as CPython raises it
        return names[name]

    monkeypatch.setattr(socket, "if_nametoindex", if_nametoindex)
    monkeypatch.setattr(watch, "_open", lambda: kernel)
    watch.start()
    try:
        kernel.request()
        kernel.ours.send(DUMP2)
        assert seen.wait(1) == [True]
        yield kernel, seen, names
    finally:
        watch.stop.set()
        watch.close()
        watch.join(5)
    assert not watch.is_alive()


def still_followed(kernel: Kernel, seen: Seen) -> None:
    """The VIP goes and comes back on ETH0: told so, and nothing was told before."""
    kernel.ours.send(DEL)
    assert seen.wait(2) == [True, False]
    kernel.ours.send(NEW)
    assert seen.wait(3) == [True, False, True]


def test_an_interface_configured_by_an_alternative_name_stays_followed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        watching(monkeypatch, "vipalt") as (kernel, seen, _),
        caplog.at_level(logging.INFO, logger="vip_elector"),
    ):
        kernel.ours.send(link(True, ETH0, "eth0", altnames=("vipalt",)))  # an MTU change
        kernel.ours.send(link(True, ETH0, "eth0"))  # carrier; no names listed
        still_followed(kernel, seen)
        assert not [r for r in caplog.records if r.levelno >= logging.INFO]


def test_a_port_leaving_a_bridge_tells_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    with watching(monkeypatch, "eth0") as (kernel, seen, _):
        kernel.ours.send(link(False, ETH0, "eth0", family=socket.AF_BRIDGE))
        kernel.ours.send(link(True, ETH0, "eth0", family=socket.AF_BRIDGE))
        still_followed(kernel, seen)


def test_an_interface_renamed_away_leaves_the_vip_unobserved(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The device and the VIP on it are still there, under another name: not
    # "absent" (a hand-over would take that for the VIP gone), unobserved.
    with (
        watching(monkeypatch, "eth0") as (kernel, seen, names),
        caplog.at_level(logging.INFO, logger="vip_elector"),
    ):
        names.clear()
        kernel.ours.send(link(True, ETH0, "eth0-old") + link(True, ETH0, "eth0-old"))
        assert seen.wait(2) == [True, None]
        names["eth0"] = ETH0
        kernel.ours.send(link(True, ETH0, "eth0"))  # renamed back
        assert kernel.request() == RTM_GETADDR
        kernel.ours.send(DUMP2)
        assert seen.wait(3) == [True, None, True]
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert said == [
        "interface eth0 was renamed to eth0-old (index 3): whether the VIP is on it is "
        "no longer watched, until an interface named eth0 is there again",
        "interface eth0 is back (index 3): following it",
    ]


def test_lost_link_events_are_made_up_for_by_asking_the_index_again(
    watched: tuple[Kernel, Seen, AddressWatch], monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel, seen, _ = watched
    kernel.request()
    kernel.ours.send(DUMP)
    assert seen.wait(1) == [False]
    monkeypatch.setattr(socket, "if_nametoindex", lambda name: 9)  # re-created meanwhile
    kernel.overflow = True  # its link events are lost to ENOBUFS
    kernel.ours.send(link(False, ETH0, "eth0"))
    assert kernel.request() == RTM_GETADDR
    kernel.ours.send(moved(NEW, 9, dump=True) + DONE)
    assert seen.wait(2) == [False, True]


def test_an_interface_that_appears_after_the_start_is_followed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel, seen = Kernel(), Seen()
    watch = AddressWatch(config(), DaemonState("k", "v"), threading.Event(), seen.post)

    def missing(name: str) -> int:
        raise OSError(errno.ENODEV, "No such device")

    monkeypatch.setattr(socket, "if_nametoindex", missing)
    monkeypatch.setattr(watch, "_open", lambda: kernel)
    watch.start()
    try:
        assert seen.wait(1) == [None]
        kernel.request()
        kernel.ours.send(DUMP)  # nothing about an interface that is not there
        kernel.ours.send(link(True, ETH0, "eth0"))
        assert kernel.request() == RTM_GETADDR
        kernel.ours.send(DUMP2)
        assert seen.wait(2) == [None, True]
    finally:
        watch.stop.set()
        watch.close()
        watch.join(5)


def said_when_netlink_fails(
    error: OSError, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The INFO line of a watch whose netlink socket cannot be opened (``error``)."""
    seen = Seen()
    watch = AddressWatch(config(), DaemonState("k", "v"), threading.Event(), seen.post)
    monkeypatch.setattr(socket, "if_nametoindex", lambda name: ETH0)

    def failing() -> socket.socket:
        raise error

    monkeypatch.setattr(watch, "_open", failing)
    with caplog.at_level(logging.INFO, logger="vip_elector"):
        watch.start()
        watch.join(5)
    assert seen.wait(1) == [None]
    (said,) = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    return said


def test_netlink_refused_by_the_sandbox_says_what_to_allow(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What socket(AF_NETLINK) raises under RestrictAddressFamilies= without it."""
    refused = OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
    said = said_when_netlink_fails(refused, caplog, monkeypatch)
    assert "allow AF_NETLINK in the unit's RestrictAddressFamilies=" in said


def test_out_of_descriptors_is_not_taken_for_a_missing_interface(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    exhausted = OSError(errno.EMFILE, "Too many open files")
    said = said_when_netlink_fails(exhausted, caplog, monkeypatch)
    assert "no interface" not in said
    assert "Too many open files" in said


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_watch_never_started_leaves_no_descriptor_open() -> None:
    # The election failed before it started the watch (at the pre-flight check,
    # say): its close() in the election's cleanup closes the socket pair.
    before = open_descriptors()
    watch = AddressWatch(config(), DaemonState("k", "v"), threading.Event(), Seen().post)
    watch.close()
    assert open_descriptors() == before


# -- what vip-manager.yml says ------------------------------------------------------------

YML = 'dcs-type: consul\ntrigger-key: "service/x/vip"\ntrigger-value: "a"\n'


def test_the_address_is_read_from_vip_manager_yml(tmp_path: Path) -> None:
    path = tmp_path / "vip-manager.yml"
    path.write_text(YML + "ip: 198.18.7.100\nnetmask: 24\ninterface: eth0\n")
    read = read_vip_manager_config(path)
    assert (read.vip, read.netmask, read.interface, read.manager_type) == (
        VIP,
        24,
        "eth0",
        "basic",
    )
    assert unobservable_reason(read) is None


def test_without_an_address_or_with_another_manager_type_it_is_not_observed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "vip-manager.yml"
    path.write_text(YML)
    assert "does not set both `ip` and `interface`" in str(
        unobservable_reason(read_vip_manager_config(path))
    )
    path.write_text(YML + "ip: 198.18.7.100\nnetmask: 24\ninterface: eth0\nmanager-type: hetzner\n")
    assert "manager-type is 'hetzner'" in str(unobservable_reason(read_vip_manager_config(path)))


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("ip: 198.18.7.300", "not an IP address"),
        ("ip: 10", "`ip` is 10, not a string"),
        ("netmask: 33", "prefix length from 0 to 32"),
        ("netmask: 255.255.255.0", "prefix length"),
        ("interface: [eth0]", "`interface` is a list"),
    ],
)
def test_a_malformed_address_is_refused_with_the_reason(
    tmp_path: Path, line: str, words: str
) -> None:
    path = tmp_path / "vip-manager.yml"
    path.write_text(YML + line + "\n")
    with pytest.raises(ConfigError) as caught:
        read_vip_manager_config(path)
    assert any(words in p for p in caught.value.problems), caught.value.problems
