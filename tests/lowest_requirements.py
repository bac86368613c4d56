"""The lowest versions setup.cfg allows: each install_requires lower bound, pinned.

``python -m tests.lowest_requirements`` prints them one per line; `make
test-lowest` installs them from PyPI into a venv of their own and runs tests
with them, so a lower bound the code has outgrown fails CI rather than a
user's ``pip install`` next to older libraries.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"
_BOUND = re.compile(r"(?P<name>[A-Za-z0-9_.-]+)\s*>=\s*(?P<version>[0-9][^,;\s]*)\s*(,.*)?")


def lowest_pins(setup_cfg: Path = SETUP_CFG) -> list[str]:
    """``name==lower-bound`` for every install_requires line of ``setup_cfg``."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg, encoding="utf-8")
    pins = []
    for line in parser["options"]["install_requires"].splitlines():
        requirement = line.strip()
        if not requirement:
            continue
        found = _BOUND.fullmatch(requirement)
        if found is None:
            raise ValueError(f"{setup_cfg}: {requirement!r} has no lower bound (>=) to test")
        pins.append(f"{found['name']}=={found['version']}")
    return pins


if __name__ == "__main__":  # pragma: no cover - `python -m tests.lowest_requirements`
    print("\n".join(lowest_pins()))
