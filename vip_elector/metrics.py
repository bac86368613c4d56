"""Prometheus metrics, read from the state machine at scrape time.

Role, transitions, renew failures, acquire attempts and time as leader come
from ``DaemonState`` when scraped (no second copy of the state; the role as
``snapshot`` reports it, so ``vip_elector_state{state="leader"}``, which the
alerts count leaders by, ends with the session's lease as /primary does); only the
Consul request latency and errors are recorded as they happen, by the
adapter's observer. Blocking queries, which wait for a change on purpose,
have a histogram of their own, so the request latency means what it says.

A scrape gets the format its Accept header asks for (OpenMetrics or the
text format), gzipped when Accept-Encoding allows it, through
prometheus_client's own negotiation (the same in Debian's 0.16).

No ``_created`` series: prometheus_client adds one to every counter and
histogram, which doubles their series for a timestamp nobody alerts on.
Newer versions can switch them off (``disable_created_metrics``), 0.16 only
by an environment variable read at import, so they are left out of each
scrape instead (``_without_created``), the same in every version.

The alerting and recording rules and the Grafana dashboard in examples/
use these names; tests/unit/test_monitoring_kit.py keeps them in step.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from vip_elector import __version__
from vip_elector.address_watch import MISPLACED
from vip_elector.consul_adapter import ERROR_KINDS
from vip_elector.notify import HOOK_OUTCOMES, HookOutcomes
from vip_elector.roles import Cause, Role
from vip_elector.state import DaemonState

PREFIX = "vip_elector"


# 0/1 gauges, each read from the status extra of the same name.
_FLAGS = (
    ("healthy", "1 while every thread makes progress"),
    ("candidate", "1 while this node has a session and competes (not FAULT or MAINTENANCE)"),
    (
        "eligible",
        "1 while this node may take the VIP now (a candidate, not in maintenance or a hold)",
    ),
    ("maintenance", "1 while the maintenance file exists"),
    (
        "fenced_mode",
        "1 when vip-manager follows /leader (dcs-type: patroni), so the fence decides "
        "where the VIP is",
    ),
    (
        "health_check_configured",
        "1 when --check-id ties the session to the service's health check; 0: only a "
        "failure of the node, its agent or vip-elector moves the VIP",
    ),
)
# Seconds gauges read from the status extra, when it has them (the configuration's).
_SECONDS = (
    ("session_ttl", "session_ttl_seconds", "the session TTL (--ttl)"),
    (
        "fence_bound",
        "fence_bound_seconds",
        "how long a fresh proof of the lock lets /leader answer 200 (0: it never does)",
    ),
)


class StateCollector:
    """Yields metric families from a state snapshot on every scrape."""

    def __init__(
        self,
        state: DaemonState,
        extra: Callable[[], dict[str, Any]],
        hooks: HookOutcomes = HOOK_OUTCOMES,
    ) -> None:
        self.state = state
        self.extra = extra
        self.hooks = hooks

    def collect(self) -> Iterator[Any]:
        snap = self.state.snapshot()
        extra = self.extra()
        # The key and lock value too: rules join on it to count leaders per key.
        info = InfoMetricFamily(
            f"{PREFIX}_build",
            "vip-elector's version, the trigger-key it elects and this node's lock value",
            labels=["version", "key", "value"],
        )
        info.add_metric([__version__, snap["key"], snap["lock_value"]], {})
        yield info

        role = GaugeMetricFamily(
            f"{PREFIX}_state", "1 for the current state, 0 otherwise", labels=["state"]
        )
        for candidate in Role:
            role.add_metric([candidate.value], 1 if snap["state"] == candidate.value else 0)
        yield role

        yield GaugeMetricFamily(
            f"{PREFIX}_state_since_timestamp_seconds",
            "when the current state began",
            value=snap["since"],
        )
        transitions = CounterMetricFamily(
            f"{PREFIX}_transitions", "state transitions by cause", labels=["from", "to", "cause"]
        )
        for item in snap["counters"]["transitions"]:
            transitions.add_metric([item["from"], item["to"], item["cause"]], item["count"])
        yield transitions
        counters = snap["counters"]
        yield CounterMetricFamily(
            f"{PREFIX}_renew_failures", "failed session renewals", value=counters["renew_failures"]
        )
        yield CounterMetricFamily(
            f"{PREFIX}_acquire_attempts",
            "lock acquire attempts",
            value=counters["acquire_attempts"],
        )
        yield CounterMetricFamily(
            f"{PREFIX}_sessions_created",
            "Consul sessions created",
            value=counters["sessions_created"],
        )
        yield CounterMetricFamily(
            f"{PREFIX}_leader_seconds", "time spent as leader", value=counters["leader_seconds"]
        )
        # From the transitions, but always there (0 from the start), so that
        # increase() sees the first acquisition; adopting our own lock after a
        # restart is not one (the VIP did not move).
        yield CounterMetricFamily(
            f"{PREFIX}_lock_acquired",
            "times this node took the lock (the VIP moved here)",
            value=sum(
                item["count"]
                for item in counters["transitions"]
                if item["to"] == Role.LEADER.value and item["cause"] == Cause.ACQUIRED.value
            ),
        )
        if snap["last_renew"] is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_last_renew_timestamp_seconds",
                "last successful session renewal",
                value=snap["last_renew"],
            )
        for flag, meaning in _FLAGS:
            yield GaugeMetricFamily(f"{PREFIX}_{flag}", meaning, value=1 if extra.get(flag) else 0)
        yield GaugeMetricFamily(
            f"{PREFIX}_step_down_hold_seconds",
            "seconds left of a SIGUSR1 step-down hold",
            value=extra.get("step_down_hold_left", 0.0),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_fence_remaining_seconds",
            "seconds /leader may still answer 200 without a newer proof of the lock "
            "(0: not the leader, or no fence)",
            value=extra.get("fenced_for", 0.0),
        )
        yield from _vip(extra)
        for key, name, meaning in _SECONDS:
            if key in extra:
                yield GaugeMetricFamily(f"{PREFIX}_{name}", meaning, value=extra[key])
        hooks = CounterMetricFamily(
            f"{PREFIX}_notify_runs",
            "--notify hook runs by how they ended: ok, failed (non-zero exit or a "
            "signal), timeout (killed after --notify-timeout), superseded (ended by the "
            "next state change), not_started",
            labels=["outcome"],
        )
        for outcome, count in self.hooks.counts().items():
            hooks.add_metric([outcome], count)
        yield hooks


def _vip(extra: dict[str, Any]) -> Iterator[Any]:
    """The VIP on this host (absent when it cannot be observed), and whether it is
    misplaced past vip-manager's grace, by kind (always there, 0 or 1)."""
    if extra.get("vip") in ("present", "absent"):
        yield GaugeMetricFamily(
            f"{PREFIX}_vip_present",
            "1 while vip-manager.yml's ip is on its interface on this host, 0 while not "
            "(absent when it cannot be observed)",
            value=1 if extra["vip"] == "present" else 0,
        )
    misplaced = GaugeMetricFamily(
        f"{PREFIX}_vip_misplaced",
        "1 while the VIP has been misplaced for longer than vip-manager needs to move it: "
        "leader_without_vip (no node answers for it), vip_on_non_leader (two may)",
        labels=["problem"],
    )
    for kind in MISPLACED.values():
        misplaced.add_metric([kind], 1 if extra.get("vip_misplaced") == kind else 0)
    yield misplaced


