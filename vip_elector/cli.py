"""The command line: the seed's flags, VIP_ELECTOR_* variables, exit codes.

Exit codes: 0 after a clean stop, 1 on a fatal runtime error (e.g. the
trigger-key pre-flight check), 2 on bad configuration (nothing is touched in
Consul before the configuration is valid).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import configargparse

from vip_elector import __version__, config_check, status_report
from vip_elector.config import DEFAULT_LOCK_DELAY, DEFAULT_TTL, ConfigError, Settings, load_settings
from vip_elector.coordinator import Coordinator
from vip_elector.logs import setup_logging, stop_logging

EXIT_CONFIG = 2
PROG = "vip-elector"

DESCRIPTION = """\
Leader election for vip-manager on Consul. vip-elector holds a Consul lock on
vip-manager's trigger-key through a session tied to this node's HTTP health
check, and writes the value vip-manager on this node waits for, so the VIP
lives on the healthy leader. When the check fails, the node dies or
vip-elector stops, the key goes away and another node takes the lock.
"""

EPILOG = """\
Every option can also be set with its VIP_ELECTOR_* variable (shown above).
Consul's own variables work as in the consul CLI: CONSUL_HTTP_ADDR,
CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT, CONSUL_CAPATH,
CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_HTTP_SSL, CONSUL_HTTP_SSL_VERIFY,
CONSUL_TLS_SERVER_NAME. Precedence: option > VIP_ELECTOR_* > CONSUL_* >
vip-manager.yml (dcs-endpoints, consul-token, trigger-value) > default.

Commands:
  vip-elector status [--json]         who holds the trigger-key, is it healthy
  vip-elector check-config [--online] validate before a restart

Signals: SIGTERM/SIGINT stop cleanly (a second one exits at once), SIGHUP
reloads the configuration, SIGUSR1 makes a leader step down for
--step-down-hold.

Exit status: 0 after a clean stop, 1 on a runtime failure (such as the
trigger-key pre-flight check), 2 on invalid configuration.
"""


def add_common_options(parser: Any) -> None:
    """Options every command takes: where the config is and how to reach Consul."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        is_config_file=True,
        help="file of vip-elector's own options, one `option = value` (or `option: value`) "
        "per line, e.g. `log-level = DEBUG`; below options and VIP_ELECTOR_* variables in "
        "precedence; re-read on SIGHUP",
    )
    parser.add_argument(
        "--vip-manager-config",
        metavar="PATH",
        help="vip-manager.yml shared with vip-manager (trigger-key, trigger-value, "
        "dcs-endpoints, consul-token); required",
    )
    parser.add_argument(
        "--check-id",
        metavar="ID",
        help="Consul check ID to tie the session to (e.g. vip-http); without it only the "
        "node's serfHealth counts",
    )
    parser.add_argument(
        "--ttl",
        metavar="DURATION",
        default=DEFAULT_TTL,
        help="session TTL, 10s..24h (default: %(default)s)",
    )
    parser.add_argument(
        "--lock-delay",
        metavar="DURATION",
        default=DEFAULT_LOCK_DELAY,
        help="lock-delay after a leader's session is invalidated, 0..60s; "
        "0 disables (default: %(default)s)",
    )
    parser.add_argument(
        "--addr",
        metavar="ADDR",
        help="Consul agent address, [http[s]://]host[:port] (overrides "
        "CONSUL_HTTP_ADDR and dcs-endpoints)",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help="Consul ACL token (overrides CONSUL_HTTP_TOKEN; visible in ps, prefer --token-file)",
    )
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding the Consul ACL token (overrides CONSUL_HTTP_TOKEN_FILE)",
    )
    parser.add_argument("--ca-file", metavar="PATH", help="CA certificate (CONSUL_CACERT)")
    parser.add_argument("--ca-path", metavar="DIR", help="CA certificate directory (CONSUL_CAPATH)")
    parser.add_argument(
        "--client-cert", metavar="PATH", help="client certificate (CONSUL_CLIENT_CERT)"
    )
    parser.add_argument("--client-key", metavar="PATH", help="client key (CONSUL_CLIENT_KEY)")
    parser.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="name to verify the agent's certificate against (CONSUL_TLS_SERVER_NAME)",
    )
    parser.add_argument(
        "--hostname",
        metavar="VALUE",
        help="lock value written to the trigger-key (default: trigger-value "
        "from the yml, else the short hostname); must equal vip-manager's "
        "trigger-value",
    )
    parser.add_argument(
        "--liveness-ttl",
        metavar="DURATION",
        help="tie the session also to a TTL check the daemon passes while its threads make "
        "progress, so a killed or wedged vip-elector loses the lock after about DURATION "
        "instead of up to 2 x TTL (off by default; needs service write on 'vip-elector')",
    )
    add_operator_options(parser)
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="(default: %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text, or one JSON object per line (default: %(default)s)",
    )


