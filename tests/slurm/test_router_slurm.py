"""Issue 4 acceptance: the real .pyz (router, CLI, workers) on the real 4-node Slurm cluster.

Every swarm here is a real Slurm job whose nodes run `codeswarm worker` from the copied .pyz with the
mock runtime. Faults are real too: a stopped slurmctld, `scancel` behind the router's back, PATH shims
that make squeue/sbatch fail or hang, `kill -9` of the router.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import pytest

from slurm_helpers import Shims, SlurmCluster, codeswarm_class, launch, of, slurm_config, swarm_state, swarms, \
    wait_state, wait_until

pytestmark = pytest.mark.slurm


# --------------------------------------------------------------------- time limit, started first

@pytest.fixture(scope="module")
def time_limit_swarm(slurm_cluster: SlurmCluster, slurm_pyz: Path, tmp_path_factory: pytest.TempPathFactory,
                     request: pytest.FixtureRequest) -> Iterator[tuple[Any, str, float]]:
    """A 1-node swarm with a 1-minute limit, launched when this module starts. Slurm checks limits
    only about every 30 s (73-88 s in practice), so the test that checks it runs last and waits less."""
    tmp = tmp_path_factory.mktemp("time-limit")
    cs = codeswarm_class(request.config)(slurm_pyz, tmp, slurm_config(tmp))
    cs.env.update(slurm_cluster.env)
    cs.env["CODESWARM_SLURM_COMMAND_TIMEOUT"] = "4"
    job = None
    try:
        swarm = launch(cs, 1, "slurm-mock", "time_limit=00:01:00")
        job = swarm["job_id"]
        yield cs, swarm["swarm_id"], time.monotonic()
    finally:
        cs.cleanup()
        if job:
            slurm_cluster.run("scancel", job)


@pytest.fixture(scope="module", autouse=True)
def _start_time_limit_swarm_first(time_limit_swarm: tuple[Any, str, float]) -> None:
    return None


# --------------------------------------------------------------------- helpers

def job_of(cs: Any, swarm_id: str) -> str:
    return swarms(cs)[swarm_id]["job_id"]


def node_hosts(events: list[dict[str, Any]], swarm_id: str) -> dict[int, str]:
    return {e["data"]["node_id"]: e["data"].get("hostname") for e in of(events, "node_status", swarm_id)
            if e["data"].get("worker") == "running" and e["data"].get("hostname")}


def all_running(swarm_id: str, nodes: int):
    def check(evs: list[dict[str, Any]]) -> bool:
        return len(node_hosts(evs, swarm_id)) == nodes
    return check


def turns_done(swarm_id: str, count: int):
    return lambda evs: len(of(evs, "turn_complete", swarm_id)) >= count


# --------------------------------------------------------------------- lifecycle

def test_launch_inject_all_and_subset_terminate(slurm_cs: Any, slurm: SlurmCluster) -> None:
    cs = slurm_cs
    swarm = launch(cs, 3)
    sid, job = swarm["swarm_id"], swarm["job_id"]
    assert swarm["state"] == "pending" and job.isdigit()
    evs = cs.wait_for(all_running(sid, 3), timeout=60)
    assert swarm_state(cs, sid) == "running"
    states = [e["data"]["state"] for e in of(evs, "swarm_status", sid)]
    assert "running" in states and of(evs, "swarm_launched", sid)[0]["data"]["state"] == "pending"
    hosts = node_hosts(evs, sid)
    assert len(set(hosts.values())) == 3, hosts  # each worker on its own node (slurmd NodeName)

    cs.json("inject", sid, "--prompt", "hello all [mock:commands=1]")
    evs = cs.wait_for(turns_done(sid, 3), timeout=60)
    answers = {e["data"]["node_id"]: e["data"]["content"] for e in of(evs, "assistant", sid)}
    assert sorted(answers) == [0, 1, 2]
    for node, text in answers.items():
        assert f"on {hosts[node]}" in text  # the mock answers from its own node's hostname

    cs.json("inject", sid, "--nodes", "0,2", "--prompt", "only two")
    evs = cs.wait_for(turns_done(sid, 5), timeout=60)
    second = [e["data"]["node_id"] for e in of(evs, "assistant", sid) if "only two" in e["data"]["content"]]
    assert sorted(second) == [0, 2]

    cs.json("terminate", sid)
    wait_state(cs, sid, "terminated", timeout=60)
    assert slurm.run("squeue", "-h", "-j", job).stdout.strip() == ""  # left the queue
    term = of(cs.events(), "swarm_terminated", sid)
    assert len(term) == 1 and term[0]["data"]["reason"] == "requested"


def test_scancel_behind_the_back_reports_cancelled(slurm_cs: Any, slurm: SlurmCluster) -> None:
    """Slurm still knows the job (squeue --states=all, then sacct -c): positive evidence, no debounce."""
    cs = slurm_cs
    sid = launch(cs, 2)["swarm_id"]
    wait_state(cs, sid, "running")
    slurm.run("scancel", job_of(cs, sid))
    evs = cs.wait_for(lambda evs: of(evs, "swarm_terminated", sid), timeout=30)
    data = of(evs, "swarm_terminated", sid)[0]["data"]
    assert data["reason"] == "job_ended" and data["scheduler_state"] == "CANCELLED"


def test_scancel_without_records_waits_for_the_debounce(slurm_cs: Any, slurm: SlurmCluster, shims: Shims) -> None:
    """A job that vanishes without any record (squeue and sacct show nothing) is terminated only after
    job_gone_confirmations (3) successful misses across job_gone_window_seconds (4 s)."""
    cs = slurm_cs
    sid = launch(cs, 1)["swarm_id"]
    wait_state(cs, sid, "running")
    job = job_of(cs, sid)
    shims.hide(job)
    hidden_at = time.time()
    slurm.run("scancel", job)
    time.sleep(2.5)  # two or three polls (1 s interval) see nothing: not enough
    assert swarm_state(cs, sid) == "running"
    evs = cs.wait_for(lambda evs: of(evs, "swarm_terminated", sid), timeout=30)
    term = of(evs, "swarm_terminated", sid)[0]
    assert term["data"]["reason"] == "job_ended" and term["data"]["scheduler_state"] is None
    assert term["data"]["terminated_at"] - hidden_at >= 4  # the window
    misses = [t for t in shims.calls("squeue") if t >= hidden_at]
    assert len(misses) >= 3


def test_launch_hard_timeout_cancels_a_job_that_never_runs(slurm_cs: Any, slurm: SlurmCluster) -> None:
    cs = slurm_cs
    config = dict(cs.config)
    config["launch_providers"][0]["launch_hard_timeout_seconds"] = 3
    cs.write_config(config)
    swarm = launch(cs, 6)  # 6 nodes on a 4-node cluster: pending forever
    sid, job = swarm["swarm_id"], swarm["job_id"]
    evs = cs.wait_for(lambda evs: of(evs, "swarm_terminated", sid), timeout=40)
    assert of(evs, "swarm_terminated", sid)[0]["data"]["reason"] == "launch_timeout"
    assert slurm.run("squeue", "-h", "-j", job).stdout.strip() == ""


# --------------------------------------------------------------------- transient faults

def test_failing_squeue_warns_and_keeps_the_swarm(slurm_cs: Any, shims: Shims) -> None:
    cs = slurm_cs
    sid = launch(cs, 2)["swarm_id"]
    wait_state(cs, sid, "running")
    shims.fail("squeue", 4)
    evs = cs.wait_for(lambda evs: any(e["data"].get("recovered") for e in of(evs, "provider_warning")), timeout=30)
    warnings = of(evs, "provider_warning")
    assert any("Unable to contact slurm controller" in w["data"]["message"] for w in warnings)
    assert shims.failures_left("squeue") == 0
    assert swarm_state(cs, sid) == "running" and not of(evs, "swarm_terminated", sid)
    cs.json("inject", sid, "--prompt", "still there?")
    cs.wait_for(turns_done(sid, 2), timeout=30)


def test_hanging_squeue_times_out_and_keeps_the_swarm(slurm_cs: Any, shims: Shims) -> None:
    cs = slurm_cs
    sid = launch(cs, 1)["swarm_id"]
    wait_state(cs, sid, "running")
    shims.hang("squeue")
    cs.wait_for(lambda evs: [w for w in of(evs, "provider_warning") if "timed out" in w["data"]["message"]],
                      timeout=30)
    shims.hang("squeue", False)
    cs.wait_for(lambda evs: any(e["data"].get("recovered") for e in of(evs, "provider_warning")), timeout=30)
    assert swarm_state(cs, sid) == "running"


def test_failing_sbatch_rejects_the_launch_then_works(slurm_cs: Any, shims: Shims) -> None:
    cs = slurm_cs
    shims.fail("sbatch", 1)
    proc = cs.run("launch", "--nodes", "1", "--json", check=False)
    assert proc.returncode != 0 and "Unable to contact slurm controller" in (proc.stdout + proc.stderr)
    assert swarms(cs) == {}
    sid = launch(cs, 1)["swarm_id"]
    wait_state(cs, sid, "running")


# --------------------------------------------------------------------- router restarts

def test_router_started_while_slurmctld_is_down_keeps_swarms(slurm_cs: Any, slurm: SlurmCluster) -> None:
    cs = slurm_cs
    keep = launch(cs, 1)["swarm_id"]
    gone = launch(cs, 1)["swarm_id"]
    wait_state(cs, keep, "running")
    wait_state(cs, gone, "running")
    cs.run("router", "stop")
    gone_job = job_of_snapshot(cs, gone)
    slurm.run("scancel", gone_job)  # ends while nobody watches
    # Let the cancel finish first: a controller stopped mid-kill leaves the job COMPLETING for ~80 s
    # and drains the node ("Kill task failed"), which is Slurm's business, not this test's.
    wait_until(lambda: not slurm.run("squeue", "-h", "-j", gone_job).stdout.strip(), 30, "the cancel to finish")
    slurm.control("ctld-stop")
    started = time.time()
    listing = swarms(cs)  # autostarts the router: its first poll fails
    assert listing[keep]["state"] == "running" and listing[gone]["state"] == "running"
    evs = cs.wait_for(lambda evs: [e for e in of(evs, "provider_warning") if e["timestamp"] >= iso(started)],
                      timeout=30)
    assert swarm_state(cs, keep) == "running" and swarm_state(cs, gone) == "running"
    slurm.control("ctld-start")
    evs = cs.wait_for(lambda evs: of(evs, "swarm_terminated", gone), timeout=40)
    data = of(evs, "swarm_terminated", gone)[0]["data"]
    assert data["reason"] == "job_ended" and data["scheduler_state"] == "CANCELLED"
    time.sleep(2)
    assert swarm_state(cs, keep) == "running"


def test_job_aged_out_of_squeue_is_decided_by_sacct(slurm_cs: Any, slurm: SlurmCluster) -> None:
    """The workers finish, the job COMPLETES and leaves slurmctld (MinJobAge=5) while the router is
    down: after the restart, sacct -c and the workers' exit records end the swarm with that reason."""
    cs = slurm_cs
    sid = launch(cs, 2)["swarm_id"]
    cs.wait_for(all_running(sid, 2), timeout=60)
    job = job_of(cs, sid)
    root = Path(swarms_snapshot(cs, sid)["job"]["swarm_root"])
    cs.run("router", "stop")
    for node in (0, 1):  # what the router's terminate would write: the workers exit, the job completes
        with open(root / "mailbox" / "inbox" / f"{job}_{node:02d}.jsonl", "a") as f:
            f.write('{"type": "shutdown", "ts": "2026-01-01T00:00:00+00:00", "reason": "test"}\n')
    wait_until(lambda: slurm.run("squeue", "-h", "-j", job).returncode == 1, 60, "the job to age out of squeue",
               step=0.5)
    assert "COMPLETED" in slurm.run("sacct", "-c", "-n", "-P", "-j", job, "--format=State").stdout
    evs = cs.wait_for(lambda evs: of(evs, "swarm_terminated", sid), timeout=30)
    data = of(evs, "swarm_terminated", sid)[0]["data"]
    assert data["reason"] == "job_ended" and data["scheduler_state"] == "COMPLETED"
    exited = [e["data"] for e in of(evs, "node_status", sid) if e["data"].get("worker") == "exited"]
    assert sorted(d["node_id"] for d in exited) == [0, 1]


