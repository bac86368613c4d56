"""Can the packaged unit's user read the files the daemon opens?

`check-config` runs as root (or as the operator); the daemon runs as the unit's
User=vip-elector, with ProtectHome=yes and PrivateTmp=yes. A token file that
root can read but vip-elector cannot passes every other check and then fails
the daemon's start, so `check-config` asks the question for that user: from
the owner, group and mode of the file and of every directory above it (the
user's groups included). POSIX ACLs are not evaluated: a file that has one and
looks unreadable is reported as a doubt, not a failure.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

SERVICE_USER = "vip-elector"  # the units' User= (tests/unit checks it against debian/)

# Hidden from the service by the unit's sandboxing (ProtectHome=yes, PrivateTmp=yes).
HIDDEN = {
    "/home": "ProtectHome=yes",
    "/root": "ProtectHome=yes",
    "/run/user": "ProtectHome=yes",
    "/tmp": "PrivateTmp=yes",  # noqa: S108 - named, not used
    "/var/tmp": "PrivateTmp=yes",  # noqa: S108 - named, not used
}
ACL_ATTRIBUTE = "system.posix_acl_access"


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gids: frozenset[int]


def lookup(name: str) -> User | None:
    """The user ``name`` with all its groups, or None when it does not exist."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    gids = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
    return User(name, entry.pw_uid, frozenset(gids))


def _allowed(info: os.stat_result, user: User, wanted: int) -> bool:
    """Whether the mode bits give ``user`` the ``wanted`` rights (4 read, 1 search)."""
    if user.uid == 0:
        return True
    if info.st_uid == user.uid:
        bits = info.st_mode >> 6
    elif info.st_gid in user.gids:
        bits = info.st_mode >> 3
    else:
        bits = info.st_mode
    return bits & wanted == wanted


def _owner(info: os.stat_result) -> str:
    try:
        owner = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        owner = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return f"mode {stat.S_IMODE(info.st_mode):04o} {owner}:{group}"


def _has_acl(path: str) -> bool:
    try:
        return ACL_ATTRIBUTE in os.listxattr(path)
    except OSError:
        return False


@dataclass(frozen=True)
class Denied:
    """Why ``user`` cannot read a file, and how to fix it; ``doubt`` when it may after all."""

    why: str
    fix: str
    doubt: bool = False


def _unless_acl(path: str, why: str, fix: str) -> Denied:
    if _has_acl(path):
        return Denied(f"{why}, unless its POSIX ACL allows it (not checked)", fix, doubt=True)
    return Denied(why, fix)


def cannot_read(path: str, user: User, directory: bool = False) -> Denied | None:
    """None when ``user`` can read ``path`` (a directory: list and search it)."""
    real = os.path.realpath(path)
    for hidden, setting in HIDDEN.items():
        if real == hidden or real.startswith(hidden + "/"):
            return Denied(
                f"{path} is under {hidden}, which the unit hides from the service ({setting})",
                "move it, e.g. to /etc/vip-elector/ (mode 0750 root:vip-elector), and name "
                "the new path",
            )
    try:
        for parent in reversed(Path(real).parents):
            info = os.stat(parent)
            if not _allowed(info, user, 1):
                return _unless_acl(
                    str(parent),
                    f"{user.name} may not enter the directory {parent} ({_owner(info)})",
                    f"keep the file in /etc/vip-elector/ instead, or let {user.name} search "
                    f"{parent} (`chmod o+x {parent}`)",
                )
        info = os.stat(real)
    except OSError as exc:
        return Denied(
            f"cannot tell whether {user.name} may read {path}: {exc.strerror}",
            "run check-config as root",
            doubt=True,
        )
    if _allowed(info, user, 5 if directory else 4):
        return None
    kind = "directory" if directory else "file"
    mode = "0750" if directory else "0640"
    return _unless_acl(
        real,
        f"{user.name} may not read the {kind} {path} ({_owner(info)})",
        f"`chgrp {user.name} {path} && chmod {mode} {path}` (or copy it into "
        "/etc/vip-elector/ if its group must stay)",
    )
