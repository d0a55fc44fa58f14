"""Every event a real router (.pyz) logs, sends and answers matches its declared shape
(codeswarm/core/event_types), for a run that touches most features: mock swarms launched with a system
prompt, injected, routed, queued and a queue item cancelled, an approval answered, a budget set and
exceeded, a project created and run to completion, terminate with workspace archives, and the directed
answers of a raw protocol session (ping, lists, status, subscribe, idempotency, rejections).

Three views are checked: the log files (home/events/*.jsonl, with the private `_record`), the wire
(`events --since 0 --json`) and the directed answers read off the socket.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from codeswarm.core.event_types import EVENTS, check_event
from codeswarm.protocol import PROTOCOL
from tests.conftest import Codeswarm, log_problems
from tests.projects.helpers import five_tasks, user_repo, write_tasks


class Session:
    """A raw protocol connection on the router's Unix socket."""

    def __init__(self, path: Path) -> None:
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(20)
        self.s.connect(str(path))
        self.buf = b""
        self.n = 0

    def send(self, command: str, **payload: Any) -> str:
        self.n += 1
        rid = f"shape-{self.n}"
        self.s.sendall(json.dumps({"protocol": PROTOCOL, "type": "command", "command": command,
                                   "request_id": rid, "payload": payload}).encode() + b"\n")
        return rid

    def raw(self, line: bytes) -> None:
        self.s.sendall(line + b"\n")

    def directed(self, name: str, *, broadcast: bool = False) -> dict[str, Any]:
        """The next directed event called `name` (broadcast events in between are skipped), or with
        `broadcast`, the next event called `name` of either class."""
        while True:
            while b"\n" not in self.buf:
                chunk = self.s.recv(1 << 20)
                assert chunk, "the router closed the connection"
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            env = json.loads(line)
            if (broadcast or env.get("directed")) and env["event"] == name:
                return env


