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

from vip_elector import __version__
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

Exit status: 0 after a clean stop, 1 on a runtime failure (such as the
trigger-key pre-flight check), 2 on invalid configuration.
"""


def add_common_options(parser: Any) -> None:
    """Options every command takes: where the config is and how to reach Consul."""
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


def build_parser() -> Any:
    parser = configargparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=configargparse.RawDescriptionHelpFormatter,
        auto_env_var_prefix="VIP_ELECTOR_",
        add_config_file_help=False,
        add_env_var_help=True,
    )
    add_common_options(parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def parse_settings(parser: Any, argv: Sequence[str]) -> Settings:
    """Parse ``argv`` and the environment into Settings (raises ConfigError)."""
    args = vars(parser.parse_args(list(argv)))
    args["token_from_command_line"] = any(
        arg == "--token" or arg.startswith("--token=") for arg in argv
    )
    return load_settings(args)


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
        return Coordinator(settings).run()
    finally:
        stop_logging()
