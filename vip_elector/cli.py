"""The command line: the flags of the Go original, VIP_ELECTOR_* variables, exit codes.

Exit codes: 0 after a clean stop, 1 on a fatal runtime error (e.g. the
trigger-key pre-flight check), 2 on bad configuration (nothing is touched in
Consul before the configuration is valid).
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import configargparse

from vip_elector import __version__, packaged
from vip_elector.config import ConfigError, Settings, load_settings
from vip_elector.coordinator import Coordinator
from vip_elector.durations import format_duration, parse_duration
from vip_elector.files import YAML_LIMIT, FileProblem, read_text
from vip_elector.logs import setup_logging, stop_logging
from vip_elector.options import with_flags

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
Every option of the daemon can also be set with its VIP_ELECTOR_* variable
(shown above); a command's own flags (--to, --yes, --json...) have none.
Consul's own variables work as in the consul CLI: CONSUL_HTTP_ADDR,
CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT, CONSUL_CAPATH,
CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_HTTP_SSL, CONSUL_HTTP_SSL_VERIFY,
CONSUL_TLS_SERVER_NAME, CONSUL_HTTP_AUTH. CONSUL_NAMESPACE and
CONSUL_PARTITION are refused (vip-manager ignores them). Precedence: option >
VIP_ELECTOR_* > CONSUL_* > vip-manager.yml (dcs-endpoints, consul-token,
trigger-value) > default.

Commands (on a packaged node they read the unit's configuration:
/etc/default/vip-elector and /etc/default/vip-manager.yml, or with
--instance NAME those of vip-elector@NAME; `vip-elector COMMAND --help`):
  vip-elector status [--json]            who holds the trigger-key, is it healthy
  vip-elector check-config [--online]    validate before a restart
  vip-elector switchover --to VALUE|any  move the VIP to another node, on purpose

Signals: SIGTERM/SIGINT stop cleanly, releasing the lock at once (a second
one exits at once); SIGHUP reloads the configuration (a new token or TLS files
in place, a new TTL, lock-delay or check by moving the lock to a new session,
never freeing it); SIGUSR1 makes a leader step down for --step-down-hold;
SIGUSR2 restarts in place into the code on disk, keeping the session and the
lock (the VIP does not move). A daemon killed or crashed is restarted by
systemd and adopts its session while it is still valid.

Exit status: 0 after a clean stop, 1 on a runtime failure (such as the
trigger-key pre-flight check), 2 on invalid configuration.
"""


class Parser(configargparse.ArgumentParser):  # type: ignore[misc]
    """ConfigArgParse's parser, with bad arguments told in one line, not under the usage."""

    def error(self, message: str) -> NoReturn:
        name = self.prog.split(" [", 1)[0]  # the daemon's prog lists the commands
        print(f"{name}: {message} (`{name} --help` lists the options)", file=sys.stderr)
        sys.exit(EXIT_CONFIG)


def add_options(parser: Any) -> None:
    """Every flag of the option table, each with its VIP_ELECTOR_* variable.

    Only these: a command's own flags (--to, --dry-run, --yes...) have no
    variable, so that nothing in the environment changes what a command does
    unseen (VIP_ELECTOR_DRY_RUN=true would turn a switchover into a dry run).
    """
    for row in with_flags():
        kwargs: dict[str, Any] = {"help": row.help_text()}
        if row.switch:
            # None when not given, as every other option's unset value.
            kwargs.update(action="store_true", default=None)
        else:
            kwargs["metavar"] = row.metavar
        if row.env:
            kwargs["env_var"] = row.env
        if row.config_file:
            kwargs["is_config_file"] = True
        if row.default is not None:
            kwargs["default"] = row.default
        if row.choices:
            kwargs["choices"] = list(row.choices)
            # Case-insensitive levels (`--log-level debug`), as before.
            if row.name == "log-level":
                kwargs["type"] = str.upper
        parser.add_argument(row.flag, **kwargs)


COMMANDS = {
    "status": "show who holds the trigger-key and whether that is healthy "
    "(exit 0 healthy leader, 1 none, 2 error)",
    "check-config": "validate the configuration; --online also checks the agent, token, "
    "permissions and health check (exit 0 ok, 1 a check failed, 2 invalid configuration)",
    "switchover": "move the VIP to the candidate whose lock value is --to (or `any`: the best "
    "other one), never with two holders or a free key (exit 0 moved, 1 refused or not "
    "applied, 2 error)",
}


