"""The option table is the one source: the parser, the README and the defaults agree."""

from __future__ import annotations

from pathlib import Path

from vip_elector.cli import COMMANDS, build_parser
from vip_elector.durations import parse_duration
from vip_elector.options import OPTIONS, markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_duration_default_is_within_its_range() -> None:
    for row in OPTIONS:
        if row.is_duration and row.default is not None:
            assert row.low is not None
            assert row.high is not None
            assert row.low <= parse_duration(row.default) <= row.high, row.name


def test_the_parser_has_every_flag_with_the_tables_default() -> None:
    for command in (None, *COMMANDS):
        parser = build_parser(command)
        defaults = {a.dest: a.default for a in parser._actions}
        for row in OPTIONS:
            if row.flag is None:
                continue
            assert row.dest in defaults, (command, row.flag)
            assert defaults[row.dest] == row.default, (command, row.flag)


def test_the_readme_table_is_the_generated_one() -> None:
    # Regenerate with `python -m vip_elector.options` after changing the table.
    assert markdown_table() in README.read_text()
