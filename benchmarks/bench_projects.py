"""Project scheduling benchmark through the real .pyz: a 200-task graph on 8 mock nodes.

    ./build.sh && python3 benchmarks/bench_projects.py [--tasks 200] [--nodes 8] [--swarms 2]

The graph is layered: layer k holds `width` tasks, each depending on one or two tasks of layer k-1
(seeded), so the scheduler always has dependents waiting on fresh completions. Every task writes a
file ([mock:write]) and has a trivial verify, so each one is a real git branch (clone once per node,
fetch, checkout from the merged dependencies, commit, verify, push).

Scheduling overhead of a task with dependencies = its `turn_started` event time minus the time of the
last `project_task_completed` of its dependencies (both router event timestamps); also printed from
the later of that and the completion of the task its node ran before (when every node was busy, the
task waited for a node, which is not the scheduler's overhead). Split into
completion -> `project_task_assigned` (the decision) and assigned -> turn_started (inbox delivery +
the worker's git checkout). Targets (issue 14): p50 < 100 ms, p99 < 500 ms on this 2-core machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYZ = ROOT / "dist" / "codeswarm.pyz"


def run(env: dict[str, str], *args: str, timeout: float = 1800) -> str:
    proc = subprocess.run([sys.executable, str(PYZ), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"codeswarm {' '.join(args)} failed ({proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    return proc.stdout


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def ts(env: dict) -> float:
    return dt.datetime.fromisoformat(env["timestamp"]).timestamp()


def graph(n: int, width: int, rng: random.Random) -> list[dict]:
    tasks = []
    for i in range(n):
        layer = i // width
        deps = []
        if layer:
            prev = list(range((layer - 1) * width, min(layer * width, n)))
            deps = [f"t{j}" for j in sorted(rng.sample(prev, min(len(prev), rng.choice((1, 2)))))]
        tasks.append({"id": f"t{i}", "prompt": f"[mock:write=f{i}.txt] task {i}", "depends_on": deps,
                      "verify": f"test -s f{i}.txt"})
    return tasks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--swarms", type=int, default=2)
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()
    per_swarm = args.nodes // args.swarms
    with tempfile.TemporaryDirectory(prefix="bench-projects-") as tmp_s:
        tmp = Path(tmp_s)
        cfg = {"cluster": {"local": {"workspace_root": str(tmp / "runs")}},
               "router": {"poll_interval_seconds": 0.5},
               "launch_providers": [{"id": "local-mock", "label": "mock", "backend": "local",
                                     "defaults": {"worker_mode": "mock", "approval_policy": "never"}}]}
        (tmp / "config.json").write_text(json.dumps(cfg))
        env = {**os.environ, "CODESWARM_HOME": str(tmp / "home"), "CODESWARM_CONFIG": str(tmp / "config.json")}
        repo = tmp / "repo"
        repo.mkdir()
        for cmd in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "init"]):
            subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@x", *cmd], cwd=repo, check=True)
        (tmp / "tasks.json").write_text(json.dumps(graph(args.tasks, args.nodes, random.Random(args.seed))))
        swarms = [json.loads(run(env, "launch", "--nodes", str(per_swarm), "--json"))["swarm_id"]
                  for _ in range(args.swarms)]
        try:
            cmd = ["project", "create", "--repo", str(repo), "--tasks", str(tmp / "tasks.json"), "--wait", "--json"]
            for s in swarms:
                cmd += ["--swarm", s]
            t0 = time.monotonic()
            status = json.loads(run(env, *cmd))
            wall = time.monotonic() - t0
            events = [json.loads(x) for x in run(env, "events", "--since", "0", "--json").splitlines() if x.strip()]
        finally:
            for s in swarms:
                subprocess.run([sys.executable, str(PYZ), "terminate", s, "--wait"], env=env, capture_output=True, check=False)
            subprocess.run([sys.executable, str(PYZ), "router", "stop"], env=env, capture_output=True, check=False)
        completed, assigned, started, accepted, checkout, inbox_read, queued = {}, {}, {}, {}, [], [], []
        ndeps = {t["id"]: len(t.get("depends_on") or []) for t in status["tasks"]}
        by_deps: dict[int, list[float]] = {}
        by_iid = {}
        node_free: dict[str, float] = {}  # task -> when its node finished the task before it (0: fresh node)
        last_on_node: dict[tuple[str, int], str] = {}
        for e in events:
            d = e["data"]
            if e["event"] == "project_task_completed":
                completed[d["task_id"]] = ts(e)
                timings = d.get("timings_ms") or {}
                checkout.append(timings.get("checkout", 0.0))
                by_deps.setdefault(ndeps.get(d["task_id"], 0), []).append(timings.get("checkout", 0.0))
                if "inbox" in timings:
                    inbox_read.append(timings["inbox"])
                    queued.append(timings["queued"])
            elif e["event"] == "project_task_assigned":
                assigned[d["task_id"]] = ts(e)
                by_iid[d["injection_id"]] = d["task_id"]
                prev = last_on_node.get((d["swarm_id"], d["node_id"]))
                node_free[d["task_id"]] = completed.get(prev, 0.0) if prev else 0.0
                last_on_node[(d["swarm_id"], d["node_id"])] = d["task_id"]
            elif e["event"] == "turn_started" and d.get("injection_id") in by_iid:
                started[by_iid[d["injection_id"]]] = ts(e)
            elif e["event"] == "inject_delivered" and d.get("injection_id") in by_iid:
                accepted[by_iid[d["injection_id"]]] = ts(e)
        total, decide, deliver, overhead, inbox, waited = [], [], [], [], [], 0
        for t in status["tasks"]:
            deps = t.get("depends_on") or []
            if not deps or t["id"] not in started:
                continue
            ready_at = max(completed[d] for d in deps)
            total.append((started[t["id"]] - ready_at) * 1000)
            can_start = max(ready_at, node_free.get(t["id"], 0.0))  # dependencies done and a node free
            waited += can_start > ready_at
            overhead.append((started[t["id"]] - can_start) * 1000)
            decide.append((assigned[t["id"]] - ready_at) * 1000)
            deliver.append((started[t["id"]] - assigned[t["id"]]) * 1000)
            if t["id"] in accepted:
                inbox.append((accepted[t["id"]] - assigned[t["id"]]) * 1000)
        load = os.getloadavg()
        print(f"tasks {args.tasks} on {args.nodes} mock nodes ({args.swarms} swarms): state {status['state']}, "
              f"wall {wall:.1f} s ({args.tasks / wall:.1f} tasks/s); load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print(f"scheduling overhead (dependency completed -> turn_started), {len(total)} tasks: "
              f"p50 {pct(total, 50):.0f} ms (target 100, ratio {pct(total, 50) / 100:.2f}), "
              f"p99 {pct(total, 99):.0f} ms (target 500, ratio {pct(total, 99) / 500:.2f})")
        print(f"  the same from the moment a node was also free (the scheduler's own overhead; {waited} tasks "
              f"first waited for a busy node): p50 {pct(overhead, 50):.0f} ms (ratio {pct(overhead, 50) / 100:.2f}), "
              f"p99 {pct(overhead, 99):.0f} ms (ratio {pct(overhead, 99) / 500:.2f})")
        print(f"  completion -> assigned: p50 {pct(decide, 50):.1f} ms, p99 {pct(decide, 99):.1f} ms; "
              f"assigned -> turn_started (delivery + git checkout): p50 {pct(deliver, 50):.0f} ms, "
              f"p99 {pct(deliver, 99):.0f} ms; of which the worker's git checkout: p50 {pct(checkout, 50):.0f} ms, "
              f"p99 {pct(checkout, 99):.0f} ms; assigned -> inject_delivered (log commit, inbox write, the worker "
              f"reads it, its outbox line read back): p50 {pct(inbox, 50):.0f} ms, p99 {pct(inbox, 99):.0f} ms")
        print("  git checkout by the number of dependencies: " + "; ".join(
            f"{n}: p50 {pct(v, 50):.0f} ms, p99 {pct(v, 99):.0f} ms ({len(v)} tasks)" for n, v in sorted(by_deps.items())))
        if inbox_read:
            print(f"  worker side: decision -> inbox line read p50 {pct(inbox_read, 50):.0f} ms, p99 "
                  f"{pct(inbox_read, 99):.0f} ms; read -> attempt starts (queued behind the node's previous task) "
                  f"p50 {pct(queued, 50):.0f} ms, p99 {pct(queued, 99):.0f} ms")
        if status["state"] != "completed":
            raise SystemExit(f"the project did not complete: {status['state']}")


if __name__ == "__main__":
    main()
