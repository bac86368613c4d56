"""vip-elector used the way a careless or hostile operator would use it.

Each test is a finding that once broke the daemon (a leaked token, a doubled
VIP, a crash, a starved status port, a forged log line) and must stay fixed.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import Election, HealthFactory
from tests.testbed.agents import ConsulAgent, ConsulCluster, free_port
from tests.testbed.elector import run_vip_elector
from tests.testbed.fault_proxy import FaultProxy
from tests.testbed.hooks import hook_script
from tests.testbed.secrets import assert_no_secret
from tests.testbed.waiting import stays_true, wait_until

SECRET = f"hostile-{uuid.uuid4()}"


def yml(election: Election) -> list[str]:
    return ["--vip-manager-config", str(election.config), "--hostname", "node-a"]


# -- 1. the ACL token is never logged, printed or passed on --------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (f"{SECRET}\n# token for node-a\n", "more than one line"),
        (f"{SECRET}☃\n", "not printable ASCII"),
        (f"{SECRET} x\n", "space"),
    ],
)
def test_a_token_file_that_is_not_one_line_of_ascii_is_refused_without_the_token(
    election: Election, tmp_path: Path, content: str, words: str
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(content)
    outputs = []
    for command in ([], ["status"], ["check-config", "--online"]):
        result = run_vip_elector(*command, *yml(election), "--token-file", str(token_file))
        assert result.returncode == 2, result.stderr
        assert f"token file {token_file}" in result.stderr
        assert words in result.stderr
        outputs += [result.stdout, result.stderr]
    assert_no_secret(SECRET, *outputs)


def test_a_token_given_as_a_variable_must_be_one_line_too(election: Election) -> None:
    result = run_vip_elector(*yml(election), env={"CONSUL_HTTP_TOKEN": f"{SECRET}\nx"})
    assert result.returncode == 2
    assert "the ACL token from environment holds more than one line" in result.stderr
    assert_no_secret(SECRET, result.stdout, result.stderr)


def test_no_token_reaches_a_hook_in_any_variable(election: Election, tmp_path: Path) -> None:
    dump = tmp_path / "env.txt"
    hook = hook_script(tmp_path / "hook.sh", f"env >> {dump}\n")
    node = election.add(
        "node-a",
        args=["--notify", str(hook), "--token", SECRET],
        # The Debian way to add options: VIP_ELECTOR_OPTS="--token=..." in
        # /etc/default/vip-elector, expanded by the unit into the command line.
        env={"VIP_ELECTOR_OPTS": f"--token={SECRET}", "CONSUL_HTTP_TOKEN": SECRET},
    )
    election.wait_holder()
    wait_until(lambda: "VIP_ELECTOR_STATE=LEADER" in dump.read_text(), 10, "hooks ran")
    node.elector.terminate()
    assert_no_secret(SECRET, dump.read_text(), node.elector.log())


# -- 2. one lock value on two nodes ----------------------------------------------------


def test_a_copied_config_with_the_same_value_on_two_nodes_is_refused_by_both(
    consul_cluster: ConsulCluster, cluster_election: Election
) -> None:
    node_a, node_b = consul_cluster.clients[:2]
    first = cluster_election.add("original", hostname="same", agent=node_a)
    wait_until(lambda: cluster_election.holder() == "same", 30, "the original leads")
    copy = cluster_election.add("copy", hostname="same", agent=node_b)

    # The copy refuses at once and flags the conflict; the leader sees the flag
    # in its watch and steps down at once (not at a periodic look, not in 30 s).
    copy.elector.wait_log("not competing for the lock: node.* also compete", 20)
    first.elector.wait_log(r"\*\*\* STEPPED DOWN \*\*\* .*cause=duplicate_value", 5)
    assert stays_true(lambda: cluster_election.holder() is None, 3.0)
    assert first.elector.running()
    assert copy.elector.running()  # not a crash loop
    assert "trigger-value" in copy.elector.log()  # says what to change

    copied_config = (
        "--vip-manager-config",
        str(cluster_election.config),
        "--hostname",
        "same",
        "--addr",
        node_a.http_addr,
    )
    status = run_vip_elector("status", *copied_config)
    assert status.returncode == 1
    assert "all compete with the lock value 'same'" in status.stdout
    check = run_vip_elector("check-config", "--online", *copied_config)
    assert check.returncode == 1
    assert "FAIL  node(s) node-b also compete" in check.stdout

    # Fixed (the copy stops): the original leads again.
    copy.elector.terminate()
    wait_until(lambda: cluster_election.holder() == "same", 45, "the original leads again")


# -- 3 and 4. files that cannot be read, bounded ------------------------------------------


def bad_files(tmp_path: Path) -> dict[str, Path]:
    latin1 = tmp_path / "latin1.yml"
    latin1.write_bytes(b'dcs-type: consul\ntrigger-key: k\ntrigger-value: "n\xbfud-a"\n')
    nested = tmp_path / "nested.yml"
    nested.write_text("dcs-type: consul\ntrigger-key: k\nx: " + "[" * 5000 + "]" * 5000 + "\n")
    bomb = tmp_path / "bomb.yml"
    lines = ["dcs-type: consul", "trigger-key: k", 'a0: &a0 ["lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 12)]
    lines.append("dcs-endpoints: *a11")
    bomb.write_text("\n".join(lines) + "\n")
    big = tmp_path / "big.yml"
    big.write_text("dcs-type: consul\ntrigger-key: k\n# " + "x" * (40 << 20) + "\n")
    fifo = tmp_path / "fifo.yml"
    os.mkfifo(fifo)
    return {
        "latin1": latin1,
        "nested": nested,
        "bomb": bomb,
        "big": big,
        "fifo": fifo,
        "zero": Path("/dev/zero"),
    }


def test_unreadable_configuration_files_are_exit_2_with_one_line_at_start(
    tmp_path: Path,
) -> None:
    for name, path in bad_files(tmp_path).items():
        started = time.monotonic()
        result = run_vip_elector("--vip-manager-config", str(path), "--hostname", "a", timeout=20)
        took = time.monotonic() - started
        assert result.returncode == 2, (name, result.stderr)
        assert "Traceback" not in result.stderr, name
        errors = [line for line in result.stderr.splitlines() if "configuration error" in line]
        assert len(errors) == 1, (name, result.stderr)
        assert str(path) in errors[0], name
        assert took < 5, (name, took)
    zero = run_vip_elector("--vip-manager-config", "/dev/null", "--token-file", "/dev/zero")
    assert zero.returncode == 2
    assert "token file /dev/zero" in zero.stderr
    assert "not a regular file" in zero.stderr


@pytest.mark.parametrize("flag", ["--token-file", "--config"])
def test_a_fifo_or_device_as_token_or_options_file_does_not_hang(tmp_path: Path, flag: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        result = run_vip_elector("--vip-manager-config", "/dev/null", flag, str(path), timeout=10)
        assert result.returncode == 2, result.stderr
        assert "not a regular file" in result.stderr


def test_sighup_with_an_unreadable_file_keeps_the_daemon_and_the_lock(
    election: Election, tmp_path: Path
) -> None:
    node = election.add("node-a")
    election.wait_holder()
    before = election.api.kv_get(election.key)
    assert before is not None
    good = election.config.read_bytes()
    for name, path in bad_files(tmp_path).items():
        if name == "fifo":
            election.config.unlink()
            os.mkfifo(election.config)
        else:
            election.config.write_bytes(path.read_bytes() if path.is_file() else b"x")
        count = node.elector.count("keeping the running configuration")
        node.elector.process.send_signal(signal.SIGHUP)
        node.elector.wait_log("keeping the running configuration", 10, count=count + 1)
        assert node.elector.running(), name
        if election.config.is_fifo():
            election.config.unlink()
        election.config.write_bytes(good)
    after = election.api.kv_get(election.key)
    assert after is not None
    assert after.session == before.session
    assert "Traceback" not in node.elector.log()
    # The main thread never blocked on a file: a stop is still acted on at once.
    started = time.monotonic()
    assert node.elector.terminate() == 0
    assert time.monotonic() - started < 2.0


# -- 5. the status server cannot starve the daemon -------------------------------------------


def test_many_idle_status_connections_do_not_starve_a_step_down(election: Election) -> None:
    port = free_port()
    # As under systemd: at most 1024 open files (the soft limit it sets). More
    # idle connections than that must not leave the daemon without a socket
    # for Consul when it has to step down.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip(f"this test opens 1200 connections; the hard limit is {hard} open files")
    soft = max(soft, 1400)  # the test's own connections
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        first = election.add("node-a", lock_delay="15s", args=["--status-addr", f":{port}"])
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    election.wait_holder()
    second = election.add("node-b", lock_delay="15s")
    wait_until(lambda: election.sessions_of(second), 20, "node-b has a session")
    idle = []
    try:
        for _ in range(1200):
            try:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
        started = time.monotonic()
        first.elector.process.send_signal(signal.SIGUSR1)
        election.wait_holder(5, among=["node-b"])
        assert time.monotonic() - started < 3.0
    finally:
        for sock in idle:
            sock.close()
    assert requests.get(f"http://127.0.0.1:{port}/status", timeout=5).json()["state"] != "leader"


def test_ipv6_status_addr_works_and_bad_ones_are_configuration_errors(
    election: Election,
) -> None:
    port = free_port()
    node = election.add("node-a", args=["--status-addr", f"[::1]:{port}"])
    answer = wait_until(
        lambda: requests.get(f"http://[::1]:{port}/healthz", timeout=2), 15, "/healthz on ::1"
    )
    assert answer.status_code == 200
    node.elector.terminate()
    unresolvable = run_vip_elector(*yml(election), "--status-addr", "no-such-host.invalid:9")
    assert unresolvable.returncode == 2
    assert "cannot resolve 'no-such-host.invalid'" in unresolvable.stderr


def test_a_status_port_on_every_address_is_warned_about(election: Election) -> None:
    node = election.add("node-a", args=["--status-addr", f"0.0.0.0:{free_port()}"])
    line = node.elector.wait_log("not on loopback", 15)
    assert "WARNING" in line


# -- 6. every line the daemon writes is one record ----------------------------------------------


def test_clients_that_go_away_and_hostile_request_lines_cannot_break_the_log(
    election: Election,
) -> None:
    port = free_port()
    node = election.add(
        "node-a", args=["--status-addr", f":{port}", "--log-level", "DEBUG", "--log-format", "json"]
    )
    wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1), 15, "up")
    for _ in range(200):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /\x1b[31m\x08*** LOCK LOST *** HTTP/1.0\r\n\r\n")
        sock.recv(1000)
    node.elector.terminate()
    lines = node.elector.log().splitlines()
    assert not [line for line in lines if not line.startswith("{")], "a line outside logging"
    records = [json.loads(line) for line in lines]
    assert "Traceback" not in node.elector.log()
    forged = [r for r in records if "LOCK LOST" in r["message"]]
    assert forged, "the request line is logged at DEBUG"
    assert all("\x1b" not in r["message"] and r["event"] != "lock_lost" for r in forged)


def test_a_hooks_output_is_logged_line_by_line_and_bounded(
    election: Election, tmp_path: Path
) -> None:
    hook = hook_script(
        tmp_path / "loud.sh",
        'printf \'{"forged": "record"}\\n\'\n'
        "head -c 3000000 /dev/zero | tr '\\0' x\n"
        "echo\n"
        "seq 1 100\n",
    )
    node = election.add("node-a", args=["--notify", str(hook), "--log-format", "json"])
    election.wait_holder()
    node.elector.wait_log("more output lines not logged", 15)
    node.elector.terminate()
    lines = node.elector.log().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON record
    assert max(len(line) for line in lines) < 5000
    said = [r["message"] for r in records if r["event"] == "notify_output"]
    assert any('{"forged": "record"}' in m for m in said)
    assert not [r for r in records if r.get("forged")]


# -- 7. hooks at start and at the end ------------------------------------------------------------


def test_the_stopping_hook_gets_its_time_and_superseded_hooks_are_not_warnings(
    election: Election, tmp_path: Path
) -> None:
    done = tmp_path / "stopping-done"
    hook = hook_script(
        tmp_path / "hook.sh", f'[ "$1" = STOPPING ] && sleep 1 && touch {done}\nsleep 2\n'
    )
    node = election.add("node-a", args=["--notify", str(hook), "--notify-timeout", "10s"])
    election.wait_holder()
    node.elector.wait_log("notify hook .* FOLLOWER: .*terminated", 10)
    assert election.api.kv_get(election.key) is not None
    assert node.elector.terminate(timeout=15) == 0
    assert done.exists(), node.elector.log()
    superseded = [line for line in node.elector.log().splitlines() if "terminated" in line]
    assert all(" INFO " in line for line in superseded), superseded


# -- 8. one daemon per configuration on a node --------------------------------------------------


def test_a_second_daemon_with_the_same_configuration_refuses_to_start(
    election: Election,
) -> None:
    first = election.add("node-a", args=["--liveness-ttl", "3s"])
    election.wait_holder()
    before = election.api.kv_get(election.key)
    assert first.check is not None
    second = election.add(
        "twin",
        hostname="node-a",
        check=False,
        check_id=first.check.check_id,
        args=["--liveness-ttl", "3s"],
    )
    assert second.elector.process.wait(20) == 2
    assert "another vip-elector already runs for trigger-key" in second.elector.log()
    assert stays_true(lambda: election.api.kv_get(election.key) == before, 5.0)


def test_the_same_agent_spelled_differently_is_still_one_daemon(
    election: Election, fault_proxy: Callable[[ConsulAgent], FaultProxy]
) -> None:
    """22.11: through a proxy (or `localhost` for `127.0.0.1`) the same agent has
    another address; the instance lock names it by its node ID."""
    first = election.add("node-a", args=["--liveness-ttl", "3s"])
    election.wait_holder()
    before = election.api.kv_get(election.key)
    assert first.check is not None
    proxy = fault_proxy(election.agent)
    second = election.add(
        "twin",
        hostname="node-a",
        check=False,
        check_id=first.check.check_id,
        addr=f"http://{proxy.address}",
        args=["--liveness-ttl", "3s"],
    )
    assert second.elector.process.wait(20) == 2
    assert "another vip-elector already runs for trigger-key" in second.elector.log()
    assert stays_true(lambda: election.api.kv_get(election.key) == before, 5.0)
    assert first.elector.running()


# -- 9. a value the daemon did not write is never destroyed ------------------------------------


def test_a_plain_value_put_on_the_held_key_survives(election: Election) -> None:
    node = election.add("node-a")
    election.wait_holder()
    assert election.api.kv_put(election.key, "operator")  # a plain `consul kv put`
    node.elector.wait_log("holds a value vip-elector did not write", 15)
    node.elector.wait_log("Not competing until it is fixed", 15)
    assert stays_true(lambda: election.holder() == "operator", 3.0)
    assert node.elector.terminate() == 0
    entry = election.api.kv_get(election.key)
    assert entry is not None
    assert (entry.text, entry.session) == ("operator", None)


# -- 10. smaller ones ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "trigger-value: yes",
        "trigger-value: 2024-01-01",
        "trigger-value: [a, b]",
        "trigger-value: {a: b}",
        "trigger-key: true",
        "dcs-endpoints: [1, 2]",
    ],
)
def test_yaml_values_vip_manager_would_read_differently_are_refused(
    tmp_path: Path, line: str
) -> None:
    path = tmp_path / "vm.yml"
    key, _, _ = line.partition(":")
    base = {"dcs-type": "consul", "trigger-key": "k"}
    base.pop(key, None)
    path.write_text("".join(f"{k}: {v}\n" for k, v in base.items()) + line + "\n")
    result = run_vip_elector("--vip-manager-config", str(path))
    assert result.returncode == 2, result.stderr
    assert f"`{key}`" in result.stderr


def test_a_step_down_hold_is_logged_once(election: Election) -> None:
    node = election.add("node-a", args=["--step-down-hold", "4s"])
    election.wait_holder()
    node.elector.process.send_signal(signal.SIGUSR1)
    line = node.elector.wait_log(r"\*\*\* STEPPED DOWN \*\*\*", 5)
    assert "SIGUSR1; competing again at" in line  # says until when, once
    wait_until(lambda: election.holder() == "node-a", 10, "back after the hold")
    # Not a line a second while it lasts (it used to be a countdown).
    assert node.elector.count("not competing for the lock: SIGUSR1") <= 1


def test_an_unknown_token_is_not_explained_as_a_missing_right(
    consul_acl: ConsulAgent, tmp_path: Path, health: HealthFactory
) -> None:
    race = Election(consul_acl, tmp_path, f"unknown-token/{uuid.uuid4().hex[:8]}", health)
    token = str(uuid.uuid4())
    token_file = tmp_path / "token"
    token_file.write_text(f"{token}\n")
    try:
        node = race.add("node-a", check=False, env={"CONSUL_HTTP_TOKEN_FILE": str(token_file)})
        line = node.elector.wait_log("Consul does not know the ACL token", 15)
        assert "this is not a missing right" in line
        status = run_vip_elector(
            "status", "--vip-manager-config", str(race.config), "--token-file", str(token_file)
        )
        assert status.returncode == 2
        assert "Consul does not know the ACL token" in status.stderr
        assert_no_secret(token, node.elector.log(), status.stdout, status.stderr)
    finally:
        race.stop_all()


def test_liveness_failures_are_logged_once_not_every_second(
    election: Election, fault_proxy: Callable[[ConsulAgent], FaultProxy]
) -> None:
    proxy = fault_proxy(election.agent)
    node = election.add("node-a", addr=proxy.address, args=["--liveness-ttl", "3s"])
    election.wait_holder()
    with proxy.fault("http500"):
        # 2.5 s: two or three passes of the liveness check fail (one a second); the
        # fault lasts until at least two requests met it, however the passes fell.
        assert stays_true(node.elector.running, 2.5)
        wait_until(lambda: proxy.requests_answered_500 >= 2, 10, "two requests answered 500")
        assert node.elector.running()
    node.elector.wait_log("liveness check .* passed again after", 10)
    assert node.elector.count("passing the liveness check .* failed") == 1


# -- 11. what is under the trigger-key's prefix is anybody's writing ------------------------------


def test_hostile_entries_under_the_key_stop_no_daemon_and_no_command(election: Election) -> None:
    """A switchover request nested 50,000 deep once killed every leader in turn
    (RecursionError), a candidate entry with priority 1e400 killed leaders and
    followers (OverflowError), `status` and `switchover` printed a traceback, and
    a request's `by` reached the log raw. Each bad entry is now one WARNING."""
    node_a = election.add("node-a")
    election.wait_holder()
    node_b = election.add("node-b")
    prefix = election.key
    wait_until(lambda: election.api.kv_get(f"{prefix}/candidates/node-b"), 20, "node-b's entry")
    # Any session may hold an entry under candidates/ (it takes key write, no more).
    intruder = election.api.session_create(Name="intruder", TTL="60s")
    command = ("--vip-manager-config", str(election.config), "--hostname", "cmd")
    try:
        put = election.api.kv_put
        assert put(f"{prefix}/candidates/inf", '{"priority": 1e400}', acquire=intruder)
        assert put(f"{prefix}/candidates/deep", b"[" * 10_000, acquire=intruder)
        assert put(f"{prefix}/switchover", b"[" * 50_000)
        # The leader refuses the request and deletes it; nobody dies.
        wait_until(lambda: election.api.kv_get(f"{prefix}/switchover") is None, 10, "dropped")
        assert stays_true(
            lambda: (
                node_a.elector.running()
                and node_b.elector.running()
                and election.holder() == "node-a"
            ),
            3.0,
        )
        assert node_a.elector.count("ignored the switchover request .*: 50000 bytes") == 1
        assert node_a.elector.count("candidates/deep .*: JSON nested too deeply") == 1

        status = run_vip_elector("status", *command)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "Traceback" not in status.stdout + status.stderr
        assert (
            f"IGNORED       {prefix}/candidates/inf: `priority` is not a whole number "
            "from 0 to 255" in status.stdout
        )
        assert f"IGNORED       {prefix}/candidates/deep: JSON nested too deeply" in status.stdout

        moved = run_vip_elector("switchover", *command, "--to", "node-b", "--yes")
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert "Traceback" not in moved.stdout + moved.stderr
        assert f"ignored the candidate entry {prefix}/candidates/inf" in moved.stderr
        election.wait_holder(10, among=["node-b"])

        # Who asked for a switchover is logged escaped and bounded: no forged line.
        forged = "\x1b[31m*** LOCK LOST ***\n" + "x" * 5000
        request = {"to": "nobody", "at": time.time(), "by": forged}
        assert put(f"{prefix}/switchover", json.dumps(request))
        line = node_b.elector.wait_log(r"switchover to 'nobody' \(asked by .*refused", 10)
        assert "\\x1b[31m*** LOCK LOST ***\\n" in line
        assert len(line) < 1000
        assert "\x1b" not in node_b.elector.log()

        # A follower reads the candidates when the key goes free: node-a takes it.
        assert node_b.elector.terminate() == 0
        election.wait_holder(15, among=["node-a"])
        assert node_a.elector.running()
        for node in (node_a, node_b):  # one WARNING per entry, not one per read
            assert node.elector.count(f"ignored the candidate entry {prefix}/candidates/inf") == 1
            assert "Traceback" not in node.elector.log()
    finally:
        election.api.session_destroy(intruder)
