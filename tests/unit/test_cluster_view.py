"""`vip-elector status`'s table of every node: a node in FAULT, without a session
or silent is listed, with why (issue 24.4)."""

from __future__ import annotations

from typing import Any

from vip_elector.cluster_view import COLUMNS, member_rows, table
from vip_elector.key_entries import LOCK_FLAG, Candidate, KeyState, Member
from vip_elector.trigger_key import session_name

KEY = "svc/vip"
NOW = 1_800_000_000.0
HELD = KeyState(9, True, b"a", LOCK_FLAG, "s-a", modify_index=9)


def session(value: str, node: str) -> dict[str, object]:
    return {"ID": f"s-{value}", "Node": node, "Name": session_name(f"h-{value}", value, KEY)}


def member(value: str, state: str, eligible: bool, why: str = "", at: float = NOW) -> Member:
    live = f"s-{value}" if state in ("leader", "follower") else ""
    return Member(value, state, 100, eligible, why, f"n-{value}", f"h-{value}", live, at, 60.0)


def rows() -> list[dict[str, Any]]:
    members = {
        "a": member("a", "leader", True),
        "b": member("b", "fault", False, "check 'web' is critical"),
        "c": member("c", "follower", True, at=NOW - 600),  # its daemon died
        "d": member("d", "stopped", False, "stopped cleanly"),
    }
    entries = {"e": Candidate("e", "s-e", 120, True)}  # an older version: no member entry
    sessions = [session("a", "n-a"), session("e", "n-e"), session("x", "n-x")]
    sessions[-1]["Name"] = session_name("h-x", "x", "other/key")
    return member_rows(KEY, HELD, members, entries, sessions, NOW)


def test_every_node_is_a_row_whatever_its_state() -> None:
    found = {r["value"]: r for r in rows()}
    assert sorted(found) == ["a", "b", "c", "d", "e"]  # not x: another key
    assert (found["a"]["state"], found["a"]["leader"]) == ("leader", True)
    assert found["b"]["state"] == "fault"
    assert found["b"]["why_not"] == "check 'web' is critical"
    assert found["b"]["eligible"] is False
    assert found["c"]["reporting"] is False  # ten heartbeats missed
    assert found["c"]["eligible"] is False
    assert found["d"]["state"] == "stopped"
    assert (found["e"]["state"], found["e"]["priority"]) == ("follower", 120)


def test_the_table_says_fault_and_silence_in_words() -> None:
    text = table(rows(), COLUMNS, f"Key: {KEY}")
    lines = text.splitlines()
    assert lines[0].startswith("+ Key: svc/vip ")
    assert "| NODE " in lines[1]
    assert "WHY NOT" in lines[1]
    (b_line,) = [line for line in lines if "| n-b " in line]
    assert "FAULT" in b_line
    assert "check 'web' is critical" in b_line
    (c_line,) = [line for line in lines if "| n-c " in line]
    assert "no report since" in c_line
    assert len({len(line) for line in lines}) == 1  # a box


def test_a_follower_whose_session_is_gone_says_no_session() -> None:
    members = {"b": member("b", "follower", True)}
    (row,) = member_rows(KEY, HELD, members, {}, [], NOW)
    assert (row["state"], row["eligible"]) == ("no session", False)
    assert "Consul has no session of it" in row["why_not"]
