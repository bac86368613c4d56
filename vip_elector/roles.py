"""The daemon's roles and the causes of its transitions (plain values: the
decision core, the role machine and the protocol layer's callers share them)."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    STARTING = "starting"  # no usable session yet (health gate, Consul unreachable)
    FOLLOWER = "follower"  # holds a session, competes for the lock
    LEADER = "leader"  # holds the trigger-key lock
    MAINTENANCE = "maintenance"  # not competing by operator's choice
    FAULT = "fault"  # not competing: the health check is critical or missing (keepalived's FAULT)
    STOPPING = "stopping"


class Cause(enum.StrEnum):
    """Why a transition happened; a small fixed set (a metrics label)."""

    STARTED = "started"
    SESSION_CREATED = "session_created"
    CHECK = "check"  # the health check is critical or missing
    SESSION_LOST = "session_lost"  # Consul invalidated it (check, node, TTL)
    RENEW_TIMEOUT = "renew_timeout"  # no successful renewal for TTL
    ACQUIRED = "acquired"
    ADOPTED = "adopted"  # a session left by the previous run (restart, upgrade) holds the key
    KEY_DELETED = "key_deleted"
    KEY_TAKEN = "key_taken"  # another session holds it
    KEY_CHANGED = "key_changed"  # value or flags changed under our session
    STEP_DOWN = "step_down"
    MAINTENANCE = "maintenance"
    CONFIG_RELOAD = "config_reload"
    DUPLICATE_VALUE = "duplicate_value"  # another node competes with our lock value
    SWITCHOVER = "switchover"  # `vip-elector switchover` moved the VIP
    PREEMPTED = "preempted"  # a higher-priority candidate took over (--preempt-delay)
    VIP_MISSING = "vip_missing"  # led without its VIP past the grace (--step-down-without-vip)
    SHUTDOWN = "shutdown"


# Leaving LEADER for these causes is our own choice, not a LOCK LOST.
VOLUNTARY = frozenset(
    {
        Cause.STEP_DOWN,
        Cause.MAINTENANCE,
        Cause.CONFIG_RELOAD,
        Cause.DUPLICATE_VALUE,
        Cause.SWITCHOVER,
        Cause.PREEMPTED,
        Cause.VIP_MISSING,
    }
)
