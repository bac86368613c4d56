"""The one place vip-elector talks to Consul.

Built on py-consul (and, for the Debian package, python-consul 0.7.1, which
imports as the same ``consul``): the library builds the requests, and our own
HTTP transport underneath it (as Patroni does) sends the ACL token only as the
``X-Consul-Token`` header, applies the TLS settings and puts a timeout on
every request. Every library and ``requests`` error is translated here into
one of a few :class:`ConsulError` kinds, so the threads above reason about
"unreachable", "permission denied", "session gone" and not about HTTP.

One :class:`ConsulAdapter` per thread: a ``requests.Session`` is not
documented as thread-safe and a long poll would block other callers.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import consul
import consul.base
import requests
import requests.adapters

from vip_elector.durations import format_duration, parse_duration
from vip_elector.key_entries import KeyState
from vip_elector.logs import untrusted
from vip_elector.settings import ConsulSettings

CONNECT_TIMEOUT = 2.0
REQUEST_TIMEOUT = 5.0
# A blocking query returns after `wait` plus up to wait/16 of jitter; the read
# timeout must outlast that by a margin or every idle poll becomes an error.
BLOCKING_MARGIN = 2.0


def blocking_timeout(wait: float) -> float:
    """The HTTP read timeout for a blocking query of ``wait`` seconds."""
    return wait + wait / 16 + BLOCKING_MARGIN


# -- errors ------------------------------------------------------------------


class ConsulError(Exception):
    """A Consul call failed. ``kind`` names the failure for logs and metrics."""

    kind = "error"


# The kinds of transient failure (Unavailable.kind).
UnavailableKind = Literal["unavailable", "timeout", "unreachable", "no_leader", "server_error"]


class Unavailable(ConsulError):
    """Transient: connection refused or reset, timeout, 5xx, "No cluster leader"."""

    kind = "unavailable"

    def __init__(self, message: str, kind: UnavailableKind = "unavailable") -> None:
        super().__init__(message)
        self.kind = kind


class PermissionDenied(ConsulError):
    """The ACL token lacks a right; needs a person."""

    kind = "permission"


class TokenUnknown(PermissionDenied):
    """Consul does not know the ACL token at all ("ACL not found"): mistyped,
    deleted or expired, not a missing right."""

    kind = "token_unknown"


class AuthenticationRequired(ConsulError):
    """HTTP 401 from something in front of the agent (Consul answers 401 only for
    "ACL support disabled"): it wants the basic auth of CONSUL_HTTP_AUTH."""

    kind = "http_auth"


class TLSFailure(ConsulError):
    """The TLS handshake failed (certificate rejected or not trusted); needs a person."""

    kind = "tls"


class SessionGone(ConsulError):
    """The session no longer exists (renew 404, or Consul calls it invalid)."""

    kind = "session_gone"


class CheckNotHealthy(ConsulError):
    """Session create refused: a check it names is missing or critical."""

    kind = "check"


class NotFound(ConsulError):
    kind = "not_found"


# Every kind a ConsulError can have: the label values of the error metric.
ERROR_KINDS: tuple[str, ...] = (
    *get_args(UnavailableKind),
    PermissionDenied.kind,
    TokenUnknown.kind,
    AuthenticationRequired.kind,
    TLSFailure.kind,
    SessionGone.kind,
    CheckNotHealthy.kind,
    NotFound.kind,
    ConsulError.kind,
)


ERROR_TEXT_LIMIT = 500  # characters of an error's text (an HTML page from a proxy...)


def _body_of(exc: Exception) -> str:
    return str(exc).strip() or exc.__class__.__name__


def translate(exc: BaseException, secrets: tuple[str, ...] = ()) -> ConsulError:
    """Map a library or requests exception onto a ConsulError.

    The message never carries a header value: requests puts the offending
    header into InvalidHeader, the codec puts the whole string into a
    UnicodeEncodeError's repr; those become fixed messages, and ``secrets``
    (the token) are masked in whatever text is left.
    """
    error = _translate(exc)
    text = str(error)
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "<token>")
    # What Consul (or a proxy in front of it) answered goes into log lines and
    # messages: escaped and bounded, as any text from outside.
    text = untrusted(text, ERROR_TEXT_LIMIT)
    if text != str(error):
        error.args = (text,)
    return error


def _translate(exc: BaseException) -> ConsulError:
    if isinstance(exc, ConsulError):
        return exc
    if isinstance(exc, requests.exceptions.InvalidHeader | UnicodeError):
        return ConsulError(
            "the request could not be sent: a header value is invalid (is the ACL token one "
            "line of printable ASCII?)"
        )
    if isinstance(exc, requests.exceptions.SSLError):
        return TLSFailure(f"TLS handshake with the Consul agent failed: {_reason(exc)}")
    if isinstance(exc, requests.exceptions.Timeout):
        return Unavailable(f"Consul agent did not answer in time: {_reason(exc)}", "timeout")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return Unavailable(f"cannot reach the Consul agent: {_reason(exc)}", "unreachable")
    if isinstance(exc, requests.exceptions.RequestException):
        return Unavailable(f"HTTP error talking to Consul: {_reason(exc)}", "unreachable")
    if isinstance(exc, consul.ACLDisabled) and not _acls_disabled_text(_body_of(exc)):
        return AuthenticationRequired(f"HTTP 401 Unauthorized: {_body_of(exc)}")
    if isinstance(exc, consul.ACLPermissionDenied):
        if "acl not found" in _body_of(exc).lower():
            return TokenUnknown(f"Consul does not know the ACL token: {_body_of(exc)}")
        return PermissionDenied(f"permission denied: {_body_of(exc)}")
    if isinstance(exc, consul.NotFound):
        return NotFound(_body_of(exc))
    if isinstance(exc, consul.ConsulException):
        text = _body_of(exc)
        lowered = text.lower()
        # The libraries put "<HTTP status> <body>" into the message.
        code = int(text[:3]) if text[:3].isdigit() else None
        if "no cluster leader" in lowered or "no path to datacenter" in lowered:
            return Unavailable(f"Consul has no leader right now: {text}", "no_leader")
        if "missing check" in lowered or "critical state" in lowered:
            return CheckNotHealthy(text)
        # `invalid session "<id>"` (acquire), "Session id '<id>' not found" (renew);
        # not "Invalid Session TTL", which is a refused setting.
        if _SESSION_GONE.search(lowered):
            return SessionGone(text)
        if "acl not found" in lowered:
            return TokenUnknown(f"Consul does not know the ACL token: {text}")
        if "permission denied" in lowered:
            return PermissionDenied(f"permission denied: {text}")
        if (code is not None and (code >= 500 or code == 429)) or "rpc error" in lowered:
            return Unavailable(f"Consul error: {text}", "server_error")
        return ConsulError(f"Consul refused the request: {text}")
    if isinstance(exc, ValueError | KeyError | TypeError):
        return ConsulError(f"unexpected answer from Consul ({exc.__class__.__name__}: {exc})")
    return ConsulError(f"{exc.__class__.__name__}: {exc}")


_SESSION_GONE = re.compile(r"invalid session(?! ttl)|session id '[^']*' not found")


def _reason(exc: BaseException) -> str:
    """The innermost useful text of a requests/urllib3 exception chain."""
    seen = exc
    for _ in range(5):
        inner = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        reason = getattr(seen, "reason", None)
        nxt = reason if isinstance(reason, BaseException) else inner
        if nxt is None:
            break
        seen = nxt
    text = str(seen) or seen.__class__.__name__
    # urllib3 1.26 (Debian bookworm) puts the connection object's repr first.
    return _OBJECT_REPR.sub("", text)


_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>:\s*")


# -- the HTTP transport under the library ------------------------------------


class _ServerNameAdapter(requests.adapters.HTTPAdapter):
    """Verify the agent's certificate against CONSUL_TLS_SERVER_NAME, not the address."""

    def __init__(self, server_name: str) -> None:
        self._server_name = server_name
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self._server_name
        kwargs["assert_hostname"] = self._server_name
        super().init_poolmanager(*args, **kwargs)


