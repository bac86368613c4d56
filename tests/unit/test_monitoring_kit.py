"""The monitoring kit (examples/prometheus, examples/grafana) cannot drift from the
code: every metric name and label value it uses is one a scrape of vip-elector's
collector has, every recorded name it uses is recorded, every alert has a rule
test that fires it and one that does not. (`make test-rules` runs promtool on
the rules, their tests and the dashboard's queries.)"""

from __future__ import annotations

from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

from tests.monitoring_kit import (
    DASHBOARD,
    MATCHER,
    METRIC,
    RECORDED,
    ROOT,
    RULE_TESTS,
    RULES,
    dashboard,
    dashboard_queries,
    expressions,
    rule_tests,
    rules,
)
from tests.unit.settings_factory import make_settings
from vip_elector.coordinator import Coordinator
from vip_elector.metrics import Metrics
from vip_elector.roles import Cause, Role
from vip_elector.state import DaemonState


def full_scrape() -> tuple[set[str], dict[str, set[str]]]:
    """Sample names and label values of a node with everything exported once: a
    session, a fenced /leader, a Consul call, an error and a blocking query."""
    state = DaemonState("service/x/vip", "node-a")
    state.count_session_created()
    state.transition(Role.FOLLOWER, Cause.SESSION_CREATED)
    settings = make_settings(status_addr=("127.0.0.1", 9876), lock_delay=5.0)
    metrics = Metrics(state, Coordinator(settings).status)
    metrics.observe_request("GET", 0.01, "timeout", blocking=False)
    metrics.observe_request("GET", 10.0, None, blocking=True)
    body, _ = metrics.render()
    names: set[str] = set()
    values: dict[str, set[str]] = defaultdict(set)
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            names.add(sample.name)
            for label, value in sample.labels.items():
                values[label].add(value)
    return names, values


def test_every_metric_the_kit_uses_is_exported() -> None:
    exported, _ = full_scrape()
    used = {(name, where) for where, expr in expressions() for name in METRIC.findall(expr)}
    assert used, "no vip_elector_* names found: the kit moved?"
    missing = sorted(f"{name} ({where})" for name, where in used if name not in exported)
    assert missing == [], f"not exported by vip_elector/metrics.py: {missing}"


def test_every_label_value_the_kit_matches_on_is_exported() -> None:
    _, values = full_scrape()
    checked = 0
    for where, expr in expressions():
        for label, _, pattern in MATCHER.findall(expr):
            if label in ("state", "outcome", "kind"):
                for alternative in pattern.split("|"):
                    assert alternative in values[label], f"{where}: {label}={alternative!r}"
                    checked += 1
    assert checked > 10


def test_every_recorded_name_used_is_recorded() -> None:
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for where, expr in expressions():
        for name in RECORDED.findall(expr):
            assert name in recorded, f"{where} uses {name}, which no rule records"


def test_every_alert_has_a_test_that_fires_it_and_one_that_does_not() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in rule_tests():
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert alerts - fires == set(), "alerts no test fires"
    assert alerts - quiet == set(), "alerts no test keeps quiet"
    assert (fires | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_the_dashboard_queries_filter_on_the_key_variable() -> None:
    board = dashboard()
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource", "key"]
    for where, expr in dashboard_queries():
        if where.startswith("panel"):
            assert '{key=~"$key"}' in expr, where
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["description"], panel["title"]


def test_the_debian_package_ships_the_kit() -> None:
    shipped = (ROOT / "debian" / "vip-elector.examples").read_text().split()
    for path in (RULES, RULE_TESTS, DASHBOARD):
        assert str(path.relative_to(ROOT)) in shipped
