"""Settings objects for the unit tests, built without reading any file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from vip_elector.settings import ConsulSettings, Settings, VipManagerConfig


def make_settings(**changes: Any) -> Settings:
    """A valid Settings; ``consul=`` / ``vip_manager=`` take dicts of their own changes."""
    consul = replace(
        ConsulSettings(scheme="http", host="127.0.0.1", port=8500, token="t-1"),
        **changes.pop("consul", {}),
    )
    vip_manager = replace(
        VipManagerConfig(
            path=Path("/etc/default/vip-manager.yml"),
            trigger_key="service/x/vip",
            trigger_value="node-a",
            endpoints=("http://127.0.0.1:8500",),
        ),
        **changes.pop("vip_manager", {}),
    )
    base = Settings(
        vip_manager=vip_manager,
        consul=consul,
        lock_value="node-a",
        lock_value_source="trigger-value",
        check_id="vip-http",
        ttl=10.0,
        lock_delay=1.0,
    )
    return replace(base, **changes)