# Told of every request: (method, seconds, error kind or None, blocking): a
# blocking query (one with ?index=) waits up to its `wait` on purpose.
Observer = Callable[[str, float, str | None, bool], None]


class _Transport(consul.base.HTTPClient):  # type: ignore[misc]
    """requests under py-consul / python-consul: token header, TLS, timeouts."""

    def __init__(self, settings: ConsulSettings, timeout: float, observer: Observer | None) -> None:
        verify: bool | str = settings.verify
        if settings.verify and (settings.ca_file or settings.ca_path):
            verify = settings.ca_file or settings.ca_path or True
        cert = (settings.client_cert, settings.client_key) if settings.client_cert else None
        super().__init__(settings.host, settings.port, settings.scheme, verify, cert)
        self.http = requests.Session()
        # Our settings only: no REQUESTS_CA_BUNDLE overriding `verify`, no
        # ~/.netrc credentials, no proxy between us and the local agent.
        self.http.trust_env = False
        if settings.tls_server_name:
            self.http.mount("https://", _ServerNameAdapter(settings.tls_server_name))
        self.http.auth = settings.http_auth  # CONSUL_HTTP_AUTH: basic auth, as the CLI sends it
        self._headers = {"X-Consul-Token": settings.token} if settings.token else {}
        self._secrets = settings.secrets
        self.timeout = timeout
        self._observer = observer

    def _read_timeout(self, params: list[tuple[str, Any]]) -> float:
        values = dict(params)
        if _is_blocking(params):
            return blocking_timeout(parse_duration(str(values.get("wait", "5m"))))
        return self.timeout

    def _request(
        self,
        method: str,
        callback: Callable[[Any], Any],
        path: str,
        params: Any = None,
        data: Any = None,
        timeout: float | None = None,
    ) -> Any:
        items = _param_items(params)
        # Both libraries may add ?token=; the token travels only as a header.
        items = [(key, value) for key, value in items if key != "token"]
        started = time.monotonic()
        error: str | None = None
        try:
            response = self.http.request(
                method,
                self.uri(path, items),
                data=data,
                headers=self._headers,
                verify=self.verify,
                cert=self.cert,
                timeout=(
                    min(CONNECT_TIMEOUT, timeout or self.timeout),
                    timeout or self._read_timeout(items),
                ),
            )
            response.encoding = "utf-8"
            return callback(
                consul.base.Response(response.status_code, response.headers, response.text)
            )
        except Exception as exc:
            translated = translate(exc, self._secrets)
            error = translated.kind
            # Without the cause: its text (and traceback) may carry the header.
            raise translated from None
        finally:
            if self._observer is not None:
                self._observer(method, time.monotonic() - started, error, _is_blocking(items))

    # The signatures differ between python-consul 0.7.1 and py-consul 1.x
    # (headers=, raw=, connections_timeout=); accept both and use our own.
    def get(self, callback: Any, path: str, params: Any = None, *_: Any, **__: Any) -> Any:
        return self._request("GET", callback, path, params)

    def put(
        self,
        callback: Any,
        path: str,
        params: Any = None,
        data: Any = "",
        *_: Any,
        request_timeout: float | None = None,
        **__: Any,
    ) -> Any:
        return self._request("PUT", callback, path, params, data, request_timeout)

    def delete(self, callback: Any, path: str, params: Any = None, *_: Any, **__: Any) -> Any:
        return self._request("DELETE", callback, path, params)

    def post(
        self, callback: Any, path: str, params: Any = None, data: Any = "", *_: Any, **__: Any
    ) -> Any:
        return self._request("POST", callback, path, params, data)

    def close(self) -> None:
        self.http.close()


