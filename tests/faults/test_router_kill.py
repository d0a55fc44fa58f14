"""kill -9 of the router at seeded random points during launch, inject and terminate.

After each kill the next CLI command starts a new router, which recovers from its log and
snapshots. Expected: the log's seq strictly increases; every event the workers wrote is in the
log exactly once (compared outbox by outbox, as test_crash_recovery does); an operation the log
recorded is finished by the new router, one it did not record has no effect; the swarm runs on.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from random import Random
from typing import Any

from tests.conftest import Codeswarm, _alive
from tests.faults.conftest import assert_log_consistent, fast_config, log_events
from tests.integration.test_crash_recovery import actual_from_log, expected_from_outboxes


def start_cli(cs: Codeswarm, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(cs.pyz), *args], env=cs.env, cwd=cs.tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_after(cs: Codeswarm, delay: float) -> int:
    """SIGKILL the router `delay` seconds from now; returns its pid."""
    time.sleep(delay)
    pid = cs.router_pid()
    assert pid is not None
    cs.kill_router(signal.SIGKILL)
    return pid


def assert_outboxes_match_log(cs: Codeswarm, evs: list[dict[str, Any]], sid: str, job: str, nodes: int) -> None:
    expected = expected_from_outboxes(cs.tmp / "runs", job, nodes)
    actual = actual_from_log(evs, sid, nodes)
    for node in range(nodes):
        assert actual[node] == expected[node], f"node {node}: log differs from what the worker wrote"


def test_kill_9_during_launch(cs: Codeswarm, rng: Random) -> None:
    cs.write_config(fast_config(cs.tmp))
    cs.run("router", "start")
    delay = rng.uniform(0.0, 0.6)
    proc = start_cli(cs, "launch", "--nodes", "3", "--json")
    kill_after(cs, delay)
    proc.communicate(timeout=30)
    listing = cs.json("list")  # a new router, recovered
    evs = log_events(cs)
    assert_log_consistent(evs)
    launched = [e["data"]["swarm_id"] for e in evs if e["event"] == "swarm_launched"]
    assert sorted(launched) == sorted(listing), "every logged launch is a listed swarm and nothing else"
    assert len(launched) == len(set(launched)) <= 1
    if launched:  # the launch was recorded: the new router finishes it, the nodes start and answer
        sid = launched[0]
        # every node, not "3 running events": a node that went stale (2 s heartbeat timeout, a loaded
        # machine) logs `running` again, and a count that jumps past 3 in one read never equals 3
        cs.wait_running(sid, 3, timeout=30)
        done = cs.json("inject", sid, "--prompt", "after the crash", "--wait", "--timeout", "60")
        assert [n["outcome"] for n in done["nodes"]] == ["completed"] * 3
        job = next(e["data"]["job_id"] for e in evs if e["event"] == "swarm_launched")
        assert_outboxes_match_log(cs, cs.events("--swarm", sid), sid, job, 3)
    # A kill between spawning the workers and logging swarm_launched leaves workers the router does
    # not know (docs/RELIABILITY.md); the fixture stops them by pid.


def test_kill_9_during_inject(cs: Codeswarm, rng: Random) -> None:
    cs.write_config(fast_config(cs.tmp))
    launched = cs.json("launch", "--nodes", "3")
    sid, job = launched["swarm_id"], launched["job_id"]
    cs.json("inject", sid, "--prompt", "warm up", "--wait", "--timeout", "60")
    for round_ in range(2):
        proc = start_cli(cs, "inject", sid, "--prompt", f"[mock:firehose=400][mock:rate=2000] r{round_}",
                         "--json", "--timeout", "30")
        kill_after(cs, rng.uniform(0.0, 0.5))
        proc.communicate(timeout=30)
        cs.run("status", sid)  # restart
    # settle: every injection the log acknowledged ends exactly once
    def settled(es: list[dict[str, Any]]) -> bool:
        acked = {e["data"]["injection_id"] for e in es if e["event"] == "inject_ack"}
        ended = {e["data"]["injection_id"] for e in es if e["event"] in ("turn_complete", "inject_failed")}
        return bool(acked) and acked <= ended

    evs = cs.wait_settled(settled, "--swarm", sid, timeout=60)
    assert_log_consistent(evs)
    for iid in {e["data"]["injection_id"] for e in evs if e["event"] == "inject_ack"}:
        names = [e["event"] for e in evs if e["data"].get("injection_id") == iid]
        assert names.count("inject_ack") == 1
        assert names.count("turn_complete") + names.count("inject_failed") == 1, (iid, names)
        assert names.count("inject_delivered") <= 1
    # an injection the workers ran but the log never acknowledged would be a lost prompt record
    ran = {e["data"]["injection_id"] for e in evs if e["event"] == "inject_delivered"}
    acked = {e["data"]["injection_id"] for e in evs if e["event"] == "inject_ack"}
    assert ran <= acked
    assert_outboxes_match_log(cs, evs, sid, job, 3)
    again = cs.json("inject", sid, "--prompt", "still alive", "--wait", "--timeout", "60")
    assert [n["outcome"] for n in again["nodes"]] == ["completed"] * 3


def test_kill_9_during_terminate(cs: Codeswarm, rng: Random) -> None:
    cs.write_config(fast_config(cs.tmp))
    launched = cs.json("launch", "--nodes", "3")
    sid, job = launched["swarm_id"], launched["job_id"]
    cs.json("inject", sid, "--prompt", "warm up", "--wait", "--timeout", "60")
    pids = cs.worker_pids()
    assert len(pids) == 3
    proc = start_cli(cs, "terminate", sid, "--wait", "--json")
    kill_after(cs, rng.uniform(0.0, 0.8))
    proc.communicate(timeout=30)
    state = cs.json("status", sid)["state"]  # new router: resumes a logged terminate
    if state != "terminated":
        if state == "running":  # the kill came before swarm_terminating was logged: ask again
            cs.run("terminate", sid, "--wait", "--timeout", "60")
        else:
            cs.wait_for(lambda es: any(e["event"] == "swarm_terminated" for e in es), "--swarm", sid, timeout=60)
    assert cs.json("status", sid)["state"] == "terminated"
    evs = cs.events("--swarm", sid)
    assert_log_consistent(evs)
    assert sum(1 for e in evs if e["event"] == "swarm_terminated" and not e["data"].get("already_terminated")) == 1
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "every worker is gone after the terminate"
    assert_outboxes_match_log(cs, evs, sid, job, 3)
