"""ACL and TLS for real: a default-deny agent with the documented policy, and HTTPS
with a CA and client certificates made at test time."""

from __future__ import annotations

import json
import re
import signal
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import Election, HealthFactory
from tests.testbed.agents import ConsulAgent, TLSFiles, create_acl_token, free_port
from tests.testbed.auth_proxy import BasicAuthProxy
from tests.testbed.elector import run_vip_elector
from tests.testbed.health import HealthCheck
from tests.testbed.scrape import scrape
from tests.testbed.secrets import assert_no_secret
from tests.testbed.waiting import stays_true, wait_until

DOCS_ACL = Path(__file__).resolve().parents[1] / "docs" / "acl.md"


def documented_policy(key: str, service: str, block: int = 0) -> str:
    """An HCL block of docs/acl.md (0: the base policy, 1: for --liveness-ttl)."""
    blocks = re.findall(r"```hcl\n(.*?)```", DOCS_ACL.read_text(), re.DOTALL)
    assert len(blocks) > block, "docs/acl.md lacks the hcl block"
    return str(blocks[block]).replace("service/mycluster/vip", key).replace("vip-guard", service)


@pytest.fixture
def acl_election(
    consul_acl: ConsulAgent, tmp_path: Path, health: HealthFactory
) -> Iterator[Election]:
    race = Election(consul_acl, tmp_path, f"acl-test/{uuid.uuid4().hex[:8]}/leader", health)
    yield race
    race.stop_all()


def documented_token(
    race: Election, name: str, blocks: tuple[int, ...] = (0,)
) -> tuple[HealthCheck, str]:
    """A service with a passing HTTP check, and a token with the docs/acl.md rules for it."""
    service = f"vip-guard-{uuid.uuid4().hex[:6]}"
    check = race.health(race.agent, name, service=service)
    check.wait_status("passing")
    rules = "".join(documented_policy(race.key, service, block) for block in blocks)
    return check, create_acl_token(race.api, f"vip-elector-{name}-{service}", rules)


def test_least_privilege_policy_from_the_docs_is_enough(
    acl_election: Election, tmp_path: Path
) -> None:
    check, token = documented_token(acl_election, "acl")
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")

    node = acl_election.add(
        "node-a",
        check=False,
        check_id=check.check_id,
        env={"CONSUL_HTTP_TOKEN_FILE": str(token_file)},
    )
    assert acl_election.wait_holder(30) is node
    # Steering needs the same policy: both candidates publish their candidacy, and a
    # switchover asked with that token (not the leader's own) moves the VIP.
    other = acl_election.add(
        "node-b",
        check=False,
        check_id=check.check_id,
        env={"CONSUL_HTTP_TOKEN_FILE": str(token_file)},
    )

    def published(value: str) -> bool:
        return acl_election.api.kv_get(f"{acl_election.key}/candidates/{value}") is not None

    for value in ("node-a", "node-b"):
        wait_until(partial(published, value), 20, f"{value}'s candidacy published")
    # `status` with that token: this node's line (agent:read) and every node.
    status = run_vip_elector(
        "status",
        "--vip-manager-config",
        str(acl_election.config),
        "--hostname",
        "node-a",
        "--check-id",
        check.check_id,
        "--json",
        env={"CONSUL_HTTP_TOKEN_FILE": str(token_file)},
    )
    report = json.loads(status.stdout)
    assert "error" not in report["this_node"], report["this_node"]
    assert report["this_node"]["check_status"] == "passing"
    assert {m["value"] for m in report["members"]} == {"node-a", "node-b"}
    asked = run_vip_elector(
        "switchover",
        "--vip-manager-config",
        str(acl_election.config),
        "--hostname",
        "cmd",
        "--to",
        "node-b",
        "--yes",
        env={"CONSUL_HTTP_TOKEN_FILE": str(token_file)},
    )
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert acl_election.wait_holder(10, among=["node-b"]) is other
    assert_no_secret(token, asked.stdout, asked.stderr)
    assert other.elector.terminate() == 0
    assert acl_election.wait_holder(30, among=["node-a"]) is node
    assert node.elector.terminate() == 0
    assert acl_election.api.kv_get(acl_election.key) is None
    assert acl_election.sessions_of(node) == []
    for candidate in (node, other):
        log = candidate.elector.log()
        assert_no_secret(token, log)  # the token is never logged
        assert f"token=file {token_file}" in log
        assert "cannot publish this node's candidacy" not in log


def test_the_documented_liveness_rule_is_enough_for_liveness_ttl(
    acl_election: Election, tmp_path: Path
) -> None:
    check, token = documented_token(acl_election, "live", blocks=(0, 1))
    node = acl_election.add(
        "node-a",
        check=False,
        check_id=check.check_id,
        args=["--liveness-ttl", "3s"],
        env={"CONSUL_HTTP_TOKEN": token},
    )
    assert acl_election.wait_holder(30) is node
    (session,) = acl_election.sessions_of(node)
    assert any(c.endswith("-liveness") for c in session["Checks"])
    assert node.elector.terminate() == 0
    assert acl_election.sessions_of(node) == []
    assert_no_secret(token, node.elector.log())


