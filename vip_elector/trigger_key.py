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

import base64
import json
import logging
import math
import re
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from vip_elector.consul_adapter import ConsulAdapter, ConsulError, TxnResult
from vip_elector.key_entries import (
    DEFAULT_PRIORITY,
    LOCK_FLAG,
    Candidate,
    Change,
    KeyState,
    KeyTree,
    Member,
    Rejected,
    SwitchoverRequest,
)
from vip_elector.logs import Reminders, untrusted

log = logging.getLogger("vip_elector")

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


def own_session_name(lock_value: str, key: str) -> str:
    """The name of the sessions this host's daemon makes for ``key``."""
    return session_name(socket.gethostname(), lock_value, key)


def parse_session_name(name: str) -> Candidacy | None:
    """The candidacy a session name describes, or None for other sessions."""
    match = _SESSION_NAME.match(name)
    if match is None:
        return None
    return Candidacy(match.group("host"), match.group("value"), match.group("key"))


@dataclass(frozen=True)
class Rival:
    """Another node's vip-elector competing for the same key with the same value."""

    node: str
    session: str
    create_index: int


def node_of(sessions: Iterable[dict[str, Any]], session_id: str) -> str | None:
    """The node a session (from /v1/session/list) belongs to."""
    return next((str(s.get("Node")) for s in sessions if s.get("ID") == session_id), None)


def rivals(
    sessions: Iterable[dict[str, Any]], key: str, value: str, own_node: str | None
) -> list[Rival]:
    """Sessions of *other nodes* that compete for ``key`` with ``value``.

    Two nodes with one lock value (a vip-manager.yml copied with its
    trigger-value) would both get the VIP whichever of them wins: vip-manager
    on each compares the key's value with its own trigger-value. Sessions on
    ``own_node`` (ours, and ours that are ending) are not rivals.
    """
    found = []
    for item in sessions:
        candidacy = parse_session_name(str(item.get("Name", "")))
        if candidacy is None or candidacy.key != key or candidacy.value != value:
            continue
        if own_node is None or str(item.get("Node")) == own_node:
            continue
        found.append(
            Rival(
                untrusted(str(item.get("Node"))),  # logged as is (rival_message)
                str(item.get("ID")),
                int(item.get("CreateIndex") or 0),
            )
        )
    return found


def rival_message(key: str, value: str, found: list[Rival]) -> str:
    nodes = ", ".join(sorted({r.node for r in found}))
    return (
        f"node(s) {nodes} also compete for {key} with the lock value {value!r}: with one "
        "value on two nodes, vip-manager on both would add the VIP. Give each node its "
        "own trigger-value in vip-manager.yml (or --hostname); not competing until only "
        "one node has this value"
    )


# -- candidates and switchover requests, under the key's own prefix ------------------
#
# <trigger-key>/candidates/<value>  one per candidate: locked by its session (so it
#                                   goes with the session), JSON {priority, eligible,
#                                   why, node, host}
# <trigger-key>/switchover          a request to move the VIP: JSON {to, by, at}
# <trigger-key>/conflicts/<value>   a follower that found the key held with its own
#                                   value by another node says so (locked by its
#                                   session): the leader sees it in its watch at once
#                                   and checks, instead of listing sessions on a timer
# <trigger-key>/members/<value>     one per node, NOT bound to a session (it outlives a
#                                   FAULT and a dead daemon): JSON {v, state, priority,
#                                   eligible, why, node, host, session, at, heartbeat},
#                                   written on each change and every heartbeat; what
#                                   `vip-elector status` lists every node from
# <trigger-key>/history             the last changes of the key's holder, cluster-wide:
#                                   JSON {v, changes: [{at, from, to, cause, by,
#                                   detail}]}, the newest HISTORY_KEEP, appended with cas


def candidates_prefix(key: str) -> str:
    return f"{key}/candidates/"


def candidate_key(key: str, value: str) -> str:
    return candidates_prefix(key) + urllib.parse.quote(value, safe="")


def switchover_key(key: str) -> str:
    return f"{key}/switchover"


def conflict_key(key: str, value: str) -> str:
    return f"{key}/conflicts/" + urllib.parse.quote(value, safe="")


def members_prefix(key: str) -> str:
    return f"{key}/members/"


def member_key(key: str, value: str) -> str:
    return members_prefix(key) + urllib.parse.quote(value, safe="")


def history_key(key: str) -> str:
    return f"{key}/history"


