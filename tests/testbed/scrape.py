"""A daemon's status endpoint as the tests read it: URLs and /metrics samples."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def status_url(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"


def scrape(port: int) -> Samples:
    """The daemon's /metrics, sample by (name, labels)."""
    text = requests.get(status_url(port, "/metrics"), timeout=2).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
