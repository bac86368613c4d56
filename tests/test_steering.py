"""Steering the VIP on purpose: switchover to a named node, priority and preemption,
Consul's maintenance mode, the FAULT state."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import IO

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Candidate, Election
from tests.testbed.agents import free_port
from tests.testbed.elector import REPO_ROOT, clean_environment, vip_elector_argv
from tests.testbed.hooks import hook_script
from tests.testbed.key_watch import KeyEvent, KeyWatcher
from tests.testbed.waiting import stays_true, wait_until


def switchover_argv(election: Election, *args: str) -> list[str]:
    return vip_elector_argv(
        "switchover", "--vip-manager-config", str(election.config), "--hostname", "cmd", *args
    )


def switchover(
    election: Election, *args: str, yes: bool = True, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run a switchover with no terminal (stdin /dev/null), confirmed by --yes."""
    result = subprocess.run(
        switchover_argv(election, *args, *(["--yes"] if yes else [])),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=clean_environment(env),
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def read_until(stream: IO[bytes], marker: bytes, timeout: float) -> bytes:
    """What a process wrote up to ``marker`` (a prompt without a newline)."""
    deadline = time.monotonic() + timeout
    seen = b""
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} within {timeout} s: {seen!r}"
        if select.select([stream], [], [], left)[0]:
            chunk = os.read(stream.fileno(), 4096)
            assert chunk, f"exited before {marker!r}: {seen!r}"
            seen += chunk
    return seen


def on_a_terminal(
    election: Election,
    answer: str,
    *args: str,
    env: dict[str, str],
    meanwhile: Callable[[], None] | None = None,
) -> tuple[int, str]:
    """Run a switchover whose stdin is a terminal, answering ``answer`` to its
    question (after ``meanwhile`` ran, if given)."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            switchover_argv(election, *args),
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=clean_environment(env),
            cwd=REPO_ROOT,
        )
        assert process.stdout is not None
        asked = b""
        if meanwhile is not None:
            asked = read_until(process.stdout, b"[y/N] ", 30)
            meanwhile()
        os.write(controller, answer.encode())  # waits in the terminal until read
        rest, _ = process.communicate(timeout=60)
    finally:
        os.close(terminal)
        os.close(controller)
    return process.returncode, (asked + rest).decode()


def leads(election: Election, value: str, timeout: float = 30) -> None:
    wait_until(lambda: election.holder() == value, timeout, f"{value} leads")


def entry(election: Election, value: str) -> dict[str, object] | None:
    """A candidate's published entry (priority, eligible), as Consul holds it."""
    found = election.api.kv_get(f"{election.key}/candidates/{value}")
    if found is None or found.value is None or not found.session:
        return None
    return dict(json.loads(found.value))


def published(election: Election, value: str, **expected: object) -> bool:
    got = entry(election, value)
    return got is not None and all(got.get(k) == v for k, v in expected.items())


def new_holder(election: Election, old: str) -> str | None:
    holder = election.holder()
    return holder if holder and holder != old else None


def never_free(events: list[KeyEvent]) -> bool:
    return all(e.value is not None and e.session for e in events)


def three(election: Election) -> tuple[Candidate, Candidate, Candidate]:
    a = election.add("node-a")
    leads(election, "node-a")
    b = election.add("node-b")
    c = election.add("node-c")
    for node in (b, c):
        wait_until(partial(published, election, node.value, eligible=True), 20, "entry")
    return a, b, c


# -- switchover ---------------------------------------------------------------------------------


def test_switchover_to_a_named_node_moves_the_key_without_a_free_moment(
    election: Election,
) -> None:
    _, b, _ = three(election)
    # Another service's check fails on the target's node: none of the VIP's business.
    unrelated = f"unrelated-{uuid.uuid4().hex[:8]}"
    election.api.ok(
        "PUT",
        "/v1/agent/check/register",
        body={"ID": unrelated, "Name": unrelated, "TTL": "60s", "Status": "critical"},
    )
    watch = KeyWatcher([election.agent], election.key).start_watching()
    try:
        before = election.api.kv_get(election.key)
        assert before is not None
        started = time.monotonic()
        code, out = switchover(election, "--to", "node-b")
        assert code == 0, out
        assert "moved the VIP from 'node-a' to 'node-b'" in out
        after = election.api.kv_get(election.key)
        assert after is not None
        assert after.text == "node-b"
        (b_session,) = election.sessions_of(b)
        assert after.session == b_session["ID"]  # straight to the target's own session
        events = watch.since(started)
        assert never_free(events), events
        assert {e.value for e in events} <= {"node-a", "", "node-b"}  # blanked, then node-b
        b.elector.wait_log(r"\*\*\* LOCK ACQUIRED \*\*\*", 10)
        election.candidates["node-a"].elector.wait_log(
            r"\*\*\* STEPPED DOWN \*\*\* .*cause=switchover", 10
        )
    finally:
        watch.stop()
        election.api.ok("PUT", f"/v1/agent/check/deregister/{unrelated}")


