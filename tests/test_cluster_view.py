"""`vip-elector status` lists every node, `vip-elector history` the key's changes of
holder (issue 24.4), on the real agent: a node whose check is critical has no
session and no candidacy entry, and is still listed as FAULT with why; a stopped
daemon says so; a switchover and a failover are in the history with their causes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from typing import Any

from tests.conftest import Election
from tests.test_operator import command
from tests.test_steering import new_holder, switchover, three
from tests.testbed.elector import REPO_ROOT, clean_environment, vip_elector_argv
from tests.testbed.waiting import wait_until

ROW_FIELDS = {
    "node",
    "value",
    "leader",
    "session",
    "state",
    "priority",
    "eligible",
    "why_not",
    "last_report",
    "reporting",
}


def status_json(election: Election) -> dict[str, Any]:
    result = command(election, "status", "--json")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return dict(json.loads(result.stdout))


def row(election: Election, value: str) -> dict[str, Any] | None:
    rows = [r for r in status_json(election)["members"] if r["value"] == value]
    return rows[0] if rows else None


def in_state(election: Election, value: str, state: str) -> dict[str, Any] | None:
    found = row(election, value)
    return found if found is not None and found["state"] == state else None


def changes(election: Election) -> list[tuple[str | None, str | None, str]]:
    result = command(election, "history", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return [(c["from"], c["to"], c["cause"]) for c in json.loads(result.stdout)["changes"]]


def test_status_lists_a_node_in_fault_with_why_and_a_stopped_one(election: Election) -> None:
    _, b, c = three(election)
    assert b.check is not None
    b.check.set("500")
    b.check.wait_status("critical")
    fault = wait_until(lambda: in_state(election, "node-b", "fault"), 20, "node-b is FAULT")
    assert fault["eligible"] is False
    assert b.check.check_id in fault["why_not"]
    assert fault["session"] is None  # no session: its candidacy entry went with it
    assert election.api.kv_get(f"{election.key}/candidates/node-b") is None

    report = status_json(election)
    assert [set(r) for r in report["members"]] == [ROW_FIELDS] * 3  # stable: scripts read it
    assert [r["value"] for r in report["members"] if r["leader"]] == ["node-a"]
    text = command(election, "status").stdout
    (line,) = [line for line in text.splitlines() if "| node-b " in line]
    assert "FAULT" in line
    assert b.check.check_id in line

    assert c.elector.terminate() == 0
    stopped = wait_until(lambda: in_state(election, "node-c", "stopped"), 10, "node-c stopped")
    assert stopped["eligible"] is False
    assert stopped["why_not"] == "stopped cleanly"


def test_history_shows_a_switchover_and_a_failover_with_their_causes(
    election: Election,
) -> None:
    _, b, _ = three(election)
    code, out = switchover(election, "--to", "node-b")
    assert code == 0, out
    wait_until(lambda: ("node-a", "node-b", "switchover") in changes(election), 10, "recorded")

    assert b.check is not None
    b.check.set("500")
    taker = wait_until(lambda: new_holder(election, "node-b"), 30, "another node takes over")
    wait_until(
        lambda: (
            {("node-b", None, "session_lost"), ("node-b", taker, "acquired")}
            <= set(changes(election))
        ),
        20,
        lambda: f"the failover is recorded: {changes(election)}",
    )
    text = command(election, "history").stdout
    assert "| WHEN " in text
    assert "| switchover " in text
    assert "| session_lost " in text
    raw = json.loads(command(election, "history", "--json").stdout)
    assert list(raw) == ["key", "changes", "ignored"]
    assert all(set(c) == {"at", "from", "to", "cause", "by", "detail"} for c in raw["changes"])
    assert [c["at"] for c in raw["changes"]] == sorted(c["at"] for c in raw["changes"])


def watch_until_ctrl_c(election: Election, *args: str, lines: int) -> list[str]:
    """Run `status -W 0.5 ARGS`, read ``lines`` lines, then Ctrl-C: it must exit 0."""
    argv = vip_elector_argv(
        "status", "--vip-manager-config", str(election.config), "--hostname", "node-a", "-W", "0.5"
    )
    watch = subprocess.Popen(
        [*argv, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_environment(),
        cwd=REPO_ROOT,
    )
    seen: list[str] = []
    try:
        assert watch.stdout is not None
        deadline = time.monotonic() + 20
        while len(seen) < lines and time.monotonic() < deadline:
            seen.append(watch.stdout.readline())
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=10)
    finally:
        watch.kill()
    assert watch.returncode == 0, err
    assert "Traceback" not in err
    return seen


def test_status_watch_redraws_until_ctrl_c(election: Election) -> None:
    election.add("node-a")
    election.wait_holder()
    text = "".join(watch_until_ctrl_c(election, lines=40))
    assert text.count("Ctrl-C to stop") >= 2, text
    assert text.count("result        healthy leader") >= 2, text
    # With --json: one document per line, nothing else (scripts read it).
    for line in watch_until_ctrl_c(election, "--json", lines=2):
        assert json.loads(line)["healthy_leader"] is True
