"""Configuration: durations, precedence, validation messages and the lock-value rule."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.testbed.elector import run_vip_elector
from vip_elector import __version__
from vip_elector.cli import build_parser, parse_settings
from vip_elector.config import ConfigError, Settings, load_settings, parse_address
from vip_elector.durations import format_duration, parse_duration

GOOD_YML = """\
dcs-type: consul
dcs-endpoints:
  - "http://10.0.0.5:8500"
trigger-key: "/service/pg/vip"
trigger-value: "node-a"
consul-token: "yml-token"
ip: 192.0.2.10
netmask: 24
interface: eth0
"""


@pytest.fixture
def yml(tmp_path: Path) -> Path:
    path = tmp_path / "vip-manager.yml"
    path.write_text(GOOD_YML)
    return path


@pytest.fixture(autouse=True)
def no_outside_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("CONSUL_", "VIP_ELECTOR_")):
            monkeypatch.delenv(key)


def settings(argv: list[str]) -> Settings:
    return parse_settings(build_parser(), argv)


def problems(argv: list[str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings(argv)
    return caught.value.problems


# -- durations ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10),
        ("1m30s", 90),
        ("1.5s", 1.5),
        ("0", 0),
        ("2h", 7200),
        ("1h2m3s4ms", 3723.004),
        ("250us", 0.00025),
    ],
)
def test_parse_duration_accepts_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10", "abc", "-1s", "1x", "", "s", "1m 30s"])
def test_parse_duration_rejects_with_the_accepted_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 500ms, 10s, 1m30s"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(10, "10s"), (0.5, "500ms"), (90, "1m30s"), (0, "0s"), (1.25, "1.25s"), (3600, "1h0m0s")],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


# -- vip-manager.yml ------------------------------------------------------------


def test_reads_the_shared_vip_manager_config(yml: Path) -> None:
    result = settings(["--vip-manager-config", str(yml)])
    assert result.trigger_key == "service/pg/vip"  # leading '/' stripped as vip-manager does
    assert result.lock_value == "node-a"
    assert result.consul.address == "http://10.0.0.5:8500"
    assert result.consul.token == "yml-token"
    assert result.ttl == 10
    assert result.lock_delay == 1
    assert result.session_checks == ["serfHealth"]


def test_comma_separated_endpoints_and_https_scheme(tmp_path: Path) -> None:
    path = tmp_path / "vm.yml"
    path.write_text(
        'dcs-type: consul\ndcs-endpoints: "https://a:8501,https://b:8501"\ntrigger-key: k\n'
    )
    result = settings(["--vip-manager-config", str(path), "--hostname", "x"])
    assert result.consul.address == "https://a:8501"


def test_missing_dcs_type_says_vip_manager_defaults_to_etcd(tmp_path: Path) -> None:
    path = tmp_path / "vm.yml"
    path.write_text("trigger-key: k\n")
    (problem,) = problems(["--vip-manager-config", str(path)])
    assert "dcs-type" in problem
    assert "etcd" in problem
    assert "dcs-type: consul" in problem


def test_wrong_dcs_type_and_missing_trigger_key_are_both_reported(tmp_path: Path) -> None:
    path = tmp_path / "vm.yml"
    path.write_text("dcs-type: etcd\n")
    found = problems(["--vip-manager-config", str(path)])
    assert len(found) == 2
    assert "'etcd'" in found[0]
    assert "trigger-key" in found[1]


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "vm.yml"
    path.write_text("dcs-type: consul\ntrigger-key: [unclosed\n")
    (problem,) = problems(["--vip-manager-config", str(path)])
    assert "malformed YAML" in problem
    assert "line" in problem


def test_unreadable_config_file(tmp_path: Path) -> None:
    (problem,) = problems(["--vip-manager-config", str(tmp_path / "nope.yml")])
    assert "cannot read" in problem
    assert "nope.yml" in problem


def test_missing_config_flag() -> None:
    (problem,) = problems([])
    assert "--vip-manager-config is required" in problem


# -- durations in range --------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--ttl", "5s", "between 10s and 24h"),
        ("--ttl", "25h", "between 10s and 24h"),
        ("--lock-delay", "61s", "between 0s and 1m0s"),
        ("--ttl", "ten", "invalid duration"),
        ("--lock-delay", "1", "invalid duration"),
    ],
)
def test_duration_flags_are_validated(yml: Path, flag: str, value: str, expected: str) -> None:
    (problem,) = problems(["--vip-manager-config", str(yml), flag, value])
    assert flag in problem
    assert expected in problem


def test_sub_second_lock_delay_is_allowed(yml: Path) -> None:
    assert settings(["--vip-manager-config", str(yml), "--lock-delay", "500ms"]).lock_delay == 0.5


# -- precedence: flag > VIP_ELECTOR_* > CONSUL_* > yml > default --------------------


def test_address_precedence(yml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["--vip-manager-config", str(yml)]
    assert settings(base).consul.address == "http://10.0.0.5:8500"  # yml
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "127.0.0.2:8500")
    assert settings(base).consul.address == "http://127.0.0.2:8500"  # CONSUL_* over yml
    monkeypatch.setenv("CONSUL_HTTP_SSL", "true")
    assert settings(base).consul.address == "https://127.0.0.2:8500"  # no scheme: SSL decides
    monkeypatch.setenv("VIP_ELECTOR_ADDR", "http://127.0.0.3:8500")
    assert settings(base).consul.address == "http://127.0.0.3:8500"  # VIP_ELECTOR_* over CONSUL_*
    assert settings([*base, "--addr", "127.0.0.4:9500"]).consul.address == "https://127.0.0.4:9500"


def test_default_address_without_endpoints(tmp_path: Path) -> None:
    path = tmp_path / "vm.yml"
    path.write_text("dcs-type: consul\ntrigger-key: k\n")
    result = settings(["--vip-manager-config", str(path), "--hostname", "h"])
    assert result.consul.address == "http://127.0.0.1:8500"
    assert result.consul.token is None


def test_token_precedence_and_files(
    yml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ["--vip-manager-config", str(yml)]
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "env-token")
    assert settings(base).consul.token == "env-token"
    # Within one layer the token file wins, as in Consul's CLI.
    monkeypatch.setenv("CONSUL_HTTP_TOKEN_FILE", str(token_file))
    assert settings(base).consul.token == "file-token"
    # A flag beats the environment.
    assert settings([*base, "--token", "flag-token"]).consul.token == "flag-token"


def test_token_never_appears_in_repr_or_description(yml: Path) -> None:
    result = settings(["--vip-manager-config", str(yml), "--token", "s3cr3t-token"])
    assert "s3cr3t-token" not in repr(result)
    assert "s3cr3t-token" not in result.describe()
    assert any("--token" in warning and "ps" in warning for warning in result.warnings)


def test_unreadable_token_and_certificate_files(
    yml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN_FILE", str(tmp_path / "missing-token"))
    monkeypatch.setenv("CONSUL_CACERT", str(tmp_path / "missing-ca.pem"))
    monkeypatch.setenv("CONSUL_CLIENT_CERT", str(tmp_path / "missing-cert.pem"))
    found = problems(["--vip-manager-config", str(yml)])
    text = "\n".join(found)
    assert "missing-token" in text
    assert "cannot be read" in text
    assert "missing-ca.pem" in text
    assert "CA certificate" in text
    assert "needs its key" in text  # a client cert without CONSUL_CLIENT_KEY


def test_bad_boolean_environment(yml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_SSL_VERIFY", "maybe")
    (problem,) = problems(["--vip-manager-config", str(yml)])
    assert "CONSUL_HTTP_SSL_VERIFY" in problem


def test_consul_namespace_and_partition_are_refused_with_one_clear_error(
    tmp_path: Path, yml: Path
) -> None:
    # vip-manager ignores both and reads the key where its token lives: a lock
    # elsewhere would never move the VIP. `check-config` and the daemon alike.
    env = {"CONSUL_NAMESPACE": "team-a", "CONSUL_PARTITION": "part-b"}
    for command in (["check-config"], []):
        result = run_vip_elector(*command, "--vip-manager-config", str(yml), env=env)
        assert result.returncode == 2, result.stderr
        (line,) = [line for line in result.stderr.splitlines() if "configuration error" in line]
        assert "CONSUL_NAMESPACE and CONSUL_PARTITION set" in line
        assert "vip-manager ignores these variables" in line


@pytest.mark.parametrize(
    ("value", "expected"),
    [("vip:s3cret", ("vip", "s3cret")), ("vip:a:b c", ("vip", "a:b c")), ("vip", ("vip", ""))],
)
def test_consul_http_auth_is_split_as_the_consul_cli_does(
    yml: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: tuple[str, str]
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_AUTH", value)
    result = settings(["--vip-manager-config", str(yml)])
    assert result.consul.http_auth == expected
    assert "s3cret" not in repr(result)
    assert "s3cret" not in result.describe()
    assert "http-auth=user 'vip'" in result.describe()


def test_consul_http_auth_on_two_lines_is_refused_without_repeating_it(
    yml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_AUTH", "vip:s3cret\nmore")
    (problem,) = problems(["--vip-manager-config", str(yml)])
    assert "CONSUL_HTTP_AUTH" in problem
    assert "s3cret" not in problem


def test_every_flag_has_a_vip_elector_variable(yml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIP_ELECTOR_VIP_MANAGER_CONFIG", str(yml))
    monkeypatch.setenv("VIP_ELECTOR_TTL", "15s")
    monkeypatch.setenv("VIP_ELECTOR_LOCK_DELAY", "2s")
    monkeypatch.setenv("VIP_ELECTOR_CHECK_ID", "vip-http")
    monkeypatch.setenv("VIP_ELECTOR_HOSTNAME", "node-a")
    result = settings([])
    assert (result.ttl, result.lock_delay, result.check_id) == (15, 2, "vip-http")
    assert result.session_checks == ["serfHealth", "vip-http"]
    # ...and the flag still wins over its variable.
    assert settings(["--ttl", "20s"]).ttl == 20


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", ("http", "127.0.0.1", 8500)),
        ("https://consul:8501", ("https", "consul", 8501)),
        ("http://[::1]:8500", ("http", "::1", 8500)),
        ("https://host", ("https", "host", 8501)),
    ],
)
def test_parse_address(address: str, expected: tuple[str, str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["unix:///run/consul.sock", "http://:8500", "http://h:x"])
def test_parse_address_rejects(address: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is checked elsewhere
        parse_address(address)


# -- the lock value ----------------------------------------------------------------


def _load(path: Path, hostname: str | None, kernel: str) -> Settings:
    args: dict[str, Any] = {
        "vip_manager_config": str(path),
        "hostname": hostname,
        "check_id": "vip-http",  # (without one, a warning says health failover is off)
    }
    return load_settings(args, environ={}, kernel_hostname=lambda: kernel)


def test_lock_value_rule(tmp_path: Path) -> None:
    with_value = tmp_path / "with.yml"
    with_value.write_text("dcs-type: consul\ntrigger-key: k\ntrigger-value: pg-1\n")
    without = tmp_path / "without.yml"
    without.write_text("dcs-type: consul\ntrigger-key: k\n")

    assert _load(with_value, "explicit", "host.example.com").lock_value == "explicit"
    assert _load(with_value, None, "host.example.com").lock_value == "pg-1"
    fallback = _load(without, None, "host.example.com")
    assert fallback.lock_value == "host"
    (warning,) = fallback.warnings
    assert "'host.example.com'" in warning
    assert 'trigger-value: "host"' in warning
    # Short name equals the kernel hostname: nothing to warn about.
    assert _load(without, None, "host").warnings == ()


def test_hostname_differing_from_trigger_value_is_warned(tmp_path: Path) -> None:
    path = tmp_path / "vm.yml"
    path.write_text("dcs-type: consul\ntrigger-key: k\ntrigger-value: pg-1\n")
    (warning,) = _load(path, "pg-2", "pg-2").warnings
    assert "never add the VIP" in warning


# -- the command line ------------------------------------------------------------


def test_bad_configuration_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    path = tmp_path / "vm.yml"
    path.write_text("dcs-type: etcd\n")
    result = run_vip_elector(
        "--vip-manager-config", str(path), "--ttl", "1s", "--addr", "127.0.0.1:1"
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert len(lines) == 3, result.stderr  # dcs-type, trigger-key, ttl
    assert "nothing was changed in Consul" in result.stderr
    assert result.stdout == ""


def test_version_and_help() -> None:
    version = run_vip_elector("--version")
    assert version.stdout.strip() == f"vip-elector {__version__}"
    help_text = run_vip_elector("--help").stdout
    for flag in (
        "--vip-manager-config",
        "--check-id",
        "--ttl",
        "--lock-delay",
        "--addr",
        "--token",
        "--hostname",
        "--log-level",
        "--log-format",
        "CONSUL_HTTP_TOKEN_FILE",
        "VIP_ELECTOR_TTL",
    ):
        assert flag in help_text
