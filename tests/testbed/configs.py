"""The vip-manager.yml files the tests write (shared by vip-manager and vip-elector)."""

from __future__ import annotations

from pathlib import Path

# Where no vip-manager runs (the agent-only tests, the demo), an interface this
# host does not have: the address watch says once that it cannot observe the
# VIP, instead of reporting a leader without it. The VIP lab passes its veth.
NO_INTERFACE = "vipe-none0"


def write_vip_manager_config(
    path: Path,
    *,
    trigger_key: str,
    trigger_value: str | None = None,
    vip: str = "198.18.0.100",
    interface: str = NO_INTERFACE,
    endpoint: str = "http://127.0.0.1:8500",
    interval_ms: int = 100,
    extra: dict[str, object] | None = None,
    leader_endpoint: str | None = None,
) -> Path:
    """The vip-manager.yml both vip-manager and vip-elector read.

    With ``leader_endpoint`` (``http://HOST:PORT``, vip-elector's --status-addr)
    vip-manager follows vip-elector's fenced /leader (`dcs-type: patroni`), and
    the lock's key and value are vip-elector's own keys in the same file.
    """
    if leader_endpoint is None:
        lines = [
            "dcs-type: consul",
            "dcs-endpoints:",
            f'  - "{endpoint}"',
            f'trigger-key: "{trigger_key}"',
        ]
        if trigger_value is not None:
            lines.append(f'trigger-value: "{trigger_value}"')
    else:
        lines = [
            "dcs-type: patroni",
            "dcs-endpoints:",
            f'  - "{leader_endpoint}"',
            'trigger-key: "/leader"',
            'trigger-value: "200"',
            f'vip-elector-trigger-key: "{trigger_key}"',
        ]
        if trigger_value is not None:
            lines.append(f'vip-elector-trigger-value: "{trigger_value}"')
    lines += [
        f"ip: {vip}",
        "netmask: 24",
        f"interface: {interface}",
        f"interval: {interval_ms}",
        "retry-num: 2",
        "retry-after: 250",
    ]
    for key, value in (extra or {}).items():
        lines.append(f"{key}: {value}")
    path.write_text("\n".join(lines) + "\n")
    return path
