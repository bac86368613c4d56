"""Reading the files an operator names (vip-manager.yml, --config, a token file), safely.

Only regular files, read with a size cap: ``/dev/zero`` or a 40 MB file is a
configuration error, not a MemoryError, and a FIFO is refused instead of
hanging the reader (the main thread reads them again on SIGHUP and must
never block). Text must be UTF-8. Every failure is a :class:`FileProblem` saying what
is wrong with the file, never what is in it.
"""

from __future__ import annotations

import os
import stat

YAML_LIMIT = 1 << 20  # 1 MiB: a vip-manager.yml or --config file is a few hundred bytes
TOKEN_LIMIT = 64 << 10  # 64 KiB


class FileProblem(Exception):
    """The file cannot be used; ``unreadable`` when it could not even be opened or read."""

    def __init__(self, reason: str, unreadable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreadable = unreadable


def read_bounded(path: str, limit: int) -> bytes:
    """The contents of the regular file ``path`` (at most ``limit`` bytes)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise FileProblem(str(exc.strerror or exc), unreadable=True) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem("not a regular file (a device, FIFO or directory); name a file")
        if info.st_size > limit:
            raise FileProblem(
                f"{info.st_size} bytes is too large (at most {limit}): is it the right file?"
            )
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # it grew while we read it
            raise FileProblem(f"larger than {limit} bytes: is it the right file?")
        return b"".join(chunks)
    except OSError as exc:
        raise FileProblem(str(exc.strerror or exc), unreadable=True) from None
    finally:
        os.close(fd)


def read_text(path: str, limit: int) -> str:
    """Like :func:`read_bounded`, decoded as UTF-8 (vip-manager's YAML is UTF-8 too)."""
    data = read_bounded(path, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileProblem(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
        ) from None
