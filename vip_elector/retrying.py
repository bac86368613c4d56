"""Retrying Consul calls: capped, jittered backoff that a stop interrupts at once.

Transient trouble (agent unreachable, timeouts, "No cluster leader") is
retried quickly and logged as a WARNING; trouble that needs a person
(permission denied, TLS rejected) is retried slowly, logged as an ERROR that
says what to fix, and never turns into a crash loop.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TypeVar

import tenacity

from vip_elector.consul_adapter import (
    AuthenticationRequired,
    ConsulError,
    PermissionDenied,
    SessionGone,
    TLSFailure,
    TokenUnknown,
    Unavailable,
)

log = logging.getLogger("vip_elector")

T = TypeVar("T")

NEEDS_A_PERSON_MAX_WAIT = 30.0


def needs_a_person(error: BaseException | None) -> bool:
    """Retrying alone will not fix it: a wrong token, TLS setting or proxy password."""
    return isinstance(error, PermissionDenied | TLSFailure | AuthenticationRequired)


def backoff(attempt: int, initial: float, cap: float) -> float:
    """Exponential from ``initial`` plus up to ``initial`` of jitter, capped at ``cap``.

    (tenacity's wait_exponential_jitter does the same, but renamed its
    arguments between Debian's 8.2 and PyPI's 9.x.)
    """
    exponential = initial * 2.0 ** min(attempt - 1, 30)
    jitter = random.uniform(0, initial)  # noqa: S311 - jitter, not crypto
    return min(cap, exponential + jitter)


class Interrupted(Exception):
    """The retry loop stopped because the caller no longer wants the result."""


def advice(error: ConsulError, address: str, trigger_key: str) -> str:
    """What an operator should do about ``error``."""
    if isinstance(error, TokenUnknown):
        return (
            "the token is mistyped, was deleted or has expired (this is not a missing "
            "right): check the token file or CONSUL_HTTP_TOKEN, and `consul acl token "
            "read -self` with it"
        )
    if isinstance(error, PermissionDenied):
        return (
            f'the ACL token lacks a right; vip-elector needs `session_prefix "" '
            f'{{ policy = "write" }}`, `key_prefix "{trigger_key}" {{ policy = "write" }}`, '
            '`node_prefix "" { policy = "read" }` and read on the service of the health '
            "check (see docs/acl.md)"
        )
    if isinstance(error, AuthenticationRequired):
        return (
            f"something in front of the Consul agent at {address} (a proxy) wants a user and "
            "password: set CONSUL_HTTP_AUTH=user:password, or check the one set"
        )
    if isinstance(error, TLSFailure):
        return (
            "check CONSUL_CACERT/CONSUL_CAPATH (the CA that signed the agent's certificate), "
            "CONSUL_CLIENT_CERT/CONSUL_CLIENT_KEY (if the agent verifies clients) and "
            "CONSUL_TLS_SERVER_NAME"
        )
    if isinstance(error, Unavailable):
        if error.kind == "no_leader":
            return "the Consul servers are electing a leader; this normally passes in seconds"
        return f"is the local Consul agent running and listening on {address}?"
    return "see the Consul agent's log"


class Retrier:
    """Builds the retry policy for one thread's Consul calls."""

    def __init__(
        self,
        wake: threading.Event,
        address: str,
        trigger_key: str,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self._wake = wake  # setting it (stop) ends every wait at once
        self._address = address
        self._trigger_key = trigger_key
        self._on_wait = on_wait

    def call(
        self,
        what: str,
        fn: Callable[[], T],
        interrupted: Callable[[], bool],
        initial: float = 0.5,
        maximum: float = 10.0,
        quiet_first: int = 0,
        give_up_on: tuple[type[ConsulError], ...] = (SessionGone,),
        level: int | None = None,
    ) -> T:
        """Run ``fn`` until it succeeds; raise Interrupted once ``interrupted()``.

        ConsulErrors are retried, except those in ``give_up_on``, which the
        caller handles. Each retry is logged as "<what>: <error>; <advice>" at
        ``level`` (default: WARNING, ERROR when a person must act);
        ``quiet_first`` retries are logged at DEBUG only (short blips).
        """

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            cap = NEEDS_A_PERSON_MAX_WAIT if needs_a_person(error) else maximum
            return backoff(state.attempt_number, initial, cap)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            assert isinstance(error, ConsulError)
            delay = state.next_action.sleep if state.next_action else 0.0
            needs_person = needs_a_person(error)
            chosen = level or (logging.ERROR if needs_person else logging.WARNING)
            if state.attempt_number <= quiet_first and not needs_person:
                chosen = logging.DEBUG
            log.log(
                chosen,
                "%s: %s; %s; retrying in %.1fs (attempt %d)",
                what,
                error,
                advice(error, self._address, self._trigger_key),
                delay,
                state.attempt_number,
                extra={"event": "consul_error", "cause": error.kind},
            )
            if self._on_wait:
                self._on_wait(delay)

        def sleep(seconds: float) -> None:
            self._wake.wait(seconds)

        def should_stop(state: tenacity.RetryCallState) -> bool:
            return interrupted()

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(
                lambda exc: isinstance(exc, ConsulError) and not isinstance(exc, give_up_on)
            ),
            wait=wait,
            stop=should_stop,
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        if interrupted():
            raise Interrupted(what)
        try:
            return retrying(fn)
        except ConsulError:
            if interrupted():
                raise Interrupted(what) from None
            raise
