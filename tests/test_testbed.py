"""Smoke tests of the test bed itself: the Consul behaviour everything else relies on.

These use no vip-elector code. They prove that the agents, the cluster, the
health endpoints and vip-manager behave as the election code assumes, so a
later failure is a vip-elector bug and not a test-bed artefact.
"""

from __future__ import annotations

from collections.abc import Callable

import requests

from tests.conftest import HealthFactory
from tests.testbed.agents import ConsulAgent, ConsulCluster, create_acl_token
from tests.testbed.consul_http import LOCK_FLAG
from tests.testbed.netns import VipLab
from tests.testbed.waiting import wait_until


def _session_tied_to_check_is_invalidated(
    agent: ConsulAgent, health: HealthFactory, key: str
) -> None:
    check = health(agent, "smoke")
    check.wait_status("passing")
    api = agent.api()
    session = api.session_create(
        Name="smoke",
        Behavior="delete",
        TTL="10s",
        LockDelay="1s",
        Checks=["serfHealth", check.check_id],
    )
    assert api.kv_put(key, "node-a", acquire=session, flags=LOCK_FLAG)
    entry = api.kv_get(key)
    assert entry is not None
    assert entry.session == session
    assert entry.flags == LOCK_FLAG

    check.set("500")

    wait_until(
        lambda: api.session_info(session) is None,
        15,
        "Consul invalidates the session once its check is critical",
    )
    wait_until(
        lambda: api.kv_get(key) is None, 5, "Behavior=delete removes the key with the session"
    )
    assert check.status() == "critical"


def test_dev_agent_invalidates_session_when_http_check_fails(
    consul_dev: ConsulAgent, health: HealthFactory, key_prefix: str
) -> None:
    _session_tied_to_check_is_invalidated(consul_dev, health, f"{key_prefix}/leader")


def test_cluster_client_invalidates_session_when_http_check_fails(
    consul_cluster: ConsulCluster, health: HealthFactory
) -> None:
    node = consul_cluster.clients[0]
    _session_tied_to_check_is_invalidated(node, health, "smoke/leader")
    # The cluster really has three servers and its clients all see one leader.
    leaders = {agent.api().leader() for agent in consul_cluster.agents}
    assert len(leaders) == 1
    assert len(consul_cluster.servers) == 3


def test_cluster_elects_a_new_consul_leader_when_the_leader_is_killed(
    consul_cluster: ConsulCluster,
) -> None:
    old = consul_cluster.leader_server()
    old.kill()
    new = consul_cluster.wait_leader(timeout=30, not_this=old)
    assert new is not old
    client = consul_cluster.clients[0].api()
    wait_until(
        lambda: client.leader().startswith(f"{new.spec.ip}:"),
        15,
        "a client agent follows the new Consul leader",
    )


def test_lock_delay_blocks_acquire_after_invalidation(
    consul_dev: ConsulAgent, key_prefix: str
) -> None:
    """The fact the election loop's retry timing is built on."""
    api = consul_dev.api()
    key = f"{key_prefix}/leader"
    first = api.session_create(Name="a", Behavior="delete", TTL="10s", LockDelay="3s")
    second = api.session_create(Name="b", Behavior="delete", TTL="10s", LockDelay="3s")
    assert api.kv_put(key, "a", acquire=first, flags=LOCK_FLAG)
    api.session_destroy(first)
    assert api.kv_get(key) is None
    assert api.kv_put(key, "b", acquire=second, flags=LOCK_FLAG) is False
    wait_until(
        lambda: api.kv_put(key, "b", acquire=second, flags=LOCK_FLAG), 6, "the lock-delay ends"
    )
    api.session_destroy(second)


def test_acl_agent_denies_anonymous_and_accepts_scoped_token(consul_acl: ConsulAgent) -> None:
    anonymous = consul_acl.api(token="00000000-0000-0000-0000-000000000002")
    response = anonymous.request("PUT", "/v1/kv/acl-smoke", raw_body=b"x")
    assert response.status_code == 403
    token = create_acl_token(consul_acl.api(), "acl-smoke", 'key "acl-smoke" { policy = "write" }')
    assert consul_acl.api(token=token).kv_put("acl-smoke", "x")


def test_tls_agent_requires_client_certificate(consul_tls: ConsulAgent) -> None:
    assert consul_tls.http_url.startswith("https://")
    assert consul_tls.api().leader()
    tls = consul_tls.spec.tls
    assert tls is not None
    try:
        requests.get(f"{consul_tls.http_url}/v1/status/leader", verify=str(tls.ca_file), timeout=5)
    except requests.exceptions.SSLError:
        pass  # verify_incoming: no client certificate, no connection
    else:
        raise AssertionError("the TLS agent accepted a client without a certificate")


def test_vip_manager_adds_and_removes_the_vip_in_a_namespace(
    vip_lab: Callable[..., VipLab],
) -> None:
    lab = vip_lab(["a", "b"])
    lab.start_vip_managers()
    assert lab.server is not None
    api = lab.server.api()
    assert lab.holders() == []

    api.kv_put(lab.trigger_key, "a")
    wait_until(lambda: lab.holders() == ["a"], 10, "vip-manager on a adds the VIP")

    api.kv_delete(lab.trigger_key)
    wait_until(lambda: lab.holders() == [], 10, "vip-manager on a removes the VIP")
