"""What the real Consul agent answers when things go wrong (Consul 1.14.5).

Recorded from the test bed's agents; ``tests/test_consul_errors.py`` provokes
each of them on a real agent and checks the answer still looks like this, so
the translation table tested in ``test_error_translation.py`` cannot drift
away from what Consul really says. ``{id}`` stands for a session or token id.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    name: str
    code: int
    body: str
    kind: str  # what vip_elector.consul_adapter.translate makes of it


ANSWERS = (
    Answer(
        "session create naming a missing check",
        500,
        "apply failed: Missing check 'nope' registration",
        "check",
    ),
    Answer(
        "session create naming a critical check",
        500,
        "apply failed: Check 'crit' is in critical state",
        "check",
    ),
    # 404 is "not_found" here; renew_session turns it into session_gone.
    Answer("renew of an unknown session", 404, "Session id '{id}' not found", "not_found"),
    Answer(
        "acquire with an unknown session",
        500,
        'raft apply failed: invalid session "{id}"',
        "session_gone",
    ),
    Answer(
        "session create with ACLs: the anonymous token",
        403,
        "Permission denied: token with AccessorID '{id}' lacks permission 'session:write' on "
        '"node"',
        "permission",
    ),
    Answer("a token Consul does not know", 403, "ACL not found", "token_unknown"),
    Answer("ACL endpoints with ACLs disabled", 401, "ACL support disabled", "error"),
    Answer("no Consul leader (during an election)", 500, "No cluster leader", "no_leader"),
    Answer(
        "session create with a TTL out of range",
        500,
        "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]",
        "server_error",
    ),
)
