"""`vip-elector check-config [--online]`: validate before a restart.

Like `keepalived -t` and `patroni --validate-config`. Offline it validates the
configuration; with --online it also checks, against the local agent: it is
reachable (and TLS works), the token is valid and may create and destroy a
session and write the trigger-key (asked of Consul's ACL authorizer; the real
trigger-key is never written), the health check exists and its status, and
the trigger-key pre-flight. Offline it also checks that the packaged unit's
user (vip-elector, where it exists) can read the files the daemon opens. One
line per check; exit 0 when all pass, 1 when a check fails, 2 when the
configuration is invalid.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from vip_elector import service_user
from vip_elector.consul_adapter import ConsulAdapter, ConsulError
from vip_elector.durations import format_duration
from vip_elector.key_entries import is_foreign, not_a_lock_message
from vip_elector.logs import untrusted
from vip_elector.settings import Settings
from vip_elector.trigger_key import (
    TriggerKey,
    candidate_key,
    conflict_key,
    member_key,
    rival_message,
    rivals,
    switchover_key,
)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


class Report:
    def __init__(self) -> None:
        self.failed = 0

    def ok(self, text: str) -> None:
        print(f"ok    {text}", flush=True)

    def warn(self, text: str) -> None:
        print(f"WARN  {text}", flush=True)

    def fail(self, text: str) -> None:
        self.failed += 1
        print(f"FAIL  {text}", flush=True)


def offline(settings: Settings, report: Report) -> None:
    report.ok(
        f"vip-manager config {settings.vip_manager.path}: dcs-type consul, trigger-key "
        f"{settings.trigger_key}"
    )
    report.ok(f"lock value {settings.lock_value!r} ({settings.lock_value_source})")
    report.ok(
        f"ttl {format_duration(settings.ttl)}, lock-delay "
        f"{format_duration(settings.lock_delay)}"
        + (
            f", liveness-ttl {format_duration(settings.liveness_ttl)}"
            if settings.liveness_ttl
            else ""
        )
    )
    report.ok(f"Consul agent {settings.consul.address}, token: {settings.consul.token_source}")
    if settings.check_opt_out:
        report.ok(f"health failover {settings.health_failover()}")
    # No --check-id at all is among the warnings (as the daemon logs them).
    for warning in settings.warnings:
        report.warn(warning)
    service_access(settings, service_user.lookup(service_user.SERVICE_USER), report)


def daemon_files(settings: Settings) -> list[tuple[str, str, bool]]:
    """The files named in the service's environment that the daemon opens itself:
    (what, path, is a directory). vip-manager.yml is vip-manager's file, which
    the unit names and the package does not install."""
    consul = settings.consul
    named: list[tuple[str, str | None, bool]] = [
        ("token file", consul.token_file, False),
        ("CA certificate", consul.ca_file, False),
        ("CA directory", consul.ca_path, True),
        ("client certificate", consul.client_cert, False),
        ("client key", consul.client_key, False),
    ]
    return [(what, path, is_dir) for what, path, is_dir in named if path is not None]


def service_access(settings: Settings, user: service_user.User | None, report: Report) -> None:
    """The unit runs the daemon as ``user``: can it read what it needs?"""
    if user is None:
        return  # not installed from the package: the daemon runs as whoever starts it
    for what, path, is_dir in daemon_files(settings):
        denied = service_user.cannot_read(path, user, directory=is_dir)
        if denied is None:
            report.ok(f"the service user {user.name} can read the {what} {path}")
        elif denied.doubt:
            report.warn(f"{denied.why}; if the daemon cannot read it: {denied.fix}")
        else:
            report.fail(f"{denied.why}: the daemon will not start; fix: {denied.fix}")


def online(settings: Settings, report: Report) -> None:
    adapter = ConsulAdapter(settings.consul)
    try:
        leader = adapter.raft_leader()  # needs no ACL rights
    except ConsulError as exc:
        report.fail(f"agent {settings.consul.address}: {exc}")
        return
    tls = " over TLS" if settings.consul.scheme == "https" else ""
    if leader:
        report.ok(f"agent {settings.consul.address} reachable{tls}; Consul leader {leader}")
    else:
        report.fail(
            f"agent {settings.consul.address} reachable{tls}, but the Consul servers have no leader"
        )

    try:
        token = adapter.token_self()
        if token is None:
            report.ok("ACLs are disabled on this agent")
        else:
            report.ok(f"token valid: {token.get('Description') or token.get('AccessorID')}")
    except ConsulError as exc:
        report.fail(f"token: {exc}")

    node = _session_round_trip(settings, adapter, report)
    if node is not None:
        _permissions(settings, adapter, node, report)
        _rivals(settings, adapter, node, report)

    if settings.check_id:
        try:
            check = adapter.agent_checks().get(settings.check_id)
        except ConsulError as exc:
            report.fail(f"reading the agent's checks: {exc}")
        else:
            if check is None:
                report.fail(
                    f"check {settings.check_id!r} is not registered on the local agent "
                    "(or the token may not read it)"
                )
            elif check.status == "passing":
                report.ok(f"check {settings.check_id!r} passing")
            else:
                report.warn(
                    f"check {settings.check_id!r} is {check.status}: this node will not "
                    f"compete until it passes ({untrusted(check.output, 120)})"
                )

    try:
        key = TriggerKey(adapter, settings.trigger_key, settings.lock_value).read()
    except ConsulError as exc:
        report.fail(f"reading the trigger-key: {exc}")
    else:
        if is_foreign(key):
            report.fail(not_a_lock_message(settings.trigger_key, key.flags))
        elif key.exists:
            holder = key.value.decode(errors="replace") if key.value else ""
            report.ok(
                f"trigger-key is a lock, held by value {holder!r}"
                if key.session
                else "trigger-key is a lock (free)"
            )
        else:
            report.ok("trigger-key does not exist yet (the first leader creates it)")


def _permissions(settings: Settings, adapter: ConsulAdapter, node: str, report: Report) -> None:
    wanted = [
        ("session", "write", node, "create and destroy this node's session"),
        ("key", "write", settings.trigger_key, "write the trigger-key"),
        (
            "key",
            "write",
            candidate_key(settings.trigger_key, settings.lock_value),
            "publish this node's candidacy (priority, switchover)",
        ),
        (
            "key",
            "write",
            switchover_key(settings.trigger_key),
            "answer switchover requests (a leader deletes or refuses them)",
        ),
        (
            "key",
            "write",
            conflict_key(settings.trigger_key, settings.lock_value),
            "flag a duplicate of its value to the leader (else both vip-managers add the VIP)",
        ),
        (
            "key",
            "write",
            member_key(settings.trigger_key, settings.lock_value),
            "write this node's member entry and the history (what `status` and `history` show)",
        ),
        ("node", "read", node, "read the node (to see its checks and Consul maintenance)"),
        ("agent", "read", node, "read the agent (for `vip-elector status`'s line on this node)"),
    ]
    service = _check_service(settings, adapter)
    if service:
        wanted.append(
            ("service", "read", service, f"read service {service} (to see the check's state)")
        )
    try:
        answers = adapter.authorize(
            [{"Resource": r, "Access": a, "Segment": s} for r, a, s, _ in wanted]
        )
    except ConsulError as exc:
        report.warn(f"cannot ask Consul's ACL authorizer ({exc}); see docs/acl.md")
        return
    if answers is None:
        report.ok("permissions: ACLs are disabled (everything is allowed)")
        return
    for (resource, _, _, what), allowed in zip(wanted, answers, strict=False):
        if allowed:
            report.ok(f"token may {what}")
        elif resource == "agent":  # only the status command needs it
            report.warn(f"token may NOT {what}; see docs/acl.md for the policy")
        else:
            report.fail(f"token may NOT {what}; see docs/acl.md for the policy")


def _check_service(settings: Settings, adapter: ConsulAdapter) -> str:
    """The service the --check-id check belongs to, if the agent shows it."""
    if not settings.check_id:
        return ""
    try:
        check = adapter.agent_checks().get(settings.check_id)
    except ConsulError:
        return ""
    return check.service if check is not None else ""


def _rivals(settings: Settings, adapter: ConsulAdapter, node: str, report: Report) -> None:
    """Another node competing with this node's lock value (a copied vip-manager.yml)."""
    try:
        sessions = adapter.list_sessions()
    except ConsulError as exc:
        report.warn(f"cannot list the candidates ({exc})")
        return
    found = rivals(sessions, settings.trigger_key, settings.lock_value, node)
    if found:
        report.fail(rival_message(settings.trigger_key, settings.lock_value, found))
    else:
        report.ok(f"no other node competes with the lock value {settings.lock_value!r}")


