"""Health failover is never off without anybody saying so: no --check-id is a
WARNING, shown in /status, `status` and a metric; `--check-id=none` is the
explicit "node failure only"; an empty value (the packaged default) is refused."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.settings_factory import make_settings
from vip_elector.cli import build_parser, parse_settings
from vip_elector.config import ConfigError
from vip_elector.coordinator import Coordinator
from vip_elector.metrics import Metrics
from vip_elector.settings import Settings
from vip_elector.state import DaemonState
from vip_elector.status_report import render_text

ROOT = Path(__file__).resolve().parents[2]
PACKAGED_DEFAULT = ROOT / "debian" / "vip-elector.default"


@pytest.fixture(autouse=True)
def no_outside_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("CONSUL_", "VIP_ELECTOR_")):
            monkeypatch.delenv(key)


@pytest.fixture
def yml(tmp_path: Path) -> Path:
    path = tmp_path / "vip-manager.yml"
    path.write_text("dcs-type: consul\ntrigger-key: service/x/vip\ntrigger-value: node-a\n")
    return path


def load(yml: Path, *argv: str) -> Settings:
    return parse_settings(build_parser(), ["--vip-manager-config", str(yml), *argv])


def refused(yml: Path, *argv: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(yml, *argv)
    return caught.value.problems


def health_warnings(settings: Settings) -> list[str]:
    return [w for w in settings.warnings if "health failover is OFF" in w]


def test_no_check_id_is_warned_about_with_how_to_turn_it_on(yml: Path) -> None:
    (warning,) = health_warnings(load(yml))
    assert "never when the service behind the VIP dies" in warning
    assert "--check-id (VIP_ELECTOR_CHECK_ID)" in warning
    assert "`none`" in warning


def test_check_id_none_is_the_explicit_choice_of_node_failure_only(yml: Path) -> None:
    for spelling in ("none", "NONE", " none "):
        settings = load(yml, f"--check-id={spelling}")
        assert settings.check_id is None
        assert settings.session_checks == ["serfHealth"]  # "none" is never sent to Consul
        assert health_warnings(settings) == []
        assert "check-id=none" in settings.describe()
        assert settings.health_failover().startswith("off by choice")
    assert load(yml, "--check-id=vip-http").session_checks == ["serfHealth", "vip-http"]
    assert health_warnings(load(yml, "--check-id=vip-http")) == []


def test_an_empty_check_id_is_refused(yml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (problem,) = refused(yml, "--check-id=")
    assert "--check-id is empty" in problem
    assert "`none`" in problem
    monkeypatch.setenv("VIP_ELECTOR_CHECK_ID", "")
    assert refused(yml) == [problem]


def packaged_environment() -> dict[str, str]:
    """The variables /etc/default/vip-elector sets, read as systemd's EnvironmentFile=."""
    found = {}
    for line in PACKAGED_DEFAULT.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            found[name.strip()] = value.strip().strip('"')
    return found


def test_the_packaged_default_makes_the_operator_choose(
    yml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = packaged_environment()
    assert environment["VIP_ELECTOR_CHECK_ID"] == ""
    for name, value in environment.items():
        if name != "VIP_ELECTOR_OPTS":  # (the unit splits it into arguments)
            monkeypatch.setenv(name, value)
    (problem,) = refused(yml)
    assert "VIP_ELECTOR_CHECK_ID=" in problem
    # Either choice the file offers starts.
    monkeypatch.setenv("VIP_ELECTOR_CHECK_ID", "none")
    assert load(yml).check_opt_out
    monkeypatch.setenv("VIP_ELECTOR_CHECK_ID", "vip-http")
    assert load(yml).check_id == "vip-http"


@pytest.mark.parametrize(
    ("changes", "configured", "says"),
    [
        ({}, True, "on: check 'vip-http'"),
        ({"check_id": None}, False, "OFF: no --check-id"),
        ({"check_id": None, "check_opt_out": True}, False, "off by choice"),
    ],
)
def test_status_and_metrics_say_whether_health_failover_is_on(
    changes: dict[str, object], configured: bool, says: str
) -> None:
    settings = make_settings(**changes)
    status = Coordinator(settings).status()  # what /status serves
    assert status["health_check_configured"] is configured
    assert status["health_failover"].startswith(says)

    metrics = Metrics(DaemonState("service/x/vip", "node-a"), Coordinator(settings).status)
    body, _ = metrics.render()
    found = {
        sample.name: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }
    assert found["vip_elector_health_check_configured"] == (1 if configured else 0)

    report: dict[str, Any] = {
        "key": "service/x/vip",
        "holder": None,
        "candidates": [],
        "this_node": {
            "lock_value": "node-a",
            "value_source": "trigger-value",
            "check_id": settings.check_id,
            "health_failover": settings.health_failover(),
        },
        "problems": [],
        "healthy_leader": False,
    }
    assert f"health check  {says}" in render_text(report)
