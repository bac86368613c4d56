"""The reload rule: what a SIGHUP does about each changed setting (from the option table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.settings_factory import make_settings
from vip_elector.options import OPTIONS, Reload, reload_plan, running_settings


def plan(**changes: Any) -> dict[Reload, list[str]]:
    return reload_plan(make_settings(), make_settings(**changes))


def test_nothing_changed_nothing_to_do() -> None:
    assert plan() == {}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"log_level": "DEBUG"}, {Reload.APPLY: ["log-level"]}),
        ({"log_format": "json"}, {Reload.APPLY: ["log-format"]}),
        ({"step_down_hold": 3.0}, {Reload.APPLY: ["step-down-hold"]}),
        ({"step_down_without_vip": True}, {Reload.APPLY: ["step-down-without-vip"]}),
        ({"maintenance_file": Path("/run/m")}, {Reload.APPLY: ["maintenance-file"]}),
        ({"status_addr": ("127.0.0.1", 9)}, {Reload.RESTART: ["status-addr"]}),
        ({"notify": ("/bin/true",)}, {Reload.RESTART: ["notify"]}),
        ({"vip_manager": {"trigger_key": "other"}}, {Reload.HANDOVER: ["trigger-key"]}),
        ({"lock_value": "node-b"}, {Reload.HANDOVER: ["hostname"]}),
        ({"ttl": 20.0}, {Reload.NEW_SESSION: ["ttl"]}),
        ({"lock_delay": 5.0}, {Reload.NEW_SESSION: ["lock-delay"]}),
        ({"check_id": "other"}, {Reload.NEW_SESSION: ["check-id"]}),
        ({"liveness_ttl": 3.0}, {Reload.NEW_SESSION: ["liveness-ttl"]}),
        ({"consul": {"token": "t-2"}}, {Reload.IN_PLACE: ["token"]}),
        ({"consul": {"port": 8501}}, {Reload.IN_PLACE: ["addr"]}),
        ({"consul": {"ca_file": "/ca.pem"}}, {Reload.IN_PLACE: ["ca-file"]}),
        ({"consul": {"verify": False}}, {Reload.IN_PLACE: ["ssl-verify"]}),
    ],
)
def test_each_setting_is_handled_as_its_row_says(
    changes: dict[str, Any], expected: dict[Reload, list[str]]
) -> None:
    assert plan(**changes) == expected


def test_several_changes_are_grouped_and_the_token_named_once() -> None:
    result = plan(log_level="DEBUG", ttl=20.0, consul={"token": "t-2"}, lock_value="x")
    assert result == {
        Reload.APPLY: ["log-level"],
        Reload.HANDOVER: ["hostname"],
        Reload.NEW_SESSION: ["ttl"],
        Reload.IN_PLACE: ["token"],
    }


def test_the_plan_never_carries_a_value() -> None:
    result = plan(consul={"token": "s3cr3t"})
    assert "s3cr3t" not in repr(result)


def test_where_only_the_files_path_or_its_source_changed_nothing_happens() -> None:
    # Same contents read from another path, a token now from a file: same values.
    assert plan(vip_manager={"path": Path("/etc/vip-manager.yml")}) == {
        Reload.APPLY: ["vip-manager-config"]
    }
    assert plan(consul={"token_source": "file /t"}) == {}


def test_every_row_that_decides_a_setting_can_read_it() -> None:
    settings = make_settings()
    for row in OPTIONS:
        if row.setting is not None:
            row.read(settings)  # raises AttributeError for a wrong path


def test_what_a_reload_cannot_apply_keeps_its_running_value() -> None:
    """22.18: "restart to apply" means the running value stays everywhere (status,
    the candidate entry, the next generation) until the restart."""
    old = make_settings(priority=100)
    new = make_settings(
        priority=200,
        preempt_delay=3.0,
        status_addr=("127.0.0.1", 9),
        vip_manager={"interval_ms": 100},
        consul={"token": "t-2"},
        log_level="DEBUG",
    )
    running = running_settings(old, new)
    assert running.priority == 100
    assert running.preempt_delay is None
    assert running.status_addr == old.status_addr
    assert running.vip_manager.interval_ms == old.vip_manager.interval_ms
    # What a reload applies does change.
    assert running.consul.token == "t-2"
    assert running.log_level == "DEBUG"
    assert reload_plan(old, running) == {
        Reload.IN_PLACE: ["token"],
        Reload.APPLY: ["log-level"],
    }