# What a value read from Consul may be. An entry is a few hundred bytes; anything
# larger, nested, or out of range was not written by vip-elector.
ENTRY_LIMIT = 16 << 10  # bytes of one entry, checked before parsing it
TEXT_LIMIT = 200  # characters kept of a free text (why, node, by)
VALUE_LIMIT = 512  # characters of a lock value (a candidate's, a request's `to`)
PRIORITY_RANGE = range(256)
MEMBER_STATES = frozenset(
    {"starting", "follower", "leader", "maintenance", "fault", "stopping", "stopped"}
)
HEARTBEAT_RANGE = (1.0, 3600.0)  # seconds between a member's reports, as it says
HISTORY_KEEP = 40  # changes kept in <key>/history (40 x ~300 bytes: under ENTRY_LIMIT)
DETAIL_LIMIT = 120  # characters of a change's detail
CAUSE_LIMIT = 40


class _Unreadable(Exception):
    """Why an entry cannot be used (our words, never its content)."""


def _json_object(entry: KeyState) -> dict[str, Any]:
    """The entry's value as a JSON object, bounded and with every parse error caught:
    a value nested 50,000 deep (RecursionError) or a number of 10,000 digits
    (ValueError) must not stop the daemon that reads it."""
    raw = entry.value or b"{}"
    if len(raw) > ENTRY_LIMIT:
        raise _Unreadable(f"{len(raw)} bytes, more than the {ENTRY_LIMIT} an entry may have")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise _Unreadable("JSON nested too deeply") from None
    except ValueError:  # not UTF-8, not JSON, an integer too long to convert
        raise _Unreadable("not JSON") from None
    if not isinstance(data, dict):
        raise _Unreadable(f"a JSON {type(data).__name__}, not an object")
    return data


def _text(data: dict[str, Any], field: str, default: str, limit: int = TEXT_LIMIT) -> str:
    """A string field, bounded and escaped for a log line."""
    raw = data.get(field, default)
    if not isinstance(raw, str):
        raise _Unreadable(f"`{field}` is not a string")
    return untrusted(raw, limit)


def _lock_value(text: str, field: str) -> str:
    """A lock value: one line of printable text, bounded (as the daemon's own is)."""
    if not text or len(text) > VALUE_LIMIT or not text.isprintable():
        raise _Unreadable(
            f"{field} is not a lock value (empty, longer than {VALUE_LIMIT} characters, "
            "or not printable)"
        )
    return text


def _priority(data: dict[str, Any]) -> int:
    raw = data.get("priority", DEFAULT_PRIORITY)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw not in PRIORITY_RANGE:
        raise _Unreadable("`priority` is not a whole number from 0 to 255")
    return raw


def _candidate(value: str, entry: KeyState) -> Candidate:
    data = _json_object(entry)
    eligible, settled = data.get("eligible", True), data.get("settled", True)
    if not isinstance(eligible, bool) or not isinstance(settled, bool):
        raise _Unreadable("`eligible` or `settled` is not true or false")
    vip = data.get("vip")
    if vip is not None and not isinstance(vip, bool):
        raise _Unreadable("`vip` is not true, false or null")
    return Candidate(
        value=_lock_value(value, "its name"),
        session=str(entry.session),
        priority=_priority(data),
        eligible=eligible,
        why=_text(data, "why", ""),
        node=_text(data, "node", ""),
        settled=settled,
        vip=vip,
        vip_problem=_text(data, "vip_problem", ""),
    )


def _number(data: dict[str, Any], field: str, low: float, high: float) -> float:
    raw = data.get(field)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not low <= raw <= high:
        raise _Unreadable(f"`{field}` is missing or not a number from {low:g} to {high:g}")
    return float(raw)


def _member(value: str, entry: KeyState) -> Member:
    data = _json_object(entry)
    state, eligible = data.get("state"), data.get("eligible")
    if not isinstance(state, str) or state not in MEMBER_STATES:
        raise _Unreadable(f"`state` is not one of {', '.join(sorted(MEMBER_STATES))}")
    if not isinstance(eligible, bool):
        raise _Unreadable("`eligible` is not true or false")
    return Member(
        value=_lock_value(value, "its name"),
        state=str(state),
        priority=_priority(data),
        eligible=eligible,
        why=_text(data, "why", ""),
        node=_text(data, "node", ""),
        host=_text(data, "host", ""),
        session=_text(data, "session", "", 64),
        at=_number(data, "at", 0.0, 1e11),
        heartbeat=_number(data, "heartbeat", *HEARTBEAT_RANGE),
        modify_index=entry.modify_index,
    )


