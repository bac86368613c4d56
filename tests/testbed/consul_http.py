"""A small, independent Consul HTTP client for the tests' own observations.

Tests check Consul's state with this, not with vip-elector's adapter, so a bug
in the adapter cannot hide itself.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, cast

import requests

LOCK_FLAG = 0x2DDCCBC058A50C18


@dataclass(frozen=True)
class KVEntry:
    key: str
    value: bytes | None
    flags: int
    session: str | None
    lock_index: int
    modify_index: int

    @property
    def text(self) -> str | None:
        return None if self.value is None else self.value.decode()


class ConsulHTTP:
    """Plain requests against one agent's HTTP API."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        verify: bool | str = True,
        cert: tuple[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()
        # Passed on every request: a Session-level `verify` loses to
        # REQUESTS_CA_BUNDLE from the environment (requests issue #3829).
        self.verify = verify
        self.cert = cert
        if token:
            self.http.headers["X-Consul-Token"] = token
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        raw_body: bytes | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        data = (
            raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        )
        return self.http.request(
            method,
            f"{self.base_url}{path}",
            params=params,
            data=data,
            timeout=timeout or self.timeout,
            verify=self.verify,
            cert=self.cert,
        )

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code != 200:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        if not response.content:
            return None
        return response.json()

    # -- status --------------------------------------------------------------
    def leader(self) -> str:
        return cast(str, self.ok("GET", "/v1/status/leader"))

    def node_name(self) -> str:
        return cast(str, self.ok("GET", "/v1/agent/self")["Config"]["NodeName"])

    # -- KV ------------------------------------------------------------------
    def kv_get(self, key: str, consistent: bool = True) -> KVEntry | None:
        params = {"consistent": ""} if consistent else None
        response = self.request("GET", f"/v1/kv/{key}", params=params)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RuntimeError(f"GET kv {key}: {response.status_code} {response.text}")
        item = response.json()[0]
        value = base64.b64decode(item["Value"]) if item.get("Value") is not None else None
        return KVEntry(
            key=item["Key"],
            value=value,
            flags=item["Flags"],
            session=item.get("Session"),
            lock_index=item["LockIndex"],
            modify_index=item["ModifyIndex"],
        )

    def kv_value(self, key: str) -> str | None:
        entry = self.kv_get(key)
        return None if entry is None else entry.text

    def kv_put(self, key: str, value: bytes | str, **params: Any) -> bool:
        raw = value.encode() if isinstance(value, str) else value
        return cast(bool, self.ok("PUT", f"/v1/kv/{key}", params=params or None, raw_body=raw))

    def kv_delete(self, key: str, recurse: bool = False) -> None:
        self.ok("DELETE", f"/v1/kv/{key}", params={"recurse": ""} if recurse else None)

    # -- sessions ------------------------------------------------------------
    def session_info(self, session_id: str) -> dict[str, Any] | None:
        result = self.ok("GET", f"/v1/session/info/{session_id}", params={"consistent": ""})
        return result[0] if result else None

    def sessions(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self.ok("GET", "/v1/session/list"))

    def session_create(self, **body: Any) -> str:
        return cast(str, self.ok("PUT", "/v1/session/create", body=body)["ID"])

    def session_destroy(self, session_id: str) -> None:
        self.ok("PUT", f"/v1/session/destroy/{session_id}")

    # -- checks --------------------------------------------------------------
    def register_http_check(
        self,
        check_id: str,
        url: str,
        interval: str = "1s",
        timeout: str = "1s",
        service_id: str | None = None,
    ) -> None:
        body: dict[str, Any] = {
            "ID": check_id,
            "Name": f"vip-elector test check {check_id}",
            "HTTP": url,
            "Interval": interval,
            "Timeout": timeout,
        }
        if service_id:
            body["ServiceID"] = service_id
        self.ok("PUT", "/v1/agent/check/register", body=body)

    def register_service(self, service_id: str, port: int, check: dict[str, Any]) -> None:
        self.ok(
            "PUT",
            "/v1/agent/service/register",
            body={"ID": service_id, "Name": service_id, "Port": port, "Check": check},
        )

    def deregister_check(self, check_id: str) -> None:
        self.ok("PUT", f"/v1/agent/check/deregister/{check_id}")

    def agent_checks(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.ok("GET", "/v1/agent/checks"))

    def catalog_check_status(self, node: str, check_id: str) -> str | None:
        """The check's status as the servers see it (what session create uses)."""
        for check in self.ok("GET", f"/v1/health/node/{node}", params={"consistent": ""}):
            if check["CheckID"] == check_id:
                return cast(str, check["Status"])
        return None