def test_every_logged_sent_and_answered_event_matches_its_declared_shape(cs: Codeswarm) -> None:
    cs.config["router"]["approval_timeout_seconds"] = 600
    cs.write_config(cs.config)
    # swarms: one routes its answers, one is the target of routing and of the queue
    hub = cs.json("launch", "--nodes", "2", "--alias", "hub", "--prompt", "you are the hub")["swarm_id"]
    router_sw = cs.json("launch", "--nodes", "1", "--auto-route", "--budget-usd", "0.05")["swarm_id"]
    cs.run("inject", hub, "--prompt", "first [mock:commands=2]", "--wait", "--timeout", "90")
    # a final answer with a routing directive (the mock echoes the prompt into its answer)
    cs.run("inject", router_sw, "--prompt", "route it\n/swarm[hub]/idle from the router\n/swarm[nobody]/idle x",
           "--wait", "--timeout", "90")
    cs.run("budget", router_sw, "--usd", "0.04")
    assert cs.run("inject", "no-such-swarm", "--prompt", "x", check=False).returncode == 3  # a logged rejection
    # tokens past the budget: budget_warning / budget_exceeded, the turn interrupted
    cs.run("inject", router_sw, "--prompt", "[mock:tokens=20000] spend", "--wait", "--timeout", "90", check=False)
    # queue: hold the hub's nodes, queue two items, cancel one. The hold is a turn waiting for its
    # approval, not a few seconds' turn: three commands on a loaded machine can outlast those, and
    # an item dispatched before its cancel cannot be cancelled.
    cs.json("inject", hub, "--prompt", "[mock:approval] hold")
    cs.wait_for(lambda evs: len({e["data"]["node_id"] for e in evs if e["event"] == "exec_approval_required"}) == 2,
                "--swarm", hub)
    cs.run("enqueue", hub, "--prompt", "queued one")
    cancel = cs.run("enqueue", hub, "--prompt", "queued two").stdout.strip()
    cs.run("queue", "--cancel", cancel)
    for held in cs.json("approvals", "--swarm", hub):
        cs.run("approve", hub, "accept", "--node", str(held["node_id"]), "--call", held["call_id"])
    # an approval, answered
    asker = cs.json("launch", "--provider", "local-mock-approvals", "--nodes", "1",
                    "--prompt", "[mock:approval] clean")["swarm_id"]
    cs.wait_for(lambda evs: any(e["event"] == "exec_approval_required" for e in evs), "--swarm", asker)
    pending = cs.json("approvals")
    cs.run("approve", asker, "accept", "--node", "0", "--call", pending[0]["call_id"])
    # a project of five tasks on the hub, to completion
    repo = user_repo(cs.tmp)
    tasks = write_tasks(cs.tmp, {"tasks": five_tasks(slow=0.2)})
    proc = cs.run("project", "create", "--repo", str(repo), "--tasks", str(tasks), "--swarm", hub,
                  "--name", "shapes", "--wait", "--timeout", "180", "--json", check=False, timeout=200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pid = json.loads(proc.stdout)["project_id"]

    # the directed answers, off a raw connection
    sess = Session(cs.home / "router.sock")
    answers = []
    for command, payload, answer in [
        ("ping", {}, "pong"), ("providers_list", {}, "providers_list"), ("swarm_list", {}, "swarm_list"),
        ("swarm_status", {"swarm_id": hub}, "swarm_status"), ("queue_list", {}, "queue_list"),
        ("approvals_list", {}, "approvals_list"), ("project_list", {}, "project_list"),
        ("project_status", {"project_id": pid}, "project_status"),
        ("project_resume_preview", {"project_id": pid}, "project_resume_preview"),
        ("subscribe", {"since": 0}, "subscribed"), ("unsubscribe", {}, "unsubscribed"),
    ]:
        sess.send(command, **payload)
        answers.append(sess.directed(answer))
    for _ in range(2):  # the repeat is deduplicated
        sess.send("inject", swarm_id=hub, nodes=[0], content="once", idempotency_key="shape-key")
    answers.append(sess.directed("command_deduplicated"))
    sess.raw(b"{not json")
    answers.append(sess.directed("command_rejected"))
    # a rejected project_plan (no planner) answers project_plan_failed with the keys of every other one
    sess.send("project_plan", repo=str(repo), spec="plan it", swarms=[hub])
    plan_failed = sess.directed("project_plan_failed", broadcast=True)["data"]
    assert plan_failed["planner"] is None and plan_failed["injection_id"] is None and plan_failed["reason"]

    cs.run("terminate", router_sw, "--force", "--wait", "--timeout", "60")
    cs.run("terminate", asker, "--force", "--wait", "--timeout", "60")
    cs.run("terminate", hub, "--archive", "--wait", "--timeout", "120")

    problems, logged = log_problems(cs.home)
    assert problems == []
    wire = cs.events()
    assert [p for e in wire for p in check_event(e["event"], e["data"])] == []
    assert all("_record" not in e["data"] for e in wire)
    assert [p for a in answers for p in check_event(a["event"], a["data"])] == []
    # the run reached what it meant to: these events were produced and checked
    expected = {"swarm_launched", "inject_ack", "inject_delivered", "turn_started", "assistant", "turn_complete",
                "command_started", "command_completed", "usage", "thread_status", "node_status",
                "auto_route_submitted", "auto_route_ignored", "inter_swarm_enqueued", "inter_swarm_dispatched",
                "inter_swarm_dropped", "queue_updated", "budget_updated", "budget_warning", "budget_exceeded",
                "exec_approval_required", "exec_approval_resolved", "project_created", "project_task_assigned",
                "project_task_completed", "project_completed", "projects_updated", "swarm_status",
                "workspace_archive_ready", "swarm_terminated", "command_rejected", "project_plan_failed"}
    assert expected - logged == set()
    assert logged - set(EVENTS) == set()
