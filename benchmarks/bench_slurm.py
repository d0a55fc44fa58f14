"""Slurm benchmarks on the real 4-node test cluster, through the real .pyz (run as root).

    python3 benchmarks/bench_slurm.py [--samples 5] [--intervals 10] [--json FILE]

Starts its own cluster with scripts/slurm-cluster.sh (own directory and ports, so it can run next to
the tests), stops it by PID at the end, and measures:
1. submit -> RUNNING: SlurmProvider.submit() of a 1-node job until squeue says RUNNING (polled every
   20 ms), and the same through the CLI: `launch --nodes 1` until the swarm is `running`.
2. launch of 4 nodes -> all workers ready: `launch --nodes 4` until the 4th worker_started
   (node_status running) is in the event log.
3. squeue calls per status poll interval (1 s here) with 1 and with 20 live swarms, counted by a
   PATH shim in front of the real squeue. Target (ARCHITECTURE.md section 8): 1 whatever the count.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PYZ = ROOT / "dist" / "codeswarm.pyz"
SCRIPT = ROOT / "scripts" / "slurm-cluster.sh"
CLUSTER_DIR = Path("/tmp/codeswarm-slurm-bench")
PORT = "16917"  # the tests' cluster uses 16817: both can run at once


def sh(argv: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


class Router:
    """The .pyz CLI on a private state dir; the router autostarts on first use."""

    def __init__(self, tmp: Path, env: dict[str, str], pyz: Path) -> None:
        self.tmp, self.pyz = tmp, pyz
        config = {
            "cluster": {"slurm": {"workspace_root": str(tmp / "ws"), "cluster_subdir": "cs",
                                  "time_limit": "00:30:00",
                                  "profiles": {"default": {"partition": "debug",
                                                           "env": {"CODESWARM_PYTHON": sys.executable}}}}},
            "router": {"status_poll_interval_seconds": 1, "poll_interval_seconds": 0.2},
            "launch_providers": [{"id": "slurm-mock", "backend": "slurm",
                                  "defaults": {"worker_mode": "mock", "mock_delay_ms": 5}}],
        }
        (tmp / "config.json").write_text(json.dumps(config))
        self.shims = tmp / "shims"
        self.shims.mkdir()
        real = shutil.which("squeue", path=env["PATH"])
        shim = self.shims / "squeue"
        shim.write_text(f'#!/bin/sh\necho "$(date +%s.%N) $*" >> "{self.shims}/calls"\nexec {real} "$@"\n')
        shim.chmod(0o755)
        self.env = {**env, "CODESWARM_HOME": str(tmp / "home"), "CODESWARM_CONFIG": str(tmp / "config.json"),
                    "PATH": f"{self.shims}{os.pathsep}{env['PATH']}"}

    def run(self, *args: str) -> Any:
        out = sh([sys.executable, str(self.pyz), *args, "--json"], self.env).stdout
        return json.loads(out) if out.strip().startswith(("{", "[")) else out

    def events(self) -> list[dict[str, Any]]:
        out = sh([sys.executable, str(self.pyz), "events", "--since", "0", "--json"], self.env).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def squeue_calls(self, start: float, end: float) -> list[list[str]]:
        """The argv of every squeue call in [start, end)."""
        try:
            lines = (self.shims / "calls").read_text().splitlines()
        except FileNotFoundError:
            return []
        calls = [line.split() for line in lines if line.strip()]
        return [c[1:] for c in calls if start <= float(c[0]) < end]

    def stop(self) -> None:
        sh([sys.executable, str(self.pyz), "router", "stop"], self.env, check=False)


def epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts).timestamp()


def wait(predicate: Any, timeout: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise SystemExit(f"timed out waiting for {what}")


def bench_provider_submit(env: dict[str, str], tmp: Path, samples: int) -> list[float]:
    """SlurmProvider.submit -> squeue RUNNING, in ms (the scheduler's part of the latency)."""
    import trio

    from codeswarm.config import parse_config
    from codeswarm.router.providers.base import JobState, LaunchSpec
    from codeswarm.router.providers.slurm import SlurmProvider

    os.environ.update({k: env[k] for k in ("SLURM_CONF",)})
    config = parse_config({"cluster": {"slurm": {"workspace_root": str(tmp / "pws"), "cluster_subdir": "cs",
                                                 "partition": "debug", "time_limit": "00:05:00"}}},
                          None, base_dir=tmp)
    provider = SlurmProvider(config, worker_command=["sleep", "60"])
    out: list[float] = []

    async def one(i: int) -> None:
        t0 = time.perf_counter()
        job = await provider.submit(LaunchSpec(f"bench{i:04d}" + "0" * 24, 1, {}, {}, None))
        while (await provider.poll([job]))[job.job_id].state is not JobState.RUNNING:
            await trio.sleep(0.02)
        out.append((time.perf_counter() - t0) * 1000)
        await provider.cancel(job)

    async def main() -> None:
        for i in range(samples):
            await one(i)

    trio.run(main)
    return out


def bench_cli_launch(r: Router, nodes: int, samples: int) -> tuple[list[float], list[float]]:
    """launch --nodes N: ms until the swarm is running, and until all N workers reported ready."""
    running, ready = [], []
    for _ in range(samples):
        t0 = time.time()
        swarm = r.run("launch", "--nodes", str(nodes))
        sid = swarm["swarm_id"]

        def done() -> list[dict[str, Any]] | None:
            evs = [e for e in r.events() if e["data"].get("swarm_id") == sid]
            started = [e for e in evs if e["event"] == "node_status" and e["data"].get("worker") == "running"]
            return evs if len({e["data"]["node_id"] for e in started}) == nodes else None

        evs = wait(done, 120, f"{nodes} workers of {sid}", step=0.1)
        run_at = min(epoch(e["timestamp"]) for e in evs
                     if e["event"] == "swarm_status" and e["data"].get("state") == "running")
        ready_at = max(epoch(e["timestamp"]) for e in evs
                       if e["event"] == "node_status" and e["data"].get("worker") == "running")
        running.append((run_at - t0) * 1000)
        ready.append((ready_at - t0) * 1000)
        r.run("terminate", sid)
    return running, ready


def bench_squeue_per_interval(r: Router, swarms: int, intervals: int) -> tuple[float, float]:
    """(squeue calls per second with a 1 s poll interval, job ids per call)."""
    live = [r.run("launch", "--nodes", "1")["swarm_id"] for _ in range(swarms)]
    wait(lambda: sum(1 for s in r.run("list").values() if s["state"] in ("pending", "running")) >= swarms,
         60, f"{swarms} live swarms", step=0.2)
    t0 = time.time()
    time.sleep(intervals)  # status_poll_interval_seconds = 1
    calls = r.squeue_calls(t0, t0 + intervals)
    for sid in live:
        r.run("terminate", sid)
    ids = [len(c[c.index("-j") + 1].split(",")) for c in calls if "-j" in c]
    return len(calls) / intervals, statistics.mean(ids) if ids else 0.0


def summary(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.0f} ms (min {min(values):.0f}, max {max(values):.0f}, n={len(values)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--intervals", type=int, default=10)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark starts a real Slurm cluster")
    if not PYZ.exists():
        subprocess.run([str(ROOT / "build.sh")], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    base = {**os.environ, "SLURM_CI_PORT": PORT, "SLURM_CI_REUSE": "0", "SLURM_CI_ETC_CONF": "0"}
    start = sh(["bash", str(SCRIPT), "start", str(CLUSTER_DIR)], base)
    env = dict(base)
    for line in start.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cs-bench-slurm-") as tmpdir:
        tmp = Path(tmpdir)
        pyz = tmp / "codeswarm.pyz"
        shutil.copyfile(PYZ, pyz)  # a rebuild during the run must not pull it away
        (tmp / "r").mkdir()
        r = Router(tmp / "r", env, pyz)
        try:
            sub = bench_provider_submit(env, tmp, args.samples)
            results["provider_submit_to_running_ms"] = sub
            print(f"submit -> RUNNING (SlurmProvider, squeue every 20 ms): {summary(sub)}")
            run1, _ = bench_cli_launch(r, 1, args.samples)
            results["cli_launch_1_node_to_running_ms"] = run1
            print(f"launch --nodes 1 -> swarm running (CLI, router):       {summary(run1)}")
            run4, ready4 = bench_cli_launch(r, 4, args.samples)
            results["cli_launch_4_nodes_to_running_ms"] = run4
            results["cli_launch_4_nodes_all_ready_ms"] = ready4
            print(f"launch --nodes 4 -> swarm running:                     {summary(run4)}")
            print(f"launch --nodes 4 -> all 4 workers ready:               {summary(ready4)}")
            for n in (1, 20):
                per, ids = bench_squeue_per_interval(r, n, args.intervals)
                results[f"squeue_calls_per_second_{n}_swarms"] = per
                results[f"jobs_per_squeue_call_{n}_swarms"] = ids
                print(f"{n:2d} swarm(s): squeue calls per 1 s poll interval {per:.2f}, jobs per call {ids:.1f}")
        finally:
            r.stop()
            sh(["bash", str(SCRIPT), "stop", str(CLUSTER_DIR)], base, check=False)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
