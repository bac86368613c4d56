"""The table of vip-elector's options: one row per setting, read by everything else.

Each row says what a setting is called on the command line, in the
environment and in vip-manager.yml, its default, its range, what it means,
and what a SIGHUP that changes it does (:class:`Reload`). The command line
(``cli``), the validation (``config``), the reload rule (``coordinator``),
the README's configuration table and the manual page are all built from it,
so a default or a range is written exactly once.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from vip_elector.durations import format_duration

ENV_PREFIX = "VIP_ELECTOR_"


class Reload(enum.IntEnum):
    """What a SIGHUP that changes a setting does; a larger value is a bigger step."""

    APPLY = 0  # applied at once by the running daemon
    IN_PLACE = 1  # swapped under the running threads: same session, same lock
    RESTART = 2  # only read at start: logged, kept until a restart (SIGUSR2)
    NEW_SESSION = 3  # a leader moves the lock to a new session, never freeing it
    HANDOVER = 4  # the lock is released and the election starts again


RELOAD_WORDS = {
    Reload.APPLY: "applied at once",
    Reload.IN_PLACE: "swapped in place: same session, the lock stays",
    Reload.RESTART: "read at start only: restart to apply",
    Reload.NEW_SESSION: "a new session; a leader moves the lock to it without freeing it",
    Reload.HANDOVER: "hands the lock over and competes again",
}


@dataclass(frozen=True)
class Option:
    """One setting and every way to give it."""

    name: str  # how logs and the reload rule name it, e.g. "ttl", "trigger-key"
    meaning: str  # --help, README and manual page text
    flag: str | None = None  # None: only in vip-manager.yml or Consul's environment
    metavar: str | None = None
    default: str | None = None  # as it would be written on the command line
    shown_default: str | None = None  # for the docs, when there is no default to parse
    low: float | None = None  # duration bounds, seconds
    high: float | None = None
    range_hint: str = ""  # why the bounds are what they are
    choices: tuple[str, ...] = ()
    consul_env: tuple[str, ...] = ()  # Consul's own variables for it, highest first
    yml_key: str | None = None  # the vip-manager.yml key it can come from
    setting: str | None = None  # dotted path into Settings of what it decides
    reload: Reload = Reload.HANDOVER
    config_file: bool = False  # --config: a file of options
    # A flag without a value (on when given); its variable and the --config file
    # take `true` or `false`.
    switch: bool = False

    @property
    def dest(self) -> str:
        """The argparse destination (``--lock-delay`` -> ``lock_delay``)."""
        assert self.flag is not None, self.name
        return self.flag[2:].replace("-", "_")

    @property
    def env(self) -> str | None:
        """Its VIP_ELECTOR_* variable."""
        return f"{ENV_PREFIX}{self.dest.upper()}" if self.flag and not self.config_file else None

    @property
    def is_duration(self) -> bool:
        return self.low is not None

    def range_text(self) -> str:
        assert self.low is not None
        assert self.high is not None
        return f"{format_duration(self.low)}..{format_duration(self.high)}"

    def help_text(self) -> str:
        """The --help line: the meaning, then the default."""
        text = self.meaning
        if self.consul_env:
            text += f" (also {', '.join(self.consul_env)})"
        limits = []
        if self.is_duration:
            limits.append(self.range_text())
        if self.default is not None:
            limits.append(f"default: {self.default}")
        if limits:
            text += f" ({'; '.join(limits)})"
        # argparse formats help with %-style placeholders.
        return text.replace("%", "%%")

    def read(self, settings: Any) -> Any:
        """The value this option decides in a Settings object (``setting`` path)."""
        assert self.setting is not None, self.name
        return functools.reduce(getattr, self.setting.split("."), settings)


OPTIONS: tuple[Option, ...] = (
    Option(
        "config",
        "a file of vip-elector's own options, one `option = value` per line (e.g. "
        "`log-level = DEBUG`), between the variables and vip-manager.yml in precedence; "
        "re-read on SIGHUP",
        flag="--config",
        metavar="PATH",
        shown_default="none",
        reload=Reload.APPLY,
        config_file=True,
    ),
    Option(
        "vip-manager-config",
        "the vip-manager.yml both programs read (trigger-key, trigger-value, "
        "dcs-endpoints, consul-token, interval, and the VIP: ip, netmask, interface, manager-type)",
        flag="--vip-manager-config",
        metavar="PATH",
        # The commands default to the packaged unit's (see packaged.py).
        shown_default="(required; the commands: the unit's)",
        setting="vip_manager.path",
        # The file's path alone changes nothing; what is read from it is
        # compared by the rows below.
        reload=Reload.APPLY,
    ),
    Option(
        "dcs-type",
        "vip-manager's default is etcd, so a missing `dcs-type` is an error",
        yml_key="dcs-type",
        shown_default="(must be `consul`)",
    ),
    Option(
        "trigger-key",
        "the key to lock; a leading `/` is stripped as vip-manager does",
        yml_key="trigger-key",
        shown_default="(required)",
        setting="trigger_key",
    ),
    Option(
        "interval",
        "vip-manager's interval (ms between its reads of the key): a new leader takes a "
        "key another node held no earlier than this + 200 ms after it went free, so that "
        "node's vip-manager has dropped the VIP first and two nodes never hold it at once",
        yml_key="interval",
        shown_default="`1000`",
        setting="vip_manager.interval_ms",
        reload=Reload.RESTART,
    ),
    Option(
        "ip",
        "the VIP vip-manager adds: the address watch follows whether it is on `interface` "
        "on this host and reports a leader without it, or a node that does not lead with "
        "it; unset, the VIP is not observed (said once at start)",
        yml_key="ip",
        shown_default="unset (not observed)",
        setting="vip_manager.vip",
        reload=Reload.RESTART,
    ),
    Option(
        "netmask",
        "the VIP's prefix length, as vip-manager adds it (shown in the reports)",
        yml_key="netmask",
        shown_default="unset",
        setting="vip_manager.netmask",
        reload=Reload.RESTART,
    ),
    Option(
        "interface",
        "the interface vip-manager adds the VIP to; one this host does not have: the VIP "
        "is not observed (said once at start)",
        yml_key="interface",
        shown_default="unset (not observed)",
        setting="vip_manager.interface",
        reload=Reload.RESTART,
    ),
    Option(
        "manager-type",
        "vip-manager's: only with `basic` is the VIP an address of this host that the "
        "address watch can follow",
        yml_key="manager-type",
        shown_default="`basic`",
        setting="vip_manager.manager_type",
        reload=Reload.RESTART,
    ),
    Option(
        "hostname",
        "the lock value, byte for byte what vip-manager compares with its `trigger-value` "
        "(which defaults to the *full* kernel hostname: vip-elector warns when they would "
        "differ)",
        flag="--hostname",
        metavar="VALUE",
        yml_key="trigger-value",
        shown_default="short hostname",
        setting="lock_value",
    ),
    Option(
        "check-id",
        "the Consul health check of the service behind the VIP; the session is tied to it, "
        "so the node does not compete while it is missing or critical and the VIP leaves "
        "when the service fails. `none`: no service check on purpose, only a failure of the "
        "node, its agent or vip-elector moves the VIP. Unset: the same, with a WARNING at start; "
        "empty: refused (choose one)",
        flag="--check-id",
        metavar="ID",
        shown_default="unset (warns)",
        setting="check_id",
        reload=Reload.NEW_SESSION,
    ),
    Option(
        "ttl",
        "session TTL; renewed once 0.6 of it has passed; leadership is given up after one "
        "TTL without a successful renewal",
        flag="--ttl",
        metavar="DURATION",
        default="10s",
        low=10.0,
        high=86400.0,
        range_hint="Consul accepts session TTLs of 10s to 24h",
        setting="ttl",
        reload=Reload.NEW_SESSION,
    ),
    Option(
        "lock-delay",
        "how long nobody may take the lock after a leader's session is invalidated; 0 disables",
        flag="--lock-delay",
        metavar="DURATION",
        default="1s",
        low=0.0,
        high=60.0,
        range_hint="Consul caps lock-delay at 60s; 0 disables it",
        setting="lock_delay",
        reload=Reload.NEW_SESSION,
    ),
    Option(
        "addr",
        "the local Consul agent, `[http[s]://]host[:port]`; with no scheme, "
        "`CONSUL_HTTP_SSL=true` means https",
        flag="--addr",
        metavar="ADDR",
        consul_env=("CONSUL_HTTP_ADDR",),
        yml_key="dcs-endpoints",
        shown_default="`http://127.0.0.1:8500`",
        setting="consul.address",
        reload=Reload.IN_PLACE,
    ),
    Option(
        "token",
        "ACL token (visible in `ps`: prefer a file)",
        flag="--token",
        metavar="TOKEN",
        consul_env=("CONSUL_HTTP_TOKEN",),
        yml_key="consul-token",
        shown_default="agent default",
        setting="consul.token",
        reload=Reload.IN_PLACE,
    ),
    Option(
        "token-file",
        "file with the ACL token; within one level it wins over a token, as in Consul's CLI",
        flag="--token-file",
        metavar="PATH",
        consul_env=("CONSUL_HTTP_TOKEN_FILE",),
        setting="consul.token",
        reload=Reload.IN_PLACE,
    ),
    Option(
        "ca-file",
        "CA certificate for the agent's HTTPS",
        flag="--ca-file",
        metavar="PATH",
        consul_env=("CONSUL_CACERT",),
        shown_default="system CAs",
        setting="consul.ca_file",
        reload=Reload.IN_PLACE,
    ),
    Option(
        "ca-path",
        "directory of CA certificates",
        flag="--ca-path",
        metavar="DIR",
        consul_env=("CONSUL_CAPATH",),
        setting="consul.ca_path",
        reload=Reload.IN_PLACE,
    ),
    Option(
        "client-cert",
        "client certificate (agents with `verify_incoming`)",
        flag="--client-cert",
        metavar="PATH",
        consul_env=("CONSUL_CLIENT_CERT",),
        setting="consul.client_cert",
        reload=Reload.IN_PLACE,
    ),
    Option(
        "client-key",
        "its key",
        flag="--client-key",
        metavar="PATH",
        consul_env=("CONSUL_CLIENT_KEY",),
        setting="consul.client_key",
        reload=Reload.IN_PLACE,
    ),
    Option(
        "tls-server-name",
        "name the agent's certificate is checked against",
        flag="--tls-server-name",
        metavar="NAME",
        consul_env=("CONSUL_TLS_SERVER_NAME",),
        shown_default="the address",
        setting="consul.tls_server_name",
        reload=Reload.IN_PLACE,
    ),
    Option(
        "ssl-verify",
        "`false` skips certificate verification",
        consul_env=("CONSUL_HTTP_SSL_VERIFY",),
        shown_default="`true`",
        setting="consul.verify",
        reload=Reload.IN_PLACE,
    ),
    Option(
        "priority",
        "0..255; a free key goes to the eligible candidate with the highest priority: "
        "lower ones hold back while a higher one is alive and eligible. Equal priorities "
        "(the default) mean first come, first served. Never preemptive by itself (see "
        "--preempt-delay)",
        flag="--priority",
        metavar="N",
        default="100",
        setting="priority",
        reload=Reload.RESTART,
    ),
    Option(
        "preempt-delay",
        "let a higher-priority candidate that has been eligible this long take the VIP "
        "from a healthy leader (hand-over without a moment free); off: a healthy leader "
        "keeps the VIP (keepalived's nopreempt)",
        flag="--preempt-delay",
        metavar="DURATION",
        shown_default="off",
        low=0.0,
        high=86400.0,
        range_hint="how long a better candidate must be eligible first",
        setting="preempt_delay",
        reload=Reload.RESTART,
    ),
    Option(
        "http-auth",
        "HTTP basic auth `user[:password]` for a proxy in front of the agent, sent as the "
        "consul CLI sends it (Consul itself does not check it); the password is never logged",
        consul_env=("CONSUL_HTTP_AUTH",),
        shown_default="none",
        setting="consul.http_auth",
        reload=Reload.IN_PLACE,
    ),
    Option(
        "liveness-ttl",
        "also tie the session to a TTL check the daemon passes while its threads make "
        "progress: a killed or frozen daemon loses the lock after about DURATION instead of "
        "up to 2 x TTL (needs service write on `vip-elector`)",
        flag="--liveness-ttl",
        metavar="DURATION",
        shown_default="off",
        low=1.0,
        high=3600.0,
        range_hint="it is passed every third of it",
        setting="liveness_ttl",
        reload=Reload.NEW_SESSION,
    ),
    Option(
        "status-addr",
        "serve `/status` (JSON), `/metrics` (Prometheus), `/healthz`, `/primary` (for load "
        "balancers) and the fenced `/leader` (for vip-manager); without HOST on 127.0.0.1",
        flag="--status-addr",
        metavar="[HOST]:PORT",
        shown_default="off",
        setting="status_addr",
        reload=Reload.RESTART,
    ),
    Option(
        "notify",
        "run `CMD STATE KEY VALUE` on every state change (keepalived-style), with "
        "VIP_ELECTOR_STATE/_PREVIOUS_STATE/_KEY/_VALUE/_CAUSE/_SESSION in its environment; "
        "one at a time, off the election path",
        flag="--notify",
        metavar="CMD",
        shown_default="none",
        setting="notify",
        reload=Reload.RESTART,
    ),
    Option(
        "notify-timeout",
        "kill a hook running longer",
        flag="--notify-timeout",
        metavar="DURATION",
        default="30s",
        low=0.1,
        high=3600.0,
        range_hint="a hook running longer is killed",
        setting="notify_timeout",
        reload=Reload.RESTART,
    ),
    Option(
        "maintenance-file",
        "while it exists, do not compete; a leader steps down at once (no lock-delay)",
        flag="--maintenance-file",
        metavar="PATH",
        shown_default="none",
        setting="maintenance_file",
        reload=Reload.APPLY,
    ),
    Option(
        "step-down-hold",
        "after SIGUSR1 a leader steps down and stays out this long",
        flag="--step-down-hold",
        metavar="DURATION",
        default="10s",
        low=0.0,
        high=86400.0,
        range_hint="how long a leader stays out after SIGUSR1",
        setting="step_down_hold",
        reload=Reload.APPLY,
    ),
    Option(
        "step-down-without-vip",
        "a leader whose VIP has not been on this host for longer than vip-manager needs to "
        "add it (2 x `interval` + 1 s) steps down to another eligible candidate and stays "
        "out for at least 5 minutes (`true` in the variable or the --config file); with no other "
        "eligible candidate it keeps the lock and says so. Off, it only reports it: "
        "stepping down does not help when every node's vip-manager is broken",
        flag="--step-down-without-vip",
        switch=True,
        shown_default="off",
        setting="step_down_without_vip",
        reload=Reload.APPLY,
    ),
    Option(
        "log-level",
        "DEBUG, INFO, WARNING, ERROR",
        flag="--log-level",
        metavar="LEVEL",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        setting="log_level",
        reload=Reload.APPLY,
    ),
    Option(
        "log-format",
        "`text`, or `json` (one object per line: `time level message event state key "
        "session cause`)",
        flag="--log-format",
        metavar="FORMAT",
        default="text",
        choices=("text", "json"),
        setting="log_format",
        reload=Reload.APPLY,
    ),
)

BY_NAME = {option.name: option for option in OPTIONS}


def option(name: str) -> Option:
    """The row called ``name`` (a KeyError names a typo at import time)."""
    return BY_NAME[name]


def with_flags() -> Iterator[Option]:
    """The rows with a command-line flag (every command takes them all: `status`
    and `check-config` read the daemon's own configuration)."""
    return (o for o in OPTIONS if o.flag is not None)


# -- the reload rule ----------------------------------------------------------


def reload_plan(old: Any, new: Any) -> dict[Reload, list[str]]:
    """What changed between two Settings, by what a reload must do about it.

    Compares the value each row decides (its ``setting`` path); a value
    decided by several rows (the token, by --token or --token-file) is
    named once. The values themselves are never returned: they may be secrets.
    """
    plan: dict[Reload, list[str]] = {}
    seen: set[str] = set()
    for row in OPTIONS:
        if row.setting is None or row.setting in seen:
            continue
        seen.add(row.setting)
        if row.read(old) != row.read(new):
            plan.setdefault(row.reload, []).append(row.name)
    return plan


def running_settings(old: Any, new: Any) -> Any:
    """``new``, with what a reload cannot apply (``Reload.RESTART``) kept as in
    ``old``: a change applies fully at the restart, never halfway (the log says
    "restart to apply", so /status, the candidate entry and the next generation
    of workers all keep the running value until then)."""
    for row in OPTIONS:
        if row.setting is None or row.reload != Reload.RESTART:
            continue
        new = _with(new, row.setting.split("."), row.read(old))
    return new


def _with(settings: Any, path: list[str], value: Any) -> Any:
    if len(path) == 1:
        return dataclasses.replace(settings, **{path[0]: value})
    inner = _with(getattr(settings, path[0]), path[1:], value)
    return dataclasses.replace(settings, **{path[0]: inner})


# -- documentation ------------------------------------------------------------


def _code(text: str) -> str:
    return f"`{text}`"


def shown_default(row: Option) -> str:
    """The default as the docs show it (Markdown), "" when there is none."""
    if row.shown_default is not None:
        return row.shown_default
    return _code(row.default) if row.default is not None else ""


def meaning_with_range(row: Option) -> str:
    """The meaning (Markdown), a duration's range first."""
    if row.is_duration:
        return f"{row.range_text()}; {row.meaning}"
    return row.meaning


def markdown_table() -> str:
    """The README's configuration table."""
    lines = [
        "| option | variable(s) | vip-manager.yml | default | meaning | on SIGHUP |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in OPTIONS:
        flag = (
            _code(f"{row.flag} {row.metavar}" if row.metavar else f"{row.flag}") if row.flag else ""
        )
        variables = ", ".join(_code(v) for v in (row.env, *row.consul_env) if v)
        yml = _code(row.yml_key) if row.yml_key else ""
        on_reload = RELOAD_WORDS[row.reload] if row.setting else ""
        lines.append(
            f"| {flag} | {variables} | {yml} | {shown_default(row)} | "
            f"{meaning_with_range(row)} | {on_reload} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - `python -m vip_elector.options`
    print(markdown_table())  # noqa: T201
