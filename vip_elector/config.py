"""Configuration: vip-manager.yml, CONSUL_* variables and flags, merged and validated.

Precedence for every setting: command-line flag (or its ``VIP_ELECTOR_*``
variable) > Consul's own environment variable > vip-manager.yml > default.
Everything is checked before the daemon touches Consul; every problem found
is reported, each on its own line, and the process exits with code 2.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vip_elector.durations import format_duration, parse_duration

DEFAULT_ADDRESS = "http://127.0.0.1:8500"
DEFAULT_TTL = "10s"
DEFAULT_LOCK_DELAY = "1s"
TTL_MIN, TTL_MAX = 10.0, 86400.0  # Consul refuses other session TTLs
LOCK_DELAY_MAX = 60.0  # Consul caps lock-delay at 60s
LIVENESS_TTL_MIN, LIVENESS_TTL_MAX = 1.0, 3600.0

TRUE_WORDS = {"1", "true", "t", "yes", "y", "on"}
FALSE_WORDS = {"0", "false", "f", "no", "n", "off"}


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ConsulSettings:
    """How to reach the local Consul agent."""

    scheme: str
    host: str
    port: int
    token: str | None = field(default=None, repr=False)  # never printed
    token_source: str = "none"  # where the token came from, safe to log
    ca_file: str | None = None
    ca_path: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    verify: bool = True
    tls_server_name: str | None = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class VipManagerConfig:
    """The keys vip-elector reads from the vip-manager.yml it shares with vip-manager."""

    path: Path
    trigger_key: str
    trigger_value: str | None
    endpoints: tuple[str, ...]
    consul_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Settings:
    """Everything the daemon needs, validated."""

    vip_manager: VipManagerConfig
    consul: ConsulSettings
    lock_value: str
    lock_value_source: str
    check_id: str | None
    ttl: float
    lock_delay: float
    log_level: str = "INFO"
    log_format: str = "text"
    liveness_ttl: float | None = None  # --liveness-ttl; None = off
    status_addr: tuple[str, int] | None = None  # --status-addr; None = off
    notify: tuple[str, ...] | None = None  # --notify command (split, no shell)
    notify_timeout: float = 30.0
    maintenance_file: Path | None = None
    step_down_hold: float = 10.0
    # Things worth a WARNING once logging is set up (config is parsed before).
    warnings: tuple[str, ...] = ()

    @property
    def trigger_key(self) -> str:
        return self.vip_manager.trigger_key

    @property
    def session_checks(self) -> list[str]:
        """serfHealth always (sending Checks replaces Consul's default), plus ours."""
        checks = ["serfHealth"]
        if self.check_id:
            checks.append(self.check_id)
        return checks

    def describe(self) -> str:
        """One line for the start-up log (no secrets)."""
        return (
            f"trigger-key={self.trigger_key} value={self.lock_value!r} "
            f"({self.lock_value_source}) check-id={self.check_id or '-'} "
            f"ttl={format_duration(self.ttl)} lock-delay={format_duration(self.lock_delay)} "
            f"consul={self.consul.address} token={self.consul.token_source}"
        )


# -- vip-manager.yml ---------------------------------------------------------


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
    if problems:
        raise ConfigError(problems)
    return VipManagerConfig(
        path=path,
        trigger_key=trigger_key,
        trigger_value=trigger_value,
        endpoints=tuple(endpoints),
        consul_token=token,
    )


# -- addresses, tokens, TLS --------------------------------------------------


def parse_address(address: str, default_scheme: str = "http") -> tuple[str, str, int]:
    """``[scheme://]host[:port]`` -> (scheme, host, port). Raises ValueError."""
    text = address.strip()
    if "://" not in text:
        text = f"{default_scheme}://{text}"
    parsed = urllib.parse.urlsplit(text)
    scheme = parsed.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported scheme {parsed.scheme!r} in {address!r} (use http or https)")
    try:
        port = parsed.port
    except ValueError as exc:
        raise ValueError(f"invalid port in {address!r}") from exc
    if not parsed.hostname:
        raise ValueError(f"no host in {address!r}")
    if parsed.path not in ("", "/"):
        raise ValueError(f"unexpected path {parsed.path!r} in {address!r}")
    return scheme, parsed.hostname, port or (8501 if scheme == "https" else 8500)


def parse_bool(text: str, name: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{name}={text!r} is not a boolean (use true or false)")


def _env_bool(environ: Mapping[str, str], name: str, default: bool, problems: list[str]) -> bool:
    text = environ.get(name)
    if not text:
        return default
    try:
        return parse_bool(text, name)
    except ValueError as exc:
        problems.append(str(exc))
        return default


def _read_token_file(path: str, origin: str, problems: list[str]) -> str | None:
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        problems.append(
            f"token file {path} (from {origin}) cannot be read: {exc.strerror or exc}; "
            "check the path and that the vip-elector user may read it"
        )
        return None
    if not token:
        problems.append(f"token file {path} (from {origin}) is empty")
        return None
    return token


def _check_readable(
    path: str, what: str, origin: str, problems: list[str], directory: bool = False
) -> None:
    target = Path(path)
    ok = target.is_dir() if directory else target.is_file()
    if not ok or not os.access(target, os.R_OK | (os.X_OK if directory else 0)):
        kind = "directory" if directory else "file"
        problems.append(f"{what} {path} (from {origin}) is not a readable {kind}")


@dataclass
class Layer:
    """One source of settings, highest precedence first: flags, environment, file."""

    name: str
    values: Mapping[str, str | None]

    def get(self, key: str) -> str | None:
        value = self.values.get(key)
        return value if value not in (None, "") else None


def _first(layers: list[Layer], key: str) -> tuple[str, str] | None:
    for layer in layers:
        value = layer.get(key)
        if value is not None:
            return value, layer.name
    return None


def resolve_consul_settings(
    flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    vip_manager: VipManagerConfig | None,
    problems: list[str],
) -> ConsulSettings:
    """Where the agent is and how to talk to it; appends to ``problems``."""
    env_layer = Layer(
        "environment",
        {
            "addr": environ.get("CONSUL_HTTP_ADDR"),
            "token": environ.get("CONSUL_HTTP_TOKEN"),
            "token_file": environ.get("CONSUL_HTTP_TOKEN_FILE"),
            "ca_file": environ.get("CONSUL_CACERT"),
            "ca_path": environ.get("CONSUL_CAPATH"),
            "client_cert": environ.get("CONSUL_CLIENT_CERT"),
            "client_key": environ.get("CONSUL_CLIENT_KEY"),
            "tls_server_name": environ.get("CONSUL_TLS_SERVER_NAME"),
        },
    )
    file_layer = Layer(
        f"{vip_manager.path}" if vip_manager else "vip-manager.yml",
        {
            "addr": vip_manager.endpoints[0] if vip_manager and vip_manager.endpoints else None,
            "token": vip_manager.consul_token if vip_manager else None,
        },
    )
    layers = [Layer("command line", flags), env_layer, file_layer]

    use_ssl = _env_bool(environ, "CONSUL_HTTP_SSL", False, problems)
    verify = _env_bool(environ, "CONSUL_HTTP_SSL_VERIFY", True, problems)

    address, address_origin = _first(layers, "addr") or (DEFAULT_ADDRESS, "default")
    try:
        scheme, host, port = parse_address(address, "https" if use_ssl else "http")
    except ValueError as exc:
        problems.append(f"Consul address (from {address_origin}): {exc}")
        scheme, host, port = "http", "127.0.0.1", 8500

    # Token: the highest layer that has one wins; within a layer a token file
    # wins over a token, as in Consul's own CLI and API client.
    token: str | None = None
    token_source = "none (the agent's default token applies)"
    for layer in layers:
        token_file = layer.get("token_file")
        if token_file:
            token = _read_token_file(token_file, layer.name, problems)
            token_source = f"file {token_file} ({layer.name})"
            break
        if layer.get("token"):
            token = layer.get("token")
            token_source = f"{layer.name}"
            break

    tls: dict[str, str | None] = {}
    for key, what, is_dir in (
        ("ca_file", "CA certificate", False),
        ("ca_path", "CA certificate directory", True),
        ("client_cert", "client certificate", False),
        ("client_key", "client key", False),
    ):
        found = _first(layers[:2], key)
        tls[key] = found[0] if found else None
        if found:
            _check_readable(found[0], what, found[1], problems, directory=is_dir)
    if bool(tls["client_cert"]) != bool(tls["client_key"]):
        problems.append(
            "a client certificate needs its key and the other way round: set both "
            "CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY (or --client-cert and --client-key)"
        )
    server_name = _first(layers[:2], "tls_server_name")
    return ConsulSettings(
        scheme=scheme,
        host=host,
        port=port,
        token=token,
        token_source=token_source,
        ca_file=tls["ca_file"],
        ca_path=tls["ca_path"],
        client_cert=tls["client_cert"],
        client_key=tls["client_key"],
        verify=verify,
        tls_server_name=server_name[0] if server_name else None,
    )


def parse_listen_address(text: str) -> tuple[str, int]:
    """``PORT``, ``:PORT`` or ``HOST:PORT`` -> (host, port); no host means loopback."""
    host, _, port_text = text.strip().rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9876 or :9876)")
    return host, int(port_text)


def _check_command(argv: tuple[str, ...], problems: list[str]) -> None:
    if not argv:
        problems.append("--notify is empty")
        return
    program = argv[0]
    found = (
        shutil.which(program)
        if "/" not in program
        else (program if os.access(program, os.X_OK) else None)
    )
    if not found:
        problems.append(
            f"--notify: {program!r} is not an executable file (give a path, or a program on PATH)"
        )


# -- the lock value ----------------------------------------------------------


def short_hostname(hostname: str) -> str:
    return hostname.split(".", 1)[0]


def resolve_lock_value(
    flag_hostname: str | None,
    vip_manager: VipManagerConfig,
    kernel_hostname: str,
) -> tuple[str, str, list[str]]:
    """The value written to the trigger-key: (value, where it came from, warnings).

    vip-manager compares the key's value byte for byte with its trigger-value,
    which defaults to the kernel hostname; the seed's default is the short name.
    """
    warnings: list[str] = []
    if flag_hostname:
        if vip_manager.trigger_value is not None and flag_hostname != vip_manager.trigger_value:
            warnings.append(
                f"--hostname {flag_hostname!r} differs from trigger-value "
                f"{vip_manager.trigger_value!r} in {vip_manager.path}: vip-manager on this node "
                "will never add the VIP here; use the same value in both places"
            )
        return flag_hostname, "--hostname", warnings
    if vip_manager.trigger_value is not None:
        return vip_manager.trigger_value, f"trigger-value in {vip_manager.path}", warnings
    value = short_hostname(kernel_hostname)
    if value != kernel_hostname:
        warnings.append(
            f"no trigger-value in {vip_manager.path}: vip-elector writes the short hostname "
            f"{value!r}, but vip-manager compares against the kernel hostname "
            f'{kernel_hostname!r} and would never add the VIP; add `trigger-value: "{value}"` '
            f"to {vip_manager.path} (both programs read it)"
        )
    return value, "short hostname", warnings


# -- durations ---------------------------------------------------------------


def _duration(
    text: str, name: str, low: float, high: float, hint: str, problems: list[str]
) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        problems.append(f"{name}: {exc}")
        return low
    if not low <= seconds <= high:
        problems.append(
            f"{name} {text} is out of range: must be between {format_duration(low)} and "
            f"{format_duration(high)} ({hint})"
        )
    return seconds


def load_settings(
    args: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    kernel_hostname: Callable[[], str] = socket.gethostname,
) -> Settings:
    """Merge flags (``args``), environment and vip-manager.yml into Settings.

    ``args`` holds the parsed command line (``None`` for anything not given).
    Raises ConfigError listing every problem found.
    """
    environ = os.environ if environ is None else environ
    problems: list[str] = []

    config_path = args.get("vip_manager_config")
    vip_manager: VipManagerConfig | None = None
    if not config_path:
        problems.append("--vip-manager-config is required: the vip-manager.yml this node uses")
    else:
        try:
            vip_manager = read_vip_manager_config(Path(config_path))
        except ConfigError as exc:
            problems.extend(exc.problems)

    ttl = _duration(
        args.get("ttl") or DEFAULT_TTL,
        "--ttl",
        TTL_MIN,
        TTL_MAX,
        "Consul accepts session TTLs of 10s to 24h",
        problems,
    )
    lock_delay = _duration(
        args.get("lock_delay") or DEFAULT_LOCK_DELAY,
        "--lock-delay",
        0.0,
        LOCK_DELAY_MAX,
        "Consul caps lock-delay at 60s; 0 disables it",
        problems,
    )

    liveness_ttl = None
    if args.get("liveness_ttl"):
        liveness_ttl = _duration(
            args["liveness_ttl"],
            "--liveness-ttl",
            LIVENESS_TTL_MIN,
            LIVENESS_TTL_MAX,
            "it is passed every third of it",
            problems,
        )

    status_addr = None
    if args.get("status_addr"):
        try:
            status_addr = parse_listen_address(args["status_addr"])
        except ValueError as exc:
            problems.append(f"--status-addr: {exc}")
    notify = None
    if args.get("notify"):
        try:
            notify = tuple(shlex.split(args["notify"]))
        except ValueError as exc:
            problems.append(f"--notify: cannot split {args['notify']!r} into a command: {exc}")
        if notify is not None:
            _check_command(notify, problems)
    notify_timeout = _duration(
        args.get("notify_timeout") or "30s",
        "--notify-timeout",
        0.1,
        3600.0,
        "a hook running longer is killed",
        problems,
    )
    step_down_hold = _duration(
        args.get("step_down_hold") or "10s",
        "--step-down-hold",
        0.0,
        86400.0,
        "how long a leader stays out after SIGUSR1",
        problems,
    )
    maintenance_file = Path(args["maintenance_file"]) if args.get("maintenance_file") else None
    if maintenance_file is not None and not maintenance_file.parent.is_dir():
        problems.append(
            f"--maintenance-file {maintenance_file}: directory "
            f"{maintenance_file.parent} does not exist"
        )

    check_id = args.get("check_id")
    if check_id is not None:
        check_id = check_id.strip() or None

    flags = {
        "addr": args.get("addr"),
        "token": args.get("token"),
        "token_file": args.get("token_file"),
        "ca_file": args.get("ca_file"),
        "ca_path": args.get("ca_path"),
        "client_cert": args.get("client_cert"),
        "client_key": args.get("client_key"),
        "tls_server_name": args.get("tls_server_name"),
    }
    consul = resolve_consul_settings(flags, environ, vip_manager, problems)

    warnings: list[str] = []
    if args.get("token_from_command_line"):
        warnings.append(
            "the ACL token was given with --token and is visible in `ps` to every local "
            "user; prefer --token-file or CONSUL_HTTP_TOKEN_FILE"
        )
    lock_value, value_source = "", ""
    if vip_manager is not None:
        lock_value, value_source, value_warnings = resolve_lock_value(
            args.get("hostname"), vip_manager, kernel_hostname()
        )
        warnings.extend(value_warnings)
        if not lock_value.strip():
            problems.append("the lock value is empty: set --hostname or trigger-value")

    if problems or vip_manager is None:
        raise ConfigError(problems)
    return Settings(
        vip_manager=vip_manager,
        consul=consul,
        lock_value=lock_value,
        lock_value_source=value_source,
        check_id=check_id,
        ttl=ttl,
        lock_delay=lock_delay,
        log_level=(args.get("log_level") or "INFO").upper(),
        log_format=args.get("log_format") or "text",
        liveness_ttl=liveness_ttl,
        status_addr=status_addr,
        notify=notify,
        notify_timeout=notify_timeout,
        maintenance_file=maintenance_file,
        step_down_hold=step_down_hold,
        warnings=tuple(warnings),
    )
