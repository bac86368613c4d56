"""The error translation table: real Consul answers -> the few error kinds the threads use."""

from __future__ import annotations

import consul
import consul.base
import pytest
import requests

from tests.unit.consul_bodies import ANSWERS, Answer
from vip_elector.consul_adapter import (
    AuthenticationRequired,
    CheckNotHealthy,
    ConsulError,
    PermissionDenied,
    SessionGone,
    TLSFailure,
    Unavailable,
    _expect_ok,
    translate,
)
from vip_elector.retrying import advice, needs_a_person

SAMPLE_ID = "1f6654fd-ca0a-4f8a-bc9f-0dabc3b68797"


def answered(answer: Answer) -> ConsulError:
    """What the adapter raises for this HTTP answer (our raw callback, then translate)."""
    response = consul.base.Response(answer.code, {}, answer.body.format(id=SAMPLE_ID))
    with pytest.raises(consul.ConsulException) as caught:
        _expect_ok(response)
    return translate(caught.value)


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda a: a.name)
def test_each_real_consul_answer_has_its_kind(answer: Answer) -> None:
    assert answered(answer).kind == answer.kind


def test_the_kinds_map_to_the_classes_the_threads_catch() -> None:
    by_name = {a.name: answered(a) for a in ANSWERS}
    assert isinstance(by_name["session create naming a critical check"], CheckNotHealthy)
    assert isinstance(by_name["acquire with an unknown session"], SessionGone)
    assert isinstance(by_name["a token Consul does not know"], PermissionDenied)
    assert isinstance(by_name["no Consul leader (during an election)"], Unavailable)


def test_permission_and_tls_need_a_person_and_nothing_else_does() -> None:
    for answer in ANSWERS:
        error = answered(answer)
        assert needs_a_person(error) == (answer.kind in ("permission", "token_unknown")), (
            answer.name
        )
    assert needs_a_person(TLSFailure("x"))


@pytest.mark.parametrize(
    ("exception", "kind"),
    [
        (requests.exceptions.ConnectTimeout("t"), "timeout"),
        (requests.exceptions.ReadTimeout("t"), "timeout"),
        (requests.exceptions.ConnectionError("refused"), "unreachable"),
        (requests.exceptions.SSLError("bad certificate"), "tls"),
        (requests.exceptions.ChunkedEncodingError("x"), "unreachable"),
        (consul.base.ConsulException("503 rpc error: no path"), "server_error"),
        (consul.base.ConsulException("429 rate limited"), "server_error"),
        (ValueError("not json"), "error"),
    ],
)
def test_transport_and_library_errors(exception: Exception, kind: str) -> None:
    assert translate(exception).kind == kind


def test_a_consul_error_passes_through_unchanged() -> None:
    error = SessionGone("gone")
    assert translate(error) is error


def test_a_good_answer_is_its_json_body_or_true() -> None:
    assert _expect_ok(consul.base.Response(200, {}, '{"ID": "x"}')) == {"ID": "x"}
    assert _expect_ok(consul.base.Response(200, {}, "")) is True
    assert _expect_ok(consul.base.Response(200, {}, "true\n")) is True


def test_a_401_from_a_proxy_in_front_of_the_agent_asks_for_consul_http_auth() -> None:
    # Consul answers 401 only for "ACL support disabled" (above); any other 401
    # comes from something in front of it that wants basic auth.
    error = answered(Answer("a proxy wanting basic auth", 401, "authentication required", ""))
    assert isinstance(error, AuthenticationRequired)
    assert error.kind == "http_auth"
    assert needs_a_person(error)
    assert "CONSUL_HTTP_AUTH=user:password" in advice(error, "http://127.0.0.1:8500", "k")