def _is_blocking(params: list[tuple[str, Any]]) -> bool:
    """A blocking query: Consul holds it until the index changes or `wait` ends."""
    return any(key == "index" for key, _ in params)


def _param_items(params: Any) -> list[tuple[str, Any]]:
    if not params:
        return []
    if isinstance(params, dict):
        return list(params.items())
    return list(params)


class _Client(consul.base.Consul):  # type: ignore[misc]
    """py-consul's (or python-consul's) API on our transport."""

    def __init__(self, transport: _Transport) -> None:
        self._transport = transport
        super().__init__(
            host=transport.host,
            port=transport.port,
            scheme=transport.scheme,
            verify=transport.verify,
            cert=transport.cert,
        )
        # py-consul reads CONSUL_HTTP_TOKEN itself and python-consul sends the
        # token as a query parameter; the transport owns the token instead.
        self.token = None

    def http_connect(self, *_: Any, **__: Any) -> _Transport:  # py-consul >= 1.0
        return self._transport

    def connect(self, *_: Any, **__: Any) -> _Transport:  # python-consul 0.7.1
        return self._transport


# -- what the adapter returns ------------------------------------------------


@dataclass(frozen=True)
class TxnResult:
    ok: bool
    errors: tuple[str, ...] = ()
    # The highest ModifyIndex among the entries Consul returned (a written key
    # has the transaction's index): reads taken before it show less. 0: none.
    modify_index: int = 0

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class SessionInfo:
    id: str
    name: str
    node: str
    ttl: str
    lock_delay: float  # seconds
    behavior: str
    checks: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"id={self.id} name={self.name!r} node={self.node} ttl={self.ttl or '-'} "
            f"lock-delay={format_duration(self.lock_delay)} behavior={self.behavior} "
            f"checks={','.join(self.checks)}"
        )


