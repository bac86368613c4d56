"""Where the test bed's binaries come from and where they are cached.

This is the one place that knows the versions, the cache layout and how to
build each binary. ``make testbed`` runs :func:`main`; the fixtures, the demo
and the benchmark call :func:`consul_bin` / :func:`vip_manager_bin`, which
honour the ``CONSUL_BIN`` / ``VIP_MANAGER_BIN`` overrides.

The binaries are cached outside the repository
(``$XDG_CACHE_HOME/vip-elector/testbed/<name>-<version>/``), so a fresh clone
on the same machine reuses them and a fresh machine rebuilds them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TESTBED_DIR = Path(__file__).resolve().parent

# Consul 1.14.5 (2023-03-07) is MPL-2.0, from before the August 2023 licence
# change, and its dependency graph has neither consul/envoyextensions nor
# consul/troubleshoot. Later 1.14 patch releases need an api module version
# that was never published (the proxy has api v1.18.0 and v1.20.0 only).
CONSUL_VERSION = "1.14.5"

# vip-manager: the Go module proxy reachable here refuses every version of
# github.com/cybertec-postgresql/vip-manager (403 "This module version is not
# available", see tests/testbed/README.md), so v5.0.0 cannot be fetched.
# - Given its source tarball (VIP_MANAGER_SRC=path, upstream's tag v5.0.0 made
#   with `git archive`, BSD-2-Clause), the test bed builds v5.0.0: what users
#   run today, and the only one with the `dcs-type: patroni` mode the fenced
#   /leader endpoint needs. .ci/run passes the copy CI has.
# - Without it: upstream 1.0.2, as Debian distributes it (orig tarball), which
#   has the Consul leader checker (Debian's own build only drops it because
#   consul/api is not packaged).
# Either is built as the main module with its own go.mod and its dependencies
# from the module proxy. When both are built, the tests use v5.
VIP_MANAGER_V5_VERSION = "5.0.0"
VIP_MANAGER_SRC_ENV = "VIP_MANAGER_SRC"
VIP_MANAGER_VERSION = "1.0.2"
VIP_MANAGER_TARBALL_URL = (
    "http://deb.debian.org/debian/pool/main/v/vip-manager/vip-manager_1.0.2.orig.tar.gz"
)
VIP_MANAGER_TARBALL_SHA256 = "ba601d3b9e6f5f08a5da942e54a0df21e06ef512d7ee480a47e13e3cddef8922"


class TestbedMissing(RuntimeError):
    """A test-bed binary is neither overridden nor built."""


def cache_root() -> Path:
    """The directory the test bed builds into (outside the repository)."""
    override = os.environ.get("VIP_ELECTOR_TESTBED_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vip-elector" / "testbed"


@dataclass(frozen=True)
class Binary:
    """One binary of the test bed."""

    name: str
    version: str
    env_override: str

    @property
    def cached_path(self) -> Path:
        return cache_root() / f"{self.name}-{self.version}" / self.name

    def path(self) -> Path:
        """The binary to use: the env override, else the cached build."""
        override = os.environ.get(self.env_override)
        if override:
            return Path(override)
        return self.cached_path

    def require(self) -> Path:
        """Like :meth:`path`, but raise :class:`TestbedMissing` if it is not there."""
        path = self.path()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise TestbedMissing(
                f"{self.name} {self.version} not found at {path}: run `make testbed` "
                f"(or set {self.env_override} to an existing binary)"
            )
        return path


CONSUL = Binary("consul", CONSUL_VERSION, "CONSUL_BIN")
VIP_MANAGER = Binary("vip-manager", VIP_MANAGER_VERSION, "VIP_MANAGER_BIN")
VIP_MANAGER_V5 = Binary("vip-manager", VIP_MANAGER_V5_VERSION, "VIP_MANAGER_BIN")


def consul_bin() -> Path:
    return CONSUL.require()


def vip_manager_binary() -> Binary:
    """v5 when the test bed has built it (or VIP_MANAGER_BIN says so), else 1.0.2."""
    override = os.environ.get("VIP_MANAGER_BIN")
    if override:
        return VIP_MANAGER_V5 if _reports_v5(Path(override)) else VIP_MANAGER
    return VIP_MANAGER_V5 if VIP_MANAGER_V5.cached_path.is_file() else VIP_MANAGER


def _reports_v5(path: Path) -> bool:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return False
    return out.stdout.startswith("version: 5.")


def vip_manager_bin() -> Path:
    return vip_manager_binary().require()


def vip_manager_has_patroni_mode() -> str | None:
    """None when the test bed's vip-manager has `dcs-type: patroni`, else why not."""
    if vip_manager_binary() is VIP_MANAGER_V5:
        return None
    return (
        f"the test bed's vip-manager is {VIP_MANAGER_VERSION}, which has no `dcs-type: "
        f"patroni` mode (since 2.8); build v{VIP_MANAGER_V5_VERSION} with "
        f"{VIP_MANAGER_SRC_ENV}=path/to/vip-manager-{VIP_MANAGER_V5_VERSION}.tar.gz "
        "make testbed (the Go module proxy refuses that module)"
    )


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Static binaries, no C toolchain surprises; the module cache is shared.
    env["CGO_ENABLED"] = "0"
    env.setdefault("GOFLAGS", "-mod=mod")
    return env