def test_kill_9_router_mid_turn_loses_and_duplicates_nothing(slurm_cs: Any) -> None:
    cs = slurm_cs
    sid = launch(cs, 2)["swarm_id"]
    cs.wait_for(all_running(sid, 2), timeout=60)
    cs.json("inject", sid, "--prompt", "stream [mock:firehose=450] [mock:rate=150]")
    cs.wait_for(lambda evs: len(of(evs, "assistant_delta", sid)) >= 20, timeout=30)
    cs.kill_router()
    time.sleep(1.0)  # the workers keep writing while no router runs
    assert swarm_state(cs, sid) == "running"  # restarted by the CLI
    evs = cs.wait_for(turns_done(sid, 2), timeout=60)
    seqs = [e["seq"] for e in evs]
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)
    deltas: dict[int, list[str]] = defaultdict(list)
    for e in of(evs, "assistant_delta", sid):
        deltas[e["data"]["node_id"]].append(e["data"]["content"])
    finals = {e["data"]["node_id"]: e["data"]["content"] for e in of(evs, "assistant", sid)}
    assert sorted(finals) == [0, 1]
    for node, text in finals.items():
        assert "".join(deltas[node]) == text  # every chunk exactly once, in order
        assert text.endswith(" 449")
    assert swarm_state(cs, sid) == "running"


