"""Figures and commands the docs copy from the code agree with the code, so that
they cannot drift: the fence left in the fenced mode (Settings.fence_bound),
the version from which upgrades restart in place, and the signal commands."""

from __future__ import annotations

import math
import re
from pathlib import Path

from tests.unit.settings_factory import make_settings
from vip_elector.key_watch import FENCE_REFRESH
from vip_elector.manpage import manual_page
from vip_elector.vip_manager_config import read_vip_manager_config

ROOT = Path(__file__).resolve().parents[2]
USER_DOCS = (
    "README.md",
    "docs/design.md",
    "docs/operations.md",
    "debian/vip-elector.README.Debian",
)

# "3.0 s with `--lock-delay 5s` and `interval: 1000`", "3.0 s of 3.8 s with
# lock-delay 5 s and the example's `interval: 1000`": the fence left (and the
# bound) for the lock-delay and vip-manager interval the sentence names.
FENCE_FIGURE = re.compile(
    r"(?P<left>\d+\.\d) s (?:of (?P<bound>\d+\.\d) s )?with `?(?:--)?lock-delay[ =]"
    r"(?P<delay>\d+) ?s`? and (?:the example's |the bench's )?`?interval: (?P<interval>\d+)`?"
)
# Any fence figure at all, whether or not it names the interval it holds for.
ANY_FENCE_FIGURE = re.compile(r"\d+\.\d s (?:of \d+\.\d s )?with `?(?:--)?lock-delay[ =]\d")


def flat(path: str) -> str:
    """The file's text with its line breaks and indents as single spaces."""
    return " ".join((ROOT / path).read_text().split())


def fence(lock_delay: float, interval_ms: int) -> tuple[float, float]:
    """(bound, what is left of it at worst): the leader's proof is renewed every
    FENCE_REFRESH of the bound, and may be two renewals old when Consul goes quiet."""
    settings = make_settings(lock_delay=lock_delay, vip_manager={"interval_ms": interval_ms})
    bound = settings.fence_bound
    return bound, bound * (1 - 2 * FENCE_REFRESH)


def one_decimal_down(value: float) -> str:
    """An "at least" figure: rounded down, never promising more than the formula."""
    return f"{math.floor(value * 10 + 1e-9) / 10:.1f}"


def test_every_fence_figure_in_the_docs_is_the_formulas() -> None:
    checked = 0
    for path in USER_DOCS:
        text = flat(path)
        figures = list(FENCE_FIGURE.finditer(text))
        assert len(figures) == len(ANY_FENCE_FIGURE.findall(text)), (
            f"{path}: a fence figure that does not say which lock-delay and interval it holds for"
        )
        for found in figures:
            bound, left = fence(float(found["delay"]), int(found["interval"]))
            assert found["left"] == one_decimal_down(left), (path, found[0], left)
            if found["bound"]:
                assert found["bound"] == f"{bound:.1f}", (path, found[0], bound)
            checked += 1
    assert checked >= 5


def test_the_packaged_docs_give_the_fence_of_the_shipped_example() -> None:
    interval = read_vip_manager_config(ROOT / "docs/examples/vip-manager-fenced.yml").interval_ms
    bound, left = fence(5.0, interval)
    assert (one_decimal_down(left), f"{bound:.1f}") == ("3.0", "3.8")
    for path in ("debian/vip-elector.README.Debian", "docs/design.md", "README.md"):
        intervals = {int(f["interval"]) for f in FENCE_FIGURE.finditer(flat(path))}
        assert interval in intervals, (path, intervals)


def test_upgrades_restart_in_place_from_the_release_whose_changelog_brought_sigusr2() -> None:
    changelog = (ROOT / "debian/changelog").read_text()
    # ["", version, body, version, body, ...], newest first
    parts = re.split(r"^vip-elector \(([^)]+)\).*$", changelog, flags=re.MULTILINE)[1:]
    versions, bodies = parts[0::2], parts[1::2]
    with_sigusr2 = [v for v, body in zip(versions, bodies, strict=True) if "SIGUSR2" in body]
    first = with_sigusr2[-1]  # the changelog is newest first
    postinst = (ROOT / "debian/vip-elector.postinst").read_text()
    assert re.search(rf"^SIGUSR2_SINCE={re.escape(first)}$", postinst, re.M)
    assert f"({first} and later)" in flat("docs/operations.md")


def test_every_systemctl_kill_in_the_docs_signals_the_main_process_only() -> None:
    # A --notify hook runs in the unit's cgroup: without --kill-whom=main
    # SIGUSR1 (no handler in a hook) kills it.
    texts = {path: flat(path) for path in USER_DOCS}
    texts["debian/needrestart/vip-elector.conf"] = flat("debian/needrestart/vip-elector.conf")
    texts["vip-elector(8)"] = " ".join(manual_page().replace("\\-", "-").replace("\\%", "").split())
    commands = 0
    for where, text in texts.items():
        for found in re.finditer(r"systemctl kill ([^|;\n]*?)vip-elector", text):
            assert "--kill-whom=main" in found[1], (where, found[0])
            commands += 1
    assert commands >= 5
