"""`vip-elector status`: who holds the trigger-key, and is that healthy?

Replaces the Go original's advice to run `consul kv get -detailed`. It reads the key,
the holder's session (TTL, behaviour, lock-delay, checks and their status on
the servers), the vip-elector sessions competing for the key (their names
carry each node's lock value), and this node's check. Exit status: 0 when a
healthy leader holds the key, 1 when nobody does (or the holder is not
healthy, or a node reports its VIP misplaced: a leader without it, or a node
that does not lead with it), 2 on errors.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from typing import Any

from vip_elector.consul_adapter import ConsulAdapter, ConsulError
from vip_elector.durations import format_duration
from vip_elector.key_entries import LOCK_FLAG, Candidate, Rejected
from vip_elector.node_watch import NODE_READ_RULE
from vip_elector.settings import Settings
from vip_elector.status_server import format_address
from vip_elector.trigger_key import TriggerKey, parse_session_name

EXIT_HEALTHY, EXIT_NO_LEADER, EXIT_ERROR = 0, 1, 2


def local_daemon(settings: Settings) -> dict[str, Any] | None:
    """The running daemon's own view, from its --status-addr (None: not reachable)."""
    if settings.status_addr is None:
        return None
    host, port = settings.status_addr
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - "every address"
    if host == "::":
        host = "::1"
    url = f"http://{format_address((host, port))}/status"
    try:
        # No proxy from the environment between us and our own daemon.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=1.0) as answer:
            status = json.loads(answer.read(1 << 20))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(status, dict):  # something else listens there
        return None
    return {
        "state": status.get("state"),
        "leader_since": status.get("leader_since"),
        "adopted": status.get("adopted"),
        "session": status.get("session"),
    }


def _entry_of(entry: Candidate | None, session: Any) -> dict[str, Any]:
    """What a candidate published about itself (priority, eligibility), if anything."""
    if entry is None or entry.session != session:
        return {"priority": None, "eligible": None, "vip": None}
    return {
        "priority": entry.priority,
        "eligible": entry.eligible,
        "why_not": entry.why,
        "vip": entry.vip,  # has the VIP (None: not observed, or an older version)
        "vip_problem": entry.vip_problem,
    }


def gather(settings: Settings, adapter: ConsulAdapter) -> dict[str, Any]:
    """Everything `status` reports, as a JSON-able dict (raises ConsulError)."""
    key_name = settings.trigger_key
    key = TriggerKey(adapter, key_name, settings.lock_value).read(consistent=True)
    report: dict[str, Any] = {
        "key": key_name,
        "holder": None,
        "this_node": {
            "lock_value": settings.lock_value,
            "value_source": settings.lock_value_source,
            "check_id": settings.check_id,
            "health_check_configured": settings.health_check_configured,
            "health_failover": settings.health_failover(),
        },
    }
    rejected: list[Rejected] = []
    entries = TriggerKey(adapter, key_name, settings.lock_value).candidates(rejected)
    # Entries nobody should have written: said, but not held against the leader.
    report["ignored_entries"] = [
        {"entry": r.entry, "modify_index": r.modify_index, "reason": r.reason} for r in rejected
    ]
    candidates = []
    for session in adapter.list_sessions():
        candidacy = parse_session_name(str(session.get("Name", "")))
        if candidacy is not None and candidacy.key == key_name:
            candidates.append(
                {
                    "node": session.get("Node"),
                    "value": candidacy.value,
                    "session": session.get("ID"),
                    "leader": session.get("ID") == key.session,
                    **_entry_of(entries.get(candidacy.value), session.get("ID")),
                }
            )
    report["candidates"] = candidates
    problems: list[str] = []
    by_value: dict[str, set[str]] = {}
    for candidate in candidates:
        by_value.setdefault(str(candidate["value"]), set()).add(str(candidate["node"]))
    for value, nodes in sorted(by_value.items()):
        if len(nodes) > 1:
            problems.append(
                f"nodes {', '.join(sorted(nodes))} all compete with the lock value {value!r}: "
                "vip-manager on each of them would add the VIP; give each node its own "
                "trigger-value (they refuse to lead until then)"
            )

    if key.exists:
        value = key.value.decode(errors="replace") if key.value is not None else ""
        holder: dict[str, Any] = {
            "value": value,
            "flags": key.flags,
            "lock_flag_ok": key.flags == LOCK_FLAG,
            "session": key.session,
            "modify_index": key.modify_index,
            "lock_index": key.lock_index,
        }
        if not holder["lock_flag_ok"]:
            problems.append(
                f"the key has Flags={key.flags}, not the lock flag {LOCK_FLAG}: "
                "it was not written by a lock (delete it)"
            )
        if key.session:
            info = adapter.session_info(key.session, consistent=True)
            if info is None:
                problems.append(f"the holder's session {key.session} no longer exists")
            else:
                checks = adapter.node_checks(info.node)
                holder.update(
                    node=info.node,
                    session_name=info.name,
                    ttl=info.ttl,
                    behavior=info.behavior,
                    lock_delay=format_duration(info.lock_delay),
                    checks=[
                        {"id": c, "status": checks[c].status if c in checks else "missing"}
                        for c in info.checks
                    ],
                )
                bad = [c["id"] for c in holder["checks"] if c["status"] != "passing"]
                if not checks:
                    # Every node has serfHealth: an empty list is a right we lack.
                    for item in holder["checks"]:
                        item["status"] = "unknown"
                    problems.append(
                        f"cannot see node {info.node}'s checks: {NODE_READ_RULE}; whether the "
                        "leader is healthy is unknown"
                    )
                elif bad:
                    problems.append(f"the holder's check(s) {', '.join(bad)} are not passing")
                if info.behavior != "delete":
                    problems.append(
                        f"the holder's session has Behavior={info.behavior}: "
                        "the key would outlive it and keep the VIP there"
                    )
        else:
            problems.append(
                "the key exists but no session holds it (released): vip-manager "
                f"still puts the VIP on the node whose value is {value!r}"
            )
        known = {str(c["value"]) for c in candidates}
        if candidates and value not in known:
            problems.append(
                f"the value {value!r} is not what any vip-elector on this key "
                f"writes ({', '.join(sorted(known))}): no vip-manager may match it"
            )
        holder["matches_a_candidate"] = value in known if candidates else None
        report["holder"] = holder

    daemon = local_daemon(settings)
    if daemon is not None:
        report["this_node"]["daemon"] = daemon
    try:
        node = adapter.node_name()
        report["this_node"]["node"] = node
        if settings.check_id:
            local = adapter.agent_checks().get(settings.check_id)
            report["this_node"]["check_status"] = local.status if local else "missing"
    except ConsulError as exc:
        report["this_node"]["error"] = str(exc)

    misplaced = [f"node {c['node']} {c['vip_problem']}" for c in candidates if c.get("vip_problem")]
    report["vip_misplaced"] = bool(misplaced)
    problems += misplaced
    healthy = bool(key.exists and key.session and not problems)
    report["problems"] = problems
    report["healthy_leader"] = healthy
    return report