# --------------------------------------------------------------------- several swarms

def test_two_swarms_on_two_profiles(slurm_cs: Any, slurm: SlurmCluster) -> None:
    cs = slurm_cs
    a = launch(cs, 1, "slurm-mock")
    b = launch(cs, 2, "slurm-second")
    wait_state(cs, a["swarm_id"], "running")
    wait_state(cs, b["swarm_id"], "running")
    parts = dict(line.split() for line in slurm.run("squeue", "-h", "-o", "%i %P").stdout.splitlines())
    assert parts[a["job_id"]] == "debug" and parts[b["job_id"]] == "second"
    cs.json("inject", b["swarm_id"], "--prompt", "hi")
    cs.wait_for(turns_done(b["swarm_id"], 2), timeout=30)


def test_twenty_swarms_one_squeue_per_interval(slurm_cs: Any, shims: Shims) -> None:
    cs = slurm_cs
    ids = [launch(cs, 1)["swarm_id"] for _ in range(20)]
    wait_until(lambda: sum(1 for s in swarms(cs).values() if s["state"] in ("pending", "running")) == 20, 30,
               "20 live swarms")
    jobs = {swarms(cs)[i]["job_id"] for i in ids}
    t0 = time.time()
    time.sleep(6)
    calls = shims.call_args("squeue", t0, t0 + 6)
    # status_poll_interval_seconds = 1: at most one call per interval, each covering all 20 jobs
    # (a loaded machine may stretch an interval, never multiply the calls).
    assert 1 <= len(calls) <= 7, calls
    for args in calls:
        assert set(args[args.index("-j") + 1].split(",")) == jobs
    assert all(swarm_state(cs, i) in ("pending", "running") for i in ids)


# --------------------------------------------------------------------- time limit (last: its swarm started first)

def test_time_limit_terminates_with_that_reason(time_limit_swarm: tuple[Any, str, float]) -> None:
    cs, sid, started = time_limit_swarm
    remaining = max(10.0, 150 - (time.monotonic() - started))
    evs = cs.wait_for(lambda evs: of(evs, "swarm_terminated", sid), timeout=remaining)
    data = of(evs, "swarm_terminated", sid)[0]["data"]
    assert data["reason"] == "job_ended" and data["scheduler_state"] == "TIMEOUT"


# --------------------------------------------------------------------- small utilities

def iso(epoch: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def swarms_snapshot(cs: Any, sid: str) -> dict[str, Any]:
    import json

    return json.loads((cs.home / "swarms" / f"{sid}.json").read_text())


def job_of_snapshot(cs: Any, sid: str) -> str:
    return swarms_snapshot(cs, sid)["job"]["job_id"]
