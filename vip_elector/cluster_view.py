"""Every node of the key as a table (`vip-elector status`), and the key's history
(`vip-elector history`).

The rows come from the member entries under the key's prefix (each daemon
writes its own, not tied to its session: a node in FAULT, in maintenance or
without a session is still there, and one that stopped reporting shows when it
last did), joined with the vip-elector sessions that compete for the key (a
node of a version without member entries still has a row). A column is a
header and a function of the row: one more column is one more line in
COLUMNS.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vip_elector.consul_adapter import ConsulAdapter, ConsulError
from vip_elector.key_entries import Candidate, Change, KeyState, Member, Rejected
from vip_elector.settings import Settings
from vip_elector.trigger_key import TriggerKey, parse_session_name

EXIT_OK, EXIT_ERROR = 0, 2
WATCH_INTERVAL = 2.0  # `status --watch` without an interval, as `patronictl list -W`


def when(wall: float | None) -> str:
    """A wall-clock time for a table cell (local time, as `date` shows it)."""
    if wall is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall))


def member_rows(
    key_name: str,
    key: KeyState,
    members: Mapping[str, Member],
    entries: Mapping[str, Candidate],
    sessions: Iterable[dict[str, Any]],
    now: float,
) -> list[dict[str, Any]]:
    """One row per node competing for ``key_name`` or reporting about it, by node."""
    live: dict[str, dict[str, Any]] = {}  # lock value -> its vip-elector session
    for item in sessions:
        candidacy = parse_session_name(str(item.get("Name", "")))
        if candidacy is not None and candidacy.key == key_name:
            live[candidacy.value] = item
    rows = []
    for value in sorted(set(members) | set(live)):
        member, session = members.get(value), live.get(value)
        session_id = str(session.get("ID")) if session is not None else None
        entry = entries.get(value)
        leader = bool(key.session) and key.session in (session_id, member and member.session)
        node = str(session.get("Node")) if session is not None else ""
        row: dict[str, Any] = {
            "node": (member.node if member else "") or node,
            "value": value,
            "leader": leader,
            "session": session_id,
            "state": "unknown",
            "priority": None,
            "eligible": None,
            "why_not": "",
            "last_report": None,
            "reporting": None,
        }
        if member is not None:
            silent = member.silent_since(now)
            row.update(
                state=member.state,
                priority=member.priority,
                eligible=member.eligible and not silent,
                why_not=member.why,
                last_report=member.at,
                reporting=silent is None,
            )
            if member.state in ("follower", "leader") and member.session != session_id:
                # It says it has a session, and Consul has none of it: it died, or
                # its report is older than the loss.
                row.update(
                    state="no session",
                    eligible=False,
                    why_not=member.why
                    or "Consul has no session of it (its node, agent or daemon failed)",
                )
        elif entry is not None and entry.session == session_id:
            # A daemon that writes no member entry (an older version): its candidacy.
            row.update(
                state="leader" if leader else "follower",
                priority=entry.priority,
                eligible=entry.eligible,
                why_not=entry.why,
            )
        elif session is not None:
            row.update(state="leader" if leader else "follower")
        rows.append(row)
    return sorted(rows, key=lambda r: (r["node"], r["value"]))


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[dict[str, Any]], str]


def _state(row: dict[str, Any]) -> str:
    if row["reporting"] is False:
        return f"no report since {when(row['last_report'])} (last said: {row['state']})"
    return str(row["state"]).upper() if row["state"] == "fault" else str(row["state"])


def _yes_no(flag: object) -> str:
    return "-" if flag is None else "yes" if flag else "no"


COLUMNS = (
    Column("NODE", lambda r: str(r["node"] or "?")),
    Column("VALUE", lambda r: str(r["value"])),
    Column("ROLE", lambda r: "Leader" if r["leader"] else "Replica"),
    Column("STATE", _state),
    Column("PRIORITY", lambda r: "-" if r["priority"] is None else str(r["priority"])),
    Column("ELIGIBLE", lambda r: _yes_no(r["eligible"])),
    Column("WHY NOT", lambda r: str(r["why_not"] or "")),
    Column("REPORTED", lambda r: when(r["last_report"])),
)


def table(rows: Iterable[dict[str, Any]], columns: Iterable[Column], title: str) -> str:
    """A boxed table, as patronictl prints one."""
    columns = list(columns)
    cells = [[c.header for c in columns]] + [[c.cell(r) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    top = f"+ {title} "
    top = top + "-" * max(0, len(rule) - len(top) - 1) + "+"

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    out = [top, line(cells[0]), rule, *(line(c) for c in cells[1:]), rule]
    return "\n".join(out)


def watch(
    once: Callable[[], tuple[int, str]], interval: float, clear: bool, header: bool = True
) -> int:
    """Print ``once()``'s report every ``interval`` until Ctrl-C (then its last exit
    status), as `patronictl list -W` does; ``header``: the time above each (not
    for JSON, one document per line)."""
    code = EXIT_ERROR
    try:
        while True:
            code, text = once()
            if clear:
                sys.stdout.write("\033[H\033[J")
            if header:
                print(f"{when(time.time())} (every {interval:g}s, Ctrl-C to stop)")
            print(text, flush=True)
            time.sleep(interval)
    except KeyboardInterrupt:
        print(flush=True)
        return code


# -- history ----------------------------------------------------------------------------

HISTORY_COLUMNS = (
    Column("WHEN", lambda r: when(r["at"])),
    Column("FROM", lambda r: str(r["from"] or "-")),
    Column("TO", lambda r: str(r["to"] or "-")),
    Column("CAUSE", lambda r: str(r["cause"])),
    Column("RECORDED BY", lambda r: str(r["by"])),
    Column("DETAIL", lambda r: str(r["detail"])),
)


def history_rows(changes: Iterable[Change]) -> list[dict[str, Any]]:
    return [
        {
            "at": c.at,
            "from": c.from_value,
            "to": c.to_value,
            "cause": c.cause,
            "by": c.by,
            "detail": c.detail,
        }
        for c in sorted(changes, key=lambda c: c.at)
    ]


def run_history(settings: Settings, as_json: bool) -> int:
    """`vip-elector history`: the key's last changes of holder, oldest first."""
    rejected: list[Rejected] = []
    try:
        with ConsulAdapter(settings.consul) as adapter:
            changes = TriggerKey(adapter, settings.trigger_key, settings.lock_value).history(
                rejected
            )
    except ConsulError as exc:
        if as_json:
            print(json.dumps({"error": str(exc), "kind": exc.kind}))
        else:
            print(f"vip-elector history: {exc}", file=sys.stderr)
        return EXIT_ERROR
    rows = history_rows(changes)
    ignored = [{"entry": r.entry, "reason": r.reason} for r in rejected]
    if as_json:
        print(json.dumps({"key": settings.trigger_key, "changes": rows, "ignored": ignored}))
        return EXIT_OK
    if not rows:
        print(f"no change of {settings.trigger_key}'s holder recorded yet")
    else:
        print(table(rows, HISTORY_COLUMNS, f"History: {settings.trigger_key}"))
    for item in ignored:
        print(f"IGNORED       {item['entry']}: {item['reason']}")
    return EXIT_OK
