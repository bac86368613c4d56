"""Reading vip-manager.yml, the configuration vip-elector shares with vip-manager.

Only the keys vip-elector needs are read (dcs-type, trigger-key,
trigger-value, dcs-endpoints, consul-token, interval, and the address the
address watch follows: ip, netmask, interface, manager-type), with
vip-manager's own rules (a leading ``/`` of the trigger-key is stripped, dcs-endpoints is a
list or a comma-separated string). Every problem is collected into one
ConfigError.

Two modes. ``dcs-type: consul``: vip-manager reads the trigger-key itself,
and the file's trigger-key and trigger-value are the lock's. ``dcs-type:
patroni``: vip-manager follows vip-elector's fenced /leader endpoint
(dcs-endpoints is vip-elector's --status-addr, trigger-key `/leader`,
trigger-value `200`), and the lock's key and value are vip-elector's own
keys in the same file, which vip-manager ignores: ``vip-elector-trigger-key``
and ``vip-elector-trigger-value``.

Where PyYAML (YAML 1.1) and vip-manager's Go YAML would read a value
differently, or where a value is not a string at all, vip-elector refuses it
instead of guessing: `trigger-value: yes` is the string "yes" to vip-manager
v5 (YAML 1.2) but true to 1.x, `trigger-value: 2024-01-01` a date here, and a
list or a mapping cannot be a key's value. Quoting settles it.

The file is read with a size cap, aliases and nesting are bounded (a YAML
"billion laughs" costs nothing), and bytes that are not UTF-8 are an error.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml

from vip_elector.files import YAML_LIMIT, FileProblem, read_text
from vip_elector.settings import ConfigError, VipManagerConfig

DEFAULT_INTERVAL_MS = 1000  # vip-manager's own default


MAX_ALIASES = 32
MAX_DEPTH = 32


class _TooComplex(Exception):
    pass


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a cap on aliases and nesting depth."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _TooComplex(f"more than {MAX_ALIASES} aliases")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooComplex(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str, where: str) -> Any:
    """Parse ``text`` with :class:`BoundedLoader`; ConfigError on any failure."""
    try:
        loader = BoundedLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except _TooComplex as exc:
        raise ConfigError([f"{where}: refused: {exc} (vip-manager.yml needs neither)"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise ConfigError([f"{where}: malformed YAML{at}: {problem}"]) from None
    except (RecursionError, ValueError) as exc:
        raise ConfigError([f"{where}: cannot be read as YAML ({exc.__class__.__name__})"]) from None


def _string(document: dict[Any, Any], key: str, where: str, problems: list[str]) -> str | None:
    """A key whose value must be a string (vip-manager reads it as one)."""
    value = document.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        shown = f"{value!r}"
    else:
        shown = f"a {type(value).__name__}"
    problems.append(
        f"{where}: `{key}` is {shown}, not a string; vip-manager versions read unquoted "
        f'yes/no/on/off, numbers and dates differently: quote it, e.g. `{key}: "..."`'
    )
    return None


def read_vip_manager_config(path: Path) -> VipManagerConfig:
    """Read and check the keys vip-elector needs; raise ConfigError listing every problem."""
    where = f"vip-manager config {path}"
    try:
        text = read_text(str(path), YAML_LIMIT)
    except FileProblem as exc:
        if exc.unreadable:
            raise ConfigError(
                [
                    f"{where}: cannot read it ({exc.reason}); "
                    "pass the file vip-manager uses with --vip-manager-config"
                ]
            ) from None
        raise ConfigError([f"{where}: {exc.reason}"]) from None
    document = load_yaml(text, where)
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
    dcs_type = _string(document, "dcs-type", where, problems)
    fenced = dcs_type is not None and dcs_type.strip().lower() == "patroni"
    if dcs_type is None and "dcs-type" not in document:
        problems.append(
            f"{where}: `dcs-type` is not set; vip-manager then defaults to etcd, so "
            "vip-manager and vip-elector would not use the same store: add `dcs-type: consul` "
            "(or `dcs-type: patroni` to follow vip-elector's /leader)"
        )
    elif dcs_type is not None and not fenced and dcs_type.strip().lower() != "consul":
        problems.append(
            f"{where}: `dcs-type` is {dcs_type!r}; vip-elector elects through Consul: "
            "set `dcs-type: consul` (vip-manager reads the trigger-key), or `dcs-type: "
            "patroni` (vip-manager follows vip-elector's /leader)"
        )

    endpoints = _endpoints(document, where, problems)
    vip_manager_key = _string(document, "trigger-key", where, problems)
    vip_manager_value = _string(document, "trigger-value", where, problems)
    leader_url = None
    key_name, value_name = "trigger-key", "trigger-value"
    if fenced:
        # vip-manager polls <dcs-endpoints[0]><trigger-key> and wants the status
        # code <trigger-value>; the Consul key and lock value are vip-elector's own.
        key_name, value_name = "vip-elector-trigger-key", "vip-elector-trigger-value"
        leader_url = (endpoints[0].rstrip("/") if endpoints else "") + (vip_manager_key or "")
        if (vip_manager_value or "200") != "200" or not leader_url.endswith("/leader"):
            problems.append(
                f"{where}: with `dcs-type: patroni` vip-manager must poll vip-elector's "
                "/leader for 200: `dcs-endpoints: http://127.0.0.1:PORT` (PORT as in "
                "--status-addr), `trigger-key: /leader`, `trigger-value: 200`"
            )
        endpoints = []  # not Consul's: the agent comes from --addr / CONSUL_HTTP_ADDR
        raw_key = _string(document, key_name, where, problems)
        trigger_value = _string(document, value_name, where, problems)
    else:
        raw_key, trigger_value = vip_manager_key, vip_manager_value

    known = len(problems)
    trigger_key = (raw_key or "").strip().lstrip("/")  # vip-manager strips a leading '/'
    if not trigger_key and len(problems) == known:
        problems.append(
            f"{where}: `{key_name}` is missing or empty; set the Consul key to lock, "
            f'e.g. `{key_name}: "service/mycluster/vip"`'
        )
    if trigger_value is not None and trigger_value == "":
        trigger_value = None

    token = _string(document, "consul-token", where, problems) or None
    interval_ms = _interval_ms(document.get("interval"), where, problems)
    vip, netmask = _address(document, where, problems)
    interface = (_string(document, "interface", where, problems) or "").strip() or None
    manager_type = (_string(document, "manager-type", where, problems) or "").strip() or "basic"
    if problems:
        raise ConfigError(problems)
    return VipManagerConfig(
        path=path,
        trigger_key=trigger_key,
        trigger_value=trigger_value,
        endpoints=tuple(endpoints),
        consul_token=token,
        interval_ms=interval_ms,
        leader_url=leader_url,
        vip=vip,
        netmask=netmask,
        interface=interface,
        manager_type=manager_type,
    )


def _address(
    document: dict[Any, Any], where: str, problems: list[str]
) -> tuple[str | None, int | None]:
    """`ip` and `netmask`: the VIP vip-manager adds. Left out, the address watch
    says it cannot follow the VIP (vip-manager itself refuses such a file);
    malformed, vip-manager would refuse it too: said now."""
    raw_ip = (_string(document, "ip", where, problems) or "").strip()
    vip = None
    if raw_ip:
        try:
            vip = str(ipaddress.ip_address(raw_ip))
        except ValueError:
            problems.append(
                f"{where}: `ip` is {raw_ip!r}, not an IP address; set the VIP vip-manager "
                "adds, e.g. `ip: 10.0.0.100`"
            )
    raw_mask = document.get("netmask")
    if raw_mask is None:
        return vip, None
    text = str(raw_mask).strip()
    limit = 128 if vip is not None and ":" in vip else 32
    if isinstance(raw_mask, bool) or not text.isdigit() or int(text) > limit:
        problems.append(
            f"{where}: `netmask` is {raw_mask!r}; vip-manager reads it as a prefix length "
            f"from 0 to {limit}, e.g. `netmask: 24`"
        )
        return vip, None
    return vip, int(text)


def _endpoints(document: dict[Any, Any], where: str, problems: list[str]) -> list[str]:
    raw = document.get("dcs-endpoints")
    if isinstance(raw, str):
        return [part.strip() for part in raw.split(",") if part.strip()]
    if isinstance(raw, list) and all(isinstance(i, str) for i in raw):
        return [item.strip() for item in raw if item.strip()]
    if raw is not None:
        problems.append(
            f"{where}: `dcs-endpoints` must be a list of strings or a comma-separated string"
        )
    return []


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