def _optional_value(data: dict[str, Any], field: str) -> str | None:
    raw = data.get(field)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise _Unreadable(f"`{field}` is not a string or null")
    return _lock_value(raw, f"`{field}`")


def _change(data: Any) -> Change:
    if not isinstance(data, dict):
        raise _Unreadable("a change is not a JSON object")
    return Change(
        at=_number(data, "at", 0.0, 1e11),
        from_value=_optional_value(data, "from"),
        to_value=_optional_value(data, "to"),
        cause=_text(data, "cause", "?", CAUSE_LIMIT),
        by=_text(data, "by", "?"),
        detail=_text(data, "detail", "", DETAIL_LIMIT),
    )


def _changes(entry: KeyState) -> list[Change]:
    data = _json_object(entry)
    changes = data.get("changes")
    if not isinstance(changes, list) or len(changes) > 10 * HISTORY_KEEP:
        raise _Unreadable(f"`changes` is not a list of at most {10 * HISTORY_KEEP}")
    return [_change(item) for item in changes]


def _change_body(change: Change) -> dict[str, Any]:
    return {
        "at": round(change.at, 3),
        "from": change.from_value,
        "to": change.to_value,
        "cause": change.cause[:CAUSE_LIMIT],
        "by": change.by[:TEXT_LIMIT],
        "detail": change.detail[:DETAIL_LIMIT],
    }


def _request(entry: KeyState) -> SwitchoverRequest:
    data = _json_object(entry)
    to, at = data.get("to"), data.get("at")
    if not isinstance(to, str):
        raise _Unreadable("`to` is missing or not a string")
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise _Unreadable("`at` is missing or not a finite number")
    return SwitchoverRequest(
        _lock_value(to, "`to`"),
        _text(data, "by", "?"),
        float(at),
        entry.modify_index,
        _text(data, "refused", ""),
    )


def parse_candidates(
    key: str, entries: dict[str, KeyState], rejected: list[Rejected] | None = None
) -> dict[str, Candidate]:
    """The live candidates in ``entries`` (a prefix read), by lock value.

    An entry that is not a candidate entry as vip-elector writes it is left
    out, and added to ``rejected`` (if given) with the reason.
    """
    live = {name: entry for name, entry in entries.items() if entry.session}
    return _per_value(candidates_prefix(key), live, _candidate, "candidate entry", rejected)


T = TypeVar("T")


def _per_value(
    prefix: str,
    entries: dict[str, KeyState],
    parse: Callable[[str, KeyState], T],
    what: str,
    rejected: list[Rejected] | None,
) -> dict[str, T]:
    """The entries named ``prefix<value>``, parsed by lock value; one that cannot be
    parsed is left out, and added to ``rejected`` (if given) with the reason."""
    found = {}
    for name, entry in entries.items():
        if not name.startswith(prefix):
            continue
        value = urllib.parse.unquote(name[len(prefix) :])
        try:
            found[value] = parse(value, entry)
        except _Unreadable as problem:
            if rejected is not None:
                rejected.append(Rejected(what, untrusted(name), entry.modify_index, str(problem)))
    return found


def parse_request(
    key: str, entries: dict[str, KeyState], rejected: list[Rejected] | None = None
) -> SwitchoverRequest | None:
    """The switchover request in ``entries``, if any. One that cannot be read is
    added to ``rejected`` (if given) and returned as a stale request to "", so
    that the leader refuses and deletes it."""
    name = switchover_key(key)
    entry = entries.get(name)
    if entry is None:
        return None
    try:
        return _request(entry)
    except _Unreadable as problem:
        if rejected is not None:
            rejected.append(
                Rejected("switchover request", untrusted(name), entry.modify_index, str(problem))
            )
        return SwitchoverRequest("", "?", 0.0, entry.modify_index)  # garbage: drop it


def parse_members(
    key: str, entries: dict[str, KeyState], rejected: list[Rejected] | None = None
) -> dict[str, Member]:
    """The member entries in ``entries`` (a prefix read), by lock value; one that
    vip-elector cannot have written is left out and added to ``rejected``."""
    return _per_value(members_prefix(key), entries, _member, "member entry", rejected)