@dataclass(frozen=True)
class CheckState:
    check_id: str
    status: str
    output: str
    service: str


def _key_state(item: dict[str, Any], answer_index: int) -> KeyState:
    """A KV entry as Consul returns it (one of /v1/kv's answers)."""
    value = item.get("Value")
    if isinstance(value, str):
        value = value.encode()
    return KeyState(
        index=answer_index,
        exists=True,
        value=value,
        flags=int(item.get("Flags") or 0),
        session=item.get("Session") or None,
        modify_index=int(item.get("ModifyIndex") or 0),
        lock_index=int(item.get("LockIndex") or 0),
    )


def _lock_delay_seconds(raw: Any) -> float:
    # Consul reports LockDelay in nanoseconds (and Go-style strings in some versions).
    if isinstance(raw, int | float):
        return float(raw) / 1e9
    if isinstance(raw, str) and raw:
        return parse_duration(raw)
    return 0.0


def _check_state(check_id: str, item: dict[str, Any]) -> CheckState:
    """A check as /v1/agent/checks and /v1/health/node/<node> both describe it."""
    return CheckState(
        check_id,
        str(item.get("Status", "")),
        str(item.get("Output", "")).strip(),
        str(item.get("ServiceName", "")),
    )


def _acls_disabled(exc: ConsulError) -> bool:
    """Consul answers ACL endpoints with 401 "ACL support disabled" when ACLs are off."""
    return _acls_disabled_text(str(exc))


def _acls_disabled_text(text: str) -> bool:
    return "acl support disabled" in text.lower()


def _session_checks(item: dict[str, Any]) -> tuple[str, ...]:
    checks: list[str] = list(item.get("Checks") or [])
    for key in ("NodeChecks", "ServiceChecks"):
        for entry in item.get(key) or []:
            name = entry.get("ID") if isinstance(entry, dict) else entry
            if name and name not in checks:
                checks.append(str(name))
    return tuple(checks)