def _session_round_trip(settings: Settings, adapter: ConsulAdapter, report: Report) -> str | None:
    """Create and destroy a throw-away session (holds nothing); returns its node."""
    try:
        session_id = adapter.create_session(
            name=f"vip-elector check-config {uuid.uuid4().hex[:8]}",
            ttl=settings.ttl,
            lock_delay=0,
            checks=["serfHealth"],
            behavior="delete",
        )
    except ConsulError as exc:
        report.fail(f"creating a session: {exc}")
        return None
    node = None
    try:
        info = adapter.session_info(session_id)
        node = info.node if info else None
    except ConsulError as exc:
        report.warn(f"reading the test session back: {exc}")
    try:
        adapter.destroy_session(session_id)
    except ConsulError as exc:
        report.fail(
            f"destroying the test session {session_id}: {exc} (it expires after "
            f"{format_duration(2 * settings.ttl)})"
        )
        return node
    report.ok(f"created and destroyed a test session on node {node or '?'}")
    return node


def run(settings: Settings, with_online: bool, files_read: Sequence[str] = ()) -> int:
    report = Report()
    for path in files_read:
        report.ok(f"read the service's environment from {path}")
    offline(settings, report)
    if with_online:
        online(settings, report)
    print("result: " + ("OK" if not report.failed else f"{report.failed} check(s) failed"))
    return EXIT_OK if not report.failed else EXIT_FAILED
