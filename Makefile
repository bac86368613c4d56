# vip-elector developer entry points. `make demo` shows it working,
# `make test` runs the test suite (what CI runs, see .ci/run).

PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help install test lint testbed demo bench soak deb deb-test clean

help:
	@echo "make install   create $(VENV) with vip-elector (editable) and the test tools"
	@echo "make testbed   build Consul and vip-manager for the tests (cached in ~/.cache/vip-elector)"
	@echo "make test      lint-free? run 'make lint'; this runs the test suite on the real test bed"
	@echo "make lint      ruff + mypy --strict"
	@echo "make demo      a real failover on a local Consul, with its timeline"
	@echo "make bench     failover benchmark (see bench/README.md)"
	@echo "make deb       build the Debian package (system Python)"
	@echo "make deb-test  install the .deb into a clean debootstrapped bookworm and run it"

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

testbed:
	$(PYTHON) -m tests.testbed.binaries

test: install testbed
	$(VPY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check vip_elector tests bench
	$(VENV)/bin/ruff format --check vip_elector tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# --- Debian package (debian/) ---
# `make deb` builds $(DEB_DIR)/vip-elector_<version>_all.deb with the system
# Python (not pyenv's or the virtualenv's) from a copy of the working tree,
# installing missing Build-Depends first, and runs lintian on it.
# `make deb-test` installs that .deb into a freshly debootstrapped Debian
# bookworm and runs it there, also under systemd (systemd-nspawn). Both need
# root (apt, debootstrap, chroot).
DEB_DIR ?= dist/deb
.PHONY: deb deb-test

deb:
	bash debian/build-deb.sh $(DEB_DIR)

deb-test: deb
	bash tests/packaging/deb_test.sh $(DEB_DIR)
# --- end of Debian package ---
