"""The trigger-key lock protocol: one home for how vip-elector uses the key.

vip-manager puts the VIP on the node whose value is in the trigger-key;
vip-elector holds the key as a Consul lock (Consul's lock flag convention,
``consul/api/lock.go``), written by a session tied to the node's health.
Everything about that key lives here, as kazoo keeps a lock recipe in one
file and Patroni keeps its leader-key delete in its Consul module: reading
it, acquiring it, releasing it with ``cas``, "is this still our lock, and if
not why", "is this somebody else's plain key", and the session names that
tell which node competes with which value.

It works with session ids, not with the threads' session objects, so it sits
just above the Consul adapter and below the threads.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from vip_elector.consul_adapter import ConsulAdapter, ConsulError, KeyState
from vip_elector.state import Cause

log = logging.getLogger("vip_elector")

LOCK_FLAG = 0x2DDCCBC058A50C18  # consul/api/lock.go LockFlagValue = 3304740253564472344
SESSION_NAME_PREFIX = "vip-elector@"
_SESSION_NAME = re.compile(
    rf"^{re.escape(SESSION_NAME_PREFIX)}(?P<host>\S+) value=(?P<value>.*) key=(?P<key>\S+)$"
)


# -- session names: who competes for which key with which value ---------------


@dataclass(frozen=True)
class Candidacy:
    """What a vip-elector session's name says about its daemon."""

    host: str  # the kernel hostname of the daemon's machine
    value: str  # its lock value
    key: str  # the trigger-key it competes for


def session_name(host: str, value: str, key: str) -> str:
    """The name every vip-elector session carries, so `status` can list candidates."""
    return f"{SESSION_NAME_PREFIX}{host} value={value} key={key}"


def parse_session_name(name: str) -> Candidacy | None:
    """The candidacy a session name describes, or None for other sessions."""
    match = _SESSION_NAME.match(name)
    if match is None:
        return None
    return Candidacy(match.group("host"), match.group("value"), match.group("key"))


# -- rules ----------------------------------------------------------------------


def not_a_lock_message(key: str, flags: int) -> str:
    """The pre-flight error of the Go original, plus how to fix it."""
    return (
        f"trigger-key pre-flight check failed: existing key at '{key}' is a regular KV entry "
        f"(Flags={flags}), not a lock key (expected Flags={LOCK_FLAG}). "
        f"It was created by `consul kv put` or another tool. Fix: delete it with "
        f"`consul kv delete {key}` and let vip-elector create it; never pre-create the "
        "trigger-key."
    )


def is_foreign(key: KeyState) -> bool:
    """The key exists but was not written by a lock: somebody else's plain key."""
    return key.exists and key.flags != LOCK_FLAG


def next_index(previous: int, answered: int) -> int:
    """The index for the next blocking query (Consul's rules for X-Consul-Index)."""
    if answered < previous or answered < 1:
        return 0  # went backwards (snapshot restore, new leader): start over
    return answered


def ownership_problem(key: KeyState, session_id: str, value: bytes) -> tuple[Cause, str] | None:
    """Why ``key`` is no longer the lock of ``session_id`` with ``value``, or None while it is."""
    if not key.exists:
        return (
            Cause.KEY_DELETED,
            "the trigger-key was deleted (our session was invalidated, or someone deleted the key)",
        )
    if key.session != session_id:
        holder = key.session or "nobody"
        return Cause.KEY_TAKEN, f"the trigger-key is now held by session {holder}"
    if key.value != value or key.flags != LOCK_FLAG:
        shown = key.value.decode(errors="replace") if key.value is not None else None
        return Cause.KEY_CHANGED, (
            f"the trigger-key changed under our session (value={shown!r}, flags={key.flags})"
        )
    return None


# -- the key ----------------------------------------------------------------------


class TriggerKey:
    """The trigger-key of one configuration, through one adapter (one thread's)."""

    def __init__(self, adapter: ConsulAdapter, name: str, value: str) -> None:
        self.adapter = adapter
        self.name = name
        self.value = value
        self.value_bytes = value.encode()

    def read(self, index: int = 0, wait: float | None = None, consistent: bool = False) -> KeyState:
        """The key now, or (``index`` >= 1) once it changed or ``wait`` ran out."""
        return self.adapter.get_key(
            self.name, index=index or None, wait=wait, consistent=consistent
        )

    def ownership_problem(self, key: KeyState, session_id: str) -> tuple[Cause, str] | None:
        return ownership_problem(key, session_id, self.value_bytes)

    def acquire(self, session_id: str) -> bool:
        """PUT ?acquire with the lock flag and our value.

        False: held by another session, or the lock-delay of a session that
        held it is still running.
        """
        return self.adapter.acquire(self.name, self.value, session_id, flags=LOCK_FLAG)

    def delete_at(self, index: int) -> bool:
        """Delete the key only if it is still at ``index`` (its ModifyIndex).

        A delete sets no lock-delay (an invalidation does), so another node
        can take the key at once: this is how a leader hands over on purpose.
        """
        return self.adapter.delete_key(self.name, cas=index)

    def release(self, session_id: str, known_index: int | None) -> bool:
        """Delete the key if ``session_id`` holds it; never anybody else's key.

        ``known_index`` is the ModifyIndex we last saw while leading, if any.
        One quick read first settles whether we hold it at all (an acquire
        whose answer was lost) and gives the exact index. Errors are logged,
        not raised: this runs while stopping, and destroying the session
        afterwards releases the key anyway (after lock-delay).
        """
        cas = known_index
        try:
            key = self.read()
            if key.session == session_id:
                cas = key.modify_index
            elif key.exists:
                cas = None  # someone else's now: leave it alone
        except ConsulError as exc:
            log.debug("reading the trigger-key while stopping failed: %s", exc)
        if not cas:
            return False
        try:
            deleted = self.delete_at(cas)
        except ConsulError as exc:
            log.warning(
                "could not delete the trigger-key (%s); destroying the session "
                "releases it after lock-delay",
                exc,
                extra={"event": "shutdown_error"},
            )
            return False
        if deleted:
            log.info(
                "released the lock: deleted %s at index %d",
                self.name,
                cas,
                extra={"event": "lock_released", "key": self.name, "session": session_id},
            )
        else:
            log.warning(
                "the trigger-key changed since index %d; not deleting it "
                "(destroying the session releases it)",
                cas,
            )
        return deleted
