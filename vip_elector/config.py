"""Configuration: the parsed command line, environment and vip-manager.yml, assembled
into validated Settings.

Precedence for every setting: command-line flag (or its ``VIP_ELECTOR_*``
variable) > Consul's own environment variable > vip-manager.yml > default.
Everything is checked before the daemon touches Consul; every problem found
is reported, each on its own line, and the process exits with code 2.
Defaults and ranges come from the option table (``options``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vip_elector.consul_settings import parse_address, resolve_consul_settings
from vip_elector.durations import format_duration, parse_duration
from vip_elector.logs import untrusted
from vip_elector.options import Option, option
from vip_elector.settings import (
    CLOCK_RATE_ERROR,
    FENCE_MARGIN,
    ConfigError,
    Settings,
    VipManagerConfig,
)
from vip_elector.vip_manager_config import read_vip_manager_config

__all__ = [
    "ConfigError",
    "Settings",
    "load_settings",
    "parse_address",
    "parse_listen_address",
    "resolve_lock_value",
]

# The Consul layers' names for the flags they read (see consul_settings).
CONSUL_FLAGS = (
    "addr",
    "token",
    "token_file",
    "ca_file",
    "ca_path",
    "client_cert",
    "client_key",
    "tls_server_name",
)


def parse_listen_address(text: str) -> tuple[str, int]:
    """``PORT``, ``:PORT``, ``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); no host
    means loopback. A host name must resolve (ValueError otherwise)."""
    host, _, port_text = text.strip().rpartition(":")
    if host.startswith("[") != host.endswith("]") or (":" in host and not host.startswith("[")):
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9876")
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9876, :9876 or [::1]:9876)")
    try:
        socket.getaddrinfo(host, int(port_text), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve {host!r} ({exc.strerror})") from None
    return host, int(port_text)


def fenced_mode_problems(
    vip_manager: VipManagerConfig,
    status_addr: tuple[str, int] | None,
    lock_delay: float,
    problems: list[str],
) -> None:
    """vip-manager follows /leader: it must be served where it polls, and fenced."""
    url = vip_manager.leader_url or ""
    port = urllib.parse.urlsplit(url).port if "://" in url else None
    if status_addr is None or (port is not None and port != status_addr[1]):
        problems.append(
            f"{vip_manager.path} has `dcs-type: patroni`: vip-manager polls {url}; serve it "
            "with --status-addr on that port (e.g. --status-addr 127.0.0.1:PORT)"
        )
    interval = vip_manager.interval_ms / 1000
    needed = interval + FENCE_MARGIN
    if lock_delay * (1 - CLOCK_RATE_ERROR) <= needed:
        problems.append(
            f"--lock-delay {format_duration(lock_delay)} leaves no fence with vip-manager's "
            f"interval {vip_manager.interval_ms} ms: /leader would never answer 200. Raise "
            f"--lock-delay above {format_duration(needed)} (5s rides through a Consul "
            "leader election)"
        )


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


# -- the health check ---------------------------------------------------------

# --check-id's explicit "no service check" (Consul check ids are free text, but a
# check called "none" would be a strange one to tie a VIP to).
NO_CHECK = "none"
NO_CHECK_WARNING = (
    "health failover is OFF: no --check-id, so the VIP leaves this node only when the "
    "node, its Consul agent or vip-elector fails, never when the service behind the VIP "
    "dies; set --check-id (VIP_ELECTOR_CHECK_ID) to that service's Consul health check, "
    "or to `none` to run without one on purpose (and without this warning)"
)


def check_setting(text: str | None, problems: list[str]) -> tuple[str | None, bool]:
    """--check-id as given: (the check id or None, whether `none` was chosen).

    Given but empty (``VIP_ELECTOR_CHECK_ID=``, as the packaged
    /etc/default/vip-elector ships it) is an error: the choice must be made.
    """
    if text is None:
        return None, False
    check_id = text.strip()
    if not check_id:
        problems.append(
            "--check-id is empty (VIP_ELECTOR_CHECK_ID= in /etc/default/vip-elector?): "
            "choose how the VIP follows the service: the id of its Consul health check "
            "(e.g. vip-http) moves the VIP away when the service fails; `none` moves it "
            "only when the node, its Consul agent or vip-elector fails"
        )
        return None, False
    if check_id.lower() == NO_CHECK:
        return None, True
    return check_id, False


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
    which defaults to the kernel hostname; the Go original's default (and
    ours, for compatibility) is the short name.
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


def duration_setting(row: Option, text: str | None, problems: list[str]) -> float:
    """A duration option's value in seconds, checked against the row's range.

    ``text`` None means "not given": the row's default applies.
    """
    assert row.flag is not None
    assert row.low is not None
    assert row.high is not None
    spec = text or row.default
    assert spec is not None, f"{row.name} has no default"
    try:
        seconds = parse_duration(spec)
    except ValueError as exc:
        problems.append(f"{row.flag}: {exc}")
        return row.low
    if not row.low <= seconds <= row.high:
        problems.append(
            f"{row.flag} {spec} is out of range: must be between {format_duration(row.low)} "
            f"and {format_duration(row.high)} ({row.range_hint})"
        )
    return seconds


def _given(args: Mapping[str, Any], name: str) -> Any:
    """The parsed value of option ``name``, or its default."""
    row = option(name)
    value = args.get(row.dest)
    return value if value not in (None, "") else row.default


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

    def duration(name: str) -> float:
        row = option(name)
        return duration_setting(row, args.get(row.dest), problems)

    ttl = duration("ttl")
    lock_delay = duration("lock-delay")
    liveness_ttl = duration("liveness-ttl") if args.get("liveness_ttl") else None
    preempt_delay = duration("preempt-delay") if args.get("preempt_delay") else None
    priority = 100
    priority_text = str(_given(args, "priority"))
    if not priority_text.strip().isdigit() or not 0 <= int(priority_text) <= 255:
        problems.append(f"--priority {priority_text!r}: give a whole number from 0 to 255")
    else:
        priority = int(priority_text)
    notify_timeout = duration("notify-timeout")
    step_down_hold = duration("step-down-hold")

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
    maintenance_file = Path(args["maintenance_file"]) if args.get("maintenance_file") else None
    if maintenance_file is not None and not maintenance_file.parent.is_dir():
        problems.append(
            f"--maintenance-file {maintenance_file}: directory "
            f"{maintenance_file.parent} does not exist"
        )

    check_id, check_opt_out = check_setting(args.get("check_id"), problems)

    flags = {name: args.get(name) for name in CONSUL_FLAGS}
    consul = resolve_consul_settings(flags, environ, vip_manager, problems)

    warnings: list[str] = []
    if check_id is None and not check_opt_out:
        warnings.append(NO_CHECK_WARNING)
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
        for name, text in (("lock value", lock_value), ("trigger-key", vip_manager.trigger_key)):
            if not text.isprintable():
                problems.append(
                    f"the {name} {untrusted(text)!r} holds a control character (a line "
                    "break, a tab?): it must be one line of printable text"
                )

    if vip_manager is not None and vip_manager.fenced:
        fenced_mode_problems(vip_manager, status_addr, lock_delay, problems)
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
        log_level=str(_given(args, "log-level")).upper(),
        log_format=str(_given(args, "log-format")),
        liveness_ttl=liveness_ttl,
        status_addr=status_addr,
        notify=notify,
        notify_timeout=notify_timeout,
        maintenance_file=maintenance_file,
        step_down_hold=step_down_hold,
        priority=priority,
        preempt_delay=preempt_delay,
        step_down_without_vip=bool(args.get("step_down_without_vip")),
        check_opt_out=check_opt_out,
        warnings=tuple(warnings),
    )