def test_a_switchover_to_an_absent_critical_or_maintenance_node_changes_nothing(
    election: Election, tmp_path: Path
) -> None:
    flag = tmp_path / "maintenance"
    a = election.add("node-a")
    leads(election, "node-a")
    b = election.add("node-b")
    c = election.add("node-c", args=["--maintenance-file", str(flag)])
    for node in (b, c):
        wait_until(partial(published, election, node.value, eligible=True), 20, "entry")
    before = election.api.kv_get(election.key)

    code, out = switchover(election, "--to", "node-x")
    assert (code, "no live candidate has the value 'node-x'" in out) == (1, True), out

    flag.touch()
    wait_until(lambda: published(election, "node-c", eligible=False), 10, "c ineligible")
    code, out = switchover(election, "--to", "node-c")
    assert code == 1, out
    assert "'node-c' is not eligible: maintenance file" in out

    assert b.check is not None
    b.check.set("500")
    wait_until(lambda: entry(election, "node-b") is None, 20, "b's session is invalidated")
    code, out = switchover(election, "--to", "node-b")
    assert code == 1, out
    assert election.api.kv_get(election.key) == before  # nothing moved, not even the index
    assert a.elector.count("STEPPED DOWN") == 0


def test_switchover_to_any_picks_the_best_other_candidate_and_dry_run_changes_nothing(
    election: Election,
) -> None:
    election.add("node-a", args=["--priority", "50"])
    leads(election, "node-a")
    election.add("node-b", args=["--priority", "10"])
    election.add("node-c", args=["--priority", "90"])
    for value in ("node-b", "node-c"):
        wait_until(partial(published, election, value, eligible=True), 20, "entry")
    before = election.api.kv_get(election.key)
    code, out = switchover(election, "--to", "any", "--dry-run")
    assert code == 0
    assert "would move the VIP from 'node-a' to 'node-c' (priority 90" in out
    assert election.api.kv_get(election.key) == before
    code, out = switchover(election, "--to", "any")
    assert code == 0, out
    assert election.holder() == "node-c"


def test_switchover_asks_first_and_reads_none_of_its_flags_from_the_environment(
    election: Election,
) -> None:
    election.add("node-a")
    leads(election, "node-a")
    election.add("node-b")
    wait_until(partial(published, election, "node-b", eligible=True), 20, "entry")
    before = election.api.kv_get(election.key)

    # A script (no terminal) must say --yes: refused before anything is asked of Consul.
    code, out = switchover(election, "--to", "node-b", yes=False)
    assert code == 2, out
    assert "switchover asks for confirmation and stdin is not a terminal: add --yes" in out
    # On a terminal it asks; anything but yes changes nothing.
    code, out = on_a_terminal(election, "n\n", "--to", "node-b", env={})
    assert code == 1, out
    assert "Move the VIP from 'node-a' to 'node-b' (priority 100" in out
    assert "? [y/N] " in out
    assert "switchover cancelled, nothing moved" in out
    assert election.api.kv_get(election.key) == before

    # Yes moves it: with a Go-style --timeout, and VIP_ELECTOR_DRY_RUN (no such
    # variable: a command's own flags are typed) does not turn it into a dry run.
    env = {"VIP_ELECTOR_DRY_RUN": "true", "VIP_ELECTOR_TO": "node-a"}
    code, out = on_a_terminal(election, "y\n", "--to", "node-b", "--timeout", "10s", env=env)
    assert code == 0, out
    assert "moved the VIP from 'node-a' to 'node-b'" in out
    assert election.holder() == "node-b"


def test_a_yes_given_after_the_target_failed_moves_nothing(election: Election) -> None:
    election.add("node-a")
    leads(election, "node-a")
    b = election.add("node-b")
    wait_until(partial(published, election, "node-b", eligible=True), 20, "entry")
    before = election.api.kv_get(election.key)

    def target_fails() -> None:  # while the operator reads the question
        assert b.check is not None
        b.check.set("500")
        wait_until(lambda: entry(election, "node-b") is None, 20, "b's session is invalidated")

    code, out = on_a_terminal(election, "y\n", "--to", "node-b", env={}, meanwhile=target_fails)
    assert code == 1, out
    assert "cancelled, nothing moved: no live candidate has the value 'node-b'" in out
    assert election.api.kv_get(election.key) == before


# -- priority and preemption ----------------------------------------------------------------------


