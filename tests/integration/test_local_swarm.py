"""End to end through the real .pyz: a local mock swarm from launch to removal."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import defaultdict
from typing import Any

import pytest

from tests.conftest import Codeswarm, local_config


def per_injection(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for e in events:
        iid = e["data"].get("injection_id")
        if iid:
            out[iid].append(e["event"])
    return out


def check_lifecycle(names: list[str]) -> None:
    """ack, delivered, turn_started ... turn_complete, each exactly once and in order."""
    for once in ("inject_ack", "inject_delivered", "turn_started", "turn_complete"):
        assert names.count(once) == 1, (once, names)
    assert names[0] == "inject_ack" and names[1] == "inject_delivered" and names[2] == "turn_started", names
    end = names.index("turn_complete")
    assert "inject_failed" not in names
    content = [n for n in names[3:end]]
    assert "assistant" in content and "command_completed" in content and "reasoning" in content
    assert all(n in ("usage", "task_complete", "thread_status") for n in names[end + 1 :]), names


def test_launch_inject_terminate_remove(cs: Codeswarm) -> None:
    cs.write_config(local_config(cs.tmp, terminated_ttl_seconds=3))
    launched = cs.json("launch", "--nodes", "4", "--prompt", "You are a focused autonomous agent.")
    sid = launched["swarm_id"]
    assert launched["node_count"] == 4 and launched["job_id"].startswith("local-")
    first = cs.json("inject", sid, "--prompt", "Optimize GEMM tiling.", "--wait", "--timeout", "60")
    assert [n["node_id"] for n in first["nodes"]] == [0, 1, 2, 3]
    assert all(n["outcome"] == "completed" for n in first["nodes"])
    second = cs.json("inject", sid, "--prompt", "Only some.", "--nodes", "1,3", "--wait", "--timeout", "60")
    assert [n["node_id"] for n in second["nodes"]] == [1, 3]

    events = cs.events()
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    flows = per_injection(events)
    for rec in first["nodes"] + second["nodes"]:
        check_lifecycle(flows[rec["injection_id"]])
    # the turns of the second inject ran only on nodes 1 and 3
    second_ids = {n["injection_id"] for n in second["nodes"]}
    nodes_of_second = {e["data"]["node_id"] for e in events if e["data"].get("injection_id") in second_ids}
    assert nodes_of_second == {1, 3}
    # the launch's system prompt was the first turn of every node
    launch_acks = [e for e in events if e["event"] == "inject_ack" and e["data"]["prompt"].startswith("You are")]
    assert sorted(e["data"]["node_id"] for e in launch_acks) == [0, 1, 2, 3]

    status = cs.json("status", sid)
    assert status["state"] == "running" and len(status["nodes"]) == 4
    assert all(n["worker"] == "running" for n in status["nodes"])

    out = cs.json("terminate", sid, "--wait")
    assert out["state"] == "terminated" and out["reason"] == "requested"
    evs = cs.wait_for(lambda evs: any(e["event"] == "swarm_removed" for e in evs), "--swarm", sid, timeout=30)
    names = [e["event"] for e in evs]
    assert names.index("swarm_terminated") < names.index("swarm_removed")
    assert [e["data"]["state"] for e in evs if e["event"] == "swarm_status"] == ["running", "terminating"]
    assert cs.json("list") == {}
    # every worker of the swarm is gone
    assert all(not _alive(pid) for pid in cs.worker_pids())


def _alive(pid: int) -> bool:
    from tests.conftest import _alive as alive

    return alive(pid)


def test_terminate_is_idempotent_and_rejections_exit_3(cs: Codeswarm) -> None:
    sid = cs.run("launch", "--nodes", "1").stdout.strip()
    cs.run("terminate", sid, "--wait")
    again = cs.json("terminate", sid, "--wait")
    assert again["already_terminated"] is True
    late = cs.run("inject", sid, "--prompt", "too late", check=False)
    assert late.returncode == 3 and "swarm is terminating or terminated" in late.stderr
    unknown = cs.run("status", "no-such-swarm", check=False)
    assert unknown.returncode == 3 and "unknown swarm_id" in unknown.stderr
    bad_nodes = cs.run("inject", sid, "--prompt", "x", "--nodes", "7", check=False)
    assert bad_nodes.returncode == 3


def test_cron_like_inject_wait_and_jq(cs: Codeswarm) -> None:
    sid = cs.run("launch", "--nodes", "2").stdout.strip()
    env = {"PATH": "/usr/bin:/bin", "CODESWARM_HOME": str(cs.home), "CODESWARM_CONFIG": str(cs.config_path)}
    ok = subprocess.run(["python3", str(cs.pyz), "inject", sid, "--prompt", "nightly run", "--wait",
                         "--timeout", "60"], env=env, capture_output=True, text=True, timeout=90)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("completed") == 2
    failing = subprocess.run(["python3", str(cs.pyz), "inject", sid, "--prompt", "[mock:error] break", "--wait",
                              "--timeout", "60"], env=env, capture_output=True, text=True, timeout=90)
    assert failing.returncode == 5, failing.stdout + failing.stderr
    slow = subprocess.run(["python3", str(cs.pyz), "inject", sid, "--prompt", "[mock:slow=30] slow", "--wait",
                           "--timeout", "1"], env=env, capture_output=True, text=True, timeout=90)
    assert slow.returncode == 4, slow.stdout + slow.stderr
    if shutil.which("jq") is None:
        pytest.fail("jq is required for this test (apt-get install jq)")
    pipe = subprocess.run(f"python3 {cs.pyz} events --json | jq -r .event", shell=True, env=env,
                          capture_output=True, text=True, timeout=60)
    assert pipe.returncode == 0
    names = pipe.stdout.split()
    assert "swarm_launched" in names and "turn_complete" in names and "agent_error" in names


def test_usage_and_approval_via_cli(cs: Codeswarm) -> None:
    sid = cs.json("launch", "--nodes", "2", "--provider", "local-mock-approvals")["swarm_id"]
    proc = subprocess.Popen(["python3", str(cs.pyz), "inject", sid, "--prompt", "[mock:approval] clean up",
                             "--nodes", "1", "--wait", "--timeout", "60", "--json"], env=cs.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    evs = cs.wait_for(lambda evs: any(e["event"] == "exec_approval_required" for e in evs), "--swarm", sid)
    req = next(e["data"] for e in evs if e["event"] == "exec_approval_required")
    assert req["node_id"] == 1 and req["approval_id"] and req["available_decisions"]
    bad = cs.run("approve", sid, "accept", "--node", "1", "--call", "nope", check=False)
    assert bad.returncode == 3 and "unknown approval" in bad.stderr
    ok = cs.json("approve", sid, "accept", "--node", "1", "--call", req["call_id"])
    assert ok["decision"] == "accept" and ok["approved"] is True
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["nodes"][0]["outcome"] == "completed"
    evs = cs.events("--swarm", sid)
    names = [e["event"] for e in evs if e["data"].get("node_id") == 1]
    assert names.index("exec_approval_required") < names.index("exec_approval_resolved") < \
        names.index("command_started")
    usage = [e["data"] for e in evs if e["event"] == "usage"]
    assert usage and all(u["total_tokens"] == u["input_tokens"] + u["output_tokens"] for u in usage)
