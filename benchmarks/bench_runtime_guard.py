"""What the process guard costs a codex node (codeswarm/projects/childguard.py, session 4).

    python3 benchmarks/bench_runtime_guard.py [--rounds 9]

Each round runs two fresh Python processes, alternating which goes first: one drives the real codex
runtime as the worker does (CodexRuntime.start(): app-server spawn, initialize, thread/start; then
one turn against the fake Responses API on loopback), the other the same with the guard switched off
(childguard.env returns nothing: the build before). Printed: medians of the start and of the turn,
with and without, their ratios (target <= 1.05 for the turn: the guard must add nothing to a turn),
and the guard's own start (the first childguard.env() call, once per worker) and a later call (once
per claude turn). Needs the codex binary (scripts/install-codex.sh or CODEX_BIN).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.05

CHILD = r"""
import json, sys, time, timeit
from pathlib import Path
import trio
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests/codex"]
from fake_responses import FakeResponses
from codeswarm.projects import childguard
from codeswarm.worker.runtimes.base import WorkerContext
from codeswarm.worker.runtimes.codex import CodexRuntime
from tests.codex.conftest import find_codex_bin
tmp, mode = Path(sys.argv[2]), sys.argv[3]
out = {}
if mode == "off":
    childguard.env = lambda: {}

async def main():
    with FakeResponses() as fake:
        params = {**fake.provider_params(), "codex_path": find_codex_bin(), "codex_home": str(tmp / "home"),
                  "codex_ephemeral": True, "approval_policy": "never", "sandbox_mode": "danger-full-access"}
        ctx = WorkerContext(job_id="bench", node_id=0, swarm_root=tmp, workspace=tmp / "ws", params=params,
                            env={"FAKE_MODEL_API_KEY": "sk-fake", "NO_PROXY": "127.0.0.1"})
        rt = CodexRuntime(ctx, lambda msg: None)
        t = time.perf_counter()
        await rt.start()
        out["start_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        await rt.run_turn("inj", "Say hello")
        out["turn_ms"] = (time.perf_counter() - t) * 1000
        await rt.stop()
    if mode == "on":
        out["later_call_us"] = min(timeit.repeat(childguard.env, number=10000, repeat=5)) / 10000 * 1e6

trio.run(main)
print(json.dumps(out))
"""

FIRST_CALL = ("import sys, time; sys.path.insert(0, sys.argv[1]); from codeswarm.projects import childguard; "
              "t = time.perf_counter(); childguard.env(); print((time.perf_counter() - t) * 1000)")


def run(mode: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-guard-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "CODESWARM_OWNER"}
        out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), tmp, mode], capture_output=True, text=True,
                             timeout=120, env=env)
        if out.returncode != 0:
            sys.exit(f"bench child failed: {out.stderr[-2000:]}")
        return dict(json.loads(out.stdout.splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    rows: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    for i in range(args.rounds):
        for mode in (("on", "off") if i % 2 == 0 else ("off", "on")):
            rows[mode].append(run(mode))
    firsts = [float(subprocess.run([sys.executable, "-c", FIRST_CALL, str(ROOT)], capture_output=True, text=True,
                                   check=True, timeout=60).stdout) for _ in range(args.rounds)]

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[mode])

    print(f"rounds: {args.rounds} (alternating), load: {os.getloadavg()[0]:.2f}")
    for key in ("start_ms", "turn_ms"):
        on, off = med("on", key), med("off", key)
        target = f" (target <= {TARGET})" if key == "turn_ms" else ""
        print(f"codex runtime {key[:-3]:5}: guard off {off:8.1f} ms  on {on:8.1f} ms  ratio {on / off:.3f}{target}"
              f"   (min off {min(r[key] for r in rows['off']):.1f}, on {min(r[key] for r in rows['on']):.1f})")
    print(f"guard start (first childguard.env() in a fresh process): median {statistics.median(firsts):.1f} ms")
    print(f"a later childguard.env() (each claude turn): {med('on', 'later_call_us'):.2f} us")


if __name__ == "__main__":
    main()
