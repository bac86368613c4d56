"""The packaged node's configuration, for the commands (`status`, `check-config`, `switchover`).

On a node installed from the Debian package the daemon's configuration is
not on any command line an operator types: systemd starts it as

    EnvironmentFile=-/etc/default/vip-elector
    ExecStart=/usr/bin/vip-elector --vip-manager-config=/etc/default/vip-manager.yml \
        $VIP_ELECTOR_OPTS

and vip-elector@NAME.service reads /etc/default/vip-elector, then
/etc/default/vip-elector@NAME, and passes /etc/vip-manager/NAME.yml
(debian/vip-elector.service, debian/vip-elector@.service). The commands
rebuild the same configuration so that a bare `vip-elector status` asks
about the daemon that runs here:

- the environment files are read as systemd reads them (no shell runs), a
  later file overriding an earlier one, and the real environment wins over
  both (a variable given on the command's own line is meant);
- the unit's --vip-manager-config comes first on the command line, then
  VIP_ELECTOR_OPTS split at whitespace (as systemd splits ``$VAR``), then
  the command's own arguments: the last occurrence of an option wins, so
  what the operator types wins over the files. A VIP_ELECTOR_VIP_MANAGER_CONFIG
  in the real environment replaces the unit's path (in the files it has no
  effect, as under systemd).

Precedence stays option > VIP_ELECTOR_* > CONSUL_* > vip-manager.yml > default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from vip_elector.files import FileProblem, read_text
from vip_elector.settings import ConfigError

# What the units use; tests/unit/test_packaged.py checks these against debian/.
DEFAULTS_FILE = "/etc/default/vip-elector"
VIP_MANAGER_CONFIG = "/etc/default/vip-manager.yml"
INSTANCE_VIP_MANAGER_CONFIG = "/etc/vip-manager/{instance}.yml"
OPTS_VARIABLE = "VIP_ELECTOR_OPTS"
VIP_MANAGER_CONFIG_VARIABLE = "VIP_ELECTOR_VIP_MANAGER_CONFIG"

ENV_FILE_LIMIT = 1 << 20  # 1 MiB: the packaged file is 3 KiB of comments
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# systemd's instance names, once unescaped: anything but a path separator.
# The name is put into file paths, so "/" and a leading "." are refused.
_INSTANCE = re.compile(r"[A-Za-z0-9:_.@\\-]+")


@dataclass
class EnvironmentFile:
    """The assignments of one file, and the lines systemd would ignore (why)."""

    values: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def parse_environment_file(text: str) -> EnvironmentFile:
    """Parse ``text`` as systemd's EnvironmentFile= does (systemd.exec(5)).

    ``KEY=value`` lines; blank lines, lines starting with ``#`` or ``;`` and
    lines without ``=`` are ignored. Unquoted values keep their inner
    whitespace and lose the outer; a backslash keeps the next character and
    at a line end continues the line. 'single quotes' take everything
    verbatim; "double quotes" honour backslash before ``" \\ ` $`` and a
    newline. Nothing is expanded: ``$HOME`` stays ``$HOME``. A name that is
    not a valid variable name (``export FOO``) is ignored, as systemd does.
    """
    result = EnvironmentFile()
    key: list[str] = []
    value: list[str] = []
    state = "pre_key"
    value_end = 0  # length of the unquoted value without its trailing whitespace
    line = 1

    def push() -> None:
        name = "".join(key).rstrip(" \t\r")
        if _NAME.fullmatch(name):
            result.values[name] = "".join(value)
        else:
            result.ignored.append(f"line {line}: {name!r} is not a variable name")

    for char in text:
        newline = char in "\n\r"
        if state == "pre_key":
            if char in "#;":
                state = "comment"
            elif char not in " \t\n\r":
                state, key, value = "key", [char], []
        elif state == "key":
            if newline:
                state = "pre_key"  # no "=": ignored
            elif char == "=":
                state = "pre_value"
            else:
                key.append(char)
        elif state == "pre_value":
            if newline:
                push()
                state = "pre_key"
            elif char == "'":
                state = "single"
            elif char == '"':
                state = "double"
            elif char == "\\":
                state = "value_escape"
            elif char not in " \t":
                value.append(char)
                value_end = len(value)
                state = "value"
        elif state == "value":
            if newline:
                del value[value_end:]
                push()
                state = "pre_key"
            elif char == "\\":
                state = "value_escape"
            else:
                value.append(char)
                if char not in " \t":
                    value_end = len(value)
        elif state == "value_escape":
            state = "value"
            if char != "\n":  # backslash-newline continues the line
                value.append(char)
            value_end = len(value)
        elif state == "single":
            if char == "'":
                state = "pre_value"
            else:
                value.append(char)
        elif state == "double":
            if char == '"':
                state = "pre_value"
            elif char == "\\":
                state = "double_escape"
            else:
                value.append(char)
        elif state == "double_escape":
            state = "double"
            if char in '"\\`$':
                value.append(char)
            elif char != "\n":
                value.extend(("\\", char))
        elif state == "comment" and newline:
            state = "pre_key"
        if char == "\n":
            line += 1
    if state == "value":
        del value[value_end:]
    if state in ("pre_value", "value", "value_escape", "single", "double", "double_escape"):
        push()
    return result


def check_instance(name: str) -> str:
    """``name`` if it can be an instance of vip-elector@.service (ValueError if not)."""
    if not _INSTANCE.fullmatch(name) or name.startswith("."):
        raise ValueError(
            f"--instance {name!r}: give the part after @ of a vip-elector@NAME.service unit "
            "(letters, digits, :_.-), e.g. --instance 15-main"
        )
    return name


def environment_files(defaults_file: str, instance: str | None) -> list[str]:
    """The files the unit reads, in order: the defaults, then the instance's."""
    if not defaults_file:
        return []
    return [defaults_file] + ([f"{defaults_file}@{instance}"] if instance else [])