def _install(built: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    shutil.copy2(built, tmp)
    tmp.chmod(0o755)
    tmp.replace(target)  # atomic: a half-written binary is never "cached"


def build_consul(target: Path) -> None:
    """Build Consul from the wrapper module in tests/testbed/consul."""
    with tempfile.TemporaryDirectory(prefix="consul-build-") as tmp:
        out = Path(tmp) / "consul"
        subprocess.run(
            [
                "go",
                "build",
                "-trimpath",
                # Consul 1.14's dependencies use //go:linkname in ways newer
                # linkers refuse by default.
                "-ldflags=-checklinkname=0",
                "-o",
                str(out),
                ".",
            ],
            cwd=TESTBED_DIR / "consul",
            env=_go_env(),
            check=True,
        )
        _install(out, target)


def _download(url: str, sha256: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - fixed https/http URL
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise RuntimeError(f"{url}: sha256 {digest} != expected {sha256}")
    dest.write_bytes(data)


def build_vip_manager(target: Path) -> None:
    """Build upstream vip-manager from Debian's orig tarball as the main module."""
    with tempfile.TemporaryDirectory(prefix="vip-manager-build-") as tmp:
        tarball = Path(tmp) / "vip-manager.orig.tar.gz"
        _download(VIP_MANAGER_TARBALL_URL, VIP_MANAGER_TARBALL_SHA256, tarball)
        with tarfile.open(tarball) as archive:
            # The tarball's sha256 is pinned above; the filter (where this
            # Python has it) is a second line of defence.
            if hasattr(tarfile, "data_filter"):
                archive.extractall(tmp, filter="data")
            else:  # pragma: no cover - Pythons before 3.11.4
                archive.extractall(tmp)  # noqa: S202
        src = Path(tmp) / f"vip-manager-{VIP_MANAGER_VERSION}"
        out = Path(tmp) / "vip-manager"
        subprocess.run(
            ["go", "build", "-trimpath", "-ldflags=-checklinkname=0", "-o", str(out), "."],
            cwd=src,
            env=_go_env(),
            check=True,
        )
        _install(out, target)


def build_vip_manager_v5(target: Path) -> None:
    """Build vip-manager v5 from the source tarball VIP_MANAGER_SRC names."""
    source = Path(os.environ[VIP_MANAGER_SRC_ENV])
    with tempfile.TemporaryDirectory(prefix="vip-manager-build-") as tmp:
        with tarfile.open(source) as archive:
            if hasattr(tarfile, "data_filter"):
                archive.extractall(tmp, filter="data")
            else:  # pragma: no cover - Pythons before 3.11.4
                archive.extractall(tmp)  # noqa: S202
        (src,) = [p for p in Path(tmp).iterdir() if (p / "go.mod").is_file()]
        out = Path(tmp) / "vip-manager"
        subprocess.run(
            [
                "go",
                "build",
                "-trimpath",
                # What upstream's release build stamps in (`vip-manager --version`).
                f"-ldflags=-X main.version={VIP_MANAGER_V5_VERSION}",
                "-o",
                str(out),
                ".",
            ],
            cwd=src,
            env=_go_env(),
            check=True,
        )
        _install(out, target)


BUILDERS = {CONSUL: build_consul, VIP_MANAGER: build_vip_manager}


def builders() -> dict[Binary, Callable[[Path], None]]:
    """What `make testbed` builds: v5 too when its source tarball is given."""
    chosen: dict[Binary, Callable[[Path], None]] = dict(BUILDERS)
    if os.environ.get(VIP_MANAGER_SRC_ENV):
        chosen[VIP_MANAGER_V5] = build_vip_manager_v5
    return chosen


def main() -> int:
    """Build what is missing, then print where every binary is."""
    if shutil.which("go") is None:
        print("make testbed: the `go` command is needed to build the test bed", file=sys.stderr)
        return 1
    if not os.environ.get(VIP_MANAGER_SRC_ENV) and not VIP_MANAGER_V5.cached_path.is_file():
        print(
            f"vip-manager {VIP_MANAGER_V5_VERSION}: not built ({VIP_MANAGER_SRC_ENV} is not "
            "set); the tests use 1.0.2 and skip the patroni-mode tests"
        )
    for binary, builder in builders().items():
        target = binary.cached_path
        if os.environ.get(binary.env_override):
            print(f"{binary.name}: using {binary.env_override}={binary.path()}")
            continue
        if target.is_file():
            print(f"{binary.name} {binary.version}: cached at {target}")
            continue
        print(f"{binary.name} {binary.version}: building into {target} ...", flush=True)
        started = time.monotonic()
        builder(target)
        print(f"{binary.name} {binary.version}: built in {time.monotonic() - started:.0f}s")
    print(f"CONSUL_BIN={consul_bin()}")
    print(f"VIP_MANAGER_BIN={vip_manager_bin()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
