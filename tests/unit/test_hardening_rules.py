"""Pure rules behind the hardening: ids, rivals, tokens, escaping, hook environments,
and the index reset after a failed read (a fake at the adapter boundary: a real
agent cannot be made to reset its index on demand)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.unit.settings_factory import make_settings
from vip_elector.consul_adapter import Unavailable
from vip_elector.consul_settings import token_problem
from vip_elector.key_entries import KeyState
from vip_elector.key_watch import KeyWatch
from vip_elector.liveness import liveness_ids
from vip_elector.logs import untrusted
from vip_elector.notify import hook_environment
from vip_elector.retrying import Retrier
from vip_elector.roles import Cause, Role
from vip_elector.runtime_dir import instance_id
from vip_elector.state import DaemonState, Transition
from vip_elector.trigger_key import TriggerKey, node_of, rivals, session_name


def test_instance_ids_are_unambiguous() -> None:
    assert instance_id("a/b-c", "d") != instance_id("a/b", "c-d")
    assert liveness_ids("a/b-c", "d") != liveness_ids("a/b", "c-d")
    assert instance_id("k", "v") == instance_id("k", "v")


def candidate(session: str, node: str, value: str, key: str = "k") -> dict[str, Any]:
    return {"ID": session, "Node": node, "Name": session_name("h", value, key), "CreateIndex": 1}


def test_rivals_are_other_nodes_with_our_key_and_value() -> None:
    sessions = [
        candidate("ours", "node-a", "v"),
        candidate("ours-old", "node-a", "v"),  # ending: same node, not a rival
        candidate("copy", "node-b", "v"),
        candidate("other-value", "node-c", "w"),
        candidate("other-key", "node-d", "v", key="k2"),
        {"ID": "x", "Node": "node-e", "Name": "consul-lock"},
    ]
    found = rivals(sessions, "k", "v", node_of(sessions, "ours"))
    assert [r.node for r in found] == ["node-b"]
    assert rivals(sessions, "k", "w", "node-c") == []


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("", "empty"),
        ("abc\n# comment", "more than one line"),
        ("abc def", "space"),
        ("abc\x00", "not printable ASCII"),
        ("abc☃", "not printable ASCII"),
    ],
)
def test_a_token_must_be_one_line_of_printable_ascii(token: str, words: str) -> None:
    problem = token_problem(token)
    assert problem is not None
    assert words in problem
    assert token.strip() == "" or token.split(maxsplit=1)[0] not in problem


def test_a_uuid_token_is_fine() -> None:
    assert token_problem("d6b0c3a1-2f1e-4c55-9d7a-0e6f1c2b3a4d") is None


def test_untrusted_text_is_escaped_and_cut() -> None:
    assert untrusted("a\nb\x1b[31m") == "a\\nb\\x1b[31m"
    assert untrusted("x" * 300, 10) == "x" * 10 + "...(+290 characters)"


def test_the_hook_environment_drops_the_token_by_name_and_by_value() -> None:
    change = Transition(Role.FOLLOWER, Role.LEADER, Cause.ACQUIRED, "", 0.0, "k", "v", "s")
    env = hook_environment(
        {
            "PATH": "/bin",
            "CONSUL_HTTP_TOKEN": "whatever",
            "VIP_ELECTOR_OPTS": "--log-level=INFO --token=s3cr3t-token",
            "CONSUL_HTTP_TOKEN_FILE": "/etc/vip-elector/token",
        },
        ("s3cr3t-token",),
        change,
    )
    assert "s3cr3t" not in repr(env)
    assert "CONSUL_HTTP_TOKEN" not in env
    assert env["CONSUL_HTTP_TOKEN_FILE"] == "/etc/vip-elector/token"  # a path is no secret
    assert env["VIP_ELECTOR_STATE"] == "LEADER"


class FakeAdapter:
    """Records the index of every key read; the first read fails."""

    timeout = 5.0

    def __init__(self) -> None:
        self.indexes: list[int | None] = []

    def get_key(self, key: str, index: int | None = None, **_: Any) -> KeyState:
        self.indexes.append(index)
        if len(self.indexes) == 1:
            raise Unavailable("No cluster leader", "no_leader")
        return KeyState(index=3, exists=False)


def test_after_a_failed_blocking_read_the_next_read_does_not_block() -> None:
    settings = make_settings()
    state = DaemonState("k", "v")
    stop = threading.Event()
    adapter = FakeAdapter()
    watch = KeyWatch(
        TriggerKey(adapter, "k", "v"),  # type: ignore[arg-type]
        state,
        stop,
        Retrier(stop, settings.consul.address, "k"),
        lambda _: None,
        fence_bound=0.0,
    )
    read = watch._read(1234, leader=False, wait=60.0)
    assert read.key.index == 3
    # The failed read used the old index; the retry reads at once (no index).
    assert adapter.indexes == [1234, None]
