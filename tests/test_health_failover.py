"""Health failover off is never silent, on the real agent: without --check-id the
daemon leads on serfHealth alone and says so (a WARNING at start, /status,
/metrics, `vip-elector status`); `--check-id=none` is the same choice made on
purpose, and "none" never reaches Consul as a check id."""

from __future__ import annotations

import json
from typing import Any

import requests

from tests.conftest import Election
from tests.testbed.agents import free_port
from tests.testbed.elector import run_vip_elector
from tests.testbed.scrape import scrape
from tests.testbed.waiting import wait_until

WARNING = "WARNING health failover is OFF: no --check-id"


def local(port: int, path: str) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}{path}", timeout=2)


def checks_of(session: dict[str, Any]) -> set[str]:
    """Every check a session is tied to (Consul 1.14 lists node and service checks apart)."""
    return (
        set(session.get("Checks") or [])
        | set(session.get("NodeChecks") or [])
        | {check["ID"] for check in session.get("ServiceChecks") or []}
    )


def status_command(election: Election, *args: str) -> Any:
    result = run_vip_elector(
        "status", "--vip-manager-config", str(election.config), "--hostname", "node-a", *args
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_without_a_check_id_the_leader_says_health_failover_is_off(election: Election) -> None:
    port = free_port()
    node = election.add("node-a", check=False, args=["--status-addr", f"127.0.0.1:{port}"])
    election.wait_holder()
    (session,) = election.sessions_of(node)
    assert checks_of(session) == {"serfHealth"}
    node.elector.wait_log(WARNING, 10)
    assert "set --check-id (VIP_ELECTOR_CHECK_ID)" in node.elector.log()

    status = wait_until(lambda: local(port, "/status").json(), 10, "/status answers")
    assert status["state"] == "leader"
    assert status["health_check_configured"] is False
    assert status["health_failover"].startswith("OFF: no --check-id")
    assert scrape(port)[("vip_elector_health_check_configured", ())] == 0

    text = status_command(election)
    assert "health check  OFF: no --check-id" in text
    report = json.loads(status_command(election, "--json"))
    assert report["this_node"]["health_check_configured"] is False


def test_check_id_none_leads_on_serf_health_without_a_warning(election: Election) -> None:
    node = election.add("node-a", check=False, check_id="none")
    election.wait_holder()
    # Consul got no check called "none" (it would refuse the session).
    (session,) = election.sessions_of(node)
    assert checks_of(session) == {"serfHealth"}
    assert "check-id=none" in node.elector.wait_log("vip-elector starting", 10)
    assert "health failover is OFF" not in node.elector.log()
    assert "health check  off by choice (--check-id=none)" in status_command(
        election, "--check-id=none"
    )
