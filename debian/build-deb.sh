#!/bin/bash
# Build the vip-elector .deb (`make deb`): dpkg-buildpackage -us -uc -b with
# the system Python, from a copy of the working tree, then lintian.
#
#   debian/build-deb.sh [OUTPUT_DIR]      (default: dist/deb)
#
# Why a copy: a build in place would run `debian/rules clean` over the tree,
# and pybuild's clean deletes every __pycache__ and .pyc below it (the
# developer's .venv included), .pytest_cache and .coverage; dpkg-buildpackage
# also writes its results into the parent directory. The copy holds what
# `git ls-files --cached --others --exclude-standard` lists, i.e. the working
# tree as it is (uncommitted edits and new files included) without what
# .gitignore excludes (virtualenvs, caches, earlier build results).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-dist/deb}
case "$out" in /*) ;; *) out=$repo/$out ;; esac

# The system interpreter and Debian's modules, whatever the caller's PATH
# (pyenv shims, a virtualenv) says.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV PYENV_VERSION PYTHONSTARTUP || true
export LC_ALL=C.UTF-8

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"
	elif command -v sudo >/dev/null; then sudo "$@"
	else echo "build-deb: need root to run: $*" >&2; return 1
	fi
}

apt_install_build_deps() {
	# Needs apt >= 1.1 (build-dep of a source directory); refreshes the
	# package lists once if the first try fails.
	as_root env DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -q "$repo" ||
		{ as_root apt-get update -q &&
		  as_root env DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -q "$repo"; }
}

cd "$repo"
if ! command -v dpkg-checkbuilddeps >/dev/null; then
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dpkg-dev
fi
if ! dpkg-checkbuilddeps debian/control 2>/dev/null; then
	echo "build-deb: installing the missing Build-Depends" >&2
	apt_install_build_deps
	dpkg-checkbuilddeps debian/control
fi
if ! command -v lintian >/dev/null; then
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q lintian
fi

version=$(dpkg-parsechangelog -l debian/changelog -S Version)
stage=$(mktemp -d "${TMPDIR:-/tmp}/vip-elector-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
src=$stage/vip-elector-$version
mkdir "$src"

if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# Tracked files deleted in the working tree are skipped.
	git -C "$repo" ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
		tar --null --no-recursion -T - -cf - | tar -xf - -C "$src"
else
	tar --exclude=./.git --exclude=./.venv --exclude=./dist --exclude='*/__pycache__' \
		-cf - . | tar -xf - -C "$src"
fi

# DEB_BUILD_VERSION=V builds the same code as version V (the upgrade test of
# `make deb-test` installs such a package over the real one): a changelog
# entry and __version__ in the copy, never in the checkout.
if [ -n "${DEB_BUILD_VERSION:-}" ]; then
	{
		printf 'vip-elector (%s) bookworm; urgency=medium\n\n  * Test build.\n\n' "$DEB_BUILD_VERSION"
		printf ' -- %s  %s\n\n' "$(dpkg-parsechangelog -l "$src/debian/changelog" -S Maintainer)" \
			"$(date -R)"
		cat "$src/debian/changelog"
	} >"$src/debian/changelog.new"
	mv "$src/debian/changelog.new" "$src/debian/changelog"
	sed -i "s/^__version__ = .*/__version__ = \"$DEB_BUILD_VERSION\"/" "$src/vip_elector/__init__.py"
	version=$DEB_BUILD_VERSION
fi

started=$(date +%s)
(cd "$src" && dpkg-buildpackage -us -uc -b)
echo "build-deb: dpkg-buildpackage took $(( $(date +%s) - started )) s"

mkdir -p "$out"
rm -f "$out"/vip-elector_*.deb "$out"/vip-elector_*.buildinfo "$out"/vip-elector_*.changes
mv "$stage"/vip-elector_"$version"_* "$out"/
deb=$out/vip-elector_${version}_all.deb

echo "build-deb: $deb"
dpkg-deb --field "$deb" Package Version Architecture Depends Suggests
echo "build-deb: lintian $(dpkg-query -W -f='${Version}' lintian)"
# lintian leaves scratch files in TMPDIR: give it one of its own.
lintmp=$(mktemp -d "${TMPDIR:-/tmp}/vip-elector-lintian.XXXXXX")
trap 'rm -rf "$stage" "$lintmp"' EXIT
# lintian reads a copy in its own directory, and runs from there: as root it
# runs as nobody, who may not enter the checkout (mktemp -d makes it 0700).
cp "$deb" "$lintmp/"
lint=(env TMPDIR="$lintmp" HOME="$lintmp" lintian --fail-on "error,warning" --pedantic --display-info "$(basename "$deb")")
if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null; then
	# lintian advises against running as root
	chown -R nobody "$lintmp"
	(cd "$lintmp" && runuser -u nobody -- "${lint[@]}")
else
	(cd "$lintmp" && "${lint[@]}")
fi
echo "build-deb: lintian: no errors or warnings"
