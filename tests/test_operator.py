"""Operator features on the real agent: status, check-config, the status endpoint,
notify hooks, maintenance, SIGUSR1 step-down, SIGHUP reload, log formats."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Candidate, Election
from tests.test_security import documented_token
from tests.testbed.agents import ConsulAgent, create_acl_token, free_port
from tests.testbed.configs import write_vip_manager_config
from tests.testbed.elector import run_vip_elector
from tests.testbed.hooks import hook_script
from tests.testbed.scrape import Samples, scrape, status_url
from tests.testbed.secrets import assert_no_secret
from tests.testbed.waiting import sample, stays_true, wait_until
from vip_elector.metrics import Metrics
from vip_elector.state import DaemonState
from vip_elector.status_server import StatusServer


def command(
    election: Election,
    *args: str,
    env: dict[str, str] | None = None,
    config: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a vip-elector subcommand against the election's agent and key."""
    return run_vip_elector(
        *args,
        "--vip-manager-config",
        str(config or election.config),
        "--hostname",
        "node-a",
        env=env,
    )


# -- vip-elector status ---------------------------------------------------------------


def test_status_reports_a_healthy_leader(election: Election) -> None:
    leader = election.add("node-a")
    election.wait_holder()
    follower = election.add("node-b")
    wait_until(lambda: election.sessions_of(follower), 20, "node-b has a session")
    assert leader.check is not None

    text = command(election, "status")
    assert text.returncode == 0, text.stderr
    assert "result        healthy leader" in text.stdout
    assert "value 'node-a', lock flag ok" in text.stdout
    assert "ttl 10s, behavior delete, lock-delay 1s" in text.stdout
    assert f"{leader.check.check_id} passing" in text.stdout

    result = command(election, "status", "--json")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["healthy_leader"] is True
    assert report["holder"]["value"] == "node-a"
    assert report["holder"]["lock_flag_ok"] is True
    assert {c["value"] for c in report["candidates"]} == {"node-a", "node-b"}
    assert [c["leader"] for c in report["candidates"] if c["value"] == "node-a"] == [True]
    assert report["holder"]["matches_a_candidate"] is True


