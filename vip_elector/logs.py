"""Logging: text or one JSON object per line, through a queue.

Log records go through a queue to a listener thread (as Patroni does), so a
slow or blocked log sink (a full pipe, a stalled journald) never stalls the
election or the renewer. Under systemd the text format carries no timestamp
(journald adds one); elsewhere it does.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import queue
import sys
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
    cut = text[:limit]
    escaped = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in cut
    )
    if len(text) > limit:
        escaped += f"...(+{len(text) - limit} characters)"
    return escaped


def running_under_systemd(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


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
        return super().formatMessage(record).replace("\r", "\\r").replace("\n", "\\n")

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return "\n".join(f"  | {line}" for line in super().formatException(ei).splitlines())


def make_formatter(log_format: str, environ: Mapping[str, str] | None = None) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if running_under_systemd(environ):
        return TextFormatter("%(levelname)s %(message)s")
    return TextFormatter("%(asctime)s %(levelname)s %(message)s")


def setup_logging(
    level: str = "INFO", log_format: str = "text", stream: TextIO | None = None
) -> None:
    """Route the ``vip_elector`` logger through a queue to ``stream`` (stderr)."""
    stop_logging()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, handler, respect_handler_level=False)
    listener.start()
    _listeners.append(listener)
    logger = logging.getLogger("vip_elector")
    logger.handlers[:] = [logging.handlers.QueueHandler(records)]
    logger.setLevel(level.upper())
    logger.propagate = False


def apply_settings(level: str, log_format: str) -> None:
    """Change level and format at once (SIGHUP)."""
    logger = logging.getLogger("vip_elector")
    logger.setLevel(level.upper())
    for listener in _listeners:
        for handler in listener.handlers:
            handler.setFormatter(make_formatter(log_format))


def stop_logging() -> None:
    """Flush the queue (called at exit so the last lines are not lost)."""
    while _listeners:
        _listeners.pop().stop()
