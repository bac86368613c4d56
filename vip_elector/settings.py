"""The validated configuration, as types: what every other module is given.

This is the bottom layer of the configuration: no reading, no validation,
nothing but the frozen results. ``vip_manager_config``, ``consul_settings``
and ``config`` produce them; the Consul adapter and the threads consume them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vip_elector.durations import format_duration

# vip-manager's read of the key (a consistent GET) and its `ip addr del` after
# its interval: measured at a few ms on the test bed; 200 ms leaves room for
# a loaded machine.
VIP_GRACE_MARGIN = 1.0  # see Settings.vip_grace
HANDOVER_MARGIN = 0.2
# The fencing bound's safety margin: scheduling and GC pauses, vip-manager's own
# request (0.2 s), and the rate error of the monotonic clock against the Consul
# servers' (NTP slews at most 500 ppm; 0.1 % is counted).
FENCE_MARGIN = 0.2
CLOCK_RATE_ERROR = 0.001


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ConsulSettings:
    """How to reach the local Consul agent."""

    scheme: str
    host: str
    port: int
    token: str | None = field(default=None, repr=False)  # never printed
    token_source: str = "none"  # where the token came from, safe to log
    token_file: str | None = None  # the file it was read from, if any
    ca_file: str | None = None
    ca_path: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    verify: bool = True
    tls_server_name: str | None = None
    # CONSUL_HTTP_AUTH: HTTP basic auth (user, password), for a proxy in front
    # of the agent; never printed.
    http_auth: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never be written out: the token and the basic-auth password."""
        password = self.http_auth[1] if self.http_auth else None
        return tuple(secret for secret in (self.token, password) if secret)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class VipManagerConfig:
    """The keys vip-elector reads from the vip-manager.yml it shares with vip-manager."""

    path: Path
    trigger_key: str
    trigger_value: str | None
    endpoints: tuple[str, ...]
    consul_token: str | None = field(default=None, repr=False)
    interval_ms: int = 1000  # vip-manager's `interval`: how often it reads the key
    # `dcs-type: patroni`: the URL vip-manager polls (vip-elector's /leader), else None
    leader_url: str | None = None
    # The address vip-manager adds (`ip`, `netmask`, `interface`, `manager-type`):
    # what the address watch follows. None where the file does not say.
    vip: str | None = None
    netmask: int | None = None
    interface: str | None = None
    manager_type: str = "basic"  # vip-manager's default

    @property
    def fenced(self) -> bool:
        """vip-manager follows vip-elector's /leader, not the trigger-key."""
        return self.leader_url is not None


@dataclass(frozen=True)
class Settings:
    """Everything the daemon needs, validated."""

    vip_manager: VipManagerConfig
    consul: ConsulSettings
    lock_value: str
    lock_value_source: str
    check_id: str | None
    ttl: float
    lock_delay: float
    log_level: str = "INFO"
    log_format: str = "text"
    liveness_ttl: float | None = None  # --liveness-ttl; None = off
    status_addr: tuple[str, int] | None = None  # --status-addr; None = off
    notify: tuple[str, ...] | None = None  # --notify command (split, no shell)
    notify_timeout: float = 30.0
    maintenance_file: Path | None = None
    step_down_hold: float = 10.0
    priority: int = 100  # --priority
    preempt_delay: float | None = None  # --preempt-delay; None = never preempt
    step_down_without_vip: bool = False  # --step-down-without-vip
    # --check-id=none: no service check on purpose (failover on node failure only),
    # as opposed to no --check-id at all, which is warned about.
    check_opt_out: bool = False
    # Things worth a WARNING once logging is set up (config is parsed before).
    warnings: tuple[str, ...] = ()

    @property
    def trigger_key(self) -> str:
        return self.vip_manager.trigger_key

    @property
    def handover_gap(self) -> float:
        """How long after the key went free another node's vip-manager may still
        hold the VIP: its interval (it sleeps that long between reads) plus a
        margin for its read and its `ip addr del`. A new leader takes the key
        no earlier, so two nodes never hold the VIP at once."""
        return self.vip_manager.interval_ms / 1000 + HANDOVER_MARGIN

    @property
    def vip_grace(self) -> float:
        """How long a leader may be without its VIP (or a non-leader keep it) before
        it is reported: vip-manager adds or drops the VIP within one interval of the
        key's value changing (it sleeps that long between reads); a second interval
        covers one failed read or `ip addr` retried, and 1 s its read, its exec of
        `ip` and a loaded host. Shorter would report every ordinary failover."""
        return 2 * self.vip_manager.interval_ms / 1000 + VIP_GRACE_MARGIN

    @property
    def fence_bound(self) -> float:
        """How long after the *start* of a consistent read that proved our session
        holds the key this node may go on saying "leader" on /leader.

        Why it is safe: an invalidation we did not see (a partition, the agent
        lost) happens at the earliest right after that read started; from then
        on nobody can acquire the key for lock-delay. vip-manager (patroni mode)
        notices our 503 within its interval. So the VIP leaves this node before
        anybody else can have taken the lock, if we stop answering 200 at
        lock-delay - interval - margin (the clock's rate error included).
        <= 0: lock-delay is too short for fencing; /leader never answers 200.
        """
        interval = self.vip_manager.interval_ms / 1000
        return self.lock_delay * (1 - CLOCK_RATE_ERROR) - interval - FENCE_MARGIN

    @property
    def session_checks(self) -> list[str]:
        """serfHealth always (sending Checks replaces Consul's default), plus ours."""
        checks = ["serfHealth"]
        if self.check_id:
            checks.append(self.check_id)
        return checks

    @property
    def health_check_configured(self) -> bool:
        """The VIP leaves this node when its service's health check fails."""
        return self.check_id is not None

    def health_failover(self) -> str:
        """Whether the VIP leaves this node when its service fails: one line for
        `status` and /status (the start-up WARNING says more when it is unset)."""
        if self.check_id:
            return f"on: check {self.check_id!r} critical or missing moves the VIP"
        if self.check_opt_out:
            return (
                "off by choice (--check-id=none): only a failure of the node, its Consul "
                "agent or vip-elector moves the VIP"
            )
        return (
            "OFF: no --check-id, only a failure of the node, its Consul agent or vip-elector "
            "moves the VIP; set --check-id to the service's check, or --check-id=none"
        )

    def status_fields(self) -> dict[str, Any]:
        """What the configuration adds to /status and /metrics."""
        return {
            "health_check_configured": self.health_check_configured,
            "health_failover": self.health_failover(),
            "session_ttl": self.ttl,
            "fenced_mode": self.vip_manager.fenced,
            # What a fresh proof gives /leader (0: /leader never answers 200).
            "fence_bound": round(max(0.0, self.fence_bound), 3) if self.status_addr else 0.0,
        }

    def describe(self) -> str:
        """One line for the start-up log (no secrets)."""
        check = self.check_id or ("none" if self.check_opt_out else "-")
        return (
            f"trigger-key={self.trigger_key} value={self.lock_value!r} "
            f"({self.lock_value_source}) check-id={check} "
            f"ttl={format_duration(self.ttl)} lock-delay={format_duration(self.lock_delay)} "
            f"consul={self.consul.address} token={self.consul.token_source}"
            + (f" http-auth=user {self.consul.http_auth[0]!r}" if self.consul.http_auth else "")
        )
