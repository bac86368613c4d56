"""--notify hooks the tests give the daemon."""

from __future__ import annotations

from pathlib import Path


def hook_script(path: Path, body: str) -> Path:
    """An executable /bin/sh script at ``path`` running ``body`` (lines, newline-ended)."""
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path
