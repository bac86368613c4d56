"""The runtime directory's last fallback lies in the temporary directory, where
anybody may create things first: a directory another user owns or may write,
or a link planted at the record's temporary name, once made the daemon write
where somebody else chose."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from vip_elector import runtime_dir
from vip_elector.runtime_dir import Held, InstanceLock, SessionRecord, runtime_directory


@pytest.fixture
def tmpdir_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No RUNTIME_DIRECTORY, no /run/vip-elector, no XDG_RUNTIME_DIR: the fallback
    under the temporary directory (here ``tmp_path``) is what is left."""
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(runtime_dir, "SYSTEM_DIRECTORY", tmp_path / "absent" / "vip-elector")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path / f"vip-elector-{os.getuid()}"


def test_the_fallback_is_created_for_this_user_alone(tmpdir_only: Path) -> None:
    assert runtime_directory() == tmpdir_only
    info = tmpdir_only.stat()
    assert info.st_uid == os.getuid()
    assert info.st_mode & 0o077 == 0
    lock = InstanceLock("agent", "key", "value")
    lock.acquire()
    lock.release()
    assert runtime_directory() == tmpdir_only  # and used again


def test_a_fallback_others_may_write_is_refused_saying_what_to_do(tmpdir_only: Path) -> None:
    tmpdir_only.mkdir()
    tmpdir_only.chmod(0o777)
    with pytest.raises(OSError, match="may be written by group or others") as refused:
        runtime_directory()
    message = str(refused.value)
    assert (
        f"the runtime directory {tmpdir_only} may be written by group or others (mode 0777)"
        in message
    )
    assert f"rm -rf {tmpdir_only}" in message
    assert "RUNTIME_DIRECTORY" in message
    with pytest.raises(OSError, match="may be written by group or others"):
        InstanceLock("agent", "key", "value").acquire()
    with pytest.raises(OSError, match="may be written by group or others"):
        SessionRecord("agent", "key", "value").save(Held("s-1", None))
    assert list(tmpdir_only.iterdir()) == []  # nothing written there


def test_a_fallback_that_is_a_link_is_refused(tmpdir_only: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    tmpdir_only.symlink_to(elsewhere)
    with pytest.raises(OSError, match="is a symbolic link"):
        runtime_directory()
    assert list(elsewhere.iterdir()) == []


@pytest.mark.skipif(os.getuid() != 0, reason="giving a directory to another user needs root")
def test_a_fallback_another_user_owns_is_refused(tmpdir_only: Path) -> None:
    tmpdir_only.mkdir(mode=0o700)
    os.chown(tmpdir_only, 54321, -1)
    with pytest.raises(OSError, match="belongs to uid 54321, not to this user"):
        runtime_directory()


def test_a_link_planted_at_the_records_temporary_name_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(run))
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    record = SessionRecord("agent", "key", "value")
    planted = record.path.with_name(f".{record.path.name}.{os.getpid()}")
    planted.symlink_to(target)
    record.save(Held("session-1", 12.5))
    assert target.read_text() == "keep me\n"
    assert not planted.is_symlink()
    assert record.load() == Held("session-1", 12.5)
    assert not record.path.is_symlink()
