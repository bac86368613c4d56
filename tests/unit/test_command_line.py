"""The commands' command line: their own flags come from what is typed only,
durations are Go-style, a mistyped command gets a one-line hint, and a
switchover is confirmed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from vip_elector import cli
from vip_elector.config import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"
REQUIRED = ["--vip-manager-config", "/dev/null"]


def parsed(command: str | None, argv: list[str], environ: dict[str, str]) -> dict[str, object]:
    return cli.parse_options(cli.build_parser(command), argv, environ)


# -- only the shared options are read from the environment -------------------------------


@pytest.mark.parametrize(
    ("command", "argv", "variables", "own"),
    [
        (
            "switchover",
            ["--to", "node-b"],
            {"VIP_ELECTOR_DRY_RUN": "true", "VIP_ELECTOR_YES": "true", "VIP_ELECTOR_TIMEOUT": "1s"},
            {"dry_run": False, "yes": False, "timeout": 5.0},
        ),
        ("status", [], {"VIP_ELECTOR_JSON": "true"}, {"json": False}),
        ("check-config", [], {"VIP_ELECTOR_ONLINE": "true"}, {"online": False}),
        (
            "status",
            [],
            {"VIP_ELECTOR_INSTANCE": "x", "VIP_ELECTOR_DEFAULTS_FILE": "/x"},
            {"instance": None, "defaults_file": "/etc/default/vip-elector"},
        ),
    ],
)
def test_a_commands_own_flags_have_no_variable(
    command: str, argv: list[str], variables: dict[str, str], own: dict[str, object]
) -> None:
    options = parsed(command, [*REQUIRED, *argv], {**variables, "VIP_ELECTOR_TTL": "20s"})
    assert {name: options[name] for name in own} == own
    assert options["ttl"] == "20s"  # a shared option still has its variable


def test_every_option_of_the_table_keeps_its_variable() -> None:
    options = parsed(
        None, [], {"VIP_ELECTOR_VIP_MANAGER_CONFIG": "/x.yml", "VIP_ELECTOR_TTL": "9s"}
    )
    assert (options["vip_manager_config"], options["ttl"]) == ("/x.yml", "9s")


@pytest.mark.parametrize(
    ("argv", "environ", "config", "on"),
    [
        ([], {}, "", None),
        (["--step-down-without-vip"], {}, "", True),
        ([], {"VIP_ELECTOR_STEP_DOWN_WITHOUT_VIP": "true"}, "", True),
        ([], {"VIP_ELECTOR_STEP_DOWN_WITHOUT_VIP": "false"}, "", None),
        ([], {}, "step-down-without-vip = true\n", True),
        ([], {}, "step-down-without-vip = false\n", None),
    ],
)
def test_step_down_without_vip_is_a_switch_in_every_source(
    tmp_path: Path, argv: list[str], environ: dict[str, str], config: str, on: bool | None
) -> None:
    options_file = tmp_path / "options"
    options_file.write_text(config)
    options = parsed(None, [*REQUIRED, "--config", str(options_file), *argv], environ)
    assert options["step_down_without_vip"] is on


def test_the_help_names_the_variables_of_shared_options_only() -> None:
    text = cli.build_parser("switchover").format_help()
    assert "VIP_ELECTOR_TTL" in text
    assert "VIP_ELECTOR_DRY_RUN" not in text
    assert "VIP_ELECTOR_YES" not in text


# -- switchover --timeout --------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10.0), ("1m30s", 90.0), ("750ms", 0.75)])
def test_switchover_timeout_is_a_go_duration(text: str, seconds: float) -> None:
    assert (
        parsed("switchover", [*REQUIRED, "--to", "b", "--timeout", text], {})["timeout"] == seconds
    )


@pytest.mark.parametrize(
    ("text", "said"),
    [("10", "invalid duration '10'"), ("10x", "e.g. 500ms, 10s"), ("1h", "out of range")],
)
def test_a_bad_timeout_is_one_line_and_exit_2(
    text: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parsed("switchover", [*REQUIRED, "--to", "b", "--timeout", text], {})
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("vip-elector switchover: argument --timeout: ")
    assert said in line


# -- commands ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("stauts", "status"), ("swtichover", "switchover"), ("check-conifg", "check-config")],
)
def test_a_mistyped_command_suggests_the_right_one_in_one_line(
    typed: str, meant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([typed, "--json"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"unknown command {typed!r}; did you mean `vip-elector {meant}`?" in line


def test_an_unknown_word_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["frobnicate"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "commands: status, check-config, switchover" in line


def test_an_unknown_option_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--no-such-option"])
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "vip-elector: unrecognized arguments: --no-such-option "
        "(`vip-elector --help` lists the options)"
    )


def test_every_command_is_in_the_help_and_the_readme() -> None:
    help_text = cli.build_parser().format_help()
    commands = help_text.split("\nCommands", 1)[1].split("\n\n", 1)[0]
    readme = README.read_text()
    for command in cli.COMMANDS:
        assert f"  vip-elector {command} " in commands, command
        assert f"- `vip-elector {command} " in readme, command


# -- confirmation ------------------------------------------------------------------------


def test_yes_has_a_short_form() -> None:
    assert parsed("switchover", [*REQUIRED, "--to", "b", "-y"], {})["yes"] is True


def test_a_switchover_without_a_terminal_needs_yes() -> None:
    asked = {"yes": False, "dry_run": False}
    with pytest.raises(ConfigError, match="stdin is not a terminal: add --yes"):
        cli.confirmation(asked, interactive=False)
    assert cli.confirmation({**asked, "yes": True}, interactive=False) is None
    assert cli.confirmation({**asked, "dry_run": True}, interactive=False) is None
    assert cli.confirmation(asked, interactive=True) is cli.ask


@pytest.mark.parametrize(
    ("typed", "yes"), [("y\n", True), ("YES\n", True), ("\n", False), ("no\n", False), ("", False)]
)
def test_only_yes_confirms(typed: str, yes: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(typed))
    assert cli.ask("Move the VIP?") is yes