class _WithoutCreated(Collector):
    """A registry as scraped, without the ``_created`` samples (see the module's doc)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        for family in self.registry.collect():
            # Every collect() builds new families: changing them changes nothing else.
            created = f"{family.name}_created"
            family.samples = [s for s in family.samples if s.name != created]
            yield family


class Metrics:
    """The registry: state at scrape time, Consul requests as they happen."""

    def __init__(
        self,
        state: DaemonState,
        extra: Callable[[], dict[str, Any]],
        hooks: HookOutcomes = HOOK_OUTCOMES,
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(StateCollector(state, extra, hooks))
        ProcessCollector(registry=self.registry)
        self.request_seconds = Histogram(
            f"{PREFIX}_consul_request_seconds",
            "Consul HTTP request latency, blocking queries excluded",
            ["method"],
            registry=self.registry,
            # Requests time out after at most 5 s.
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.blocking_seconds = Histogram(
            f"{PREFIX}_consul_blocking_query_seconds",
            "how long Consul held blocking queries (up to their wait when nothing changed)",
            registry=self.registry,
            buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300, 600),
        )
        self.errors = Counter(
            f"{PREFIX}_consul_errors",
            "failed Consul requests by kind",
            ["kind"],
            registry=self.registry,
        )
        # Every kind exists from the start at 0, so rate() and alerts see the
        # first error as an increase rather than as a new series.
        for kind in ERROR_KINDS:
            self.errors.labels(kind)

    def observe_request(
        self, method: str, seconds: float, error: str | None, blocking: bool
    ) -> None:
        """The adapter's observer (called on the worker threads)."""
        if blocking:
            self.blocking_seconds.observe(seconds)
        else:
            self.request_seconds.labels(method).observe(seconds)
        if error:
            self.errors.labels(error).inc()

    def render(self, accept: str = "", accept_encoding: str = "") -> tuple[bytes, dict[str, str]]:
        """The metrics as the scraper's Accept and Accept-Encoding headers ask, and the
        headers that say how they are encoded."""
        encoder, content_type = choose_encoder(accept)
        body = bytes(encoder(_WithoutCreated(self.registry)))
        headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
        if gzip_accepted(accept_encoding):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return body, headers
