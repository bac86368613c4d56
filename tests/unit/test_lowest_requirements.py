"""`make test-lowest` pins every install_requires lower bound of setup.cfg."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lowest_requirements import lowest_pins


def write_setup_cfg(tmp_path: Path, *requirements: str) -> Path:
    path = tmp_path / "setup.cfg"
    lines = "".join(f"    {r}\n" for r in requirements)
    path.write_text(f"[options]\n# a comment\ninstall_requires =\n{lines}")
    return path


def test_each_lower_bound_is_pinned_and_caps_are_dropped(tmp_path: Path) -> None:
    setup_cfg = write_setup_cfg(tmp_path, "py-consul>=1.2,<2", "tenacity >= 8.2.1")
    assert lowest_pins(setup_cfg) == ["py-consul==1.2", "tenacity==8.2.1"]


def test_a_requirement_without_a_lower_bound_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="requests"):
        lowest_pins(write_setup_cfg(tmp_path, "requests"))


def test_the_projects_own_requirements_all_have_lower_bounds() -> None:
    pins = lowest_pins()
    assert len(pins) == 6
    assert "py-consul==1.2" in pins
