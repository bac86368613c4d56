# vip-elector developer entry points. `make demo` shows it working,
# `make test` runs the test suite (what CI runs, see .ci/run).

PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
PYTEST_ARGS ?=

# The system Python with Debian bookworm's packages (python3-consul 0.7.1...).
DEBIAN_PYTHON ?= /usr/bin/python3
SOAK_MINUTES ?= 10

.PHONY: help install test test-rules test-debian test-lowest lint testbed demo bench soak clean \
	sim sim-mutants

help:
	@echo "make demo         a real failover on a local Consul agent, with its timeline"
	@echo "make test         unit tests (seconds), then the suite against real Consul, a cluster, vip-manager"
	@echo "make test-rules   promtool checks and tests the monitoring kit in examples/ (part of make test)"
	@echo "make test-debian  the same suite on Debian bookworm's library versions"
	@echo "make test-lowest  unit, config and ACL/TLS tests on setup.cfg's lowest versions from PyPI"
	@echo "make lint         ruff + mypy --strict"
	@echo "make testbed      build Consul and vip-manager (cached in ~/.cache/vip-elector)"
	@echo "make install      create $(VENV) with vip-elector (editable) and the test tools"
	@echo "make bench        failover benchmark, side by side with the Go original if given"
	@echo "make soak         $(SOAK_MINUTES) minutes of random faults with invariant checks"
	@echo "make sim          seeded schedules of the real decision core in a simulated world"
	@echo "                  (SIM_SEEDS=300, SIM_MINUTES=30 for the long run, SEED=n to replay one,"
	@echo "                  MUTANT=name to run it with a mutation of the table applied)"
	@echo "make sim-mutants  the mutation table: broken builds the simulation must catch"
	@echo "make deb          build the Debian package (system Python)"
	@echo "make deb-test     install the .deb into a clean debootstrapped bookworm and run it"

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

testbed:
	$(PYTHON) -m tests.testbed.binaries

# The fast unit layer first (seconds, no Consul), then the real-Consul suite.
test: install testbed test-rules
	$(VPY) -m pytest -q tests/unit
	$(VPY) -m pytest --ignore=tests/unit $(PYTEST_ARGS)

# The monitoring kit: the alerting and recording rules parse and pass their
# unit tests, and so do the Grafana dashboard's queries (promtool is in
# Debian's `prometheus` package; tests/unit/test_monitoring_kit.py checks
# that the names they use are the ones vip-elector exports).
PROMTOOL ?= promtool
test-rules: install
	@command -v $(PROMTOOL) >/dev/null || { echo "$(PROMTOOL) not found: apt-get install" \
	    "prometheus (Debian's package has promtool), or make PROMTOOL=/path/to/promtool" >&2; exit 1; }
	$(PROMTOOL) check rules examples/prometheus/vip-elector.rules.yml
	$(PROMTOOL) test rules examples/prometheus/vip-elector.rules.test.yml
	@queries=$$(mktemp --suffix=.yml) && trap 'rm -f "$$queries"' EXIT && \
	    $(VPY) -m tests.monitoring_kit >"$$queries" && \
	    echo "$(PROMTOOL) check rules <the queries of examples/grafana/vip-elector.json>" && \
	    $(PROMTOOL) check rules "$$queries"

# Same tests, run by Debian's python3 with Debian's python3-consul 0.7.1,
# python3-configargparse 1.5.3, ... (apt-get install them first; .ci/run does).
# Two files are left to `make test`, to keep CI within its budget: neither
# reaches a library path the rest does not. The fault suite drives the same
# daemons and Consul calls through faults (the error paths through requests
# and py-consul are test_faults.py's and test_consul_errors.py's, which run
# here); the differential test checks the simulated Consul, not our code.
DEBIAN_PYTEST = env -u VIRTUAL_ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin PYTHONPATH=$(CURDIR) \
	    $(DEBIAN_PYTHON) -m pytest -p no:cacheprovider
DEBIAN_LEFT_TO_MAKE_TEST = tests/test_fault_suite.py tests/test_sim_fidelity.py
test-debian: testbed
	$(DEBIAN_PYTEST) -q tests/unit
	@echo "test-debian: $(DEBIAN_LEFT_TO_MAKE_TEST) run in make test only (no library path of their own, see the Makefile)"
	$(DEBIAN_PYTEST) --ignore=tests/unit $(addprefix --ignore=,$(DEBIAN_LEFT_TO_MAKE_TEST)) $(PYTEST_ARGS)

# The lowest versions setup.cfg allows (each install_requires lower bound,
# pinned; python -m tests.lowest_requirements), from PyPI into a venv of
# their own: the unit and configuration tests, and the ACL/TLS/auth tests on
# real agents, whose requests go through the py-consul internals the adapter
# subclasses.
LOWEST_VENV ?= .venv-lowest
$(LOWEST_VENV)/.installed: setup.cfg
	rm -rf $(LOWEST_VENV)
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOWEST_VENV)/bin/python -m pip install --quiet $$($(PYTHON) -m tests.lowest_requirements) \
	    'pytest>=7.2' 'pytest-timeout>=2.1'
	touch $@

test-lowest: $(LOWEST_VENV)/.installed testbed
	$(LOWEST_VENV)/bin/python -m pip freeze | grep -iE '^(py-consul|pyyaml|configargparse|tenacity|requests|prometheus-client)=='
	$(LOWEST_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/test_config.py tests/test_security.py

demo: install testbed
	$(VPY) -m tests.testbed.demo

# BENCH_ARGS="--mode both": the fenced mode side by side (needs vip-manager v5);
# "--quick": 2 runs per scenario; "--scenarios H,G": a subset
bench: install testbed
	$(VPY) -m bench.failover $(BENCH_ARGS)

# SOAK_ARGS=--fenced: vip-manager follows vip-elector's /leader (needs vip-manager v5)
soak: install testbed
	$(VPY) -m bench.soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

# The deterministic simulation (tests/sim): SIM_SEEDS schedules from seed 1, or
# SIM_MINUTES of wall time, or SEED=n alone with its trace on a violation.
SIM_SEEDS ?= 300
SIM_MINUTES ?=
SEED ?=
MUTANT ?=
sim: install
	$(VPY) -m tests.sim --seeds $(SIM_SEEDS) $(if $(SIM_MINUTES),--minutes $(SIM_MINUTES)) \
	    $(if $(SEED),--seed $(SEED)) $(if $(MUTANT),--mutant $(MUTANT))

SIM_MUTANT_SEEDS ?= 250
sim-mutants: install
	$(VPY) -m tests.sim --mutants --seeds $(SIM_MUTANT_SEEDS)

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
# bookworm and runs it there, its autopkgtest (debian/tests/smoke) included,
# also under systemd (systemd-nspawn). Both need root (apt, debootstrap,
# chroot).
DEB_DIR ?= dist/deb
.PHONY: deb deb-test

deb:
	bash debian/build-deb.sh $(DEB_DIR)

deb-test: deb
	bash tests/packaging/deb_test.sh $(DEB_DIR)
# --- end of Debian package ---
