"""Continuity: the VIP stays put when the daemon restarts, is upgraded or reloads.

A daemon that exits without releasing (SIGKILL, a crash, the watchdog, or
on purpose: SIGUSR2 restarts it in place) leaves its session behind in
Consul, still holding the trigger-key until its TTL runs out, and its id in
the runtime directory (``runtime_dir.SessionRecord``). The next daemon for the
same configuration inspects that session before doing anything else:

- it holds the key with our value and was created with what this
  configuration asks for (name, TTL, lock-delay, behaviour, checks): it is
  *adopted*: renewed, and the daemon leads with it. The key never changes,
  so vip-manager never moves the VIP, not even for a moment;
- it holds the key but the configuration changed in a way that matters to
  the session (TTL, lock-delay, check-id, liveness): a new session is made
  and the key is *moved* to it in one transaction (unlock + lock), so the
  key is never free; the old session is destroyed after;
- it does not hold the key (a follower's): it is destroyed.

A SIGHUP that changes a session property uses the same move.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from vip_elector.consul_adapter import ConsulAdapter, ConsulError, SessionInfo
from vip_elector.durations import format_duration
from vip_elector.liveness import liveness_ids
from vip_elector.runtime_dir import SessionRecord
from vip_elector.settings import Settings
from vip_elector.trigger_key import TriggerKey, own_session_name

log = logging.getLogger("vip_elector")


@dataclass(frozen=True)
class Inheritance:
    """A session a new generation of workers takes over from its predecessor."""

    session: str
    holds_key: bool  # it holds the trigger-key with our value
    matches: bool  # created with what this configuration asks for: adopt it as it is
    leader_since: float | None = None  # wall clock, from the record
    reason: str = ""  # why not adopted as it is, for the log


def session_checks(settings: Settings) -> list[str]:
    """The checks a session of this configuration names."""
    checks = settings.session_checks
    if settings.liveness_ttl:
        checks = [*checks, liveness_ids(settings.trigger_key, settings.lock_value)[1]]
    return checks


def differences(info: SessionInfo, settings: Settings) -> list[str]:
    """What about ``info`` is not what ``settings`` would create (empty: adoptable)."""
    found = []
    expected_name = own_session_name(settings.lock_value, settings.trigger_key)
    if info.name != expected_name:
        found.append("name")
    if info.ttl != "" and info.ttl != format_duration(settings.ttl):
        found.append(f"ttl {info.ttl}")
    if abs(info.lock_delay - settings.lock_delay) > 0.001:
        found.append("lock-delay")
    if info.behavior != "delete":
        found.append(f"behavior {info.behavior}")
    if sorted(info.checks) != sorted(session_checks(settings)):
        found.append(f"checks {','.join(info.checks)}")
    return found


def inspect(
    adapter: ConsulAdapter, settings: Settings, record: SessionRecord
) -> Inheritance | None:
    """What the previous daemon of this configuration left behind (None: nothing usable).

    Raises ConsulError when Consul cannot tell (the caller retries or gives up).
    """
    held = record.load()
    if held is None:
        return None
    info = adapter.session_info(held.session, consistent=True)
    if info is None:
        log.info(
            "session %s of the previous run is gone (it expired or was invalidated)",
            held.session,
            extra={"event": "inherit_gone", "session": held.session},
        )
        record.clear()
        return None
    key = TriggerKey(adapter, settings.trigger_key, settings.lock_value).read(consistent=True)
    holds = key.session == held.session and key.value == settings.lock_value.encode()
    changed = differences(info, settings)
    return Inheritance(
        session=held.session,
        holds_key=holds,
        matches=not changed,
        leader_since=held.leader_since if holds else None,
        reason=", ".join(changed),
    )


def try_inspect(
    adapter: ConsulAdapter, settings: Settings, record: SessionRecord
) -> Inheritance | None:
    """:func:`inspect`, with a Consul error logged and taken as "nothing to inherit"
    (the old session then expires on its own, as before)."""
    try:
        return inspect(adapter, settings, record)
    except ConsulError as exc:
        log.warning(
            "could not look at the previous run's session (%s); starting afresh",
            exc,
            extra={"event": "inherit_failed", "cause": exc.kind},
        )
        return None
