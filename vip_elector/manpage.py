"""vip-elector(8), written from the option table and the command list.

``python3 -m vip_elector.manpage > vip-elector.8`` (debian/rules does this).
Every option, its variables, vip-manager.yml key, default, range and what a
SIGHUP does about it come from :mod:`vip_elector.options`; the commands and
their own flags from :data:`vip_elector.cli.COMMANDS` and their parsers, so
the page follows the code. The date is SOURCE_DATE_EPOCH's when it is set
(reproducible builds), else today's.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator

from vip_elector import __version__, cli
from vip_elector.consul_settings import REFUSED_BECAUSE, REFUSED_VARIABLES
from vip_elector.options import OPTIONS, RELOAD_WORDS, Option, shown_default

NAME = "leader election for vip-manager on Consul"


# -- roff ----------------------------------------------------------------------


def text(words: str) -> str:
    """Words for roff: backslashes escaped, the hyphens of an option (``--ttl``)
    minus signs, so that it can be copied, and no control character at the start."""
    return _roff(_OPTION.sub(lambda found: found.group(0).replace("-", "\0"), words))


def literal(words: str) -> str:
    """Something to type (an option, a command, a path): all its hyphens are minus
    signs, and it is never hyphenated at a line end (``\\%``)."""
    return "\\%" + _roff(words.replace("-", "\0"))


_OPTION = re.compile(r"(?<![\w-])--?\w[\w-]*")


def _roff(words: str) -> str:
    # NUL marks a hyphen that is a minus sign (no NUL is ever in the texts).
    escaped = words.replace("\\", "\\e").replace("\0", "\\-")
    return f"\\&{escaped}" if escaped.startswith((".", "'")) else escaped


def optional(words: str) -> str:
    """``[words]``; a ``\\%`` inside a word would be a place to break it with a hyphen
    (only at a word's start does it forbid that), so the bracket carries it."""
    return "\\%[" + words.replace("\\%", "") + "]"


def bold(words: str) -> str:
    return f"\\fB{literal(words)}\\fR"


def italic(words: str) -> str:
    return f"\\fI{literal(words)}\\fR"


def from_markdown(words: str) -> str:
    """The table's Markdown (`code`, *emphasis*) as roff."""
    parts = re.split(r"(`[^`]+`|\*[^*]+\*)", words)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(bold(part[1:-1]))
        elif part.startswith("*") and part.endswith("*") and len(part) > 1:
            out.append(f"\\fI{text(part[1:-1])}\\fR")
        else:
            out.append(text(part))
    return "".join(out)


def sentence(words: str) -> str:
    return words if words.endswith((".", ")")) else f"{words}."


# -- the sections ----------------------------------------------------------------


def _date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    seconds = int(epoch) if epoch and epoch.isdigit() else int(time.time())
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


def _own_flags(command: str | None) -> list[tuple[str, str]]:
    """The flags a command has beyond the option table: (flag, help)."""
    return [(flag, help_text) for flag, _, help_text in _own_actions(command)]


def _own_actions(command: str | None) -> list[tuple[str, str, str]]:
    """(flag, how it is written in a synopsis, help) for a command's own flags:
    ``--to VALUE`` when it is required, ``[--timeout DURATION]`` when not."""
    table = {row.flag for row in OPTIONS if row.flag}
    found = []
    for action in cli.build_parser(command)._actions:
        flags = [f for f in action.option_strings if f.startswith("--")]
        if flags and flags[0] not in table and flags[0] != "--help":
            written = bold(flags[0]) + (f" {italic(action.metavar)}" if action.metavar else "")
            written = written if action.required else optional(written)
            # argparse's %(default)s, as --help shows it.
            help_text = str(action.help or "") % {**vars(action), "prog": cli.PROG}
            found.append((flags[0], written, help_text))
    return found


def _command_line(command: str) -> str:
    return bold(f"{cli.PROG} {command}") + "".join(
        f" {written}" for _, written, _ in _own_actions(command)
    )


def synopsis() -> Iterator[str]:
    yield ".SH SYNOPSIS"
    option = f"{optional(italic('OPTION'))}..."
    yield f"{bold(cli.PROG)} {bold('--vip-manager-config')} {italic('PATH')} {option}"
    for command in cli.COMMANDS:
        yield ".br"
        yield f"{_command_line(command)} {option}"
    yield ".br"
    yield f"{bold(cli.PROG)} {bold('--version')} | {bold('--help')}"


def description() -> Iterator[str]:
    yield ".SH DESCRIPTION"
    for paragraph in cli.DESCRIPTION.strip().split("\n\n"):
        yield ".PP"
        yield text(" ".join(paragraph.split()))
    yield ".PP"
    yield (
        "Every setting can be given, highest precedence first, as a command-line option, "
        "its VIP_ELECTOR_* variable, Consul's own CONSUL_* variable, in vip\\-manager.yml "
        "(the file vip\\-manager reads too) or by its default. All of it is checked before "
        "anything is sent to Consul; each problem is reported on a line of its own and the "
        "exit status is 2."
    )
    yield ".PP"
    yield text(
        "The commands take the daemon's options and environment. By default they read the "
        "packaged unit's configuration, as systemd gives it to the daemon: the variables of "
        "/etc/default/vip-elector (read as systemd reads an EnvironmentFile=, no shell "
        "runs; a variable set in the real environment wins over the file), the unit's "
        "--vip-manager-config=/etc/default/vip-manager.yml, then the options in "
        "VIP_ELECTOR_OPTS, then the command's own arguments (the last of an option wins). "
        "With --instance NAME they read /etc/default/vip-elector@NAME after "
        "/etc/default/vip-elector, and /etc/vip-manager/NAME.yml, as vip-elector@NAME.service "
        "does. A command's own flags (--to, --dry-run, --yes...) have no variable: only "
        "what is typed changes what a command does."
    )
    for command, what in cli.COMMANDS.items():
        yield ".TP"
        yield _command_line(command)
        yield text(sentence(what[0].upper() + what[1:]))
        for flag, help_text in _own_flags(command):
            yield ".br"
            yield f"{bold(flag)}: {text(help_text)}"


def _option_entry(row: Option) -> Iterator[str]:
    yield ".TP"
    if row.flag:
        yield f"{bold(row.flag)} {italic(row.metavar)}" if row.metavar else bold(row.flag)
    elif row.yml_key:
        yield f"{bold(row.yml_key)} (in vip\\-manager.yml)"
    else:
        yield " | ".join(bold(name) for name in row.consul_env)
    yield from_markdown(sentence(row.meaning))
    default = shown_default(row)
    if default or row.is_duration:
        facts = [f"Default: {from_markdown(default)}"] if default else []
        if row.is_duration:
            facts.append(f"range {text(row.range_text())} ({text(row.range_hint)})")
        yield ".br"
        yield sentence("; ".join(facts))
    variables = [v for v in (row.env, *row.consul_env) if v]
    if row.flag and variables:
        yield ".br"
        yield "Environment: " + ", ".join(bold(v) for v in variables) + "."
    if row.yml_key and row.flag:
        yield ".br"
        yield f"In vip\\-manager.yml: {bold(row.yml_key)}."
    if row.setting:
        yield ".br"
        yield f"On SIGHUP: {text(RELOAD_WORDS[row.reload])}."


def options() -> Iterator[str]:
    yield ".SH OPTIONS"
    for row in OPTIONS:
        if row.flag:
            yield from _option_entry(row)
    for flag, help_text in _own_flags(None):
        yield ".TP"
        yield bold(flag)
        yield text(sentence(help_text))
    yield ".TP"
    yield bold("--help")
    yield "Show the options, their variables and defaults, and exit."
    yield ".SS Settings without an option"
    yield "Read from vip\\-manager.yml or from Consul's variables only."
    for row in OPTIONS:
        if not row.flag:
            yield from _option_entry(row)


def environment() -> Iterator[str]:
    yield ".SH ENVIRONMENT"
    yield (
        f"Each option has its {bold('VIP_ELECTOR_*')} variable, listed under OPTIONS. "
        "Consul's variables work as in the consul command:"
    )
    for row in OPTIONS:
        for variable in row.consul_env:
            yield ".TP"
            yield bold(variable)
            yield f"as {bold(row.flag)}." if row.flag else from_markdown(sentence(row.meaning))
    yield ".TP"
    yield bold("CONSUL_HTTP_SSL")
    yield f"{bold('true')} makes an address without a scheme https."
    yield ".TP"
    yield " | ".join(bold(name) for name in REFUSED_VARIABLES)
    yield f"Refused with a configuration error (exit status 2): {text(REFUSED_BECAUSE)}."
    yield ".TP"
    yield f"{bold('JOURNAL_STREAM')}, {bold('INVOCATION_ID')}"
    yield (
        "Set by systemd: text logs carry no timestamp (journald adds one), and on the journal "
        "stream each record is one entry at its priority."
    )
    yield ".TP"
    yield f"{bold('NOTIFY_SOCKET')}, {bold('WATCHDOG_USEC')}"
    yield "Set by systemd for Type=notify and WatchdogSec=: readiness, status and watchdog."


FILES = (
    (
        "/etc/default/vip-manager.yml",
        "The vip-manager configuration both programs read (trigger-key, trigger-value, "
        "dcs-endpoints, consul-token, interval); the packaged vip-elector.service passes it "
        "with --vip-manager-config.",
    ),
    (
        "/etc/vip-manager/INSTANCE.yml",
        "The same for vip-elector@INSTANCE.service, one daemon per vip-manager configuration.",
    ),
    (
        "/etc/default/vip-elector",
        "The environment of the units (and /etc/default/vip-elector@INSTANCE after it): "
        "CONSUL_* and VIP_ELECTOR_* variables, and VIP_ELECTOR_OPTS, extra options appended "
        "to the command line. The commands read it too (see DESCRIPTION; --defaults-file "
        "names another).",
    ),
    (
        "/etc/vip-elector/",
        "For the ACL token file (CONSUL_HTTP_TOKEN_FILE) and TLS keys: mode 0750, owner "
        "root:vip-elector, so that files in it can be given to the group vip-elector.",
    ),
    (
        "/run/vip-elector/",
        "The runtime directory (systemd's RUNTIME_DIRECTORY when set): a lock against a "
        "second daemon for the same agent, trigger-key and value, and the record of the "
        "session, which a restarted daemon adopts while it is still valid.",
    ),
)


EXIT_CODES = (
    ("0", "The daemon stopped cleanly (after SIGTERM or SIGINT)."),
    (
        "1",
        "A runtime failure: the trigger-key exists but is not a lock (the pre-flight "
        "check), or a thread failed.",
    ),
    ("2", "The configuration is invalid; nothing was sent to Consul."),
)

SIGNALS = (
    (
        "SIGTERM, SIGINT",
        "Stop within 2 s. A leader deletes the trigger-key first, so another node takes "
        "over without lock-delay, then destroys its session. A second signal exits at once.",
    ),
    (
        "SIGHUP",
        "Reload the configuration (systemctl reload): vip-manager.yml, --config files and "
        "the token file are read again. Each entry under OPTIONS says what a change does "
        "(a new token is swapped in place, a new TTL moves the lock to a new session "
        "without freeing it); an invalid configuration is logged and the running one kept. "
        "The packaged units' systemctl reload runs check-config first: with an invalid "
        "configuration the reload fails and no SIGHUP is sent.",
    ),
    (
        "SIGUSR1",
        "A leader steps down (deleting the key: no lock-delay) and stays out for "
        "--step-down-hold: a planned switchover. Not keepalived's SIGUSR1, which dumps "
        "its data.",
    ),
    (
        "SIGUSR2",
        "Restart in place into the code on disk (after an upgrade), keeping the session "
        "and the lock: the VIP does not move. A daemon killed or crashed adopts its "
        "session the same way when systemd restarts it. Not keepalived's SIGUSR2, which "
        "dumps its statistics.",
    ),
)

SIGNALS_NOTE = (
    "Under systemd, send them with systemctl kill --kill-whom=main: without it systemd "
    "signals every process of the unit, and a --notify hook that is running dies of "
    "SIGUSR1 or SIGUSR2."
)


def tagged(title: str, entries: tuple[tuple[str, str], ...]) -> Iterator[str]:
    """A section of tagged paragraphs: each name in bold, what it is under it."""
    yield f".SH {title}"
    for name, what in entries:
        yield ".TP"
        yield bold(name)
        yield text(what)


def signals() -> Iterator[str]:
    yield from tagged("SIGNALS", SIGNALS)
    yield ".PP"
    yield text(SIGNALS_NOTE)


def exit_status() -> Iterator[str]:
    yield from tagged("EXIT STATUS", EXIT_CODES)
    yield ".PP"
    yield "The commands have their own (see DESCRIPTION); 2 is a configuration error for all."


EXAMPLES = (
    (
        "Run it by hand, tied to the check vip-http of the local agent:",
        "vip-elector --vip-manager-config=/etc/default/vip-manager.yml \\\n    --check-id=vip-http",
    ),
    (
        "Check the configuration, the token and the check before a restart:",
        "vip-elector check-config --online",
    ),
    ("Who holds the VIP, and is that node healthy:", "vip-elector status"),
    (
        "Move the VIP to node-b (from any node; it asks first, --yes does not):",
        "vip-elector switchover --to node-b",
    ),
    ("The same for the instance vip-elector@15-main:", "vip-elector status --instance 15-main"),
    ("Step down on this node:", "systemctl kill --kill-whom=main --signal=SIGUSR1 vip-elector"),
    ("Reload after editing the configuration:", "systemctl reload vip-elector"),
    (
        "Restart into new code without moving the VIP (what an upgrade does):",
        "systemctl kill --kill-whom=main --signal=SIGUSR2 vip-elector",
    ),
    (
        "With ACLs, the token in a file the service can read:",
        "CONSUL_HTTP_TOKEN_FILE=/etc/vip-elector/consul.token",
    ),
)


def examples() -> Iterator[str]:
    yield ".SH EXAMPLES"
    for what, command in EXAMPLES:
        yield ".PP"
        yield text(what)
        yield ".PP"
        yield ".RS"
        yield ".nf"
        yield from (literal(line) for line in command.splitlines())
        yield ".fi"
        yield ".RE"


def see_also() -> Iterator[str]:
    yield ".SH SEE ALSO"
    yield (
        f"vip\\-manager, {literal('https://github.com/cybertec-postgresql/vip-manager')} (a build "
        f"with Consul support); consul, {literal('https://developer.hashicorp.com/consul')};"
    )
    yield ".BR systemd.exec (5),"
    yield ".BR journalctl (1)."
    yield ".PP"
    yield (
        "/usr/share/doc/vip\\-elector/: operations (the Consul check, the unit, the failover "
        "timeline, logs, troubleshooting), the least\\-privilege ACL policy, and examples."
    )


def manual_page() -> str:
    """The whole page, in roff (man macros)."""
    lines = [
        f'.TH VIP\\-ELECTOR 8 "{_date()}" "vip\\-elector {__version__}" "System Administration"',
        ".SH NAME",
        f"vip\\-elector \\- {text(NAME)}",
        # Left-aligned, no hyphenation: option names and variables stay whole.
        ".ad l",
        ".nh",
    ]
    for section in (
        synopsis(),
        description(),
        options(),
        environment(),
        tagged("FILES", FILES),
        exit_status(),
        signals(),
        examples(),
        see_also(),
    ):
        lines.extend(section)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - `python3 -m vip_elector.manpage`
    print(manual_page(), end="")  # noqa: T201