class ConsulAdapter:
    """Typed calls onto the local Consul agent; raises only ConsulError."""

    def __init__(
        self,
        settings: ConsulSettings,
        timeout: float = REQUEST_TIMEOUT,
        observer: Observer | None = None,
    ) -> None:
        self.settings = settings
        self.timeout = timeout
        self._observer = observer
        self._transport = _Transport(settings, timeout, observer)
        self._client = _Client(self._transport)

    def reconfigure(self, settings: ConsulSettings) -> None:
        """Use ``settings`` (a rotated token, new TLS files, another address of the
        same agent) from the next call on.

        The old transport is not closed: a call in flight on another thread (a
        long poll) finishes on it and is then dropped with it.
        """
        transport = _Transport(settings, self.timeout, self._observer)
        self._client, self._transport = _Client(transport), transport
        self.settings = settings

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> ConsulAdapter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConsulError:
            raise
        except Exception as exc:
            raise translate(exc, self.settings.secrets) from None

    # -- agent ---------------------------------------------------------------
    def agent_self(self) -> dict[str, Any]:
        """The local agent's own description (/v1/agent/self)."""
        return dict(self._call(self._client.agent.self))

    def raft_leader(self) -> str:
        """The Consul servers' leader address ("" while there is none); needs no ACL."""
        return str(self._call(self._transport.get, _expect_ok, "/v1/status/leader") or "")

    def node_name(self) -> str:
        return str(self.agent_self()["Config"]["NodeName"])

    def node_checks(self, node: str) -> dict[str, CheckState]:
        """A node's checks as the servers hold them (what session validity uses)."""
        raw = self._call(
            self._transport.get, _expect_ok, f"/v1/health/node/{node}", [("consistent", "1")]
        )
        checks = [_check_state(str(item["CheckID"]), item) for item in raw or []]
        return {check.check_id: check for check in checks}

    def node_health(
        self, node: str, index: int | None = None, wait: float | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        """/v1/health/node/<node> (blocking with ``index``): (X-Consul-Index, checks)."""
        params: list[tuple[str, Any]] = []
        if index is not None and index >= 1:
            params = [("index", index), ("wait", format_duration(wait or 300.0))]
        answered, checks = self._call(
            self._transport.get, _with_index, f"/v1/health/node/{node}", params or None
        )
        return int(answered), list(checks or [])

    def token_self(self) -> dict[str, Any] | None:
        """The token's own description; None when ACLs are disabled."""
        try:
            return dict(self._call(self._transport.get, _expect_ok, "/v1/acl/token/self"))
        except ConsulError as exc:
            if _acls_disabled(exc):
                return None
            raise

    def authorize(self, requests_: list[dict[str, str]]) -> list[bool] | None:
        """Would the token be allowed these (Resource, Access, Segment)? None when the
        agent cannot tell (ACLs disabled, or no /v1/internal/acl/authorize)."""
        try:
            answer = self._call(
                self._transport.post,
                _expect_ok,
                "/v1/internal/acl/authorize",
                None,
                json.dumps(requests_),
            )
        except NotFound:
            return None
        except ConsulError as exc:
            if _acls_disabled(exc):
                return None
            raise
        return [bool(item.get("Allow")) for item in answer]

    def agent_checks(self) -> dict[str, CheckState]:
        raw = self._call(self._client.agent.checks)
        return {check_id: _check_state(check_id, item) for check_id, item in (raw or {}).items()}

    def register_liveness_service(
        self, service_id: str, name: str, check_id: str, ttl: float, notes: str
    ) -> None:
        # Raw body: python-consul 0.7.1 and py-consul build service payloads differently.
        body = {
            "ID": service_id,
            "Name": name,
            "Check": {
                "CheckID": check_id,
                "Name": f"{name} liveness",
                "Notes": notes,
                "TTL": format_duration(ttl),
                "Status": "passing",
                # A daemon gone for good does not leave a critical service forever.
                "DeregisterCriticalServiceAfter": "1h",
            },
        }
        self._put_json("/v1/agent/service/register", body)

    def deregister_service(self, service_id: str) -> None:
        self._call(self._transport.put, _expect_ok, f"/v1/agent/service/deregister/{service_id}")

    def pass_ttl_check(self, check_id: str, note: str = "") -> None:
        self._call(
            self._transport.put,
            _expect_ok,
            f"/v1/agent/check/pass/{check_id}",
            [("note", note)] if note else None,
        )

    def _put_json(self, path: str, body: dict[str, Any]) -> Any:
        return self._call(self._transport.put, _expect_ok, path, None, json.dumps(body))

    # -- sessions ------------------------------------------------------------
    def create_session(
        self,
        name: str,
        ttl: float,
        lock_delay: float,
        checks: Iterable[str],
        behavior: str = "delete",
    ) -> str:
        # Raw body, not session.create(): both libraries only take whole-second
        # lock delays as ints and python-consul 0.7.1 drops lock_delay=15.
        body = {
            "Name": name,
            "TTL": format_duration(ttl),
            "LockDelay": format_duration(lock_delay),
            "Behavior": behavior,
            "Checks": list(checks),
        }
        answer = self._put_json("/v1/session/create", body)
        return str(answer["ID"])

    def list_sessions(self) -> list[dict[str, Any]]:
        return list(self._call(self._transport.get, _expect_ok, "/v1/session/list") or [])

    def session_info(self, session_id: str, consistent: bool = False) -> SessionInfo | None:
        _, items = self._call(
            self._client.session.info, session_id, consistency="consistent" if consistent else None
        )
        if not items:
            return None
        item = items[0] if isinstance(items, list) else items
        return SessionInfo(
            id=str(item["ID"]),
            name=str(item.get("Name", "")),
            node=str(item.get("Node", "")),
            ttl=str(item.get("TTL", "")),
            lock_delay=_lock_delay_seconds(item.get("LockDelay")),
            behavior=str(item.get("Behavior", "")),
            checks=_session_checks(item),
        )

    def renew_session(self, session_id: str, timeout: float | None = None) -> None:
        """Renew; raise SessionGone when Consul no longer knows the session."""
        try:
            result = self._call(
                self._transport.put,
                _expect_ok,
                f"/v1/session/renew/{session_id}",
                request_timeout=timeout,
            )
        except NotFound as exc:
            raise SessionGone(f"session {session_id} not found") from exc
        if not result:
            raise SessionGone(f"session {session_id} not found")

    def destroy_session(self, session_id: str) -> None:
        self._call(self._transport.put, _expect_ok, f"/v1/session/destroy/{session_id}")

    # -- the trigger-key -----------------------------------------------------
    def get_key(
        self,
        key: str,
        index: int | None = None,
        wait: float | None = None,
        consistent: bool = False,
    ) -> KeyState:
        """Read the key; with ``index`` (>= 1) block until it changes or ``wait`` ends."""
        kwargs: dict[str, Any] = {"consistency": "consistent" if consistent else None}
        if index is not None and index >= 1:
            kwargs["index"] = index
            kwargs["wait"] = format_duration(wait if wait is not None else 300.0)
        raw_index, item = self._call(self._client.kv.get, key, **kwargs)
        answer_index = int(raw_index or 0)
        if not item:
            return KeyState(index=answer_index, exists=False)
        return _key_state(item, answer_index)

    def get_prefix(
        self,
        prefix: str,
        index: int | None = None,
        wait: float | None = None,
        consistent: bool = False,
    ) -> tuple[int, dict[str, KeyState]]:
        """Every key starting with ``prefix`` (by name), blocking like :meth:`get_key`."""
        kwargs: dict[str, Any] = {
            "recurse": True,
            "consistency": "consistent" if consistent else None,
        }
        if index is not None and index >= 1:
            kwargs["index"] = index
            kwargs["wait"] = format_duration(wait if wait is not None else 300.0)
        raw_index, items = self._call(self._client.kv.get, prefix, **kwargs)
        answer_index = int(raw_index or 0)
        found = {str(item["Key"]): _key_state(item, answer_index) for item in items or []}
        return answer_index, found

    def put_key(
        self, key: str, value: bytes, acquire: str | None = None, cas: int | None = None
    ) -> bool:
        """PUT a value (``acquire``: as that session's lock; ``cas``: only at that index)."""
        params: dict[str, Any] = {}
        if acquire is not None:
            params["acquire"] = acquire
        if cas is not None:
            params["cas"] = cas
        return bool(self._call(self._client.kv.put, key, value, **params))

    def txn(self, operations: list[dict[str, Any]]) -> TxnResult:
        """PUT /v1/txn: all ``operations`` in one raft entry, or none of them.

        A refused transaction (a check failed, a lock is held or in its
        lock-delay) is a TxnResult with ``ok`` False and Consul's reasons.
        """
        code, body = self._call(
            self._transport.put, _txn_answer, "/v1/txn", None, json.dumps(operations)
        )
        errors = tuple(str(e.get("What", "")) for e in (body or {}).get("Errors") or [])
        indexes = [
            int((r.get("KV") or {}).get("ModifyIndex") or 0)
            for r in (body or {}).get("Results") or []
            if isinstance(r, dict)
        ]
        return TxnResult(ok=code == 200, errors=errors, modify_index=max(indexes, default=0))

    def delete_key(self, key: str, cas: int) -> bool:
        """Delete only if the key is still at ``cas`` (its ModifyIndex)."""
        return bool(self._call(self._client.kv.delete, key, cas=cas))


def _with_index(response: Any) -> tuple[int, Any]:
    """Callback for raw blocking reads: (X-Consul-Index, JSON body)."""
    body = _expect_ok(response)
    return int(response.headers.get("X-Consul-Index") or 0), body if body is not True else []


def _txn_answer(response: Any) -> tuple[int, Any]:
    """Callback for /v1/txn: 200 applied, 409 refused (both with a JSON body)."""
    if response.code in (200, 409):
        try:
            return response.code, json.loads(response.body or "{}")
        except ValueError:
            return response.code, {}
    return 200, _expect_ok(response)  # raises for every other status


def _expect_ok(response: Any) -> Any:
    """Callback for raw calls: errors as the libraries raise them, else the JSON body."""
    if response.code == 404:
        raise consul.NotFound(response.body)
    if response.code == 403:
        raise consul.ACLPermissionDenied(response.body)
    if response.code == 401:
        raise consul.ACLDisabled(response.body)  # as the libraries raise it
    if response.code >= 400:
        raise consul.ConsulException(f"{response.code} {response.body}")
    body = response.body
    if not body:
        return True
    try:
        return json.loads(body)
    except ValueError:
        return body