def add_operator_options(parser: Any) -> None:
    """Status endpoint, hooks, maintenance: features beyond the seed."""
    parser.add_argument(
        "--status-addr",
        metavar="[HOST]:PORT",
        help="serve /status (JSON), /metrics (Prometheus) and /healthz on this address "
        "(off by default; without HOST: 127.0.0.1)",
    )
    parser.add_argument(
        "--notify",
        metavar="CMD",
        help="run CMD STATE KEY VALUE on every state change (LEADER, FOLLOWER, MAINTENANCE, "
        "STOPPING), with VIP_ELECTOR_STATE/_PREVIOUS_STATE/_KEY/_VALUE/_CAUSE/_SESSION in its "
        "environment; one at a time, off the election path",
    )
    parser.add_argument(
        "--notify-timeout",
        metavar="DURATION",
        default="30s",
        help="kill a --notify hook running longer (default: %(default)s)",
    )
    parser.add_argument(
        "--maintenance-file",
        metavar="PATH",
        help="while this file exists, do not compete; a leader steps down at once (deleting "
        "the key, so another node takes over without lock-delay)",
    )
    parser.add_argument(
        "--step-down-hold",
        metavar="DURATION",
        default="10s",
        help="after SIGUSR1 a leader steps down and stays out this long (default: %(default)s)",
    )


COMMANDS = {
    "status": "show who holds the trigger-key and whether that is healthy "
    "(exit 0 healthy leader, 1 none, 2 error)",
    "check-config": "validate the configuration; --online also checks the agent, token, "
    "permissions and health check (exit 0 ok, 1 a check failed, 2 invalid configuration)",
}


def build_parser(command: str | None = None) -> Any:
    """The parser of the daemon (``command`` None) or of a subcommand."""
    parser = configargparse.ArgumentParser(
        prog=f"{PROG} {command}" if command else f"{PROG} [status|check-config]",
        description=COMMANDS[command] if command else DESCRIPTION,
        epilog=EPILOG,
        formatter_class=configargparse.RawDescriptionHelpFormatter,
        auto_env_var_prefix="VIP_ELECTOR_",
        add_config_file_help=False,
        add_env_var_help=True,
    )
    add_common_options(parser)
    if command == "status":
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    elif command == "check-config":
        parser.add_argument(
            "--online",
            action="store_true",
            help="also check the agent, token, permissions and health check",
        )
    else:
        parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def parse_settings(parser: Any, argv: Sequence[str]) -> Settings:
    """Parse ``argv`` and the environment into Settings (raises ConfigError)."""
    args = vars(parser.parse_args(list(argv)))
    args["token_from_command_line"] = any(
        arg == "--token" or arg.startswith("--token=") for arg in argv
    )
    return load_settings(args)


def run_command(command: str, argv: list[str]) -> int:
    """`status` and `check-config`: same options and environment as the daemon."""
    parser = build_parser(command)
    try:
        settings = parse_settings(parser, argv)
    except ConfigError as error:
        return report_config_error(error)
    options = vars(parser.parse_known_args(argv)[0])
    if command == "status":
        return status_report.run(settings, as_json=options["json"])
    return config_check.run(settings, with_online=options["online"])


def report_config_error(error: ConfigError) -> int:
    for problem in error.problems:
        print(f"{PROG}: configuration error: {problem}", file=sys.stderr)
    print(
        f"{PROG}: nothing was changed in Consul; fix the above and start again "
        f"(`{PROG} --help` lists every option)",
        file=sys.stderr,
    )
    return EXIT_CONFIG


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    if command is not None:
        return run_command(command, argv[1:])
    parser = build_parser()
    try:
        settings = parse_settings(parser, argv)
    except ConfigError as error:
        return report_config_error(error)

    setup_logging(settings.log_level, settings.log_format)
    try:
        for warning in settings.warnings:
            logging.getLogger("vip_elector").warning(
                "%s", warning, extra={"event": "config_warning"}
            )
        return Coordinator(settings, reload_settings=lambda: parse_settings(parser, argv)).run()
    finally:
        stop_logging()