def parse_history(
    key: str, entries: dict[str, KeyState], rejected: list[Rejected] | None = None
) -> list[Change]:
    """The changes in ``<key>/history``, oldest first; an unreadable history is
    added to ``rejected`` and read as empty (the next change written replaces it)."""
    name = history_key(key)
    entry = entries.get(name)
    if entry is None:
        return []
    try:
        return _changes(entry)
    except _Unreadable as problem:
        if rejected is not None:
            rejected.append(Rejected("history", untrusted(name), entry.modify_index, str(problem)))
        return []


# A bad entry is logged once, and again only every so often while it stays:
# every read of the leader's watch (several a second) sees it.
REJECTED_REMIND = 600.0
_rejected_reminders = Reminders(REJECTED_REMIND)


def warn_rejected(rejected: Iterable[Rejected]) -> None:
    """One WARNING for each bad entry (not one per read)."""
    for item in rejected:
        if not _rejected_reminders.due(item.entry, f"{item.modify_index} {item.reason}"):
            continue
        if item.what == "switchover request":
            fix = "the leader deletes it"
        elif item.what == "history":
            fix = "the next change of the key's holder replaces it"
        else:
            fix = f"delete it (`consul kv delete {item.entry}`)"
        log.warning(
            "ignored the %s %s (ModifyIndex %d): %s. vip-elector never writes that: %s, and "
            "check which tokens may write under the trigger-key's prefix",
            item.what,
            item.entry,
            item.modify_index,
            item.reason,
            fix,
            extra={"event": "entry_ignored"},
        )


# -- the key ----------------------------------------------------------------------