def render_text(report: dict[str, Any]) -> str:
    lines = [f"trigger-key   {report['key']}"]
    holder = report["holder"]
    if holder is None:
        lines.append("holder        nobody (the key does not exist): no node has the VIP")
    else:
        lines.append(
            f"holder        value {holder['value']!r}, lock flag "
            f"{'ok' if holder['lock_flag_ok'] else 'WRONG (Flags=' + str(holder['flags']) + ')'}"
        )
        if holder.get("node"):
            lines.append(
                f"session       {holder['session']} on node {holder['node']}: "
                f"ttl {holder['ttl'] or '-'}, behavior {holder['behavior']}, "
                f"lock-delay {holder['lock_delay']}"
            )
            lines.append(
                "checks        " + "; ".join(f"{c['id']} {c['status']}" for c in holder["checks"])
            )
        elif holder["session"]:
            lines.append(f"session       {holder['session']} (gone)")
    if report["candidates"]:
        lines.append(
            "candidates    "
            + "; ".join(
                f"{c['node']} value {c['value']!r}"
                + (f" priority {c['priority']}" if c.get("priority") is not None else "")
                + (f" NOT ELIGIBLE ({c['why_not']})" if c.get("eligible") is False else "")
                + (" (leader)" if c["leader"] else "")
                for c in report["candidates"]
            )
        )
    if any(c.get("vip") is not None for c in report["candidates"]):
        lines.append("vip           " + "; ".join(_vip_words(c) for c in report["candidates"]))
    this = report["this_node"]
    daemon = this.get("daemon")
    if daemon:
        if daemon.get("state") == "leader" and daemon.get("leader_since"):
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(daemon["leader_since"]))
            adopted = (
                " (adopted after a restart: the VIP did not move)" if daemon["adopted"] else ""
            )
            lines.append(f"this daemon   leader since {since}{adopted}")
        else:
            lines.append(f"this daemon   {daemon.get('state')}")
    check = (
        f", check {this['check_id']} {this.get('check_status', '?')}"
        if this.get("check_id")
        else ""
    )
    node = (
        this.get("node") or f"? ({this['error']})" if this.get("error") else this.get("node", "?")
    )
    lines.append(
        f"this node     {node}{check}, lock value {this['lock_value']!r} ({this['value_source']})"
    )
    lines.append(f"health check  {this['health_failover']}")
    for problem in report["problems"]:
        lines.append(f"PROBLEM       {problem}")
    for ignored in report.get("ignored_entries", []):
        lines.append(
            f"IGNORED       {ignored['entry']}: {ignored['reason']} (vip-elector does not "
            "write that: delete it)"
        )
    unknown = any(c.get("status") == "unknown" for c in (holder or {}).get("checks", []))
    if report["healthy_leader"]:
        verdict = "healthy leader"
    elif holder is None or not holder.get("session"):
        verdict = "no leader"
    elif report.get("vip_misplaced"):
        verdict = "VIP misplaced (see PROBLEM)"
    elif unknown:
        verdict = "leader, health unknown (the token cannot read its node's checks)"
    else:
        verdict = "leader NOT healthy"
    lines.append(f"result        {verdict}")
    return "\n".join(lines)


def _vip_words(candidate: dict[str, Any]) -> str:
    """Whether a node has the VIP, as its entry says."""
    has = {True: "has it", False: "has not", None: "not observed"}[candidate.get("vip")]
    return f"{candidate['node']} {has}" + (" (leader)" if candidate["leader"] else "")


def run(settings: Settings, as_json: bool) -> int:
    try:
        with ConsulAdapter(settings.consul) as adapter:
            report = gather(settings, adapter)
    except ConsulError as exc:
        if as_json:
            print(json.dumps({"error": str(exc), "kind": exc.kind}))
        else:
            print(f"vip-elector status: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(report, indent=2) if as_json else render_text(report))
    return EXIT_HEALTHY if report["healthy_leader"] else EXIT_NO_LEADER
