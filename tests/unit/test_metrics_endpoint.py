"""/metrics as a Prometheus server and a person with curl see it: content
negotiation, gzip, HEAD, the Server header, blocking queries apart from calls,
and every error kind present from the first scrape.

The status server runs in-process on loopback; the daemon and Consul are not
needed for what is tested here (tests/test_operator.py scrapes a real daemon).
"""

from __future__ import annotations

import gzip
import http.client
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from vip_elector import __version__
from vip_elector.consul_adapter import ERROR_KINDS, ConsulError
from vip_elector.fence import Fence
from vip_elector.metrics import Metrics
from vip_elector.notify import OUTCOMES, HookOutcomes, NotifyRunner
from vip_elector.roles import Cause, Role
from vip_elector.state import DaemonState, Transition
from vip_elector.status_server import StatusServer


class Scraped:
    """What the module's one server serves: each test's own fresh Metrics."""

    metrics = Metrics(DaemonState("service/x/vip", "node-a"), dict)

    @classmethod
    def render(cls, accept: str, accept_encoding: str) -> tuple[bytes, dict[str, str]]:
        return cls.metrics.render(accept, accept_encoding)


@pytest.fixture(scope="module")
def server() -> Iterator[StatusServer]:
    # One server for the module: stopping one takes up to half a second.
    state = DaemonState("service/x/vip", "node-a")
    running = StatusServer(("127.0.0.1", 0), state.snapshot, Scraped.render, lambda: True).start()
    yield running
    running.close()


@pytest.fixture
def metrics() -> Metrics:
    Scraped.metrics = Metrics(DaemonState("service/x/vip", "node-a"), dict)
    return Scraped.metrics


def fetch(
    server: StatusServer, path: str, method: str = "GET", **headers: str
) -> tuple[http.client.HTTPResponse, bytes]:
    connection = http.client.HTTPConnection(*server.address, timeout=5)
    try:
        connection.request(
            method, path, headers={k.replace("_", "-"): v for k, v in headers.items()}
        )
        response = connection.getresponse()
        return response, response.read()
    finally:
        connection.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_error_kind_is_there_at_zero_before_any_error(
    metrics: Metrics, server: StatusServer
) -> None:
    _, body = fetch(server, "/metrics")
    found = samples(body.decode())
    for kind in ERROR_KINDS:
        assert found[("vip_elector_consul_errors_total", (("kind", kind),))] == 0


def test_error_kinds_cover_every_consul_error() -> None:
    def subclasses(cls: type[ConsulError]) -> set[type[ConsulError]]:
        found = set(cls.__subclasses__())
        for sub in list(found):
            found |= subclasses(sub)
        return found

    classes = {ConsulError} | subclasses(ConsulError)
    assert {cls.kind for cls in classes} <= set(ERROR_KINDS)


def test_blocking_queries_do_not_count_as_request_latency(
    metrics: Metrics, server: StatusServer
) -> None:
    metrics.observe_request("GET", 0.004, None, blocking=False)
    metrics.observe_request("GET", 10.3, None, blocking=True)
    metrics.observe_request("PUT", 2.0, "timeout", blocking=False)
    _, body = fetch(server, "/metrics")
    found = samples(body.decode())
    assert found[("vip_elector_consul_request_seconds_count", (("method", "GET"),))] == 1
    assert found[("vip_elector_consul_request_seconds_sum", (("method", "GET"),))] == 0.004
    assert found[("vip_elector_consul_blocking_query_seconds_count", ())] == 1
    assert found[("vip_elector_consul_blocking_query_seconds_bucket", (("le", "15.0"),))] == 1
    assert found[("vip_elector_consul_blocking_query_seconds_bucket", (("le", "10.0"),))] == 0
    assert found[("vip_elector_consul_errors_total", (("kind", "timeout"),))] == 1


def test_openmetrics_when_the_scraper_asks_for_it(server: StatusServer) -> None:
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    response, body = fetch(server, "/metrics", Accept=accept)
    assert response.getheader("Content-Type", "").startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    plain, plain_body = fetch(server, "/metrics")
    assert plain.getheader("Content-Type", "").startswith("text/plain")
    assert b"# EOF" not in plain_body


def test_gzip_when_the_scraper_accepts_it(server: StatusServer) -> None:
    response, body = fetch(server, "/metrics", Accept_Encoding="gzip")
    assert response.getheader("Content-Encoding") == "gzip"
    assert int(response.getheader("Content-Length", "0")) == len(body)
    assert b"vip_elector_state" in gzip.decompress(body)
    plain, plain_body = fetch(server, "/metrics")
    assert plain.getheader("Content-Encoding") is None
    assert b"vip_elector_state" in plain_body


@pytest.mark.parametrize("path", ["/metrics", "/status", "/healthz"])
def test_head_gets_the_headers_of_a_get_and_no_body(server: StatusServer, path: str) -> None:
    get, get_body = fetch(server, path)
    head, head_body = fetch(server, path, method="HEAD")
    assert head.status == get.status == 200
    assert head_body == b""
    assert head.getheader("Content-Type") == get.getheader("Content-Type")
    # /metrics grows between the two scrapes (process metrics); the others do not.
    if path != "/metrics":
        assert head.getheader("Content-Length") == str(len(get_body))


def test_the_server_header_does_not_advertise_python(server: StatusServer) -> None:
    response, _ = fetch(server, "/healthz")
    assert response.getheader("Server") == "vip-elector"


# -- what the monitoring kit (examples/) alerts on -----------------------------------


def scrape(
    metrics: Metrics, accept: str = ""
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.render(accept)
    text = body.decode()
    if accept:  # OpenMetrics: parse as such
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in openmetrics_families(text)  # type: ignore[no-untyped-call]
            for s in family.samples
        }
    return samples(text)


