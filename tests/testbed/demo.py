"""`make demo`: a real failover on a real Consul agent, with its timeline.

Starts a local Consul agent, two HTTP health endpoints registered as Consul
checks, and two vip-elector nodes; makes the leader's health endpoint fail,
then stops the new leader cleanly, and prints who held the trigger-key when,
in milliseconds. Everything is cleaned up at the end.
"""

from __future__ import annotations

import base64
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from tests.testbed.agents import dev_agent
from tests.testbed.configs import write_vip_manager_config
from tests.testbed.elector import Elector
from tests.testbed.health import HealthCheck, HealthEndpoint
from tests.testbed.processes import kill_all
from tests.testbed.waiting import wait_until

KEY = "service/demo/vip"
LOCK_DELAY = "1s"


class Timeline:
    """Prints events with the milliseconds since the demo started."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.lock = threading.Lock()
        self.marks: dict[str, float] = {}

    def now_ms(self) -> float:
        return (time.monotonic() - self.start) * 1000

    def event(self, text: str, mark: str | None = None) -> float:
        at = self.now_ms()
        with self.lock:
            if mark:
                self.marks[mark] = at
            print(f"{at:9.0f} ms  {text}", flush=True)
        return at


def watch_key(base_url: str, timeline: Timeline, stop: threading.Event) -> None:
    """Blocking queries on the trigger-key; print every change of holder."""
    session = requests.Session()
    index = 0
    last: tuple[str | None, str | None] | None = None
    while not stop.is_set():
        try:
            params: dict[str, str | int] = {"index": index, "wait": "2s"} if index else {}
            response = session.get(f"{base_url}/v1/kv/{KEY}", params=params, timeout=5)
        except requests.RequestException:
            continue
        index = int(response.headers.get("X-Consul-Index", "0"))
        if response.status_code == 404:
            current: tuple[str | None, str | None] = (None, None)
        else:
            item = response.json()[0]
            value = base64.b64decode(item["Value"]).decode() if item.get("Value") else ""
            current = (value, item.get("Session"))
        if current != last:
            if current[0] is None:
                timeline.event(f"key {KEY} deleted: nobody holds the VIP", mark="deleted")
            else:
                timeline.event(
                    f"key {KEY} = {current[0]!r} (session {str(current[1])[:8]}...): "
                    f"vip-manager on {current[0]} adds the VIP",
                    mark=f"held:{current[0]}",
                )
            last = current


def show_log_line(elector: Elector, needle: str) -> None:
    for line in elector.log().splitlines():
        if needle in line:
            print(f"     {elector.name} log: {line[24:]}", flush=True)
            return


def main() -> int:
    timeline = Timeline()
    workdir = Path(tempfile.mkdtemp(prefix="vip-elector-demo-"))
    stop_watch = threading.Event()
    print("vip-elector demo: two nodes, one VIP, a real Consul agent\n", flush=True)
    try:
        agent = dev_agent(workdir, "demo").start().wait_ready(60)
        timeline.event(f"consul agent -dev ready at {agent.http_url}")
        config = write_vip_manager_config(
            workdir / "vip-manager.yml", trigger_key=KEY, endpoint=agent.http_url
        )
        threading.Thread(
            target=watch_key, args=(agent.http_url, timeline, stop_watch), daemon=True
        ).start()

        nodes: dict[str, tuple[Elector, HealthCheck]] = {}
        for name in ("node-a", "node-b"):
            endpoint = HealthEndpoint(name, workdir).start("200")
            check = HealthCheck(agent, endpoint, f"vip-http-{name}").register()
            check.wait_status("passing")
            elector = Elector(
                name, workdir, config, check_id=check.check_id, lock_delay=LOCK_DELAY
            ).start()
            nodes[name] = (elector, check)
            timeline.event(f"{name}: vip-elector started, HTTP check {check.check_id} passing")
            if name == "node-a":
                wait_until(lambda: "held:node-a" in timeline.marks, 30, "node-a leads")
        wait_until(lambda: "Session created" in nodes["node-b"][0].log(), 30, "node-b competes")

        print(flush=True)
        fault = timeline.event("FAULT: node-a's health endpoint now answers HTTP 500", "fault")
        nodes["node-a"][1].set("500")
        wait_until(lambda: nodes["node-a"][1].status() == "critical", 30, "critical")
        timeline.event("Consul marks node-a's check critical and invalidates its session")
        wait_until(lambda: "held:node-b" in timeline.marks, 30, "node-b takes over")
        took = timeline.marks["held:node-b"] - fault
        print(
            f"\n  => failover in {took:.0f} ms from the fault to node-b holding the key "
            f"(check interval 1s + lock-delay {LOCK_DELAY})",
            flush=True,
        )
        show_log_line(nodes["node-a"][0], "LOCK LOST")
        show_log_line(nodes["node-b"][0], "LOCK ACQUIRED")
        print(flush=True)

        nodes["node-a"][1].set("200")
        wait_until(
            lambda: nodes["node-a"][0].count("Session created") >= 2, 30, "node-a competes again"
        )
        timeline.event("node-a healthy again: competing as a follower")
        for mark in ("deleted", "held:node-a"):
            timeline.marks.pop(mark, None)
        stopped = timeline.event("SIGTERM to node-b (the leader): clean stop", "stop")
        code = nodes["node-b"][0].process.stop(signal.SIGTERM, 10)
        timeline.event(f"node-b exited with code {code}")
        wait_until(lambda: "held:node-a" in timeline.marks, 30, "node-a takes over")
        took = timeline.marks["held:node-a"] - stopped
        print(
            f"\n  => hand-over in {took:.0f} ms: node-b deleted the key before destroying "
            "its session, so no lock-delay applies; node-a waited vip-manager's interval "
            "(100 ms here) + 200 ms, so node-b's vip-manager dropped the VIP before "
            "node-a's adds it\n",
            flush=True,
        )
        nodes["node-a"][0].process.stop(signal.SIGTERM, 10)
        timeline.event("node-a stopped; cleaning up")
        return 0
    finally:
        stop_watch.set()
        kill_all()
        print(f"(logs were in {workdir})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