# switchover --timeout: long enough for a leader to hand over (vip-manager's
# interval + 200 ms), at most what one Consul blocking read may wait.
SWITCHOVER_TIMEOUT = "5s"
SWITCHOVER_TIMEOUT_RANGE = (0.5, 600.0)


def switchover_timeout(text: str) -> float:
    """--timeout: a Go-style duration, as every other duration option."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    low, high = SWITCHOVER_TIMEOUT_RANGE
    if not low <= seconds <= high:
        raise argparse.ArgumentTypeError(
            f"{text!r} is out of range: give {format_duration(low)} to {format_duration(high)}"
        )
    return seconds


def add_packaged_options(parser: Any) -> None:
    """--instance and --defaults-file: which unit's configuration a command reads."""
    parser.add_argument(
        "--instance",
        metavar="NAME",
        help="ask about vip-elector@NAME: read /etc/default/vip-elector@NAME after "
        "/etc/default/vip-elector, and /etc/vip-manager/NAME.yml, as that unit does",
    )
    parser.add_argument(
        "--defaults-file",
        metavar="PATH",
        default=packaged.DEFAULTS_FILE,
        help="the units' environment file, read as systemd reads it, and with --instance "
        "then PATH@NAME (real variables win over them; their VIP_ELECTOR_OPTS are options "
        "before the command's own); empty: none (default: %(default)s)",
    )


def build_parser(command: str | None = None) -> Any:
    """The parser of the daemon (``command`` None) or of a subcommand."""
    parser = Parser(
        prog=f"{PROG} {command}" if command else f"{PROG} [{'|'.join(COMMANDS)}]",
        description=COMMANDS[command] if command else DESCRIPTION,
        epilog=EPILOG,
        formatter_class=configargparse.RawDescriptionHelpFormatter,
        add_config_file_help=False,
        add_env_var_help=True,
    )
    add_options(parser)
    if command is not None:
        add_packaged_options(parser)
    if command == "status":
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    elif command == "check-config":
        parser.add_argument(
            "--online",
            action="store_true",
            help="also check the agent, token, permissions and health check",
        )
    elif command == "switchover":
        parser.add_argument(
            "--to",
            metavar="VALUE",
            required=True,
            help="the lock value (trigger-value) of the node to move the VIP to, or `any`",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="say what would happen, change nothing"
        )
        parser.add_argument(
            "--timeout",
            metavar="DURATION",
            type=switchover_timeout,
            default=SWITCHOVER_TIMEOUT,
            help="withdraw the request if the leader has not applied it by then "
            f"({format_duration(SWITCHOVER_TIMEOUT_RANGE[0])}.."
            f"{format_duration(SWITCHOVER_TIMEOUT_RANGE[1])}; default: %(default)s)",
        )
        parser.add_argument(
            "--yes",
            "-y",
            action="store_true",
            help="do not ask for confirmation (needed when stdin is not a terminal)",
        )
    else:
        parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def config_files(argv: Sequence[str]) -> list[str]:
    """The --config files named in ``argv`` (configargparse reads them itself)."""
    found = []
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith("--config="):
            found.append(arg.split("=", 1)[1])
    return found