def test_a_token_without_session_rights_gets_a_clear_error_and_no_crash_loop(
    acl_election: Election,
) -> None:
    check = acl_election.health(acl_election.agent, "nosession")
    check.wait_status("passing")
    rules = (
        f'key "{acl_election.key}" {{ policy = "write" }}\nnode_prefix "" {{ policy = "read" }}\n'
    )
    token = create_acl_token(acl_election.api, f"no-session-{uuid.uuid4().hex[:6]}", rules)

    node = acl_election.add(
        "node-a", check=False, check_id=check.check_id, env={"CONSUL_HTTP_TOKEN": token}
    )
    line = node.elector.wait_log(r"ERROR Failed to create session", 20)
    assert "permission denied" in line.lower()
    assert "session:write" in line  # Consul's own words: what is missing
    assert 'session_prefix "" { policy = "write" }' in line  # and our fix
    assert_no_secret(token, node.elector.log())
    # It keeps trying (slowly) instead of exiting, and takes nothing.
    assert stays_true(lambda: node.elector.running() and acl_election.holder() is None, 3.0)
    assert node.elector.terminate() == 0


def test_a_token_without_node_read_is_told_that_maintenance_goes_unseen(
    acl_election: Election,
) -> None:
    rules = (
        f'key_prefix "{acl_election.key}" {{ policy = "write" }}\n'
        'session_prefix "" { policy = "write" }\n'
    )
    token = create_acl_token(acl_election.api, f"no-node-{uuid.uuid4().hex[:6]}", rules)
    node = acl_election.add("node-a", check=False, env={"CONSUL_HTTP_TOKEN": token})
    wait_until(lambda: acl_election.holder() == "node-a", 30, "node-a leads")
    # Consul answers an empty list for a node the token may not read: that is a
    # missing right (our own node always has serfHealth), not "no maintenance".
    line = node.elector.wait_log("cannot see this node's checks", 20)
    assert 'node_prefix "" { policy = "read" }' in line
    status = run_vip_elector(
        "status",
        "--vip-manager-config",
        str(acl_election.config),
        "--hostname",
        "node-a",
        "--addr",
        acl_election.agent.http_addr,
        env={"CONSUL_HTTP_TOKEN": token},
    )
    assert "leader NOT healthy" not in status.stdout, status.stdout
    assert "lacks node read" in status.stdout, status.stdout
    assert_no_secret(token, node.elector.log() + status.stdout + status.stderr)


def test_denied_writes_under_the_key_back_off_and_sessions_are_destroyed_anyway(
    acl_election: Election,
) -> None:
    rules = (
        f'key "{acl_election.key}" {{ policy = "write" }}\n'  # the key only: no candidates/
        'session_prefix "" { policy = "write" }\nnode_prefix "" { policy = "read" }\n'
    )
    token = create_acl_token(acl_election.api, f"key-only-{uuid.uuid4().hex[:6]}", rules)
    port = free_port()
    node = acl_election.add(
        "node-a",
        check=False,
        env={"CONSUL_HTTP_TOKEN": token},
        args=["--step-down-hold", "0s", "--status-addr", f":{port}"],
    )
    wait_until(lambda: acl_election.holder() == "node-a", 30, "node-a leads")
    (first,) = acl_election.sessions_of(node)
    node.elector.process.send_signal(signal.SIGUSR1)  # a new session; the old one must go
    wait_until(
        lambda: first["ID"] not in [s["ID"] for s in acl_election.sessions_of(node)],
        15,
        "the old session is destroyed although its candidate entry cannot be deleted",
    )
    denied = scrape(port)[("vip_elector_consul_errors_total", (("kind", "permission"),))]
    started = time.monotonic()
    wait_until(lambda: time.monotonic() - started >= 10, 12, "ten seconds pass")
    more = scrape(port)[("vip_elector_consul_errors_total", (("kind", "permission"),))] - denied
    assert more <= 6, more  # every 0.5 s would be 20
    log = node.elector.log()
    # One ERROR for the lasting problem, and a backoff: not a PUT every 0.5 s.
    assert log.count("cannot publish this node's candidacy") == 1, log[-3000:]
    assert node.elector.terminate() == 0


