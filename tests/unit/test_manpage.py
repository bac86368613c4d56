"""vip-elector(8) is written from the option table and the command list: every
option and command is in it, and groff has nothing to say about it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from vip_elector import cli
from vip_elector.manpage import bold, italic, literal, manual_page, optional
from vip_elector.options import OPTIONS

SECTIONS = (
    "NAME",
    "SYNOPSIS",
    "DESCRIPTION",
    "OPTIONS",
    "ENVIRONMENT",
    "FILES",
    "EXIT STATUS",
    "SIGNALS",
    "EXAMPLES",
    "SEE ALSO",
)


def rendered(page: str, tmp_path: Path, width: int = 80) -> subprocess.CompletedProcess[str]:
    """``man --warnings -l`` of the page, as lintian runs it (skipped, with the
    reason in pytest's summary, where man-db is not installed)."""
    if shutil.which("man") is None:
        pytest.skip("man (man-db) is not installed: cannot render the page")
    path = tmp_path / "vip-elector.8"
    path.write_text(page)
    env = {**os.environ, "MANWIDTH": str(width), "LC_ALL": "C.UTF-8", "MAN_KEEP_FORMATTING": ""}
    return subprocess.run(
        ["man", "--warnings", "-E", "UTF-8", "-l", str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=30,
    )


def test_every_section_is_there_in_order() -> None:
    page = manual_page()
    positions = [page.index(f"\n.SH {name}\n") for name in SECTIONS]
    assert positions == sorted(positions)


def test_every_option_of_the_table_is_in_the_page() -> None:
    page = manual_page()
    for row in OPTIONS:
        names = [row.flag, row.env, *row.consul_env] if row.flag else [row.yml_key]
        names += list(row.consul_env)
        for name in filter(None, names):
            assert literal(name) in page, name


def test_the_synopsis_follows_the_command_list(monkeypatch: pytest.MonkeyPatch) -> None:
    synopsis = manual_page().split(".SH SYNOPSIS", 1)[1].split(".SH", 1)[0]
    for command in cli.COMMANDS:
        assert literal(f"vip-elector {command}") in synopsis
    # A command's own flags, from its parser: optional ones in brackets.
    assert optional(bold("--json")) in synopsis
    assert f"{bold('--to')} {italic('VALUE')}" in synopsis  # required
    assert optional(f"{bold('--timeout')} {italic('DURATION')}") in synopsis
    # A command added to cli.COMMANDS shows up without touching the page.
    monkeypatch.setitem(cli.COMMANDS, "switchover", "hand the lock to another node")
    page = manual_page()
    assert literal("vip-elector switchover") in page
    assert "Hand the lock to another node." in page


def test_the_date_is_source_date_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert manual_page().splitlines()[0].startswith('.TH VIP\\-ELECTOR 8 "2023-11-14"')


def test_man_renders_it_without_a_warning(tmp_path: Path) -> None:
    result = rendered(manual_page(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    text = result.stdout
    assert "--vip-manager-config PATH" in text
    assert "SIGUSR2" in text
    assert "CONSUL_NAMESPACE" in text
    words = text.split()
    assert "%(default)s" not in text  # argparse's placeholders are filled in
    assert "(500ms..10m0s; default: 5s)" in " ".join(words)
    # A bracket is never a place to break an option with a hyphen ("[-" "--json]").
    for flag in ("[--json]", "[--online]", "[--dry-run]", "[--yes]", "[OPTION]..."):
        assert flag in words, flag


def test_man_would_report_a_broken_page(tmp_path: Path) -> None:
    # The check above can fail: groff warns about a macro it does not know.
    result = rendered(manual_page() + ".XYZZY broken\n", tmp_path)
    assert result.stderr != ""


def section(page: str, name: str) -> str:
    return page.split(f"\n.SH {name}\n", 1)[1].split("\n.SH ", 1)[0]


def plain(roff: str) -> str:
    """The text of roff words: no font or hyphenation escapes."""
    for escape in ("\\%", "\\fB", "\\fI", "\\fR"):
        roff = roff.replace(escape, "")
    return roff.replace("\\-", "-")


def test_the_synopsis_shows_a_required_flag_as_required_with_its_argument() -> None:
    # `switchover` without --to is a usage error: the page must not bracket it;
    # an optional flag is bracketed, with its argument.
    lines = plain(section(manual_page(), "SYNOPSIS")).splitlines()
    (switchover,) = [line for line in lines if line.startswith("vip-elector switchover ")]
    assert " --to VALUE [--dry-run] [--timeout DURATION] " in switchover
    assert "[--to" not in switchover
    (status,) = [line for line in lines if line.startswith("vip-elector status ")]
    assert "[--json]" in status


def test_a_long_synopsis_line_breaks_between_words(tmp_path: Path) -> None:
    # A break right after "[" came with a hyphen (U+2010), the rest of the
    # flag on the next line.
    page = manual_page()
    result = rendered(page, tmp_path, width=60)
    synopsis = result.stdout.split("SYNOPSIS", 1)[1].split("DESCRIPTION", 1)[0]
    assert "[\u2010" not in synopsis, synopsis
    assert "[-\n" not in synopsis, synopsis
    assert "[--timeout DURATION]" in " ".join(synopsis.split())


def test_a_flags_default_is_filled_in() -> None:
    assert "%(default)s" not in manual_page()


def test_the_signals_section_says_how_keepalived_differs_and_whom_to_signal() -> None:
    signals = section(manual_page(), "SIGNALS").replace("\\-", "-")
    assert "keepalived's SIGUSR1, which dumps its data" in signals
    assert "keepalived's SIGUSR2, which dumps its statistics" in signals
    assert "systemctl kill --kill-whom=main" in signals
    assert "reload fails and no SIGHUP is sent" in signals
