"""Reading vip-manager.yml, the configuration vip-elector shares with vip-manager.

Only the keys vip-elector needs are read (dcs-type, trigger-key,
trigger-value, dcs-endpoints, consul-token), with vip-manager's own rules
(a leading ``/`` of the trigger-key is stripped, dcs-endpoints is a list or a
comma-separated string). Every problem is collected into one ConfigError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vip_elector.settings import ConfigError, VipManagerConfig

DEFAULT_INTERVAL_MS = 1000  # vip-manager's own default


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool | int | float):
        return str(value).lower() if isinstance(value, bool) else str(value)
    if isinstance(value, str):
        return value
    return None


def read_vip_manager_config(path: Path) -> VipManagerConfig:
    """Read and check the keys vip-elector needs; raise ConfigError listing every problem."""
    where = f"vip-manager config {path}"
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            [
                f"{where}: cannot read it ({exc.strerror or exc}); "
                "pass the file vip-manager uses with --vip-manager-config"
            ]
        ) from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: malformed YAML{at}: {problem}"]) from exc
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(
            [
                f"{where}: expected a mapping of keys (like `trigger-key: ...`), "
                f"got {type(document).__name__}"
            ]
        )

    problems: list[str] = []
    dcs_type = _as_text(document.get("dcs-type"))
    if dcs_type is None:
        problems.append(
            f"{where}: `dcs-type` is not set; vip-manager then defaults to etcd, so "
            "vip-manager and vip-elector would not use the same store: add `dcs-type: consul`"
        )
    elif dcs_type.strip().lower() != "consul":
        problems.append(
            f"{where}: `dcs-type` is {dcs_type!r}; vip-elector elects through Consul: "
            "set `dcs-type: consul` (and point vip-manager at Consul too)"
        )

    raw_key = _as_text(document.get("trigger-key"))
    trigger_key = (raw_key or "").strip().lstrip("/")  # vip-manager strips a leading '/'
    if not trigger_key:
        problems.append(
            f"{where}: `trigger-key` is missing or empty; set the key vip-manager watches, "
            'e.g. `trigger-key: "service/mycluster/vip"`'
        )

    trigger_value = _as_text(document.get("trigger-value"))
    if trigger_value is not None and trigger_value == "":
        trigger_value = None

    endpoints_raw = document.get("dcs-endpoints")
    endpoints: list[str] = []
    if isinstance(endpoints_raw, str):
        endpoints = [part.strip() for part in endpoints_raw.split(",") if part.strip()]
    elif isinstance(endpoints_raw, list):
        endpoints = [str(item).strip() for item in endpoints_raw if str(item).strip()]
    elif endpoints_raw is not None:
        problems.append(f"{where}: `dcs-endpoints` must be a list or a comma-separated string")

    token = _as_text(document.get("consul-token")) or None
    interval_ms = _interval_ms(document.get("interval"), where, problems)
    if problems:
        raise ConfigError(problems)
    return VipManagerConfig(
        path=path,
        trigger_key=trigger_key,
        trigger_value=trigger_value,
        endpoints=tuple(endpoints),
        consul_token=token,
        interval_ms=interval_ms,
    )


def _interval_ms(raw: Any, where: str, problems: list[str]) -> int:
    """vip-manager's `interval` (ms between its reads of the key; its default 1000)."""
    if raw is None:
        return DEFAULT_INTERVAL_MS
    text = str(raw).strip()
    if isinstance(raw, bool) or not text.isdigit():
        problems.append(
            f"{where}: `interval` is {raw!r}; vip-manager reads it as whole milliseconds, "
            "e.g. `interval: 1000`"
        )
        return DEFAULT_INTERVAL_MS
    return int(text)