def test_the_highest_priority_candidate_wins_a_free_key_every_time(election: Election) -> None:
    hold = ["--step-down-hold", "2s"]
    nodes = {
        "p10": election.add("p10", args=["--priority", "10", *hold]),
        "p20": election.add("p20", args=["--priority", "20", *hold]),
        "p30": election.add("p30", args=["--priority", "30", *hold]),
    }
    wait_until(lambda: election.holder() in nodes, 30, "a leader")
    for value in nodes:
        wait_until(partial(entry, election, value), 20, "entries")
    wins = []
    for _ in range(10):
        leader = str(election.holder())
        # The leader steps down and is out for 2 s: the free key must go to the
        # best of the two others, every time.
        expected = max((v for v in nodes if v != leader), key=lambda v: int(v[1:]))
        eligible = partial(published, election, expected, eligible=True)
        wait_until(eligible, 15, f"{expected} eligible again")
        nodes[leader].elector.process.send_signal(signal.SIGUSR1)
        winner = wait_until(partial(new_holder, election, leader), 10, "the key moved")
        wins.append((expected, winner))
    assert all(won == expected for expected, won in wins), wins


def test_a_stopped_leader_is_not_waited_for_by_the_next_best_candidate(
    election: Election,
) -> None:
    """Its candidate entry goes before its key: the others, reading the candidates
    the moment the key is free, must not hold back for a node that has stopped
    (and then race each other: a lower priority could win)."""
    # Four followers: each reads the candidates when the key goes.
    nodes = {v: election.add(v, args=["--priority", v[1:]]) for v in ("p30", "p20", "p15", "p10")}
    nodes["p12"] = election.add("p12", args=["--priority", "12"])
    wait_until(lambda: election.holder() == "p30", 30, "p30 leads")
    for value in nodes:
        wait_until(partial(entry, election, value), 20, "entries")
    # (At their start, while p30 had not taken the free key yet, they rightly left
    # it to p30: only what they did after its stop counts.)
    before = {v: nodes[v].elector.count("leaving the free key to 'p30'") for v in nodes}
    assert nodes["p30"].elector.terminate() == 0
    winner = wait_until(partial(new_holder, election, "p30"), 10, "the key moved")
    assert winner == "p20"
    for value in ("p20", "p15", "p12", "p10"):
        after = nodes[value].elector.count("leaving the free key to 'p30'")
        assert after == before[value], nodes[value].elector.log()


def test_a_healthy_leader_keeps_the_vip_when_a_better_node_comes_back(election: Election) -> None:
    election.add("low", args=["--priority", "10"])
    leads(election, "low")
    election.add("high", args=["--priority", "200"])
    wait_until(lambda: published(election, "high", eligible=True), 20, "high is a candidate")
    assert stays_true(lambda: election.holder() == "low", 4.0)  # nopreempt by default


def test_preemption_hands_the_vip_to_a_better_node_after_the_delay(election: Election) -> None:
    low = election.add("low", args=["--priority", "10", "--preempt-delay", "2s"])
    leads(election, "low")
    watch = KeyWatcher([election.agent], election.key).start_watching()
    try:
        election.add("high", args=["--priority", "200"])
        wait_until(lambda: published(election, "high", eligible=True), 20, "high is a candidate")
        eligible_at = time.monotonic()
        leads(election, "high", 15)
        assert time.monotonic() - eligible_at >= 1.9
        assert never_free(watch.since(eligible_at))
        low.elector.wait_log(r"\*\*\* STEPPED DOWN \*\*\* .*cause=preempted", 5)
    finally:
        watch.stop()


# -- Consul maintenance ------------------------------------------------------------


def test_consul_node_maintenance_makes_the_leader_step_down_at_once(election: Election) -> None:
    a = election.add("node-a", lock_delay="15s")
    leads(election, "node-a")
    try:
        started = time.monotonic()
        election.api.ok("PUT", "/v1/agent/maintenance", params={"enable": "true", "reason": "t"})
        wait_until(lambda: election.holder() is None, 5, "the key is deleted")
        assert time.monotonic() - started < 3.0  # no 15 s lock-delay: deleted, not invalidated
        line = a.elector.wait_log(r"\*\*\* STEPPED DOWN \*\*\*", 5)
        assert "Consul maintenance mode" in line
        assert stays_true(lambda: election.holder() is None, 2.0)  # stays out
    finally:
        election.api.ok("PUT", "/v1/agent/maintenance", params={"enable": "false"})
    leads(election, "node-a", 15)


