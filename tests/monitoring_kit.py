"""The monitoring kit in examples/: its PromQL, as tests and promtool see it.

``python -m tests.monitoring_kit`` prints the Grafana dashboard's queries as
a rule file, so that `make test-rules` has ``promtool check rules`` parse
them too (Grafana's ``$key`` replaced by a regular expression).
tests/unit/test_monitoring_kit.py checks the names in all of them against
what vip-elector exports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "examples" / "prometheus" / "vip-elector.rules.yml"
RULE_TESTS = ROOT / "examples" / "prometheus" / "vip-elector.rules.test.yml"
DASHBOARD = ROOT / "examples" / "grafana" / "vip-elector.json"

# A metric name that is not part of a recorded name (level:metric:operations).
METRIC = re.compile(r"(?<![\w:])(vip_elector_\w+)")
RECORDED = re.compile(r"(?<![\w:])([a-z_]+:vip_elector_\w+:\w+)")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def rules() -> list[dict[str, Any]]:
    """Every rule of the rules file, recording and alerting."""
    data = yaml.safe_load(RULES.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def rule_tests() -> list[dict[str, Any]]:
    return list(yaml.safe_load(RULE_TESTS.read_text())["tests"])


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every query of the dashboard, its variables' included."""
    board = dashboard()
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", text)
            yield f"variable {variable['name']}", inner.group(1) if inner else text


def expressions() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every expression of the kit: rules, rule tests, dashboard."""
    for rule in rules():
        yield rule.get("alert") or rule["record"], rule["expr"]
    for number, test in enumerate(rule_tests()):
        for series in test.get("input_series", []):
            yield f"rule test {number} input", series["series"]
        for case in test.get("promql_expr_test", []):
            yield f"rule test {number}", case["expr"]
    yield from dashboard_queries()


def as_rule_file() -> str:
    """The dashboard's queries as recording rules, for `promtool check rules`."""
    records = [
        {"record": f"dashboard:query_{number}:check", "expr": expr.replace("$key", ".+")}
        for number, (_, expr) in enumerate(dashboard_queries())
    ]
    return str(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))


if __name__ == "__main__":  # pragma: no cover - `python -m tests.monitoring_kit`
    print(as_rule_file(), end="")
