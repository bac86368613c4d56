"""The commands on a packaged node read what the unit reads: its environment file(s),
parsed as systemd parses them, and its --vip-manager-config; the real
environment and the command line win."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vip_elector import cli, packaged
from vip_elector.config import ConfigError
from vip_elector.packaged import command_setup, parse_environment_file

DEBIAN = Path(__file__).resolve().parents[2] / "debian"


def unit_lines(name: str, key: str) -> list[str]:
    """The values of ``key=`` in the unit file ``name``."""
    text = (DEBIAN / name).read_text()
    return re.findall(rf"^{key}=(.*)$", text, re.MULTILINE)


# -- the units are what the commands follow --------------------------------------------


def test_the_paths_are_the_units() -> None:
    assert unit_lines("vip-elector.service", "EnvironmentFile") == [f"-{packaged.DEFAULTS_FILE}"]
    (start,) = unit_lines("vip-elector.service", "ExecStart")
    assert f"--vip-manager-config={packaged.vip_manager_config(None)} " in start
    assert start.endswith(f" ${packaged.OPTS_VARIABLE}")

    files = unit_lines("vip-elector@.service", "EnvironmentFile")
    expected = packaged.environment_files(packaged.DEFAULTS_FILE, "%i")
    assert files == [f"-{path}" for path in expected]
    (start,) = unit_lines("vip-elector@.service", "ExecStart")
    assert f"--vip-manager-config={packaged.vip_manager_config('%i')} " in start


# -- EnvironmentFile= syntax -----------------------------------------------------------


def test_the_environment_file_is_parsed_as_systemd_does_without_a_shell() -> None:
    text = (
        "# a comment\n"
        "; another\n"
        "\n"
        "PLAIN=value with  inner spaces   \n"
        "  INDENTED = kept\n"
        "SINGLE='--a=\"b\"  $HOME \\n'\n"
        'DOUBLE="x \\"y\\" \\$HOME \\q `z`"\n'
        "EXPANDED=$HOME/$(id -u)\n"
        "ESCAPED=a\\ b\\\\c\n"
        "CONTINUED=one \\\n"
        "two\n"
        "MULTI='line 1\n"
        "line 2'\n"
        "EMPTY=\n"
        "export EXPORTED=1\n"
        "no equals sign here\n"
        "PLAIN=second wins\n"
        "LAST=no newline at the end"
    )
    parsed = parse_environment_file(text)
    assert parsed.values == {
        "PLAIN": "second wins",
        "INDENTED": "kept",
        "SINGLE": '--a="b"  $HOME \\n',
        "DOUBLE": 'x "y" $HOME \\q `z`',
        "EXPANDED": "$HOME/$(id -u)",
        "ESCAPED": "a b\\c",
        "CONTINUED": "one two",
        "MULTI": "line 1\nline 2",
        "EMPTY": "",
        "LAST": "no newline at the end",
    }
    assert parsed.ignored == ["line 15: 'export EXPORTED' is not a variable name"]


def test_the_packaged_defaults_file_parses() -> None:
    parsed = parse_environment_file((DEBIAN / "vip-elector.default").read_text())
    assert parsed.values == {"VIP_ELECTOR_CHECK_ID": "", "VIP_ELECTOR_OPTS": ""}
    assert parsed.ignored == []


# -- the command line and environment of a command ---------------------------------------


@pytest.fixture
def defaults(tmp_path: Path) -> Path:
    path = tmp_path / "vip-elector"
    path.write_text(
        "CONSUL_HTTP_ADDR=http://file:8500\n"
        "CONSUL_HTTP_TOKEN_FILE=/etc/vip-elector/consul.token\n"
        "VIP_ELECTOR_VIP_MANAGER_CONFIG=/ignored/as/under/systemd.yml\n"
        'VIP_ELECTOR_OPTS="--check-id=vip-http  --ttl=20s"\n'
    )
    (tmp_path / "vip-elector@15-main").write_text(
        "CONSUL_HTTP_ADDR=http://instance:8500\nVIP_ELECTOR_OPTS=--check-id=pg\n"
    )
    return path


def test_a_command_gets_the_units_command_line_then_its_own(defaults: Path) -> None:
    setup = command_setup(["--to", "node-b", "--ttl", "30s"], {}, None, str(defaults))
    assert setup.argv == [
        "--vip-manager-config=/etc/default/vip-manager.yml",
        "--check-id=vip-http",
        "--ttl=20s",
        "--to",
        "node-b",
        "--ttl",
        "30s",  # typed last: wins
    ]
    assert setup.environ["CONSUL_HTTP_ADDR"] == "http://file:8500"
    assert "VIP_ELECTOR_VIP_MANAGER_CONFIG" not in setup.environ
    assert setup.files_read == [str(defaults)]


def test_an_instance_reads_its_own_file_after_the_common_one(defaults: Path) -> None:
    setup = command_setup([], {}, "15-main", str(defaults))
    assert setup.argv == ["--vip-manager-config=/etc/vip-manager/15-main.yml", "--check-id=pg"]
    assert setup.environ["CONSUL_HTTP_ADDR"] == "http://instance:8500"
    assert setup.environ["CONSUL_HTTP_TOKEN_FILE"] == "/etc/vip-elector/consul.token"
    assert setup.files_read == [str(defaults), f"{defaults}@15-main"]


def test_the_real_environment_wins_over_the_file(defaults: Path) -> None:
    real = {"CONSUL_HTTP_ADDR": "http://real:8500", "VIP_ELECTOR_VIP_MANAGER_CONFIG": "/r.yml"}
    setup = command_setup([], real, None, str(defaults))
    assert setup.environ["CONSUL_HTTP_ADDR"] == "http://real:8500"
    # The operator's variable replaces the unit's path instead of losing to it.
    assert setup.argv == ["--check-id=vip-http", "--ttl=20s"]
    assert setup.environ["VIP_ELECTOR_VIP_MANAGER_CONFIG"] == "/r.yml"


def test_no_file_or_an_empty_defaults_file_option_reads_nothing(tmp_path: Path) -> None:
    for path in (str(tmp_path / "absent"), ""):
        setup = command_setup(["--json"], {"A": "1"}, None, path)
        assert setup.argv == ["--vip-manager-config=/etc/default/vip-manager.yml", "--json"]
        assert setup.environ == {"A": "1"}
        assert setup.files_read == []


def test_a_file_that_is_not_text_is_a_configuration_error(tmp_path: Path) -> None:
    bad = tmp_path / "vip-elector"
    bad.write_bytes(b"A=\xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        command_setup([], {}, None, str(bad))


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", ""])
def test_an_instance_name_that_is_not_one_exits_2(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", f"--instance={name}", "--defaults-file="]) == 2
    err = capsys.readouterr().err
    assert "--instance" in err
    assert "vip-elector@NAME.service" in err