class TriggerKey:
    """The trigger-key of one configuration, through one adapter (one thread's)."""

    def __init__(self, adapter: ConsulAdapter, name: str, value: str) -> None:
        self.adapter = adapter
        self.name = name
        self.value = value
        self.value_bytes = value.encode()
        self.release_failed = False  # release() could not reach Consul

    def read(self, index: int = 0, wait: float | None = None, consistent: bool = False) -> KeyState:
        """The key now, or (``index`` >= 1) once it changed or ``wait`` ran out."""
        return self.adapter.get_key(
            self.name, index=index or None, wait=wait, consistent=consistent
        )

    def acquire(self, session_id: str, seen: KeyState) -> TxnResult:
        """Take the key with the lock flag and our value, if it is still as ``seen``.

        One transaction: "the key is still absent (or still at the index we
        read)" and "lock it": a value somebody wrote in between is never
        overwritten. Not ok: it changed, another session holds it, or the
        lock-delay of a session that held it is still running.
        """
        if seen.exists:
            check = {"Verb": "check-index", "Key": self.name, "Index": seen.modify_index}
        else:
            check = {"Verb": "check-not-exists", "Key": self.name}
        return self.adapter.txn([{"KV": check}, self._lock(session_id)])

    def unlock_keeping(self, key: KeyState, session_id: str) -> bool:
        """Free the key from our session without touching what is in it.

        For a key that holds a value vip-elector did not write (a plain `consul
        kv put` onto our lock): deleting it, or destroying the session that
        holds it (Behavior=delete), would destroy that value.
        """
        unlock = {
            "Verb": "unlock",
            "Key": self.name,
            "Value": base64.b64encode(key.value or b"").decode(),
            "Flags": key.flags,
            "Session": session_id,
        }
        check = {"Verb": "check-index", "Key": self.name, "Index": key.modify_index}
        done = self.adapter.txn([{"KV": check}, {"KV": unlock}]).ok
        if done:
            log.warning(
                "the trigger-key holds a value vip-elector did not write (%r, flags %d): "
                "released our session from it and left the value alone; vip-elector does "
                "not compete while it is there (delete it to let vip-elector manage the key)",
                untrusted((key.value or b"").decode(errors="replace"), 80),
                key.flags,
                extra={"event": "foreign_value", "key": self.name},
            )
        return done

    def move(self, old_session: str, new_session: str) -> TxnResult:
        """Hand the key from ``old_session`` to ``new_session`` in one transaction.

        Unlock and lock in one raft entry: the key goes straight from one
        session to the other with our value (LockIndex + 1, one ModifyIndex), a
        blocking query never sees it free, and an unlock is a release, not an
        invalidation: no lock-delay. Not ok (and nothing changed) when
        ``old_session`` does not hold it.
        """
        return self.adapter.txn([self._unlock(old_session), self._lock(new_session)])

    # -- candidates and switchover ------------------------------------------
    def read_all(
        self, index: int = 0, wait: float | None = None, consistent: bool = False
    ) -> KeyTree:
        """The key, the candidates, a switchover request and a conflict flag on our
        value, in one (blocking) read."""
        answered, entries = self.adapter.get_prefix(
            self.name, index=index or None, wait=wait, consistent=consistent
        )
        key = entries.get(self.name) or KeyState(index=answered, exists=False)
        key = KeyState(
            index=answered,
            exists=key.exists,
            value=key.value,
            flags=key.flags,
            session=key.session,
            modify_index=key.modify_index,
            lock_index=key.lock_index,
        )
        flag = entries.get(conflict_key(self.name, self.value))
        rejected: list[Rejected] = []
        tree = KeyTree(
            key,
            parse_candidates(self.name, entries, rejected),
            parse_request(self.name, entries, rejected),
            flag.modify_index if flag is not None else 0,
            tuple(rejected),
            # For the leader's removal of entries of nodes gone for good; a bad one
            # is `status`'s to show (IGNORED), not a WARNING on every read.
            parse_members(self.name, entries),
        )
        warn_rejected(rejected)
        return tree

    def candidates(self, rejected: list[Rejected] | None = None) -> dict[str, Candidate]:
        """The live candidates. Entries that cannot be read are logged (once), or,
        given ``rejected``, added to it for the caller to report."""
        _, entries = self.adapter.get_prefix(candidates_prefix(self.name))
        found: list[Rejected] = []
        candidates = parse_candidates(self.name, entries, found)
        if rejected is None:
            warn_rejected(found)
        else:
            rejected.extend(found)
        return candidates

    def may_read_candidates(self) -> bool:
        """Whether the token may read the candidate entries (an empty answer is not
        an error in Consul: it filters what a token may not read). True when ACLs
        are off or the authorizer cannot tell."""
        try:
            answer = self.adapter.authorize(
                [{"Resource": "key", "Access": "read", "Segment": candidates_prefix(self.name)}]
            )
        except ConsulError:
            return True
        return answer is None or all(answer)

    def publish(
        self,
        session_id: str,
        priority: int,
        eligible: bool,
        why: str,
        node: str,
        settled: bool = True,
        vip: bool | None = None,
        vip_problem: str = "",
    ) -> bool:
        """This node's candidate entry, locked by its session (it goes with it)."""
        body: dict[str, object] = {
            "priority": priority,
            "eligible": eligible,
            "settled": settled,
            "why": why[:TEXT_LIMIT],  # all the others keep of it: the entry stays small
            "node": node,
            "host": socket.gethostname(),
            "vip": vip,  # whether this node has the VIP (null: not observed)
            "vip_problem": vip_problem[:TEXT_LIMIT],
        }
        return self.adapter.put_key(
            candidate_key(self.name, self.value), json.dumps(body).encode(), acquire=session_id
        )

    def report(self, body: dict[str, Any]) -> bool:
        """This node's member entry (no session: it stays when the session goes)."""
        payload = {"v": 1, **body, "host": socket.gethostname(), "at": round(time.time(), 3)}
        payload["why"] = str(payload.get("why", ""))[:TEXT_LIMIT]
        return self.adapter.put_key(member_key(self.name, self.value), json.dumps(payload).encode())

    def append_history(self, changes: Iterable[Change], attempts: int = 1) -> bool:
        """Add ``changes`` to ``<key>/history``, keeping the newest HISTORY_KEEP: read,
        append, write back with cas (another node appending at the same moment makes
        the write fail: read again). False when every attempt lost that race. The
        election thread makes one attempt per action (two calls at most: it must not
        be held up), and the decision core tries again after a backoff."""
        name = history_key(self.name)
        new = [_change_body(c) for c in changes]
        for _ in range(attempts):
            entry = self.adapter.get_key(name)
            rejected: list[Rejected] = []
            old = parse_history(self.name, {name: entry} if entry.exists else {}, rejected)
            warn_rejected(rejected)
            kept = ([_change_body(c) for c in old] + new)[-HISTORY_KEEP:]
            body = json.dumps({"v": 1, "changes": kept}).encode()
            if self.adapter.put_key(name, body, cas=entry.modify_index if entry.exists else 0):
                return True
        return False

    def members(self, rejected: list[Rejected] | None = None) -> dict[str, Member]:
        """Every member entry (one prefix read); bad ones go to ``rejected``."""
        _, entries = self.adapter.get_prefix(members_prefix(self.name))
        return parse_members(self.name, entries, rejected)

    def drop_member(self, value: str, modify_index: int) -> bool:
        """Delete the member entry of ``value`` if it is still at ``modify_index``
        (cas: a node that reported meanwhile keeps it). True once it is gone."""
        return self.adapter.delete_key(member_key(self.name, value), cas=modify_index)

    def history(self, rejected: list[Rejected] | None = None) -> list[Change]:
        entry = self.adapter.get_key(history_key(self.name))
        entries = {history_key(self.name): entry} if entry.exists else {}
        return parse_history(self.name, entries, rejected)

    def drop_entry(self, session_id: str) -> None:
        """Delete our candidate entry if ``session_id`` holds it, before that session
        is destroyed: destroying it would put the entry under lock-delay, and the
        next session could not publish for that long."""
        entry = self.adapter.get_key(candidate_key(self.name, self.value))
        if entry.session == session_id:
            self.adapter.delete_key(candidate_key(self.name, self.value), cas=entry.modify_index)

    def flag_conflict(self, session_id: str, rivals_: list[Rival]) -> bool:
        """Tell the leader that other nodes compete with our value (locked by our
        session: the flag goes with it). False when another session flagged it."""
        body = {"nodes": sorted({r.node for r in rivals_}), "host": socket.gethostname()}
        return self.adapter.put_key(
            conflict_key(self.name, self.value), json.dumps(body).encode(), acquire=session_id
        )

    def candidate_entry_holder(self) -> str | None:
        """The session holding this node's candidate entry, if any."""
        return self.adapter.get_key(candidate_key(self.name, self.value)).session

    def request_switchover(self, to: str, by: str) -> float:
        """Ask the leader to move the VIP; returns the request's time (its identity)."""
        at = time.time()
        body = {"to": to, "by": by, "at": at}
        self.adapter.put_key(switchover_key(self.name), json.dumps(body).encode())
        return at

    def refuse_request(self, request: SwitchoverRequest, reason: str) -> None:
        """Answer a request with why it is refused, for the asker to print at once
        (only if it is still the request we read: a newer one is not touched)."""
        body = {"to": request.to, "by": request.by, "at": request.at, "refused": reason}
        self.adapter.put_key(
            switchover_key(self.name), json.dumps(body).encode(), cas=request.modify_index
        )

    def drop_request(self, request: SwitchoverRequest) -> None:
        self.adapter.delete_key(switchover_key(self.name), cas=request.modify_index)

    def blank(self, session_id: str) -> TxnResult:
        """Empty the value while keeping the lock: vip-manager drops the VIP here
        (no node's trigger-value matches), nobody can take the key meanwhile."""
        return self.adapter.txn([self._lock(session_id, b"")])

    def hand_to(self, session_id: str, target: Candidate) -> TxnResult:
        """Move the lock from our session straight to ``target``'s session and value
        (one transaction: never free, no lock-delay). The request that asked for it
        is deleted after, at its own index: one that came meanwhile stays."""
        operations: list[dict[str, Any]] = [
            self._unlock(session_id),
            self._lock(target.session, target.value.encode()),
        ]
        return self.adapter.txn(operations)

    def _lock(self, session_id: str, value: bytes | None = None) -> dict[str, Any]:
        """A txn operation: lock the key for ``session_id`` with the lock flag and
        ``value`` (default: ours)."""
        content = self.value_bytes if value is None else value
        return {
            "KV": {
                "Verb": "lock",
                "Key": self.name,
                "Value": base64.b64encode(content).decode(),
                "Flags": LOCK_FLAG,
                "Session": session_id,
            }
        }

    def _unlock(self, session_id: str) -> dict[str, Any]:
        return {"KV": {"Verb": "unlock", "Key": self.name, "Session": session_id}}

    def is_our_content(self, key: KeyState) -> bool:
        return key.value == self.value_bytes and key.flags == LOCK_FLAG

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
            ours = self.is_our_content(key) or key.value in (None, b"")  # or our blank
            if key.session == session_id and not ours:
                # Held by our session, but not what we wrote: keep the value.
                self.unlock_keeping(key, session_id)
                return False
            if key.session == session_id:
                cas = key.modify_index
            elif key.exists:
                cas = None  # someone else's now: leave it alone
        except ConsulError as exc:
            self.release_failed = True
            log.debug("reading the trigger-key while stopping failed: %s", exc)
        if not cas:
            return False
        try:
            deleted = self.delete_at(cas)
        except ConsulError as exc:
            self.release_failed = True
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
