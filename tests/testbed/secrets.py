"""Checking that a secret (an ACL token) was never written anywhere."""

from __future__ import annotations


def assert_no_secret(secret: str, *texts: str) -> None:
    """``secret`` appears in none of ``texts`` (logs, outputs, a hook's environment),
    not even in part: neither its first nor its second half."""
    halves = (secret, secret[: len(secret) // 2], secret[len(secret) // 2 :])
    for text in texts:
        for part in halves:
            assert part not in text, "a secret was written out"
