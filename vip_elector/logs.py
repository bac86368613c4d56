"""Logging: text or one JSON object per line, through a queue.

Log records go through a queue to a listener thread (as Patroni does), so a
slow or blocked log sink (a full pipe, a stalled journald) never stalls the
election or the renewer. Under systemd the text format carries no timestamp
(journald adds one); elsewhere it does.

When stderr is the journald stream systemd gave the service (JOURNAL_STREAM
names it), every record is one line starting with an sd-daemon priority
prefix (``<4>`` for a warning): journald strips the prefix and files the
entry at that priority, so ``journalctl -p warning`` works. journald makes
an entry of every line, so there a record's traceback goes on the same line,
its line breaks written as ``\\n``.
"""

from __future__ import annotations

import copy
import json
import logging
import logging.handlers
import os
import queue
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, TextIO

# Fields a record may carry via ``extra=``; JSON output always has these names.
STRUCTURED_FIELDS = ("event", "state", "previous", "key", "value", "session", "cause")

# The running queue listener, if any (a list so the functions need no `global`).
_listeners: list[logging.handlers.QueueListener] = []


def untrusted(text: str, limit: int = 200) -> str:
    """Text from outside (a request line, a hook's output) made safe for one log line.

    Control and other unprintable characters are escaped (no forged log lines,
    no terminal escapes), and it is cut at ``limit`` characters.
    """
    escaped = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
        for ch in text[:limit]
    )
    return escaped + _cut_note(text, limit)


def _cut_note(text: str, limit: int) -> str:
    """What follows ``text[:limit]`` to say how much was cut ("" if nothing)."""
    return f"...(+{len(text) - limit} characters)" if len(text) > limit else ""


def one_line(text: str) -> str:
    """``text`` with its line breaks written as ``\\r`` and ``\\n``."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


class Reminder:
    """When a problem that lasts is worth a log line: at once, whenever it
    changes, and then every ``every`` seconds while it stays the same, so a
    lasting problem is neither silent nor a flood."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._last: tuple[str, float] | None = None

    def due(self, problem: str) -> bool:
        now = time.monotonic()
        last = self._last
        if last is not None and last[0] == problem and now - last[1] < self.every:
            return False
        self._last = (problem, now)
        return True

    def clear(self) -> None:
        """The problem is over: the next one is logged at once."""
        self._last = None


class Reminders:
    """A :class:`Reminder` for each of many things (one per KV entry, say), for
    all threads. Bounded: past ``limit`` things it starts afresh (each is then
    logged once more), so names chosen by somebody else cannot grow it."""

    def __init__(self, every: float, limit: int = 256) -> None:
        self.every = every
        self.limit = limit
        self._lock = threading.Lock()
        self._reminders: dict[str, Reminder] = {}

    def due(self, thing: str, problem: str) -> bool:
        with self._lock:
            reminder = self._reminders.get(thing)
            if reminder is None:
                if len(self._reminders) >= self.limit:
                    self._reminders.clear()
                reminder = self._reminders[thing] = Reminder(self.every)
            return reminder.due(problem)


def running_under_systemd(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


def writes_to_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is the journald stream systemd connected the service to.

    JOURNAL_STREAM is ``<device>:<inode>`` of that stream (systemd.exec(5)); it
    is inherited by children and survives a ``2>file``, so the stream itself is
    compared, as sd-daemon advises: a redirected stderr gets no prefixes.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        status = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):  # also io.UnsupportedOperation
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


def journal_priority(levelno: int) -> int:
    """The syslog priority of a logging level (sd-daemon(3): 3 err ... 7 debug)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


# journald splits lines longer than its LineMax (48 KiB by default) into
# several entries; a record is cut well below that (4 bytes a character at most).
JOURNAL_RECORD_LIMIT = 11_000


class JsonFormatter(logging.Formatter):
    """One JSON object per line with stable field names."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "message": record.getMessage(),
            "event": getattr(record, "event", "log"),
        }
        for name in STRUCTURED_FIELDS[1:]:
            value = getattr(record, name, None)
            if value is not None:
                document[name] = value
        document["thread"] = record.threadName
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """One line per record: a line break inside a message (a check's output, a
    Consul error body) is written as ``\\n``, so no message can start a line
    that looks like a record of its own. A traceback follows on lines that
    start with ``  | ``."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return one_line(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return "\n".join(f"  | {line}" for line in super().formatException(ei).splitlines())


class JournalFormatter(logging.Formatter):
    """Another formatter's output as one journal entry: a priority prefix, and
    the line breaks of a traceback (or of anything else) escaped."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        text = one_line(self.inner.format(record))
        cut = text[:JOURNAL_RECORD_LIMIT] + _cut_note(text, JOURNAL_RECORD_LIMIT)
        return f"<{journal_priority(record.levelno)}>{cut}"


class _Handoff(logging.handlers.QueueHandler):
    """Puts records on the queue with their exception, for the listener's formatter.

    The standard QueueHandler formats the record itself (for a queue to
    another process) and drops ``exc_info``: the traceback would be glued to
    the message, never the JSON ``exception`` field nor the text format's own
    lines. Only the message is resolved here, as its arguments may change
    before the listener runs.
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        record.msg = record.getMessage()
        record.args = None
        return record


def make_formatter(
    log_format: str, environ: Mapping[str, str] | None = None, stream: TextIO | None = None
) -> logging.Formatter:
    """The formatter for ``log_format``; for the journald stream, one prefixed entry a record."""
    formatter: logging.Formatter
    if log_format == "json":
        formatter = JsonFormatter()
    elif running_under_systemd(environ):
        formatter = TextFormatter("%(levelname)s %(message)s")
    else:
        formatter = TextFormatter("%(asctime)s %(levelname)s %(message)s")
    if stream is not None and writes_to_journal(stream, environ):
        return JournalFormatter(formatter)
    return formatter


def setup_logging(
    level: str = "INFO", log_format: str = "text", stream: TextIO | None = None
) -> None:
    """Route the ``vip_elector`` logger through a queue to ``stream`` (stderr)."""
    stop_logging()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(log_format, stream=handler.stream))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, handler, respect_handler_level=False)
    listener.start()
    _listeners.append(listener)
    logger = logging.getLogger("vip_elector")
    logger.handlers[:] = [_Handoff(records)]
    logger.setLevel(level.upper())
    logger.propagate = False


def apply_settings(level: str, log_format: str) -> None:
    """Change level and format at once (SIGHUP)."""
    logger = logging.getLogger("vip_elector")
    logger.setLevel(level.upper())
    for listener in _listeners:
        for handler in listener.handlers:
            stream = handler.stream if isinstance(handler, logging.StreamHandler) else None
            handler.setFormatter(make_formatter(log_format, stream=stream))


def stop_logging() -> None:
    """Flush the queue (called at exit so the last lines are not lost)."""
    while _listeners:
        _listeners.pop().stop()