def test_messages_blame_the_missing_right_not_something_else(acl_election: Election) -> None:
    """22.22: a token that may write the key but nothing under it, nor read the agent."""
    check, documented = documented_token(acl_election, "msg")
    key_only = create_acl_token(
        acl_election.api,
        f"key-only-msg-{uuid.uuid4().hex[:6]}",
        f'key "{acl_election.key}" {{ policy = "write" }}\n'
        'session_prefix "" { policy = "write" }\nnode_prefix "" { policy = "read" }\n',
    )
    config = (
        "--vip-manager-config",
        str(acl_election.config),
        "--hostname",
        "node-a",
        "--addr",
        acl_election.agent.http_addr,
        "--check-id",
        check.check_id,
    )
    narrow = run_vip_elector(
        "check-config", "--online", *config, env={"CONSUL_HTTP_TOKEN": key_only}
    )
    assert narrow.returncode == 1, narrow.stdout
    assert "token may NOT answer switchover requests" in narrow.stdout
    assert "token may NOT flag a duplicate of its value" in narrow.stdout
    assert "FAIL  token may NOT write this node's member entry" in narrow.stdout
    assert "WARN  token may NOT read the agent" in narrow.stdout  # only status needs it
    full = run_vip_elector(
        "check-config", "--online", *config, env={"CONSUL_HTTP_TOKEN": documented}
    )
    assert "token may read service vip-guard-" in full.stdout, full.stdout
    assert "token may write this node's member entry" in full.stdout
    assert "token may read the agent" in full.stdout

    node = acl_election.add(
        "node-a", check=False, check_id=check.check_id, env={"CONSUL_HTTP_TOKEN": documented}
    )
    wait_until(lambda: acl_election.holder() == "node-a", 30, "node-a leads")
    asked = run_vip_elector(
        "switchover", *config, "--to", "node-b", "--yes", env={"CONSUL_HTTP_TOKEN": key_only}
    )
    assert asked.returncode == 1
    assert "the token cannot read the candidates" in asked.stdout, asked.stdout
    assert "live: none" not in asked.stdout
    status = run_vip_elector("status", *config, env={"CONSUL_HTTP_TOKEN": key_only})
    line = next(x for x in status.stdout.splitlines() if x.startswith("this node"))
    assert "this node     ? (" in line, status.stdout  # and why
    assert node.elector.terminate() == 0


@pytest.fixture
def tls_election(
    consul_tls: ConsulAgent, tmp_path: Path, health: HealthFactory
) -> Iterator[tuple[Election, TLSFiles]]:
    tls = consul_tls.spec.tls
    assert tls is not None
    race = Election(consul_tls, tmp_path, f"tls-test/{uuid.uuid4().hex[:8]}/leader", health)
    yield race, tls
    race.stop_all()


def tls_env(ca_file: Path, tls: TLSFiles) -> dict[str, str]:
    return {
        "CONSUL_CACERT": str(ca_file),
        "CONSUL_CLIENT_CERT": str(tls.client_cert),
        "CONSUL_CLIENT_KEY": str(tls.client_key),
    }


def test_tls_with_ca_and_client_certificates(tls_election: tuple[Election, TLSFiles]) -> None:
    race, tls = tls_election
    node = race.add("node-a", env=tls_env(tls.ca_file, tls))
    assert race.wait_holder(30) is node
    assert "consul=https://" in node.elector.log()
    assert node.elector.terminate() == 0
    assert race.api.kv_get(race.key) is None


def test_tls_with_an_untrusted_ca_says_what_to_fix(
    tls_election: tuple[Election, TLSFiles],
) -> None:
    race, tls = tls_election
    # The client certificate as CA: a valid PEM file that did not sign the agent's cert.
    node = race.add("node-a", env=tls_env(tls.client_cert, tls))
    line = node.elector.wait_log(r"ERROR .*TLS handshake", 20)
    assert "CONSUL_CACERT" in line
    wait_until(node.elector.running, 1, "still running")
    assert race.holder() is None
    assert node.elector.terminate() == 0


# -- CONSUL_HTTP_AUTH --------------------------------------------------------------------


def test_consul_http_auth_passes_a_proxy_that_wants_basic_auth(election: Election) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    with BasicAuthProxy(election.agent.http_addr, "vip", password) as proxy:
        # Without the variable the proxy turns every request away: no leader.
        outsider = election.add("node-b", addr=proxy.address)
        # (Not just "401": the start-up line carries the proxy's port, 40125 once.)
        line = outsider.elector.wait_log("HTTP 401 Unauthorized", 20)
        assert "authentication required" in line
        assert stays_true(lambda: election.holder() is None, 2.0)
        outsider.elector.terminate()

        node = election.add(
            "node-a", addr=proxy.address, env={"CONSUL_HTTP_AUTH": f"vip:{password}"}
        )
        election.wait_holder(among=["node-a"])
        assert proxy.forwarded > 0
        status = run_vip_elector(
            "status",
            "--vip-manager-config",
            str(election.config),
            "--addr",
            proxy.address,
            env={"CONSUL_HTTP_AUTH": f"vip:{password}"},
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert node.elector.terminate() == 0
    assert "http-auth=user 'vip'" in node.elector.log()
    assert_no_secret(password, node.elector.log(), status.stdout, status.stderr)
