"""The VIP stays put across restarts, crashes, in-place restarts and reloads: the
trigger-key is watched with blocking queries for the whole window and must
never be free (or, where a session property changed, change only its session)."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Candidate, Election, HealthFactory
from tests.test_security import documented_token
from tests.testbed.agents import ConsulAgent, free_port
from tests.testbed.consul_http import LOCK_FLAG, KVEntry
from tests.testbed.elector import run_vip_elector
from tests.testbed.key_watch import KeyEvent, KeyWatcher
from tests.testbed.secrets import assert_no_secret
from tests.testbed.waiting import stays_true, wait_until


@pytest.fixture
def watch(election: Election) -> Iterator[KeyWatcher]:
    watcher = KeyWatcher([election.agent], election.key)
    yield watcher
    watcher.stop()


def leading(election: Election, name: str = "node-a", **kwargs: object) -> Candidate:
    node = election.add(name, **kwargs)  # type: ignore[arg-type]
    wait_until(lambda: election.holder() == node.value, 30, f"{name} leads")
    return node


def never_free(events: list[KeyEvent]) -> bool:
    return all(e.value is not None and e.session for e in events)


def test_sigkill_and_a_restart_two_seconds_later_keep_the_key_unchanged(
    election: Election, watch: KeyWatcher
) -> None:
    node = leading(election)
    second = election.add("node-b")
    wait_until(lambda: election.sessions_of(second), 20, "node-b has a session")
    watch.start_watching()
    before = election.api.kv_get(election.key)
    assert before is not None

    node.elector.kill()  # SIGKILL: nothing is released
    started = time.monotonic()
    wait_until(lambda: time.monotonic() - started >= 2.0, 3, "RestartSec=2")
    node.elector.start()  # as systemd's Restart=always would
    line = node.elector.wait_log(r"\*\*\* LOCK KEPT \*\*\*", 15)
    assert str(before.session) in line
    assert "adopted session" in node.elector.log()
    assert stays_true(lambda: election.api.kv_get(election.key) == before, 3.0)

    events = watch.since(started - 1)
    assert len({(e.session, e.modify_index) for e in events}) == 1, events  # never changed
    assert never_free(events)
    assert second.elector.count("LOCK ACQUIRED") == 0


def test_a_follower_restarted_after_a_crash_destroys_its_old_session(election: Election) -> None:
    leading(election)
    follower = election.add("node-b")
    # Its log line comes after the session is in its runtime record: a SIGKILL
    # between Consul's answer and the record leaves a session nobody knows of
    # (it holds nothing and expires with its TTL), and nothing to destroy.
    follower.elector.wait_log("Session created", 20)
    (old,) = election.sessions_of(follower)
    follower.elector.kill()
    follower.elector.start()
    follower.elector.wait_log("did not hold the trigger-key: destroying it", 15)
    wait_until(
        lambda: [s["ID"] for s in election.sessions_of(follower)] not in ([], [old["ID"]]),
        15,
        "node-b has a new session only",
    )
    wait_until(lambda: len(election.sessions_of(follower)) == 1, 15, "the old one is gone")


def test_a_restart_without_its_record_frees_the_candidacy_its_old_session_holds(
    election: Election, tmp_path: Path
) -> None:
    """SIGKILL, and the runtime record is lost (another runtime directory): the old
    session keeps the candidacy entry for up to twice its TTL, so no switchover,
    preemption or step-down sees the node, and a switchover handed the lock to the
    dead session. The new process destroys it and publishes at once."""
    leading(election)
    follower = election.add("node-b")
    wait_until(lambda: election.sessions_of(follower), 20, "node-b has a session")
    (old,) = election.sessions_of(follower)
    entry = f"{election.key}/candidates/node-b"
    wait_until(lambda: _holder(election, entry) == old["ID"], 10, "node-b's entry published")
    follower.elector.kill()
    elsewhere = tmp_path / "another-runtime-directory"
    elsewhere.mkdir(mode=0o700)
    again = election.add(
        "node-b-again", hostname="node-b", env={"RUNTIME_DIRECTORY": str(elsewhere)}
    )
    again.elector.wait_log(f"session {old['ID']} of an earlier run of this daemon holds", 10)
    wait_until(
        lambda: _holder(election, entry) not in (None, old["ID"]),
        5,
        "node-b's entry held by its new session within 5 s (not after the old one's TTL)",
    )
    assert old["ID"] not in [s["ID"] for s in election.sessions_of(again)]


def _holder(election: Election, key: str) -> str | None:
    found = election.api.kv_get(key)
    return None if found is None else found.session


def test_a_restart_inside_a_hand_over_deletes_the_blank_without_lock_delay(
    election: Election,
) -> None:
    """A process killed (or exec'd) after it blanked the key for a hand-over: the
    next one deletes that blank at once; destroying the session holding it would
    keep the key from everybody for its lock-delay (10 s here)."""
    node = leading(election, lock_delay="10s")
    second = election.add("node-b")
    wait_until(lambda: election.sessions_of(second), 20, "node-b has a session")
    node.elector.kill()
    entry = election.api.kv_get(election.key)
    assert entry is not None
    assert entry.session
    # What the hand-over's blank writes: the same session, an empty value.
    assert election.api.kv_put(election.key, b"", acquire=entry.session, flags=LOCK_FLAG)
    started = time.monotonic()
    node.elector.start()
    node.elector.wait_log("did not hold the trigger-key", 15)
    wait_until(lambda: election.holder() == second.value, 8, "node-b takes over")
    assert time.monotonic() - started < 8.0


def test_sigusr2_restarts_in_place_keeping_the_session_and_the_lock(
    election: Election, watch: KeyWatcher
) -> None:
    port = free_port()
    node = leading(election, args=["--status-addr", f":{port}"])
    watch.start_watching()
    before = election.api.kv_get(election.key)
    assert before is not None
    pid = node.elector.process.pid
    started = time.monotonic()

    node.elector.process.send_signal(signal.SIGUSR2)
    node.elector.wait_log("restarting in place", 5)
    node.elector.wait_log(r"\*\*\* LOCK KEPT \*\*\*", 15)
    assert node.elector.process.pid == pid
    assert node.elector.running()
    status = wait_until(
        lambda: requests.get(f"http://127.0.0.1:{port}/status", timeout=2).json(), 10, "/status"
    )
    assert status["state"] == "leader"
    assert status["adopted"] is True
    assert status["leader_since"] < time.time() - 0.5  # since the first acquisition
    text = run_vip_elector(
        "status",
        "--vip-manager-config",
        str(election.config),
        "--hostname",
        "node-a",
        "--status-addr",
        f":{port}",
    ).stdout
    assert "this daemon   leader since" in text
    assert "adopted after a restart" in text
    assert stays_true(lambda: election.api.kv_get(election.key) == before, 2.0)
    events = watch.since(started)
    assert len({(e.session, e.modify_index) for e in events}) == 1, events
    assert never_free(events)
    assert node.elector.terminate() == 0  # and the re-executed daemon stops cleanly
    assert election.api.kv_get(election.key) is None


def test_a_restart_later_than_the_ttl_fails_over_as_before(election: Election) -> None:
    node = leading(election)
    second = election.add("node-b")
    wait_until(lambda: election.sessions_of(second), 20, "node-b has a session")
    node.elector.kill()
    # Consul invalidates the session at 2 x TTL without renewal; node-b takes over.
    election.wait_holder(30, among=["node-b"])
    node.elector.start()
    wait_until(lambda: election.sessions_of(node), 20, "node-a competes again")
    assert "LOCK KEPT" not in node.elector.log()
    assert election.holder() == "node-b"


def test_sighup_with_a_new_ttl_moves_the_lock_to_a_new_session_without_freeing_it(
    election: Election, watch: KeyWatcher, tmp_path: Path
) -> None:
    options = tmp_path / "vip-elector.conf"
    options.write_text("ttl = 10s\n")
    node = leading(election, args=["--config", str(options)])
    watch.start_watching()
    before = election.api.kv_get(election.key)
    assert before is not None
    started = time.monotonic()

    options.write_text("ttl = 20s\n")
    node.elector.process.send_signal(signal.SIGHUP)
    node.elector.wait_log("moved the lock from session", 15)

    def moved() -> KVEntry | None:
        entry = election.api.kv_get(election.key)
        return entry if entry is not None and entry.session != before.session else None

    after = wait_until(moved, 10, "the key is held by a new session")
    info = election.api.session_info(str(after.session))
    assert info is not None
    assert info["TTL"] == "20s"
    assert after.text == "node-a"
    events = watch.since(started)
    assert never_free(events), events
    assert [e.session for e in events] in (
        [before.session, after.session],
        [after.session],
    )
    assert node.elector.count("LOCK LOST") == 0
    assert node.elector.count("STEPPED DOWN") == 0
    wait_until(lambda: election.api.session_info(str(before.session)) is None, 15, "old gone")


def test_token_rotation_by_sighup_keeps_the_session_and_the_lock(
    consul_acl: ConsulAgent, tmp_path: Path, health: HealthFactory
) -> None:
    race = Election(consul_acl, tmp_path, f"rotation/{uuid.uuid4().hex[:8]}/leader", health)
    check, first_token = documented_token(race, "rot")
    _, second_token = documented_token(race, "rot2")
    token_file = tmp_path / "token"
    token_file.write_text(first_token + "\n")
    watch = KeyWatcher([consul_acl], race.key)
    try:
        node = race.add(
            "node-a",
            check=False,
            check_id=check.check_id,
            env={"CONSUL_HTTP_TOKEN_FILE": str(token_file)},
        )
        wait_until(lambda: race.holder() == "node-a", 30, "node-a leads")
        watch.start_watching()
        before = race.api.kv_get(race.key)
        assert before is not None
        started = time.monotonic()

        token_file.write_text(second_token + "\n")
        node.elector.process.send_signal(signal.SIGHUP)
        line = node.elector.wait_log("swapped in place", 10)
        assert "token" in line
        # Revoke the old token: from now on only the new one works.
        old = consul_acl.api(token=first_token).ok("GET", "/v1/acl/token/self")
        race.api.ok("DELETE", f"/v1/acl/token/{old['AccessorID']}")
        # Longer than a TTL: renewals must have gone through with the new token.
        assert stays_true(lambda: race.api.kv_get(race.key) == before, 12.0)
        events = watch.since(started)
        assert len({(e.session, e.modify_index) for e in events}) == 1, events
        assert "renewal failed" not in node.elector.log()
        assert_no_secret(first_token, node.elector.log())
        assert_no_secret(second_token, node.elector.log())
    finally:
        watch.stop()
        race.stop_all()


def test_a_rotated_token_consul_does_not_know_is_refused_at_sighup(
    consul_acl: ConsulAgent, tmp_path: Path, health: HealthFactory
) -> None:
    race = Election(consul_acl, tmp_path, f"rotation/{uuid.uuid4().hex[:8]}/leader", health)
    check, token = documented_token(race, "rot")
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    try:
        node = race.add(
            "node-a",
            check=False,
            check_id=check.check_id,
            env={"CONSUL_HTTP_TOKEN_FILE": str(token_file)},
        )
        wait_until(lambda: race.holder() == "node-a", 30, "node-a leads")
        before = race.api.kv_get(race.key)
        token_file.write_text(f"{uuid.uuid4()}\n")  # a typo: no such token
        node.elector.process.send_signal(signal.SIGHUP)
        line = node.elector.wait_log("configuration reload refused", 10)
        assert "does not know the new token" in line
        assert node.elector.count("swapped in place") == 0
        # Longer than a TTL: the renewals went on with the token that works.
        assert stays_true(lambda: race.api.kv_get(race.key) == before, 12.0)
        assert "renewal failed" not in node.elector.log()
    finally:
        race.stop_all()


# -- restarts in place that used to go wrong (issue 22: 8, 9, 10, 13) -----------------


def after(seconds: float) -> None:
    """Let ``seconds`` pass: the gap an operator leaves between two signals."""
    started = time.monotonic()
    wait_until(lambda: time.monotonic() - started >= seconds, seconds + 1, "time passes")


def test_signals_right_after_sigusr2_wait_for_the_new_process(
    election: Election, watch: KeyWatcher
) -> None:
    node = leading(election)
    watch.start_watching()
    before = election.api.kv_get(election.key)
    assert before is not None
    pid = node.elector.process.pid
    started = time.monotonic()

    node.elector.process.send_signal(signal.SIGUSR2)
    # An operator's next signals land somewhere in the exec, before the new
    # process has its handlers (a default SIGHUP or SIGUSR2 kills a process).
    for _ in range(30):
        after(0.025)
        node.elector.process.send_signal(signal.SIGHUP)
    node.elector.process.send_signal(signal.SIGUSR2)
    wait_until(lambda: node.elector.count(r"LOCK KEPT") >= 2, 20, "the lock is kept, twice")
    assert stays_true(node.elector.running, 3.0), node.elector.log()[-3000:]
    assert node.elector.process.pid == pid
    assert election.holder() == "node-a"
    events = watch.since(started)
    assert len({(e.session, e.modify_index) for e in events}) == 1, events
    assert node.elector.terminate() == 0


def test_sigusr2_into_a_configuration_sighup_would_refuse_keeps_running(
    election: Election, tmp_path: Path
) -> None:
    options = tmp_path / "vip-elector.conf"
    options.write_text("ttl = 10s\n")
    node = leading(election, args=["--config", str(options)])
    pid = node.elector.process.pid
    options.write_text("ttl = 5s\n")  # below Consul's 10 s minimum

    node.elector.process.send_signal(signal.SIGUSR2)
    line = node.elector.wait_log("SIGUSR2: not restarting in place", 20)
    assert "ttl" in line
    assert stays_true(node.elector.running, 2.0)
    assert node.elector.process.pid == pid
    assert node.elector.count("restarting in place into the code on disk") == 0
    assert election.holder() == "node-a"
    assert node.elector.terminate() == 0


def test_sigusr2_with_a_new_trigger_key_releases_the_old_lock_at_once(
    election: Election, tmp_path: Path
) -> None:
    config = tmp_path / "vip-manager.yml"
    text = election.config.read_text()
    config.write_text(text)
    node = leading(election, config=config)
    moved = f"{election.key}-moved"
    config.write_text(text.replace(election.key, moved))
    started = time.monotonic()

    node.elector.process.send_signal(signal.SIGUSR2)
    # Released by the old process, not left to its session's TTL (10 s, up to 20).
    wait_until(lambda: election.api.kv_get(election.key) is None, 5, "the old key is free")
    wait_until(lambda: election.api.kv_value(moved) == "node-a", 10, "the new key is held")
    assert time.monotonic() - started < 10
    assert "releasing the lock before restarting in place" in node.elector.log()
    assert node.elector.terminate() == 0


def test_sigusr2_into_a_configuration_without_status_addr_closes_the_port(
    election: Election, tmp_path: Path
) -> None:
    port = free_port()
    options = tmp_path / "vip-elector.conf"
    options.write_text(f"status-addr = :{port}\n")
    environment = tmp_path / "hook.env"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\nenv >> {environment}\n")
    hook.chmod(0o755)
    node = leading(election, args=["--config", str(options), "--notify", str(hook)])
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
    options.write_text("")

    node.elector.process.send_signal(signal.SIGUSR2)
    node.elector.wait_log(r"\*\*\* LOCK KEPT \*\*\*", 20)

    def refused() -> bool:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        except requests.ConnectionError as exc:
            return "refused" in str(exc).lower()
        return False

    wait_until(refused, 10, "the old status port refuses connections")
    wait_until(lambda: environment.exists() and "LEADER" in environment.read_text(), 10, "hook")
    assert "VIP_ELECTOR_INHERITED" not in environment.read_text()


def test_a_restart_only_setting_changed_by_sighup_is_not_applied_halfway(
    election: Election, tmp_path: Path
) -> None:
    """22.18: priority edited and SIGHUP: the log says "restart to apply", and the
    running value stays in /status and the candidate entry, also after a second
    reload that does apply something (the log level)."""
    port = free_port()
    options = tmp_path / "vip-elector.conf"
    options.write_text("priority = 100\n")
    node = leading(election, args=["--config", str(options), "--status-addr", f":{port}"])

    def entry_priority() -> object:
        entry = election.api.kv_get(f"{election.key}/candidates/node-a")
        return None if entry is None else json.loads(entry.text or "{}").get("priority")

    wait_until(lambda: entry_priority() == 100, 10, "the candidacy is published")
    options.write_text("priority = 200\n")
    node.elector.process.send_signal(signal.SIGHUP)
    node.elector.wait_log("restart to apply", 10)
    options.write_text("priority = 200\nlog-level = DEBUG\n")
    node.elector.process.send_signal(signal.SIGHUP)
    node.elector.wait_log(" DEBUG ", 10)
    status = requests.get(f"http://127.0.0.1:{port}/status", timeout=2).json()
    assert status["priority"] == 100
    assert stays_true(lambda: entry_priority() == 100, 2.0)