def parse_options(
    parser: Any, argv: Sequence[str], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Parse ``argv`` and the environment (``os.environ`` by default) into a dict
    of options (raises ConfigError).

    Any --config file is checked first with the same bounds as every other
    file (regular, at most 1 MiB, UTF-8), before configargparse reads it.
    """
    problems = []
    for path in config_files(argv):
        try:
            read_text(path, YAML_LIMIT)
        except FileProblem as exc:
            problems.append(f"--config {path}: {exc.reason}")
    if problems:
        raise ConfigError(problems)
    try:
        env_vars = os.environ if environ is None else environ
        args: dict[str, Any] = vars(parser.parse_args(list(argv), env_vars=env_vars))
    except (OSError, ValueError, UnicodeError) as exc:
        raise ConfigError([f"cannot read the options ({exc.__class__.__name__})"]) from None
    args["token_from_command_line"] = any(
        arg == "--token" or arg.startswith("--token=") for arg in argv
    )
    return args


def parse_settings(parser: Any, argv: Sequence[str]) -> Settings:
    """Parse ``argv`` and the environment into Settings (raises ConfigError)."""
    return load_settings(parse_options(parser, argv))


def packaged_setup(
    command: str, argv: list[str], environ: Mapping[str, str]
) -> packaged.CommandSetup:
    """A command's arguments and environment as the packaged unit would give them
    (raises ConfigError): --instance and --defaults-file are read first."""
    early = Parser(prog=f"{PROG} {command}", add_help=False)
    add_packaged_options(early)
    known = early.parse_known_args(argv)[0]
    instance = known.instance
    if instance is not None:
        try:
            packaged.check_instance(instance)
        except ValueError as exc:
            raise ConfigError([str(exc)]) from None
    return packaged.command_setup(argv, environ, instance, known.defaults_file)


def ask(question: str) -> bool:
    """Ask on the terminal; only "y" or "yes" is a yes (end of input, ^C: no)."""
    try:
        answer = input(f"{question} [y/N] ")
    except (EOFError, KeyboardInterrupt):
        print()
        return False
    return answer.strip().lower() in ("y", "yes")


def confirmation(options: Mapping[str, Any], interactive: bool) -> Callable[[str], bool] | None:
    """How a switchover is confirmed: not at all (--yes, --dry-run), or by asking.

    Raises ConfigError with no terminal to ask on: a script that moves the VIP
    says so with --yes rather than by the accident of having no terminal.
    """
    if options["yes"] or options["dry_run"]:
        return None
    if not interactive:
        raise ConfigError(
            [
                "switchover asks for confirmation and stdin is not a terminal: add --yes "
                "to move the VIP without asking (--dry-run shows what would happen)"
            ]
        )
    return ask


def run_command(command: str, argv: list[str]) -> int:
    """`status`, `check-config` and `switchover`: the daemon's options and
    environment, by default those of the packaged unit (see ``packaged``)."""
    parser = build_parser(command)
    try:
        setup = packaged_setup(command, argv, os.environ)
        options = parse_options(parser, setup.argv, setup.environ)
        settings = load_settings(options, setup.environ)
        interactive = sys.stdin is not None and sys.stdin.isatty()
        confirm = confirmation(options, interactive) if command == "switchover" else None
    except ConfigError as error:
        return report_config_error(error)
    for line in setup.warnings:
        print(f"{PROG}: warning: {line}", file=sys.stderr)
    # Imported here: the daemon's start-up does not load the commands.
    if command == "status":
        from vip_elector import status_report

        return status_report.run(settings, as_json=options["json"])
    if command == "switchover":
        from vip_elector import switchover

        return switchover.run(
            settings, options["to"], options["dry_run"], options["timeout"], confirm
        )
    from vip_elector import config_check

    return config_check.run(settings, with_online=options["online"], files_read=setup.files_read)


def report_config_error(error: ConfigError) -> int:
    for problem in error.problems:
        print(f"{PROG}: configuration error: {problem}", file=sys.stderr)
    print(
        f"{PROG}: nothing was changed in Consul; fix the above and start again "
        f"(`{PROG} --help` lists every option)",
        file=sys.stderr,
    )
    return EXIT_CONFIG


def unknown_command(word: str) -> int:
    """A word where a command or an option belongs: one line, the likely command."""
    close = difflib.get_close_matches(word, COMMANDS, n=1)
    hint = f"did you mean `{PROG} {close[0]}`?" if close else f"commands: {', '.join(COMMANDS)}"
    print(f"{PROG}: unknown command {word!r}; {hint} (`{PROG} --help`)", file=sys.stderr)
    return EXIT_CONFIG


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    if command is not None:
        return run_command(command, argv[1:])
    if argv and not argv[0].startswith("-"):
        # The daemon takes options only: a first word is a mistyped command.
        return unknown_command(argv[0])
    parser = build_parser()
    try:
        settings = parse_settings(parser, argv)
    except ConfigError as error:
        return report_config_error(error)
    except RecursionError:
        return report_config_error(ConfigError(["a configuration file is nested too deeply"]))

    setup_logging(settings.log_level, settings.log_format)
    try:
        for warning in settings.warnings:
            logging.getLogger("vip_elector").warning(
                "%s", warning, extra={"event": "config_warning"}
            )
        return Coordinator(settings, reload_settings=lambda: parse_settings(parser, argv)).run()
    finally:
        stop_logging()
