"""Where the Consul agent is and how to talk to it: the layers of Consul settings.

Flags (and their VIP_ELECTOR_* variables), Consul's own CONSUL_* variables
(as the consul CLI reads them) and vip-manager.yml (dcs-endpoints,
consul-token), highest first. Token files are read here, TLS files checked.

CONSUL_HTTP_AUTH is used as the consul CLI uses it (HTTP basic auth, for a
proxy in front of the agent). CONSUL_NAMESPACE and CONSUL_PARTITION (Consul
Enterprise) are refused: vip-manager ignores them and reads the trigger-key
in the namespace and partition of its token, so a lock taken anywhere else
would never move the VIP (see REFUSED_VARIABLES).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vip_elector.files import TOKEN_LIMIT, FileProblem, read_bounded
from vip_elector.settings import ConsulSettings, VipManagerConfig

DEFAULT_ADDRESS = "http://127.0.0.1:8500"
TRUE_WORDS = {"1", "true", "t", "yes", "y", "on"}
FALSE_WORDS = {"0", "false", "f", "no", "n", "off"}


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


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be an ACL token, or None. Never repeats the token.

    Consul's tokens are UUIDs; anything but one line of printable ASCII would
    go into an HTTP header that requests refuses, with the value in the error.
    """
    if not token:
        return "is empty"
    bad = next((ch for ch in token if not 0x21 <= ord(ch) <= 0x7E), None)
    if bad is None:
        return None
    if bad in "\r\n":
        return "holds more than one line (a comment, a second token?): put only the token in it"
    if bad in " \t":
        return "holds a space or a tab: put only the token in it"
    return (
        f"holds a character that is not printable ASCII (U+{ord(bad):04X}): "
        "is it the right file, and is it a Consul token?"
    )


# Consul's variables vip-elector refuses, and why (the configuration error).
REFUSED_VARIABLES = ("CONSUL_NAMESPACE", "CONSUL_PARTITION")
REFUSED_BECAUSE = (
    "a Consul Enterprise namespace or partition cannot be used: vip-manager ignores these "
    "variables and reads the trigger-key in the namespace and partition of its token "
    "(consul-token in vip-manager.yml), so a lock taken elsewhere would never move the VIP. "
    "Unset it; to work in a namespace or partition, give both programs a token created there"
)


def refused_variables_problem(environ: Mapping[str, str]) -> str | None:
    """The configuration error for a refused CONSUL_* variable that is set, or None."""
    named = [name for name in REFUSED_VARIABLES if environ.get(name)]
    return f"{' and '.join(named)} set: {REFUSED_BECAUSE}" if named else None


def parse_http_auth(text: str) -> tuple[str, str]:
    """CONSUL_HTTP_AUTH, ``user[:password]`` as the consul CLI splits it.

    Raises ValueError with a reason that never repeats the value: it goes into
    an Authorization header, which requests would quote in its error.
    """
    if any(not 0x20 <= ord(ch) <= 0x7E for ch in text):
        raise ValueError(
            "CONSUL_HTTP_AUTH holds a character that is not printable ASCII (a line break, "
            "a control or non-ASCII character): give user:password on one line"
        )
    user, _, password = text.partition(":")
    return user, password


def _read_token_file(path: str, origin: str, problems: list[str]) -> str | None:
    what = f"token file {path} (from {origin})"
    try:
        data = read_bounded(path, TOKEN_LIMIT)
    except FileProblem as exc:
        if exc.unreadable:
            problems.append(
                f"{what} cannot be read: {exc.reason}; check the path and that the "
                "vip-elector user may read it"
            )
        else:
            problems.append(f"{what}: {exc.reason}")
        return None
    # Surrounding whitespace (the newline an editor adds) is not part of it.
    token = data.decode("utf-8", errors="replace").strip()
    problem = token_problem(token)
    if problem is not None:
        problems.append(f"{what} {problem}")
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
    token_file = None
    for layer in layers:
        token_file = layer.get("token_file")
        if token_file:
            token = _read_token_file(token_file, layer.name, problems)
            token_source = f"file {token_file} ({layer.name})"
            break
        if layer.get("token"):
            token = layer.get("token")
            token_source = f"{layer.name}"
            problem = token_problem(token or "")
            if problem is not None:
                problems.append(f"the ACL token from {layer.name} {problem}")
                token = None
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
    refused = refused_variables_problem(environ)
    if refused:
        problems.append(refused)
    http_auth = None
    if environ.get("CONSUL_HTTP_AUTH"):
        try:
            http_auth = parse_http_auth(environ["CONSUL_HTTP_AUTH"])
        except ValueError as exc:
            problems.append(str(exc))
    return ConsulSettings(
        scheme=scheme,
        host=host,
        port=port,
        token=token,
        token_source=token_source,
        token_file=token_file,
        ca_file=tls["ca_file"],
        ca_path=tls["ca_path"],
        client_cert=tls["client_cert"],
        client_key=tls["client_key"],
        verify=verify,
        tls_server_name=server_name[0] if server_name else None,
        http_auth=http_auth,
    )
