"""The Consul answers the unit layer's translation table is built from
(tests/unit/consul_bodies.py) are what the real agent says today."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest
import requests

from tests.testbed.agents import ConsulAgent, create_acl_token, new_token
from tests.testbed.consul_http import ConsulHTTP
from tests.unit.consul_bodies import ANSWERS, Answer


def matches(answer: Answer, response: requests.Response) -> bool:
    pattern = re.escape(answer.body).replace(re.escape("{id}"), "[0-9a-f-]{36}")
    pattern = pattern.replace(re.escape('"node"'), '"[^"]+"')
    return response.status_code == answer.code and re.fullmatch(pattern, response.text) is not None


def provoke(dev: ConsulHTTP, acl: ConsulAgent) -> dict[str, Callable[[], requests.Response]]:
    unknown = str(uuid.uuid4())
    key = f"vip-elector-test/errors-{uuid.uuid4().hex[:8]}"

    def critical_check() -> requests.Response:
        dev.ok(
            "PUT",
            "/v1/agent/check/register",
            body={"ID": "crit", "Name": "crit", "TTL": "30s", "Status": "critical"},
        )
        try:
            return dev.request("PUT", "/v1/session/create", body={"Checks": ["serfHealth", "crit"]})
        finally:
            dev.deregister_check("crit")

    anonymous = acl.api()
    anonymous.http.headers.pop("X-Consul-Token", None)
    return {
        "session create naming a missing check": lambda: dev.request(
            "PUT", "/v1/session/create", body={"Checks": ["serfHealth", "nope"]}
        ),
        "session create naming a critical check": critical_check,
        "renew of an unknown session": lambda: dev.request("PUT", f"/v1/session/renew/{unknown}"),
        "acquire with an unknown session": lambda: dev.request(
            "PUT", f"/v1/kv/{key}", params={"acquire": unknown}, raw_body=b"v"
        ),
        "session create with ACLs: the anonymous token": lambda: anonymous.request(
            "PUT", "/v1/session/create", body={}
        ),
        "a token Consul does not know": lambda: acl.api(token=new_token()).request(
            "PUT", "/v1/session/create", body={}
        ),
        "ACL endpoints with ACLs disabled": lambda: dev.request("GET", "/v1/acl/token/self"),
        "session create with a TTL out of range": lambda: dev.request(
            "PUT", "/v1/session/create", body={"TTL": "5s"}
        ),
    }


def test_the_recorded_answers_are_what_consul_says(
    consul_dev: ConsulAgent, consul_acl: ConsulAgent
) -> None:
    probes = provoke(consul_dev.api(), consul_acl)
    checked = 0
    for answer in ANSWERS:
        probe = probes.get(answer.name)
        if probe is None:
            # "No cluster leader" needs a cluster without quorum; the fault suite's
            # proxy answers it and test_cluster kills the Consul leader for real.
            continue
        response = probe()
        assert matches(answer, response), (answer.name, response.status_code, response.text)
        checked += 1
    assert checked == len(ANSWERS) - 1


def test_a_token_with_too_few_rights_is_a_permission_error(consul_acl: ConsulAgent) -> None:
    weak = create_acl_token(
        consul_acl.api(), f"weak-{uuid.uuid4().hex[:6]}", 'node_prefix "" { policy = "read" }\n'
    )
    response = consul_acl.api(token=weak).request("PUT", "/v1/session/create", body={})
    (answer,) = [a for a in ANSWERS if a.name.startswith("session create with ACLs")]
    assert matches(answer, response), response.text


pytestmark = pytest.mark.integration