def test_status_without_a_leader_exits_1(election: Election) -> None:
    result = command(election, "status", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["holder"] is None
    assert "no leader" in command(election, "status").stdout


def test_status_flags_a_plain_key(election: Election) -> None:
    election.api.kv_put(election.key, "node-a")
    result = command(election, "status")
    assert result.returncode == 1
    assert "lock flag WRONG (Flags=0)" in result.stdout
    assert "PROBLEM" in result.stdout


def test_status_exits_2_when_consul_is_unreachable(election: Election) -> None:
    result = command(election, "status", "--addr", "127.0.0.1:1")
    assert result.returncode == 2
    assert "cannot reach the Consul agent" in result.stderr


# -- vip-elector check-config ---------------------------------------------------------------


def test_check_config_offline_and_invalid(election: Election, tmp_path: Path) -> None:
    result = command(election, "check-config")
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[-1] == "result: OK"
    bad = tmp_path / "bad.yml"
    bad.write_text("dcs-type: etcd\n")
    result = command(election, "check-config", config=bad)
    assert result.returncode == 2
    assert "configuration error" in result.stderr


def test_check_config_online_with_the_documented_token(
    consul_acl: ConsulAgent, tmp_path: Path, health: Any
) -> None:
    race = Election(consul_acl, tmp_path, f"cc-test/{uuid.uuid4().hex[:8]}/leader", health)
    check, good = documented_token(race, "cc")
    weak = create_acl_token(
        race.api,
        f"cc-weak-{uuid.uuid4().hex[:6]}",
        'session_prefix "" { policy = "write" }\n'
        'node_prefix "" { policy = "read" }\n'
        f'key "{race.key}" {{ policy = "read" }}\n',
    )

    ok = command(
        race,
        "check-config",
        "--online",
        "--check-id",
        check.check_id,
        env={"CONSUL_HTTP_TOKEN": good},
    )
    assert ok.returncode == 0, ok.stdout
    for expected in (
        "reachable",
        "token valid",
        "token may write the trigger-key",
        "token may create and destroy this node's session",
        "created and destroyed a test session on node",
        f"check '{check.check_id}' passing",
        "trigger-key does not exist yet",
    ):
        assert expected in ok.stdout, ok.stdout

    weak_run = command(
        race,
        "check-config",
        "--online",
        "--check-id",
        check.check_id,
        env={"CONSUL_HTTP_TOKEN": weak},
    )
    assert weak_run.returncode == 1
    assert "FAIL  token may NOT write the trigger-key" in weak_run.stdout
    # The real trigger-key was never written by either run.
    assert race.api.kv_get(race.key) is None
    assert_no_secret(good, ok.stdout, ok.stderr)
    assert_no_secret(weak, weak_run.stdout, weak_run.stderr)


def test_check_config_online_reports_a_missing_check(election: Election) -> None:
    result = command(election, "check-config", "--online", "--check-id", "no-such-check")
    assert result.returncode == 1
    assert "FAIL  check 'no-such-check' is not registered" in result.stdout
    assert "ACLs are disabled" in result.stdout


# -- on a packaged node: the unit's environment file ------------------------------------------


def test_the_commands_read_the_units_environment_file_and_instance(
    election: Election, tmp_path: Path
) -> None:
    election.add("node-a")
    election.wait_holder()
    # As /etc/default/vip-elector: an agent address that answers nothing, the
    # options the unit appends; the instance's file points at the real agent.
    defaults = tmp_path / "vip-elector"
    defaults.write_text(
        "# vip-elector.service's environment\n"
        "CONSUL_HTTP_ADDR=127.0.0.1:1\n"
        f'VIP_ELECTOR_OPTS="--vip-manager-config={election.config}  --hostname=node-a"\n'
    )
    (tmp_path / "vip-elector@east").write_text(f"CONSUL_HTTP_ADDR='{election.agent.http_addr}'\n")
    agent = {"CONSUL_HTTP_ADDR": election.agent.http_addr}

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        # Nothing but the file names the vip-manager.yml, the value or the agent.
        return run_vip_elector(*args, "--defaults-file", str(defaults), env=env)

    from_file = run("status")
    assert from_file.returncode == 2, from_file.stdout
    assert "cannot reach the Consul agent" in from_file.stderr  # the file's address
    instance = run("status", "--instance", "east")
    assert instance.returncode == 0, instance.stdout + instance.stderr
    assert "result        healthy leader" in instance.stdout
    real = run("status", "--json", env=agent)  # the real environment wins
    assert real.returncode == 0, real.stdout + real.stderr
    assert json.loads(real.stdout)["holder"]["value"] == "node-a"

    checked = run("check-config", "--online", "--instance", "east")
    assert checked.returncode == 0, checked.stdout
    assert f"ok    read the service's environment from {defaults}@east" in checked.stdout
    assert "agent 127.0.0.1:1" not in checked.stdout

    moved = run("switchover", "--to", "node-a", "--yes", "--instance", "east")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "'node-a' holds the VIP already: nothing to do" in moved.stdout


# -- the status endpoint ---------------------------------------------------------------------


def held_long(samples: Samples) -> Samples | None:
    """``samples`` once a blocking query that Consul held over 5 s is among them."""
    name = "vip_elector_consul_blocking_query_seconds"
    over_5s = samples[(f"{name}_count", ())] - samples[(f"{name}_bucket", (("le", "5.0"),))]
    return samples if over_5s >= 1 else None


def test_status_endpoint_serves_status_metrics_and_healthz(election: Election) -> None:
    port = free_port()
    election.add("node-a", args=["--status-addr", f":{port}"])
    election.wait_holder()

    status = wait_until(
        lambda: requests.get(status_url(port, "/status"), timeout=2).json(), 10, "/status answers"
    )
    assert status["state"] == "leader"
    assert status["key"] == election.key
    assert status["lock_value"] == "node-a"
    assert status["session"]
    assert status["key_index"] > 0
    assert status["last_renew"] > 0
    assert status["healthy"] is True
    assert status["counters"]["acquire_attempts"] >= 1

    samples = scrape(port)
    assert samples[("vip_elector_state", (("state", "leader"),))] == 1
    assert samples[("vip_elector_state", (("state", "follower"),))] == 0
    assert (
        samples[
            (
                "vip_elector_transitions_total",
                (("cause", "acquired"), ("from", "follower"), ("to", "leader")),
            )
        ]
        == 1
    )
    assert samples[("vip_elector_consul_request_seconds_count", (("method", "GET"),))] > 0
    assert samples[("vip_elector_consul_errors_total", (("kind", "session_gone"),))] == 0
    # The leader watches the key with blocking queries, held up to 60 s when
    # nothing changes: they have a histogram of their own, and no ordinary call
    # took longer than a request's 5 s timeout. A follower joining after 6 s
    # (its candidate entry) ends the leader's watch early.
    assert stays_true(lambda: election.holder() == "node-a", 6.0)
    election.add("node-b")
    later = wait_until(lambda: held_long(scrape(port)), 20, "a blocking query held > 5 s")
    get = (("method", "GET"),)
    within_5s = later[("vip_elector_consul_request_seconds_bucket", (("le", "5.0"), *get))]
    assert within_5s == later[("vip_elector_consul_request_seconds_count", get)]
    assert ("vip_elector_leader_seconds_total", ()) in samples
    assert ("vip_elector_renew_failures_total", ()) in samples
    assert samples[("vip_elector_healthy", ())] == 1

    assert requests.get(status_url(port, "/healthz"), timeout=2).status_code == 200


def test_load_balancers_get_200_from_the_leader_on_a_default_install(
    election: Election, tmp_path: Path
) -> None:
    # The default lock-delay (1s) with the shipped vip-manager interval (1000 ms)
    # leaves no room for a fence: /leader (vip-manager's patroni mode) never says
    # 200, and load balancers following the docs saw 503 on every node. /primary
    # answers by role, and every 503 says why.
    config = write_vip_manager_config(
        tmp_path / "shipped.yml",
        trigger_key=election.key,
        endpoint=election.agent.http_url,
        interval_ms=1000,
    )
    ports = {"node-a": free_port(), "node-b": free_port()}
    node_a = election.add("node-a", config=config, args=["--status-addr", f":{ports['node-a']}"])
    election.wait_holder()
    election.add("node-b", config=config, args=["--status-addr", f":{ports['node-b']}"])

    def answer(node: str, path: str) -> tuple[int, str]:
        got = requests.get(status_url(ports[node], path), timeout=2)
        return got.status_code, got.text

    follower = (503, "not the leader (state follower)\n")
    wait_until(lambda: answer("node-b", "/primary") == follower, 15, "node-b follows")
    assert answer("node-a", "/primary") == (200, "leader\n")
    code, text = answer("node-a", "/leader")
    assert code == 503
    assert text.startswith("leader, but")
    assert "lock-delay leaves no fence" in text
    assert "use /primary for load balancers" in text
    assert answer("node-b", "/leader") == follower

    node_a.elector.terminate()
    election.wait_holder(15, among=["node-b"])
    wait_until(lambda: answer("node-b", "/primary") == (200, "leader\n"), 5, "node-b says 200")


def test_healthz_is_503_when_threads_stall() -> None:
    state = DaemonState("k", "v")
    server = StatusServer(
        ("127.0.0.1", 0), state.snapshot, Metrics(state, dict).render, lambda: False
    ).start()
    try:
        host, port = server.address
        response = requests.get(f"http://{host}:{port}/healthz", timeout=2)
        assert response.status_code == 503
    finally:
        server.close()


def test_the_fenced_leader_keeps_most_of_its_fence_while_consul_answers(
    election: Election, tmp_path: Path
) -> None:
    # /leader's fence is what rides out a Consul leader election: the leader must
    # renew its proof often enough that, whenever Consul goes quiet, most of the
    # bound B is left (at least 0.8 B: its watch returns every B/10).
    port = free_port()
    config = write_vip_manager_config(
        tmp_path / "fenced.yml",
        trigger_key=election.key,
        leader_endpoint=f"http://127.0.0.1:{port}",
    )
    election.add(
        "node-a",
        config=config,
        addr=election.agent.http_addr,  # the file's dcs-endpoints is /leader's
        lock_delay="5s",
        args=["--status-addr", f"127.0.0.1:{port}"],
    )
    election.wait_holder()
    bound = 5.0 * 0.999 - 0.1 - 0.2  # lock-delay, clock rate, vip-manager interval, margin

    def fence_left() -> float:
        answer = requests.get(status_url(port, "/leader"), timeout=2)
        found = re.search(r"fenced for ([0-9.]+)s", answer.text)
        return float(found.group(1)) if answer.status_code == 200 and found else 0.0

    wait_until(lambda: fence_left() > 0, 10, "/leader answers 200")
    # Several of the watch's answers (each about B/10), and long enough to see
    # the old B/3 watch go down to B/3.
    left = sample(fence_left, 4.0, interval=0.02)
    assert min(left) >= 0.75 * bound, f"fence down to {min(left):.1f}s of {bound:.1f}s"


def test_status_addr_in_use_fails_clearly(election: Election) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        node = election.add("node-a", args=["--status-addr", f"127.0.0.1:{port}"])
        # A configuration error (exit 2: the packaged unit does not restart it).
        assert node.elector.process.wait(20) == 2
    assert f"cannot serve --status-addr 127.0.0.1:{port}" in node.elector.log()
    assert election.sessions_of(node) == []


# -- notify hooks ------------------------------------------------------------------------------


def hook(tmp_path: Path, name: str, body: str = "") -> tuple[Path, Path]:
    """A hook script appending `STATE KEY VALUE cause` lines to a file."""
    out = tmp_path / f"{name}.calls"
    script = hook_script(
        tmp_path / f"{name}.sh",
        f'echo "$1 $2 $3 $VIP_ELECTOR_CAUSE $VIP_ELECTOR_PREVIOUS_STATE" >> {out}\n' + body,
    )
    return script, out


def calls(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_hooks_fire_exactly_once_per_transition_through_a_failover(
    election: Election, tmp_path: Path
) -> None:
    script_a, out_a = hook(tmp_path, "a")
    script_b, out_b = hook(tmp_path, "b")
    a = election.add("node-a", args=["--notify", str(script_a)])
    election.wait_holder()
    b = election.add("node-b", args=["--notify", str(script_b)])
    wait_until(lambda: election.sessions_of(b), 20, "node-b has a session")
    assert a.check is not None

    a.check.set("500")  # a loses, b takes over
    election.wait_holder(20, among=["node-b"])
    a.check.set("200")
    wait_until(lambda: election.sessions_of(a), 30, "node-a competes again")
    assert b.elector.terminate() == 0  # b stops: a re-acquires
    election.wait_holder(10, among=["node-a"])
    wait_until(lambda: len(calls(out_a)) >= 6 and len(calls(out_b)) >= 3, 10, "hooks ran")

    key = election.key
    assert [c[:3] for c in calls(out_a)] == [
        ["FOLLOWER", key, "node-a"],
        ["LEADER", key, "node-a"],
        ["FOLLOWER", key, "node-a"],  # the session is lost with the check
        ["FAULT", key, "node-a"],  # the check is critical: not a candidate (keepalived's FAULT)
        ["FOLLOWER", key, "node-a"],  # healthy again
        ["LEADER", key, "node-a"],
    ]
    assert [c[:3] for c in calls(out_b)] == [
        ["FOLLOWER", key, "node-b"],
        ["LEADER", key, "node-b"],
        ["STOPPING", key, "node-b"],
    ]
    assert calls(out_a)[2][3] == "session_lost"
    assert "notify hook" in a.elector.log()
    assert "exit 0" in a.elector.log()


def test_a_hook_still_running_at_the_next_change_is_terminated(
    election: Election, tmp_path: Path
) -> None:
    script, out = hook(tmp_path, "slow", body="sleep 30\n")
    node = election.add("node-a", args=["--notify", str(script)])
    election.wait_holder()
    line = node.elector.wait_log(r"notify hook .* FOLLOWER: .*terminated", 10)
    assert "the next state change came while it ran" in line
    # The LEADER hook starts once the FOLLOWER one is gone.
    wait_until(
        lambda: [c[0] for c in calls(out)][:2] == ["FOLLOWER", "LEADER"],
        10,
        lambda: f"the FOLLOWER then the LEADER hook ran (got {calls(out)})",
    )


def test_a_change_right_behind_another_still_runs_the_first_hook(
    election: Election, tmp_path: Path
) -> None:
    # On a free key FOLLOWER is followed by LEADER within milliseconds: the
    # FOLLOWER hook must still get to do its work, not be killed before its
    # first line.
    out = tmp_path / "calls"
    script = hook_script(tmp_path / "slow-start.sh", f'sleep 0.3\necho "$1" >> {out}\n')
    election.add("node-a", args=["--notify", str(script)])
    election.wait_holder()
    wait_until(
        lambda: out.exists() and out.read_text().split() == ["FOLLOWER", "LEADER"],
        10,
        lambda: f"the FOLLOWER and the LEADER hook did their work (got {calls(out)})",
    )


def test_a_hook_past_its_timeout_is_killed(election: Election, tmp_path: Path) -> None:
    script, _ = hook(tmp_path, "stuck", body="sleep 30\n")
    node = election.add(
        "node-a", check=False, args=["--notify", str(script), "--notify-timeout", "500ms"]
    )
    election.wait_holder()
    # FOLLOWER's run is cut short by the LEADER transition; LEADER's runs into the timeout.
    line = node.elector.wait_log(r"notify hook .*killed after the 0.5s timeout", 10)
    assert "LEADER: exit -15" in line


# -- maintenance and step-down ----------------------------------------------------------------


def two_with(election: Election, args: list[str]) -> tuple[Candidate, Candidate]:
    """node-a leading, node-b following, both with a 15 s lock-delay."""
    first = election.add("node-a", lock_delay="15s", args=args)
    election.wait_holder()
    second = election.add("node-b", lock_delay="15s", args=args)
    wait_until(lambda: election.sessions_of(second), 20, "node-b has a session")
    return first, second


def test_maintenance_file_hands_over_at_once_and_back(election: Election, tmp_path: Path) -> None:
    flag = tmp_path / "maintenance"
    port = free_port()
    first = election.add(
        "node-a",
        lock_delay="15s",
        args=["--maintenance-file", str(flag), "--status-addr", f":{port}"],
    )
    election.wait_holder()
    second = election.add("node-b", lock_delay="15s")
    wait_until(lambda: election.sessions_of(second), 20, "node-b has a session")

    started = time.monotonic()
    flag.touch()
    election.wait_holder(5, among=["node-b"])
    assert time.monotonic() - started < 3.0  # no 15 s lock-delay: the key was deleted
    status = requests.get(status_url(port, "/status"), timeout=2).json()
    assert status["state"] == "maintenance"
    assert status["maintenance"] is True
    line = first.elector.wait_log(r"\*\*\* STEPPED DOWN \*\*\*", 5)
    assert "cause=maintenance" in line
    assert first.elector.count("LOCK LOST") == 0

    # The only other node leaves: a node in maintenance still does not take over.
    assert second.elector.terminate() == 0
    assert stays_true(lambda: election.holder() is None, 2.0)

    flag.unlink()
    election.wait_holder(10, among=["node-a"])
    status = requests.get(status_url(port, "/status"), timeout=2).json()
    assert status["state"] == "leader"
    assert status["maintenance"] is False


def test_sigusr1_steps_down_and_holds(election: Election) -> None:
    first, second = two_with(election, ["--step-down-hold", "4s"])
    started = time.monotonic()
    first.elector.process.send_signal(signal.SIGUSR1)
    election.wait_holder(5, among=["node-b"])
    assert time.monotonic() - started < 3.0  # no lock-delay
    line = first.elector.wait_log(r"\*\*\* STEPPED DOWN \*\*\*", 5)
    assert "cause=step_down" in line
    assert "SIGUSR1" in line
    assert first.elector.count("LOCK LOST") == 0

    # node-b leaves during the hold: node-a must not take over before the hold ends.
    assert second.elector.terminate() == 0
    assert stays_true(
        lambda: election.holder() is None, max(0.0, 3.0 - (time.monotonic() - started))
    )
    election.wait_holder(6, among=["node-a"])
    assert time.monotonic() - started >= 3.8


def test_the_loser_of_a_race_takes_over_at_once_when_the_winner_steps_down(
    election: Election,
) -> None:
    """A refused acquire means lock-delay only while the key stays free: a node
    that lost the race to another one watches the winner and takes the key as
    soon as it goes, not a lock-delay later (5 s of VIP outage)."""
    names = ["node-a", "node-b", "node-c"]
    nodes = {n: election.add(n, lock_delay="5s", args=["--step-down-hold", "60s"]) for n in names}
    first = election.wait_holder()
    for node in nodes.values():
        wait_until(partial(election.sessions_of, node), 20, f"{node.name} has a session")
    first.elector.process.send_signal(signal.SIGUSR1)  # node-b and node-c race for the key
    others = [n for n in names if n != first.name]
    second = election.wait_holder(5, among=others)
    stepped = time.monotonic()
    second.elector.process.send_signal(signal.SIGUSR1)  # the winner steps down at once
    third = election.wait_holder(10, among=[n for n in others if n != second.name])
    took = time.monotonic() - stepped
    print(f"{third.name} took over {took * 1000:.0f} ms after {second.name} stepped down")
    assert took < 2.0, took


def test_a_node_waiting_out_lock_delay_follows_a_takeover_and_a_step_down(
    election: Election,
) -> None:
    """A node that saw a freed key later than another (it just started, or its
    session is new) estimates the end of lock-delay later too. It watches the key
    while it waits: when the other node takes the key and steps down at once,
    it takes over then, not when its own estimate ends (4 s later here).
    lock-delay is 12 s so that node-c's start-up (a health server, its check's
    first run, the daemon) has 6 s, on a loaded machine too, to be waiting
    before node-b takes the key."""
    first = election.add("node-a", lock_delay="12s")
    election.wait_holder(among=["node-a"])
    second = election.add("node-b", lock_delay="12s", args=["--step-down-hold", "60s"])
    wait_until(partial(election.sessions_of, second), 20, "node-b has a session")
    assert first.check is not None
    first.check.set("500")  # Consul invalidates node-a's session: lock-delay 12 s
    wait_until(lambda: election.holder() is None, 15, "the key is free")
    freed = time.monotonic()
    # node-c first sees the key free at least 4 s after node-b did.
    wait_until(lambda: time.monotonic() - freed >= 4.0, 5, "4 s of lock-delay")
    third = election.add("node-c", lock_delay="12s", args=["--log-level", "DEBUG"])
    wait_until(partial(election.sessions_of, third), 20, "node-c has a session")
    assert time.monotonic() - freed < 10.0, "node-c was too slow to start for this test"

    election.wait_holder(10, among=["node-b"])  # at the end of lock-delay
    stepped = time.monotonic()
    second.elector.process.send_signal(signal.SIGUSR1)
    election.wait_holder(10, among=["node-c"])
    took = time.monotonic() - stepped
    print(f"node-c took over {took * 1000:.0f} ms after node-b stepped down")
    assert "lock-delay in force" in third.elector.log()  # it was waiting for lock-delay
    assert took < 2.0, took


# -- SIGHUP -------------------------------------------------------------------------------------


def test_sighup_applies_log_settings_and_keeps_the_lock(election: Election, tmp_path: Path) -> None:
    options = tmp_path / "vip-elector.conf"
    options.write_text("log-level = INFO\n")
    node = election.add("node-a", args=["--config", str(options)])
    election.wait_holder()
    session = election.api.kv_get(election.key)
    assert session is not None
    assert node.elector.count(" DEBUG ") == 0

    options.write_text("log-level = DEBUG\n")
    node.elector.process.send_signal(signal.SIGHUP)
    node.elector.wait_log("configuration reloaded", 5)
    node.elector.wait_log(" DEBUG ", 15)  # the next poll is logged at DEBUG
    after = election.api.kv_get(election.key)
    assert after is not None
    assert after.session == session.session  # no hand-over for a log change


def test_sighup_with_a_new_trigger_key_hands_over(election: Election) -> None:
    node = election.add("node-a")
    election.wait_holder()
    new_key = f"{election.key}-moved"
    election.config.write_text(election.config.read_text().replace(election.key, new_key))

    node.elector.process.send_signal(signal.SIGHUP)
    wait_until(lambda: election.api.kv_value(new_key) == "node-a", 15, "the new key is held")
    assert election.api.kv_get(election.key) is None  # the old one was released
    assert (
        "trigger-key changed" in node.elector.log() or "vip-manager changed" in node.elector.log()
    )
    assert len(election.api.sessions()) >= 1
    election.api.kv_delete(new_key)


def test_sighup_with_an_invalid_config_keeps_running(election: Election) -> None:
    node = election.add("node-a")
    election.wait_holder()
    before = election.api.kv_get(election.key)
    election.config.write_text("dcs-type: etcd\ntrigger-key: [broken\n")

    node.elector.process.send_signal(signal.SIGHUP)
    node.elector.wait_log("keeping the running configuration", 5)
    assert "configuration reload failed" in node.elector.log()
    assert node.elector.running()
    after = election.api.kv_get(election.key)
    assert before is not None
    assert after is not None
    assert after.session == before.session


# -- systemd readiness ----------------------------------------------------------------------


class NotifySocket:
    """A systemd notify socket (what Type=notify units get as NOTIFY_SOCKET)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []

    def receive(self) -> None:
        try:
            data = self.sock.recv(4096).decode()
        except TimeoutError:
            return
        fields = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
        self.messages.append(fields)

    def has(self, field: str) -> bool:
        self.receive()
        return any(field in m for m in self.messages)

    def statuses(self) -> list[str]:
        return [m["STATUS"] for m in self.messages if "STATUS" in m]

    def close(self) -> None:
        self.sock.close()


def test_ready_once_the_agent_answers_even_while_the_check_is_critical(
    election: Election, tmp_path: Path
) -> None:
    """A check critical at boot must not hold up `systemctl start` (Type=notify):
    READY=1 comes once the agent answers; STATUS= says why it does not compete."""
    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        node = election.add("node-a", start=False, env={"NOTIFY_SOCKET": str(notify.path)})
        assert node.check is not None
        node.check.set("500")
        node.check.wait_status("critical")
        node.elector.start()

        wait_until(lambda: notify.has("READY"), 20, "READY=1 with the check critical")

        def last_status() -> str:
            notify.receive()
            return (notify.statuses() or [""])[-1]

        # `systemctl status` shows the last STATUS=: it must say why, and stay so.
        wait_until(
            lambda: last_status().startswith("not competing: "),
            20,
            lambda: f"a STATUS= that says it does not compete (got {notify.statuses()})",
        )
        assert stays_true(lambda: last_status().startswith("not competing: "), 2.0), (
            notify.statuses()
        )
        assert election.holder() is None
        assert "critical" in last_status()

        node.check.set("200")
        election.wait_holder()
        wait_until(
            lambda: notify.has("STATUS") and notify.statuses()[-1].startswith("leader of"),
            20,
            lambda: f"STATUS= says leader (got {notify.statuses()})",
        )
    finally:
        notify.close()


# -- log format -------------------------------------------------------------------------------


def test_text_logs_have_no_timestamp_under_systemd(election: Election) -> None:
    node = election.add("node-a", env={"JOURNAL_STREAM": "8:1234"})
    election.wait_holder()
    line = node.elector.wait_log("LOCK ACQUIRED")
    assert line.startswith("INFO *** LOCK ACQUIRED ***")
    plain = election.add("node-b")
    first = plain.elector.wait_log("vip-elector starting")
    assert first[:4].isdigit()  # a timestamp outside systemd


@pytest.mark.parametrize("flag", ["--json"])
def test_status_json_on_error_is_json(election: Election, flag: str) -> None:
    result = command(election, "status", flag, "--addr", "127.0.0.1:1")
    assert result.returncode == 2
    assert json.loads(result.stdout)["kind"] == "unreachable"
