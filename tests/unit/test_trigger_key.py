"""The trigger-key lock rules: blocking-query indexes, ownership, foreign keys, names."""

from __future__ import annotations

import pytest

from vip_elector.decision import ownership_problem
from vip_elector.key_entries import (
    LOCK_FLAG,
    KeyState,
    is_foreign,
    next_index,
    not_a_lock_message,
)
from vip_elector.roles import Cause
from vip_elector.trigger_key import (
    parse_session_name,
    session_name,
)

OURS = "11111111-1111-1111-1111-111111111111"
THEIRS = "22222222-2222-2222-2222-222222222222"


def held(session: str | None = OURS, value: bytes = b"node-a", flags: int = LOCK_FLAG) -> KeyState:
    return KeyState(
        index=42, exists=True, value=value, flags=flags, session=session, modify_index=40
    )


@pytest.mark.parametrize(
    ("previous", "answered", "expected"),
    [
        (0, 5, 5),  # first answer
        (5, 9, 9),  # moved on
        (5, 5, 5),  # a timeout: same index again
        (9, 5, 0),  # went backwards (snapshot restore, new Consul leader): start over
        (5, 0, 0),  # never send an index < 1 as a real index
        (0, 0, 0),
    ],
)
def test_next_index_follows_consuls_rules(previous: int, answered: int, expected: int) -> None:
    assert next_index(previous, answered) == expected


def test_our_key_is_ours() -> None:
    assert ownership_problem(held(), OURS, b"node-a") is None


@pytest.mark.parametrize(
    ("key", "cause", "words"),
    [
        (KeyState(index=7, exists=False), Cause.KEY_DELETED, "deleted"),
        (held(session=THEIRS), Cause.KEY_TAKEN, THEIRS),
        (held(session=None), Cause.KEY_TAKEN, "nobody"),
        (held(value=b"node-b"), Cause.KEY_CHANGED, "'node-b'"),
        (held(flags=0), Cause.KEY_CHANGED, "flags=0"),
    ],
)
def test_why_a_key_is_no_longer_ours(key: KeyState, cause: Cause, words: str) -> None:
    problem = ownership_problem(key, OURS, b"node-a")
    assert problem is not None
    assert problem[0] == cause
    assert words in problem[1]


def test_a_plain_key_is_foreign_and_the_message_says_how_to_fix_it() -> None:
    assert is_foreign(held(flags=0))
    assert not is_foreign(held())
    assert not is_foreign(KeyState(index=1, exists=False))
    message = not_a_lock_message("service/x/vip", 0)
    assert message.startswith(
        "trigger-key pre-flight check failed: existing key at 'service/x/vip' is a regular KV "
        "entry (Flags=0), not a lock key (expected Flags=3304740253564472344)"
    )
    assert "consul kv delete service/x/vip" in message


def test_session_names_round_trip() -> None:
    name = session_name("host-1.example", "node a", "service/x/vip")
    assert name == "vip-elector@host-1.example value=node a key=service/x/vip"
    candidacy = parse_session_name(name)
    assert candidacy is not None
    assert (candidacy.host, candidacy.value, candidacy.key) == (
        "host-1.example",
        "node a",
        "service/x/vip",
    )
    assert parse_session_name("vip-elector check-config 1234") is None
    assert parse_session_name("consul-lock") is None
