"""`check-config` asks whether the unit's user (vip-elector) can read the token and
TLS files, not whether the operator running it can, and says how to fix it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.settings_factory import make_settings
from vip_elector import config_check, service_user
from vip_elector.service_user import User, cannot_read

SERVICE = User("vip-elector", 4242, frozenset({4242}))
UNITS = Path(__file__).resolve().parents[2] / "debian"


def test_the_user_is_the_units() -> None:
    for unit in ("vip-elector.service", "vip-elector@.service"):
        assert f"\nUser={service_user.SERVICE_USER}\n" in (UNITS / unit).read_text()


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A token file 0600 in a directory the service may enter (pytest's tmp_path is
    under a 0700 directory). The unit's PrivateTmp= would hide it: that rule is
    tested on its own below."""
    monkeypatch.setattr(service_user, "HIDDEN", {})
    directory = Path(tempfile.mkdtemp(prefix="vip-elector-access-"))
    try:
        directory.chmod(0o755)
        path = directory / "consul.token"
        path.write_text("secret\n")
        path.chmod(0o600)
        yield path
    finally:
        shutil.rmtree(directory)


def test_a_file_only_its_owner_reads_is_refused_with_the_fix(token: Path) -> None:
    denied = cannot_read(str(token), SERVICE)
    assert denied is not None
    assert denied.why.startswith(f"vip-elector may not read the file {token} (mode 0600 ")
    assert f"chgrp vip-elector {token} && chmod 0640 {token}" in denied.fix


def test_the_services_group_with_read_rights_is_enough(token: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving the file to another group needs root")
    os.chown(token, 0, SERVICE.uid)
    token.chmod(0o640)
    assert cannot_read(str(token), SERVICE) is None
    token.chmod(0o600)
    assert cannot_read(str(token), SERVICE) is not None
    os.chown(token, SERVICE.uid, 0)  # its own file, 0600
    assert cannot_read(str(token), SERVICE) is None


def test_a_directory_it_may_not_enter_is_named(token: Path) -> None:
    token.chmod(0o644)
    token.parent.chmod(0o750)
    denied = cannot_read(str(token), SERVICE)
    assert denied is not None
    assert f"may not enter the directory {token.parent}" in denied.why


def test_a_file_under_tmp_or_home_is_hidden_by_the_unit(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("x")
    path.chmod(0o644)
    denied = cannot_read(str(path), SERVICE)
    assert denied is not None
    assert "which the unit hides from the service (PrivateTmp=yes)" in denied.why
    home = cannot_read("/root/consul.token", SERVICE)
    assert home is not None
    assert "ProtectHome=yes" in home.why


def test_check_config_fails_for_the_service_user_and_says_how_to_fix_it(
    token: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(service_user, "lookup", lambda name: SERVICE)
    settings = make_settings(consul={"token_file": str(token), "token_source": "file"})
    assert config_check.run(settings, with_online=False) == config_check.EXIT_FAILED
    out = capsys.readouterr().out
    assert f"FAIL  vip-elector may not read the file {token}" in out
    assert "the daemon will not start; fix: `chgrp vip-elector" in out

    token.chmod(0o644)
    assert config_check.run(settings, with_online=False) == config_check.EXIT_OK
    assert f"ok    the service user vip-elector can read the token file {token}" in (
        capsys.readouterr().out
    )


def test_without_the_service_user_nothing_is_checked(
    token: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(service_user, "lookup", lambda name: None)
    settings = make_settings(consul={"token_file": str(token)})
    assert config_check.run(settings, with_online=False) == config_check.EXIT_OK
    assert "service user" not in capsys.readouterr().out
