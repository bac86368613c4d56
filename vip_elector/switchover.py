"""`vip-elector switchover --to VALUE`: move the VIP to a named candidate, on purpose.

Run on any node with the daemon's options and environment. It checks that the
target is a live, eligible candidate whose session's checks pass (and whose
node is not in Consul maintenance), then asks the
leader (a request key under the trigger-key's prefix; the command needs no
leader's token) and waits for the move. The leader blanks the key (its
vip-manager drops the VIP), waits vip-manager's interval + 200 ms, then
hands the lock straight to the target's session and value in one
transaction: never two holders, the key never free. A request not applied
within --timeout is withdrawn. `--to any` picks the best other candidate (by
priority, then value). Exit 0 moved (or nothing to do), 1 refused or not
applied (or not confirmed), 2 on errors. The command line asks for
confirmation on a terminal first (``confirm``), unless --yes.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable

from vip_elector.consul_adapter import ConsulAdapter, ConsulError
from vip_elector.key_entries import Candidate, KeyState, Rejected, switchover_target
from vip_elector.node_watch import NODE_MAINTENANCE, SERVICE_MAINTENANCE
from vip_elector.settings import Settings
from vip_elector.trigger_key import TriggerKey

EXIT_OK, EXIT_REFUSED, EXIT_ERROR = 0, 1, 2


def unhealthy_checks(adapter: ConsulAdapter, target: Candidate) -> list[str]:
    """The critical checks that concern ``target``: those its session names, and
    Consul maintenance of its node or of the service of its check. Another
    service's failing check on the same node is none of the VIP's business."""
    if not target.node:
        return []
    info = adapter.session_info(target.session, consistent=True)
    named = set(info.checks) if info is not None else set()
    checks = adapter.node_checks(target.node).values()
    services = {c.service for c in checks if c.check_id in named and c.service}
    maintenance = {NODE_MAINTENANCE} | {SERVICE_MAINTENANCE + s for s in services}
    return [
        c.check_id
        for c in checks
        if c.status == "critical" and (c.check_id in named or c.check_id in maintenance)
    ]


def changed_while_asked(
    adapter: ConsulAdapter, key: TriggerKey, seen: KeyState, to: str, holder: str, target: Candidate
) -> str | None:
    """What changed since the plan was shown (None: nothing that matters)."""
    if key.read(consistent=True).modify_index != seen.modify_index:
        return f"{key.name} changed while you were asked"
    again, why = switchover_target(to, holder, key.candidates())
    if again is None:
        return why
    if (again.value, again.session) != (target.value, target.session):
        return f"the target is now {again.value!r} (session {again.session})"
    critical = unhealthy_checks(adapter, again)
    if critical:
        return f"{again.value!r}'s node {again.node} has critical checks: {', '.join(critical)}"
    return None


Confirm = Callable[[str], bool]  # asked "Move the VIP ...?" before anything moves


def run(
    settings: Settings, to: str, dry_run: bool, timeout: float, confirm: Confirm | None = None
) -> int:
    try:
        with ConsulAdapter(settings.consul) as adapter:
            return _run(adapter, settings, to, dry_run, timeout, confirm)
    except ConsulError as exc:
        print(f"vip-elector switchover: {exc}")
        return EXIT_ERROR


def _run(
    adapter: ConsulAdapter,
    settings: Settings,
    to: str,
    dry_run: bool,
    timeout: float,
    confirm: Confirm | None,
) -> int:
    key = TriggerKey(adapter, settings.trigger_key, settings.lock_value)
    state = key.read(consistent=True)
    if not state.held:
        print(
            f"nobody holds {key.name}: nothing to switch over (a free key goes to the best "
            "candidate by itself)"
        )
        return EXIT_REFUSED
    holder = (state.value or b"").decode(errors="replace")
    rejected: list[Rejected] = []
    candidates = key.candidates(rejected)
    if not candidates and not key.may_read_candidates():
        print(
            f"switchover refused, nothing moved: the token cannot read the candidates under "
            f'{key.name}/candidates/ (it needs key_prefix "{key.name}" {{ policy = '
            '"read" } or more, see docs/acl.md)'
        )
        return EXIT_REFUSED
    for item in rejected:
        print(f"ignored the {item.what} {item.entry}: {item.reason}", file=sys.stderr)
    if to == holder:
        print(f"{holder!r} holds the VIP already: nothing to do")
        return EXIT_OK
    target, why = switchover_target(to, holder, candidates)
    if target is None:
        print(f"switchover refused, nothing moved: {why}")
        return EXIT_REFUSED
    critical = unhealthy_checks(adapter, target)
    if critical:
        print(
            f"switchover refused, nothing moved: {target.value!r}'s node {target.node} has "
            f"critical checks: {', '.join(critical)}"
        )
        return EXIT_REFUSED
    plan = (
        f"the VIP from {holder!r} to {target.value!r} (priority {target.priority}, node "
        f"{target.node or '?'})"
    )
    if dry_run:
        print(f"would move {plan}")
        return EXIT_OK
    if confirm is not None:
        if not confirm(f"Move {plan}?"):
            print("switchover cancelled, nothing moved")
            return EXIT_REFUSED
        # An answer may take minutes: a yes holds only for the cluster it was given for.
        changed = changed_while_asked(adapter, key, state, to, holder, target)
        if changed:
            print(f"switchover cancelled, nothing moved: {changed}; run it again")
            return EXIT_REFUSED
    started = time.monotonic()
    asked_at = key.request_switchover(target.value, socket.gethostname())
    deadline = started + timeout
    index = 0
    while (left := deadline - time.monotonic()) > 0:
        # A blocking read of the key and its prefix: back the moment the key moves
        # or the leader answers the request.
        tree = key.read_all(index, wait=left, consistent=True)
        index = tree.key.index
        now, request = tree.key, tree.request
        if now.held and now.value == target.value.encode():
            print(f"moved {plan} in {(time.monotonic() - started) * 1000:.0f} ms")
            return EXIT_OK
        if request is not None and request.at == asked_at and request.refused:
            key.drop_request(request)
            print(f"switchover refused by the leader, nothing moved: {request.refused}")
            return EXIT_REFUSED
    request = key.read_all().request
    if request is not None and request.at == asked_at:
        key.drop_request(request)
    print(
        f"not moved: the leader did not apply the request within {timeout:g}s and it was "
        "withdrawn (is the leader's vip-elector 0.2.0 or newer, and running?)"
    )
    return EXIT_REFUSED
