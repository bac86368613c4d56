"""The lock-value rule and Go durations: pure functions of the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from vip_elector.config import resolve_lock_value
from vip_elector.durations import format_duration, parse_duration
from vip_elector.settings import VipManagerConfig


def yml(trigger_value: str | None) -> VipManagerConfig:
    return VipManagerConfig(Path("/etc/vm.yml"), "k", trigger_value, ())


@pytest.mark.parametrize(
    ("flag", "trigger_value", "kernel", "value", "source", "warns"),
    [
        ("explicit", "pg-1", "host.example.com", "explicit", "--hostname", True),
        ("pg-1", "pg-1", "host.example.com", "pg-1", "--hostname", False),
        (None, "pg-1", "host.example.com", "pg-1", "trigger-value in /etc/vm.yml", False),
        (None, None, "host.example.com", "host", "short hostname", True),
        (None, None, "host", "host", "short hostname", False),
    ],
)
def test_the_lock_value_rule(
    flag: str | None,
    trigger_value: str | None,
    kernel: str,
    value: str,
    source: str,
    warns: bool,
) -> None:
    got, got_source, warnings = resolve_lock_value(flag, yml(trigger_value), kernel)
    assert (got, got_source, bool(warnings)) == (value, source, warns)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("1.5s", 1.5), ("1m30s", 90.0), (".5s", 0.5), ("1h2m3s4ms", 3723.004)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10", "-1s", "1x", "", " ", "1m 30s", "s", "1.2.3s"])
def test_bad_durations_name_the_accepted_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 500ms, 10s, 1m30s"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.0, 0.001, 0.5, 1.0, 1.25, 10.0, 59.999, 90.0, 86400.0])
def test_formatting_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)