def test_consul_maintenance_of_the_checks_service_makes_the_leader_step_down(
    election: Election,
) -> None:
    service = f"svc-{uuid.uuid4().hex[:6]}"
    check = election.health(election.agent, "svc", service=service)
    check.wait_status("passing")
    a = election.add("node-a", check=False, check_id=check.check_id, lock_delay="15s")
    leads(election, "node-a")
    other = election.add("node-b")
    wait_until(lambda: published(election, "node-b", eligible=True), 20, "node-b is a candidate")
    path = f"/v1/agent/service/maintenance/{service}"
    election.api.ok("PUT", path, params={"enable": "true"})
    try:
        leads(election, "node-b", 5)
        assert "maintenance mode" in a.elector.wait_log(r"\*\*\* STEPPED DOWN \*\*\*", 5)
        assert other.elector.running()
    finally:
        election.api.ok("PUT", path, params={"enable": "false"})
    wait_until(lambda: published(election, "node-a", eligible=True), 15, "node-a is back")


def test_a_daemon_started_on_a_node_in_consul_maintenance_never_takes_the_free_key(
    election: Election,
) -> None:
    """Sim F5: its check critical at the start, the session came late; the free key's
    gap had run, and the daemon took the key before its node watch knew the node."""
    check = election.health(election.agent, "node-a", mode="500")
    check.wait_status("critical")
    election.api.ok("PUT", "/v1/agent/maintenance", params={"enable": "true", "reason": "t"})
    watch = KeyWatcher([election.agent], election.key).start_watching()
    try:
        a = election.add("node-a", check=False, check_id=check.check_id)
        a.elector.wait_log(r"Health check verification failed", 20)
        check.set("200")
        a.elector.wait_log(r"Session created", 20)
        assert stays_true(lambda: election.holder() is None, 3.0)
        assert all(e.value is None for e in watch.events), watch.events
        assert "Consul maintenance mode" in a.elector.wait_log(r"not competing for the lock", 5)
    finally:
        watch.stop()
        election.api.ok("PUT", "/v1/agent/maintenance", params={"enable": "false"})
    leads(election, "node-a", 15)


# -- FAULT -------------------------------------------------------------------------


def test_a_critical_check_is_fault_in_status_metrics_and_hooks(
    election: Election, tmp_path: Path
) -> None:
    calls = tmp_path / "calls"
    hook = hook_script(tmp_path / "hook.sh", f'echo "$1" >> {calls}\n')
    port = free_port()
    node = election.add("node-a", args=["--status-addr", f":{port}", "--notify", str(hook)])
    leads(election, "node-a")
    assert node.check is not None
    node.check.set("500")

    def status() -> dict[str, object]:
        return dict(requests.get(f"http://127.0.0.1:{port}/status", timeout=2).json())

    wait_until(lambda: status()["state"] == "fault", 20, "FAULT")
    assert status()["eligible"] is False
    metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    assert samples[("vip_elector_state", (("state", "fault"),))] == 1
    assert samples[("vip_elector_candidate", ())] == 0
    assert samples[("vip_elector_eligible", ())] == 0
    wait_until(lambda: "FAULT" in calls.read_text().split(), 10, "the FAULT hook ran")
    assert "-> fault (check" in node.elector.log()

    node.check.set("200")
    wait_until(lambda: status()["state"] in ("follower", "leader"), 20, "back")


def test_a_second_switchover_during_a_hand_over_is_answered_at_once(
    election: Election, tmp_path: Path
) -> None:
    """22.15: with vip-manager's interval 1000 the hand-over gap is 1.2 s; a second
    request 0.5 s into it used to be deleted by the first's hand-over, and its
    command waited 5 s for nothing. Here the interval is 3000 (a gap of 3.2 s):
    the second command's own start-up on a loaded machine must not outlast the
    gap it is meant to land in."""
    slow = tmp_path / "vip-manager.yml"
    slow.write_text(election.config.read_text().replace("interval: 100", "interval: 3000"))
    assert "interval: 3000" in slow.read_text()
    a = election.add("node-a", config=slow)
    leads(election, "node-a")
    for name in ("node-b", "node-c"):
        election.add(name)
        wait_until(partial(published, election, name, eligible=True), 20, "entry")
    first = subprocess.Popen(
        switchover_argv(election, "--to", "node-b", "--yes"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_environment(),
        cwd=REPO_ROOT,
    )
    try:
        a.elector.wait_log("handing the VIP to 'node-b'", 10)
        started = time.monotonic()
        code, out = switchover(election, "--to", "node-c")
        took = time.monotonic() - started
        assert code == 1, out
        assert "another hand-over (to 'node-b') is in progress" in out
        assert took < 3, took  # answered, not timed out
        first_out, _ = first.communicate(timeout=30)
        assert first.returncode == 0, first_out
        assert election.holder() == "node-b"
    finally:
        first.kill()
