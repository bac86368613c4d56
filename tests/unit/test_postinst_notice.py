"""The postinst says when /etc/default/vip-elector chooses no health check
(issue 24.2's packaged default): an upgrade that installs the shipped file
(VIP_ELECTOR_CHECK_ID= empty) over an unmodified older one would otherwise
leave a node that refuses to start at its next restart, without a word at the
upgrade. The postinst's own shell functions run here on files like the admin's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

POSTINST = Path(__file__).resolve().parents[2] / "debian" / "vip-elector.postinst"
SHIPPED = POSTINST.with_name("vip-elector.default")


def functions() -> str:
    text = POSTINST.read_text()
    start = text.index("health_check_choice() {")
    end = text.index("\n}\n", text.index("health_check_notices() {")) + 3
    return text[start:end]


def notices(directory: Path) -> str:
    script = functions() + f'health_check_notices "{directory}"\n'
    done = subprocess.run(
        ["sh", "-eu", "-c", script], capture_output=True, text=True, check=True, timeout=10
    )
    assert done.stderr == ""
    return done.stdout


def test_the_shipped_file_as_installed_gets_the_notice(tmp_path: Path) -> None:
    (tmp_path / "vip-elector").write_text(SHIPPED.read_text())
    out = notices(tmp_path)
    assert "chooses no health check for vip-elector.service" in out
    assert "refuses to start" in out
    assert "VIP_ELECTOR_CHECK_ID=none" in out


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        ("#VIP_ELECTOR_CHECK_ID=vip-http\n", "sets no VIP_ELECTOR_CHECK_ID"),  # 0.1/0.2's file
        ('VIP_ELECTOR_CHECK_ID=web\nVIP_ELECTOR_CHECK_ID=""\n', "chooses no health check"),
        ("VIP_ELECTOR_CHECK_ID=\nVIP_ELECTOR_CHECK_ID=web\n", None),  # the last one wins
        ("VIP_ELECTOR_CHECK_ID=none\n", None),
        ('VIP_ELECTOR_CHECK_ID=\nVIP_ELECTOR_OPTS="--check-id=web"\n', None),
    ],
)
def test_what_the_file_chooses_is_read_as_systemd_reads_it(
    tmp_path: Path, lines: str, words: str | None
) -> None:
    (tmp_path / "vip-elector").write_text(lines)
    out = notices(tmp_path)
    if words is None:
        assert out == ""
    else:
        assert words in out


def test_an_instance_may_choose_in_its_own_file(tmp_path: Path) -> None:
    (tmp_path / "vip-elector").write_text("VIP_ELECTOR_CHECK_ID=\n")
    (tmp_path / "vip-elector@15-main").write_text("VIP_ELECTOR_CHECK_ID=pg-check\n")
    (tmp_path / "vip-elector@16-main").write_text("VIP_ELECTOR_TTL=15s\n")
    out = notices(tmp_path)
    assert "vip-elector@16-main.service" in out
    assert "vip-elector@15-main.service" not in out
    assert "for vip-elector.service" in out
