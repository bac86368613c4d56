"""Go-style durations ("500ms", "10s", "1m30s"), as the Go original's flags and Consul take them."""

from __future__ import annotations

import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Parse a Go duration into seconds.

    Accepts what Go's ``time.ParseDuration`` accepts for non-negative values:
    a sequence of decimal numbers with units (``ns us ms s m h``), or ``0``.
    Raises ValueError with a message naming the accepted form.
    """
    spec = text.strip()
    if spec == "0":
        return 0.0
    position = 0
    total = 0.0
    for match in _PART.finditer(spec):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if not spec or position != len(spec):
        raise ValueError(
            f"invalid duration {text!r}: use a number with a unit, "
            "e.g. 500ms, 10s, 1m30s (units: ns, us, ms, s, m, h)"
        )
    return total


def format_duration(seconds: float) -> str:
    """Format seconds the way Go prints a duration (and Consul parses it).

    ``10.0`` -> ``10s``, ``0.5`` -> ``500ms``, ``90`` -> ``1m30s``, ``0`` -> ``0s``.
    """
    if seconds < 0:
        raise ValueError(f"negative duration: {seconds}")
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s" if seconds == 0 else f"{round(seconds * 1e6)}us"
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    out = ""
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    out += f"{secs}.{ms:03d}".rstrip("0").rstrip(".") + "s"
    return out
