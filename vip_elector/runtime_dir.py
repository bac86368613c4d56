"""The runtime directory: what one daemon keeps on this machine between its runs.

- A lock: one vip-elector per (Consul agent, trigger-key, lock value) on a
  machine. A second daemon with the same configuration would share the first
  one's liveness check and session name, deregister the check when it exits
  and so take the lock away from the leader; it refuses to start instead.
- The session record: the id of the session this configuration holds, and
  since when it leads. A daemon that exits without releasing (killed,
  crashed, aborted by the watchdog, restarting in place) leaves it behind;
  the next one adopts that session, and the VIP does not move.

The directory is systemd's ``$RUNTIME_DIRECTORY`` (the units set
``RuntimeDirectory=vip-elector``), else ``/run/vip-elector`` when it can be
used, else ``$XDG_RUNTIME_DIR/vip-elector``, else a per-user directory under
the temporary directory. Anybody can create that last one before us, so it is
used only if it is a real directory of this user that nobody else may write
(else the daemon refuses to start, saying what to fix), and the record is
written through a new file of its own (``O_EXCL|O_NOFOLLOW``), never through
a link somebody planted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

RECORD_LIMIT = 4096


class AlreadyRunning(Exception):
    """Another daemon holds this configuration's lock."""


def instance_id(*parts: str) -> str:
    """A readable, unambiguous file-name-safe id for ``parts``.

    The slug is for people; the hash of the parts, joined with a separator
    that cannot occur in them, makes ``a/b-c`` + ``d`` differ from ``a/b`` +
    ``c-d``.
    """
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts)).strip("-")[:80]
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
    return f"{slug}-{digest}"


SYSTEM_DIRECTORY = Path("/run/vip-elector")


def runtime_directory(environ: dict[str, str] | None = None) -> Path:
    """Where this daemon keeps its lock and session record (raises OSError, saying
    what to fix, when there is no safe place)."""
    env = dict(os.environ if environ is None else environ)
    candidates = []
    if env.get("RUNTIME_DIRECTORY"):
        candidates.append(Path(env["RUNTIME_DIRECTORY"].split(":")[0]))
    candidates.append(SYSTEM_DIRECTORY)
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append(Path(env["XDG_RUNTIME_DIR"]) / "vip-elector")
    for directory in candidates:
        with contextlib.suppress(OSError):
            directory.mkdir(mode=0o700, parents=False, exist_ok=True)
            if os.access(directory, os.W_OK | os.X_OK):
                return directory
    return private_directory(Path(tempfile.gettempdir()) / f"vip-elector-{os.getuid()}")


def private_directory(path: Path) -> Path:
    """``path`` as a directory only this user may write: created (0700) if absent.

    It lies in a directory everybody may write (/tmp): another user could have
    created it first, or put a link there, and then plant files (a link at the
    record's name) in it. Such a directory is refused, with what to do.
    """
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = os.lstat(path)
    me = os.getuid()
    problem = None
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory"
    elif info.st_uid != me:
        problem = f"belongs to uid {info.st_uid}, not to this user (uid {me})"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"may be written by group or others (mode {stat.S_IMODE(info.st_mode):04o})"
    if problem is not None:
        raise OSError(
            f"the runtime directory {path} {problem}: another user could plant files "
            f"in it. Have it removed (`rm -rf {path}`), or set RUNTIME_DIRECTORY to a "
            "directory only this user may write (systemd's RuntimeDirectory= makes one)"
        )
    return path


class InstanceLock:
    """An exclusive ``flock`` on ``<runtime dir>/<id>.lock``, held while the daemon runs.

    The kernel drops it when the process dies, however it dies: no stale locks.
    """

    def __init__(self, agent: str, trigger_key: str, lock_value: str) -> None:
        self.name = instance_id(agent, trigger_key, lock_value)
        self.path: Path | None = None
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise AlreadyRunning (with the holder's pid) or OSError."""
        path = runtime_directory() / f"{self.name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(f"pid {holder} (lock {path})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


@dataclass(frozen=True)
class Held:
    """What the session record says."""

    session: str
    leader_since: float | None  # wall clock; None while the session is a follower's


class SessionRecord:
    """``<runtime dir>/<id>.session``: written atomically, read with a size cap."""

    def __init__(self, agent: str, trigger_key: str, lock_value: str) -> None:
        self.name = instance_id(agent, trigger_key, lock_value)

    @property
    def path(self) -> Path:
        return runtime_directory() / f"{self.name}.session"

    def load(self) -> Held | None:
        """The record, or None (none, unreadable, or not ours: never an error)."""
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                data = json.loads(os.read(fd, RECORD_LIMIT))
            finally:
                os.close(fd)
            since = data.get("leader_since")
            return Held(str(data["session"]), float(since) if since is not None else None)
        return None

    def save(self, held: Held) -> None:
        path = self.path
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        # A new file, never one that is there (a link somebody planted, or one
        # left by a dead process with our pid: unlink does not follow links).
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600)
        try:
            os.write(
                fd,
                json.dumps({"session": held.session, "leader_since": held.leader_since}).encode(),
            )
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)

    def clear(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