def vip_manager_config(instance: str | None) -> str:
    """The vip-manager.yml the unit passes with --vip-manager-config."""
    return INSTANCE_VIP_MANAGER_CONFIG.format(instance=instance) if instance else VIP_MANAGER_CONFIG


@dataclass
class CommandSetup:
    """What a command runs with: its full argument list and environment."""

    argv: list[str]
    environ: dict[str, str]
    files_read: list[str]
    warnings: list[str]


def read_environment_files(paths: list[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """The merged assignments of the ``paths`` that exist (later ones win), the
    files read, and warnings (ignored lines, a file we may not read).

    A file we may not open (the packaged one is 0640 root:root: an operator
    not root) is left out with a warning: the command then runs with what is
    on its own command line. A file that is not a small UTF-8 text file is a
    ConfigError, as every other file the daemon reads.
    """
    merged: dict[str, str] = {}
    read: list[str] = []
    warnings: list[str] = []
    problems = []
    for path in paths:
        if not os.path.lexists(path):
            continue  # EnvironmentFile=-PATH: a missing file is fine
        try:
            parsed = parse_environment_file(read_text(path, ENV_FILE_LIMIT))
        except FileProblem as exc:
            if exc.unreadable:
                warnings.append(
                    f"cannot read {path} ({exc.reason}): its variables are not used; run the "
                    "command as root to read the service's environment as systemd does"
                )
            else:
                problems.append(f"{path}, the service's environment: {exc.reason}")
            continue
        merged.update(parsed.values)
        read.append(path)
        warnings.extend(f"{path} {why}: ignored, as systemd does" for why in parsed.ignored)
    if problems:
        raise ConfigError(problems)
    return merged, read, warnings


def command_setup(
    argv: list[str],
    real_environ: Mapping[str, str],
    instance: str | None,
    defaults_file: str,
) -> CommandSetup:
    """The command line and environment of the unit, with the command's ``argv`` last."""
    from_files, read, warnings = read_environment_files(environment_files(defaults_file, instance))
    environ = {**from_files, **real_environ}
    prefix = []
    if VIP_MANAGER_CONFIG_VARIABLE not in real_environ:
        prefix.append(f"--vip-manager-config={vip_manager_config(instance)}")
        # Under systemd the unit's option hides the files' variable; so here.
        environ.pop(VIP_MANAGER_CONFIG_VARIABLE, None)
    prefix.extend(environ.get(OPTS_VARIABLE, "").split())
    return CommandSetup([*prefix, *argv], environ, read, warnings)
