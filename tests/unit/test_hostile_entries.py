"""Entries under the trigger-key's prefix are written by whoever may write there.

Anybody with write access under the key's prefix (a `switchover` user, any
session) can put anything in a candidate entry or a switchover request; each
of these bodies once stopped every daemon that read it (RecursionError,
OverflowError) or wrote what it liked into their logs. Each is now left out
with the reason, and every string that is kept is bounded and escaped.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import consul
import consul.base
import pytest

from vip_elector.consul_adapter import _expect_ok, translate
from vip_elector.decision import ownership_problem
from vip_elector.key_entries import Candidate, Change, KeyState, Member, Rejected
from vip_elector.node_watch import maintenance_reason
from vip_elector.trigger_key import (
    ENTRY_LIMIT,
    candidate_key,
    history_key,
    member_key,
    parse_candidates,
    parse_history,
    parse_members,
    parse_request,
    rival_message,
    rivals,
    session_name,
    switchover_key,
    warn_rejected,
)

KEY = "service/x/vip"
SESSION = "11111111-1111-1111-1111-111111111111"
GOOD = json.dumps({"priority": 150, "eligible": True, "why": "", "node": "n-a"}).encode()

HOSTILE_CANDIDATES = {
    "priority 1e400 (inf)": (b'{"priority": 1e400}', "priority"),
    "priority NaN": (b'{"priority": NaN}', "priority"),
    "priority -Infinity": (b'{"priority": -Infinity}', "priority"),
    "priority 300": (b'{"priority": 300}', "priority"),
    "priority -1": (b'{"priority": -1}', "priority"),
    "priority 2.5": (b'{"priority": 2.5}', "priority"),
    "priority true": (b'{"priority": true}', "priority"),
    "priority as a string": (b'{"priority": "100"}', "priority"),
    "priority of 5000 digits": (b'{"priority": ' + b"9" * 5000 + b"}", "not JSON"),
    "nested 10,000 deep": (b"[" * 10_000, "nested too deeply"),
    "nested 50,000 deep": (b"[" * 50_000, "more than"),
    "a list": (b"[1, 2]", "not an object"),
    "a string": (b'"x"', "not an object"),
    "not UTF-8": (b'{"why": "\xff\xfe"}', "not JSON"),
    "not JSON": (b"{priority: 1", "not JSON"),
    "eligible as a string": (b'{"eligible": "no"}', "eligible"),
    "why as a number": (b'{"why": 5}', "why"),
    "node as a list": (b'{"node": ["a"]}', "node"),
    "vip as a string": (b'{"vip": "yes"}', "`vip`"),
    "vip_problem as a number": (b'{"vip_problem": 5}', "vip_problem"),
}


def entry(value: bytes, session: str | None = SESSION, index: int = 7) -> KeyState:
    return KeyState(index=9, exists=True, value=value, session=session, modify_index=index)


def test_an_entry_of_an_older_version_says_nothing_about_the_vip() -> None:
    newer = json.dumps({"vip": False, "vip_problem": "leader without its VIP"}).encode()
    found = parse_candidates(
        KEY,
        {candidate_key(KEY, "old"): entry(GOOD), candidate_key(KEY, "new"): entry(newer, index=8)},
    )
    assert (found["old"].vip, found["old"].vip_problem) == (None, "")
    assert (found["new"].vip, found["new"].vip_problem) == (False, "leader without its VIP")


@pytest.mark.parametrize("name", sorted(HOSTILE_CANDIDATES))
def test_a_hostile_candidate_entry_is_left_out_with_the_reason(name: str) -> None:
    body, words = HOSTILE_CANDIDATES[name]
    entries = {
        candidate_key(KEY, "bad"): entry(body),
        candidate_key(KEY, "good"): entry(GOOD, index=8),
    }
    rejected: list[Rejected] = []
    found = parse_candidates(KEY, entries, rejected)
    assert list(found) == ["good"]  # the others are still read
    assert found["good"].priority == 150
    assert [(r.what, r.entry, r.modify_index) for r in rejected] == [
        ("candidate entry", candidate_key(KEY, "bad"), 7)
    ]
    assert words in rejected[0].reason
    assert len(rejected[0].reason) < 200  # our words, not the entry's content


def test_without_a_list_for_them_bad_entries_are_still_left_out_silently() -> None:
    entries = {candidate_key(KEY, "bad"): entry(b'{"priority": 1e400}')}
    assert parse_candidates(KEY, entries) == {}


def test_a_candidate_value_that_is_not_a_lock_value_is_left_out() -> None:
    entries = {
        candidate_key(KEY, "a\x1b[31mb"): entry(GOOD),
        candidate_key(KEY, "x" * 600): entry(GOOD),
    }
    rejected: list[Rejected] = []
    assert parse_candidates(KEY, entries, rejected) == {}
    assert len(rejected) == 2
    assert all("not a lock value" in r.reason for r in rejected)
    assert all("\x1b" not in r.entry and len(r.entry) < 260 for r in rejected)


def test_the_text_of_a_candidate_is_kept_bounded_and_escaped() -> None:
    body = json.dumps({"why": "\x1b[31mLOCK LOST\n" + "w" * 300_000, "node": "n\r\n-b"}).encode()
    assert len(body) > ENTRY_LIMIT  # too large: left out altogether
    assert parse_candidates(KEY, {candidate_key(KEY, "b"): entry(body)}) == {}
    body = json.dumps({"why": "\x1b[31mLOCK LOST\n" + "w" * 1000, "node": "n\r\n-b"}).encode()
    found = parse_candidates(KEY, {candidate_key(KEY, "b"): entry(body)})
    candidate = found["b"]
    assert candidate.why.startswith("\\x1b[31mLOCK LOST\\n")
    assert candidate.why.endswith("characters)")
    assert len(candidate.why) < 250
    assert candidate.node == "n\\r\\n-b"
    assert candidate == Candidate("b", SESSION, 100, True, candidate.why, "n\\r\\n-b")


NOW = time.time()
HOSTILE_REQUESTS = {
    "nested 50,000 deep": (b"[" * 50_000, "more than"),
    "nested 10,000 deep": (b"[" * 10_000, "nested too deeply"),
    "at 1e400": (b'{"to": "b", "at": 1e400, "by": "x"}', "`at`"),
    "at NaN": (b'{"to": "b", "at": NaN}', "`at`"),
    "at missing": (b'{"to": "b"}', "`at`"),
    "at true": (b'{"to": "b", "at": true}', "`at`"),
    "to missing": (f'{{"at": {NOW}}}'.encode(), "`to`"),
    "to a number": (f'{{"to": 5, "at": {NOW}}}'.encode(), "`to`"),
    "to with an escape": (
        json.dumps({"to": "b\x1b[2J", "at": NOW}).encode(),
        "`to` is not a lock value",
    ),
    "by a list": (json.dumps({"to": "b", "at": NOW, "by": []}).encode(), "`by`"),
    "a list": (b"[]", "not an object"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_REQUESTS))
def test_a_hostile_switchover_request_is_a_stale_one_the_leader_drops(name: str) -> None:
    body, words = HOSTILE_REQUESTS[name]
    rejected: list[Rejected] = []
    request = parse_request(KEY, {switchover_key(KEY): entry(body, session=None)}, rejected)
    assert request is not None
    assert (request.to, request.modify_index) == ("", 7)
    assert not request.fresh(time.time())  # so the leader refuses and deletes it
    assert [(r.what, r.entry) for r in rejected] == [("switchover request", switchover_key(KEY))]
    assert words in rejected[0].reason


def test_who_asked_for_a_switchover_is_kept_bounded_and_escaped() -> None:
    forged = "\x1b[31m\x08*** LOCK LOST ***\n" + "y" * 300_000
    body = json.dumps({"to": "node-b", "at": NOW, "by": forged[:5000]}).encode()
    request = parse_request(KEY, {switchover_key(KEY): entry(body, session=None)})
    assert request is not None
    assert (request.to, request.at) == ("node-b", NOW)
    assert request.fresh(time.time())
    assert request.by.startswith("\\x1b[31m\\x08*** LOCK LOST ***\\n")
    assert "\x1b" not in request.by
    assert "\n" not in request.by
    assert len(request.by) < 250


def test_a_good_request_reads_as_written() -> None:
    body = json.dumps({"to": "any", "at": NOW, "by": "host-1"}).encode()
    request = parse_request(KEY, {switchover_key(KEY): entry(body, session=None)})
    assert request is not None
    assert (request.to, request.by, request.at, request.modify_index) == ("any", "host-1", NOW, 7)
    assert parse_request(KEY, {}) is None


def test_a_bad_entry_is_one_warning_not_one_per_read(caplog: pytest.LogCaptureFixture) -> None:
    name = f"service/{uuid.uuid4().hex}/vip/candidates/bad\x1b[31m"
    bad = Rejected("candidate entry", name, 7, "`priority` is not a whole number from 0 to 255")
    with caplog.at_level(logging.WARNING, logger="vip_elector"):
        for _ in range(50):  # the leader's watch returns several times a second
            warn_rejected([bad])
        warn_rejected([Rejected(bad.what, bad.entry, 8, bad.reason)])  # written again
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "ignored the candidate entry" in lines[0]
    assert "`priority` is not a whole number from 0 to 255" in lines[0]
    assert "consul kv delete" in lines[0]


# -- every other string from Consul that reaches a log line ----------------------------------------

FORGED = "\x1b[31m\x08*** LOCK LOST ***\n"


def test_an_error_body_from_consul_or_a_proxy_is_escaped_and_bounded() -> None:
    body = FORGED + "<html>" + "x" * 300_000
    response = consul.base.Response(502, {}, body)
    with pytest.raises(consul.ConsulException) as caught:
        _expect_ok(response)
    error = translate(caught.value)
    assert error.kind == "server_error"
    message = str(error)
    assert "\\x1b[31m\\x08*** LOCK LOST ***\\n<html>" in message
    assert "\x1b" not in message
    assert "\n" not in message
    assert len(message) < 600


def test_a_value_written_into_our_lock_is_shown_bounded() -> None:
    key = KeyState(
        index=9, exists=True, value=(FORGED + "v" * 300_000).encode(), session=SESSION, flags=0
    )
    problem = ownership_problem(key, SESSION, b"node-a")
    assert problem is not None
    assert "\x1b" not in problem[1]
    assert len(problem[1]) < 250


def test_a_rivals_node_name_is_escaped() -> None:
    session = {
        "ID": "s-2",
        "Node": FORGED + "n" * 1000,
        "Name": session_name("host-2", "node-a", KEY),
        "CreateIndex": 5,
    }
    (rival,) = rivals([session], KEY, "node-a", own_node="node-1")
    message = rival_message(KEY, "node-a", [rival])
    assert "\\x1b[31m" in message
    assert "\x1b" not in message
    assert len(message) < 600


def test_the_reason_given_for_consul_maintenance_is_escaped() -> None:
    checks = [{"CheckID": "_node_maintenance", "Notes": FORGED + "because"}]
    reason = maintenance_reason(checks, "web")
    assert reason is not None
    assert reason.startswith("the node is in Consul maintenance mode (\\x1b[31m")
    assert "\x1b" not in reason
    assert "\n" not in reason


# -- member entries and the history (no session: anybody who may write there may forge them) --

MEMBER = {
    "v": 1,
    "state": "fault",
    "priority": 150,
    "eligible": False,
    "why": "check 'web' is critical",
    "node": "n-a",
    "host": "h-a",
    "session": "",
    "at": NOW,
    "heartbeat": 60,
}
HOSTILE_MEMBERS: dict[str, tuple[dict[str, object], str]] = {
    "state unknown": ({"state": "king"}, "`state`"),
    "state a number": ({"state": 1}, "`state`"),
    "state a list (unhashable)": ({"state": []}, "`state`"),
    "state a mapping (unhashable)": ({"state": {}}, "`state`"),
    "eligible a string": ({"eligible": "yes"}, "`eligible`"),
    "priority 1e400": ({"priority": 1e400}, "priority"),
    "at NaN": ({"at": float("nan")}, "`at`"),
    "at missing": ({"at": None}, "`at`"),
    "at far in the future": ({"at": 1e300}, "`at`"),
    "heartbeat 0": ({"heartbeat": 0}, "`heartbeat`"),
    "heartbeat true": ({"heartbeat": True}, "`heartbeat`"),
    "why a list": ({"why": []}, "`why`"),
}


def member_body(**changes: object) -> bytes:
    return json.dumps({**MEMBER, **changes}).encode()


@pytest.mark.parametrize("name", sorted(HOSTILE_MEMBERS))
def test_a_hostile_member_entry_is_left_out_with_the_reason(name: str) -> None:
    changes, words = HOSTILE_MEMBERS[name]
    entries = {
        member_key(KEY, "bad"): entry(member_body(**changes), session=None),
        member_key(KEY, "good"): entry(member_body(), session=None, index=8),
    }
    rejected: list[Rejected] = []
    found = parse_members(KEY, entries, rejected)
    assert list(found) == ["good"]
    assert found["good"] == Member(
        "good", "fault", 150, False, "check 'web' is critical", "n-a", "h-a", "", NOW, 60.0, 8
    )
    assert [(r.what, r.entry, r.modify_index) for r in rejected] == [
        ("member entry", member_key(KEY, "bad"), 7)
    ]
    assert words in rejected[0].reason
    assert len(rejected[0].reason) < 200


@pytest.mark.parametrize(
    "body",
    [b"[" * 50_000, b"[" * 10_000, b'{"priority": ' + b"9" * 5000 + b"}", b"\xff", b"[]"],
    ids=["huge", "deep", "long number", "not UTF-8", "a list"],
)
def test_a_member_entry_that_is_not_json_is_left_out(body: bytes) -> None:
    rejected: list[Rejected] = []
    assert parse_members(KEY, {member_key(KEY, "x"): entry(body, session=None)}, rejected) == {}
    assert len(rejected) == 1


def test_the_text_of_a_member_entry_is_bounded_and_escaped() -> None:
    body = member_body(why=FORGED + "w" * 1000, node="n\r\n-b", session="s" * 500)
    member = parse_members(KEY, {member_key(KEY, "b"): entry(body, session=None)})["b"]
    assert "\x1b" not in member.why
    assert "\n" not in member.why
    assert len(member.why) < 250
    assert len(member.session) < 100
    assert member.node == "n\\r\\n-b"
    bad_name = {member_key(KEY, "a\x1b[31m"): entry(member_body(), session=None)}
    rejected: list[Rejected] = []
    assert parse_members(KEY, bad_name, rejected) == {}
    assert "not a lock value" in rejected[0].reason
    assert "\x1b" not in rejected[0].entry


def change(**changes: object) -> dict[str, object]:
    return {"at": NOW, "from": "a", "to": "b", "cause": "switchover", "by": "n-a", **changes}


HOSTILE_HISTORIES = {
    "deep": (b"[" * 50_000, "more than"),
    "changes not a list": (json.dumps({"changes": {"a": 1}}).encode(), "`changes`"),
    "too many changes": (json.dumps({"changes": [{}] * 401}).encode(), "`changes`"),
    "a change not an object": (json.dumps({"changes": [1]}).encode(), "not a JSON object"),
    "at inf": (json.dumps({"changes": [change(at=1e400)]}).encode(), "`at`"),
    "at a string": (json.dumps({"changes": [change(at="now")]}).encode(), "`at`"),
    "to with an escape": (json.dumps({"changes": [change(to="b\x1b[2J")]}).encode(), "`to`"),
    "from a number": (json.dumps({"changes": [change(**{"from": 3})]}).encode(), "`from`"),
    "cause a list": (json.dumps({"changes": [change(cause=[])]}).encode(), "`cause`"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_HISTORIES))
def test_a_hostile_history_is_read_as_empty_with_the_reason(name: str) -> None:
    body, words = HOSTILE_HISTORIES[name]
    rejected: list[Rejected] = []
    assert parse_history(KEY, {history_key(KEY): entry(body, session=None)}, rejected) == []
    assert [(r.what, r.entry) for r in rejected] == [("history", history_key(KEY))]
    assert words in rejected[0].reason


def test_a_good_history_reads_as_written_with_its_text_escaped() -> None:
    body = json.dumps(
        {"changes": [change(), change(to=None, cause="session_lost", detail=FORGED + "d" * 500)]}
    ).encode()
    changes = parse_history(KEY, {history_key(KEY): entry(body, session=None)})
    assert changes[0] == Change(NOW, "a", "b", "switchover", "n-a", "")
    assert changes[1].to_value is None
    assert "\x1b" not in changes[1].detail
    assert len(changes[1].detail) < 160