OPENMETRICS = "application/openmetrics-text;version=1.0.0"


@pytest.mark.parametrize("accept", ["", OPENMETRICS])
def test_no_created_series_in_either_format(accept: str) -> None:
    metrics = Metrics(DaemonState("service/x/vip", "node-a"), dict)
    metrics.observe_request("GET", 0.004, "timeout", blocking=False)
    metrics.observe_request("GET", 3.0, None, blocking=True)
    names = {name for name, _ in scrape(metrics, accept)}
    assert "vip_elector_consul_errors_total" in names
    assert "vip_elector_consul_request_seconds_count" in names
    assert [name for name in names if name.endswith("_created")] == []


@pytest.mark.parametrize("accept", ["", OPENMETRICS])
def test_the_build_info_names_version_key_and_value(accept: str) -> None:
    found = scrape(Metrics(DaemonState("service/x/vip", "node-a"), dict), accept)
    (labels,) = [labels for name, labels in found if name == "vip_elector_build_info"]
    assert dict(labels) == {"version": __version__, "key": "service/x/vip", "value": "node-a"}
    assert not [name for name, _ in found if name == "vip_elector_info"]


def test_the_fence_left_is_exported() -> None:
    state = DaemonState("service/x/vip", "node-a")
    fence = Fence()
    metrics = Metrics(
        state,
        lambda: {"fence_bound": 3.8, "session_ttl": 10.0, "fenced_for": round(fence.left(), 3)},
    )
    assert scrape(metrics)[("vip_elector_fence_remaining_seconds", ())] == 0
    fence.set(time.monotonic() + 3.8)
    found = scrape(metrics)
    assert 3.0 < found[("vip_elector_fence_remaining_seconds", ())] <= 3.8
    assert found[("vip_elector_fence_bound_seconds", ())] == 3.8
    assert found[("vip_elector_session_ttl_seconds", ())] == 10.0
    fence.set(0.0)
    assert scrape(metrics)[("vip_elector_fence_remaining_seconds", ())] == 0


def test_lock_acquisitions_are_counted_from_zero_and_adoption_is_not_one() -> None:
    state = DaemonState("service/x/vip", "node-a")
    metrics = Metrics(state, dict)
    assert scrape(metrics)[("vip_elector_lock_acquired_total", ())] == 0
    state.transition(Role.FOLLOWER, Cause.SESSION_CREATED)
    state.transition(Role.LEADER, Cause.ACQUIRED)
    state.transition(Role.FOLLOWER, Cause.KEY_TAKEN)
    state.transition(Role.LEADER, Cause.ACQUIRED)
    assert scrape(metrics)[("vip_elector_lock_acquired_total", ())] == 2

    restarted = DaemonState("service/x/vip", "node-a")
    restarted.transition(Role.FOLLOWER, Cause.ADOPTED)
    restarted.transition(Role.LEADER, Cause.ADOPTED)
    assert restarted.role == Role.LEADER
    assert scrape(Metrics(restarted, dict))[("vip_elector_lock_acquired_total", ())] == 0


def run_one_hook(command: tuple[str, ...], timeout: float, outcomes: HookOutcomes) -> None:
    state = DaemonState("service/x/vip", "node-a")
    runner = NotifyRunner(command, timeout, state, outcomes=outcomes)
    runner.start()
    runner(
        Transition(
            Role.STARTING,
            Role.FOLLOWER,
            Cause.SESSION_CREATED,
            "",
            time.time(),
            "service/x/vip",
            "node-a",
            "s-1",
        )
    )
    runner.close()
    runner.join(timeout + 5)
    assert not runner.is_alive()


def test_hook_failures_and_timeouts_are_counted(tmp_path: Path) -> None:
    outcomes = HookOutcomes()
    metrics = Metrics(DaemonState("service/x/vip", "node-a"), dict, hooks=outcomes)
    before = scrape(metrics)
    for outcome in OUTCOMES:  # every outcome from the first scrape, at 0
        assert before[("vip_elector_notify_runs_total", (("outcome", outcome),))] == 0
    run_one_hook(("true",), 5, outcomes)
    run_one_hook(("sh", "-c", "exit 3"), 5, outcomes)
    run_one_hook(("sh", "-c", "sleep 10"), 0.3, outcomes)
    run_one_hook((str(tmp_path / "no-such-hook"),), 5, outcomes)
    found = scrape(metrics)
    assert {
        outcome: found[("vip_elector_notify_runs_total", (("outcome", outcome),))]
        for outcome in OUTCOMES
    } == {"ok": 1, "failed": 1, "timeout": 1, "superseded": 0, "not_started": 1}


def samples_of(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.render()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


@pytest.mark.parametrize(
    ("extra", "present", "leader_without", "on_non_leader"),
    [
        ({"vip": "present"}, 1.0, 0.0, 0.0),
        ({"vip": "absent", "vip_misplaced": "leader_without_vip"}, 0.0, 1.0, 0.0),
        ({"vip": "present", "vip_misplaced": "vip_on_non_leader"}, 1.0, 0.0, 1.0),
        ({"vip": "unobserved"}, None, 0.0, 0.0),
    ],
)
def test_the_vip_on_this_host_and_a_misplaced_vip_are_exported(
    extra: dict[str, str], present: float | None, leader_without: float, on_non_leader: float
) -> None:
    found = samples_of(Metrics(DaemonState("service/x/vip", "node-a"), lambda: extra))
    assert found.get(("vip_elector_vip_present", ())) == present  # absent when unobserved
    kinds = {
        kind: found[("vip_elector_vip_misplaced", (("problem", kind),))]
        for kind in ("leader_without_vip", "vip_on_non_leader")
    }
    assert kinds == {"leader_without_vip": leader_without, "vip_on_non_leader": on_non_leader}
