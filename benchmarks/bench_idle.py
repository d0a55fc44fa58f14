"""Cheap at rest (issue 13): idle CPU and RSS of a swarm, first prompt after a long idle.

    ./build.sh && python3 benchmarks/bench_idle.py [--nodes 8] [--seconds 20] [--idle-seconds 60]

1. An 8-node local mock swarm (worker heartbeats at the default 10 s) is launched and left alone;
   after it settled, the CPU time (utime+stime, /proc/<pid>/stat) of the router and every worker
   is summed over --seconds: percent of one core for all processes. Target <= 1 % total.
2. RSS (VmRSS) of each idle worker (and PSS, which splits shared pages). Target <= 15 MB.
3. First prompt after --idle-seconds of silence: a 1-node swarm per mailbox mode (the default,
   inotify on a local filesystem, and `mailbox_watch: poll`, the shared-filesystem path) waits,
   then one `inject`: ms to inject_delivered (the worker's turn_accepted read back by the router)
   and to turn_complete. Target <= 250 ms delivered.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import PYZ, Figures, RouterProc, cpu_seconds, mock_config, pss_mb, rss_mb  # noqa: E402


def idle_cpu(r: RouterProc, fig: Figures, nodes: int, seconds: float, settle: float) -> None:
    sid, job = r.launch(nodes, provider="mock-paced")
    pids = r.worker_pids(job)
    assert len(pids) == nodes, pids
    time.sleep(settle)
    procs = [r.pid, *pids]
    before = {p: cpu_seconds(p) for p in procs}
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    used = {p: cpu_seconds(p) - before[p] for p in procs}
    total = sum(used.values()) / elapsed * 100
    workers = [used[p] / elapsed * 100 for p in pids]
    fig.add(f"idle {nodes}-node swarm: CPU of all processes over {seconds:g} s", total, "% of a core", "<=", 1.0)
    fig.add("  of which the router", used[r.pid] / elapsed * 100, "%")
    fig.add("  per worker, mean", statistics.mean(workers), "%")
    rss = [rss_mb(p) for p in pids]
    fig.add("idle RSS per worker, mean (VmRSS)", statistics.mean(rss), "MB", "<=", 15)
    fig.add("idle RSS per worker, max", max(rss), "MB")
    pss = [v for v in (pss_mb(p) for p in pids) if v is not None]
    if pss:
        fig.add("idle PSS per worker, mean (shared pages split)", statistics.mean(pss), "MB")
    fig.add("router RSS, idle with this swarm", rss_mb(r.pid), "MB")
    r.terminate(sid)


def first_prompt(r: RouterProc, fig: Figures, provider: str, label: str, idle: float) -> None:
    sid, _job = r.launch(1, provider=provider)
    time.sleep(idle)
    c = r.client()
    t0 = time.perf_counter()
    rid = c.send("inject", {"swarm_id": sid, "nodes": "all", "content": "wake up"})
    delivered = done = None
    for ev in c.events(60):
        if ev.get("data", {}).get("request_id") != rid and ev.get("event") not in ("turn_complete",):
            continue
        if ev["event"] == "inject_delivered" and delivered is None:
            delivered = (time.perf_counter() - t0) * 1000
        if ev["event"] == "turn_complete" and ev["data"].get("swarm_id") == sid:
            done = (time.perf_counter() - t0) * 1000
            break
    c.close()
    fig.add(f"first prompt after {idle:g} s idle, {label}: inject -> inject_delivered", delivered, "ms", "<=", 250)
    fig.add("  same, inject -> turn_complete", done, "ms")
    r.terminate(sid)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--settle", type=float, default=5)
    ap.add_argument("--idle-seconds", type=float, default=60)
    ap.add_argument("--skip-first-prompt", action="store_true")
    args = ap.parse_args()
    if not PYZ.exists():
        raise SystemExit("build first: ./build.sh")
    fig = Figures("bench_idle (issue 13)")
    r = RouterProc({})
    r = RouterProc(mock_config(r.tmp), tmp=r.tmp)
    r.start()
    try:
        idle_cpu(r, fig, args.nodes, args.seconds, args.settle)
        if not args.skip_first_prompt:
            first_prompt(r, fig, "mock", "default mailbox watch (local fs)", args.idle_seconds)
            first_prompt(r, fig, "mock-poll", "mailbox_watch=poll (shared-fs path)", args.idle_seconds)
    finally:
        r.stop()
        r.kill_workers()
    fig.print()
    shutil.rmtree(r.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
