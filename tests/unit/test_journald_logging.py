"""Logs under journald: one entry per record, filed at its priority.

journald reads a service's stderr line by line: each line is an entry, and a
leading ``<N>`` (sd-daemon(3)) sets the entry's PRIORITY. The stream is a real
file here, named by JOURNAL_STREAM the way systemd names the journal socket.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from vip_elector.logs import setup_logging, stop_logging

log = logging.getLogger("vip_elector")


def journal_stream_of(stream: TextIO) -> str:
    status = os.fstat(stream.fileno())
    return f"{status.st_dev}:{status.st_ino}"


@pytest.fixture
def stream(tmp_path: Path) -> Iterator[TextIO]:
    # setup_logging takes the "vip_elector" logger over: give it back as it was
    # (other tests read its records through pytest's caplog).
    saved = log.handlers[:], log.level, log.propagate
    with (tmp_path / "stderr").open("w+", encoding="utf-8") as file:
        yield file
    stop_logging()
    log.handlers[:], log.level, log.propagate = saved


def log_some_records() -> None:
    log.debug("a debug line")
    log.info("an info line")
    log.warning("Health check verification failed: check 'vip-http' is critical")
    log.info("a check's output:\nline two\nline three")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("a thread failed")


def lines_written(stream: TextIO) -> list[str]:
    stop_logging()  # drains the queue
    stream.seek(0)
    return stream.read().splitlines()


def logged_to_the_journal(
    stream: TextIO, monkeypatch: pytest.MonkeyPatch, log_format: str
) -> list[str]:
    """The lines the records above make on ``stream``, as systemd's journal stream."""
    monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of(stream))
    setup_logging("DEBUG", log_format, stream)
    log_some_records()
    return lines_written(stream)


def test_under_journald_each_record_is_one_entry_with_its_priority(
    stream: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = logged_to_the_journal(stream, monkeypatch, "text")
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<6>", "<3>"]
    assert lines[2] == "<4>WARNING Health check verification failed: check 'vip-http' is critical"
    assert lines[3] == "<6>INFO a check's output:\\nline two\\nline three"
    # The traceback is in the record's own entry, not in entries of their own.
    assert lines[4].startswith("<3>ERROR a thread failed\\n  | Traceback")
    assert "RuntimeError: boom" in lines[4]


def test_json_under_journald_is_one_object_per_entry(
    stream: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = logged_to_the_journal(stream, monkeypatch, "json")
    assert len(lines) == 5
    # journald strips the prefix: what it stores is the JSON object.
    records = [json.loads(line[3:]) for line in lines]
    assert [r["level"] for r in records] == ["DEBUG", "INFO", "WARNING", "INFO", "ERROR"]
    assert lines[2].startswith("<4>{")
    assert "RuntimeError: boom" in records[4]["exception"]


def test_a_stream_that_is_not_the_journal_gets_no_prefixes(
    stream: TextIO, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # JOURNAL_STREAM is inherited (a hook, `vip-elector status` in a unit's
    # shell, a `2>file`): it names another file than this stream.
    with (tmp_path / "journal").open("w") as journal:
        monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of(journal))
    setup_logging("DEBUG", "text", stream)
    log_some_records()
    lines = lines_written(stream)
    assert not any(line.startswith("<") for line in lines)
    assert lines[2] == "WARNING Health check verification failed: check 'vip-http' is critical"
    # Outside journald a traceback follows on lines of its own.
    assert lines[5] == "  | Traceback (most recent call last):"


def test_a_huge_record_stays_below_journalds_line_limit(
    stream: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", journal_stream_of(stream))
    setup_logging("INFO", "text", stream)
    log.warning("%s", "é" * 100_000)
    (line,) = lines_written(stream)
    # journald's default LineMax is 48 KiB; a longer line becomes several entries.
    assert len(line.encode()) < 48 * 1024
    assert line.endswith("characters)")
