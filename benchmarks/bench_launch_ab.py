"""Launch A/B (issue 13: launch 4 nodes -> all first turns complete <= 150 ms), interleaved.

On this shared 2-core machine the load moves more between two runs than a start-up change moves the
figure, so two routers (one per build) run side by side and launches alternate between them
(ABBA order): both builds see the same load. Each launch: `swarm_launch` of 4 mock nodes with a
first prompt, timed from the send to the 4th `turn_complete`, then the swarm is terminated.

    flock /tmp/codeswarm-bench.lock python3 benchmarks/bench_launch_ab.py --before OLD.pyz --after dist/codeswarm.pyz
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import RouterProc, launch_first_turns_ms, mock_config, uptime  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, type=Path)
    ap.add_argument("--after", required=True, type=Path)
    ap.add_argument("--launches", type=int, default=15, help="per build")
    ap.add_argument("--nodes", type=int, default=4)
    args = ap.parse_args()
    routers: dict[str, RouterProc] = {}
    try:
        for name, pyz in (("before", args.before), ("after", args.after)):
            benchlib.PYZ = pyz.resolve()  # RouterProc.start runs benchlib.PYZ
            r = RouterProc({})
            routers[name] = RouterProc(mock_config(r.tmp), tmp=r.tmp)
            routers[name].start()
        print(f"launch A/B, {args.nodes} nodes, {args.launches} launches per build; before={args.before} "
              f"after={args.after}")
        print("uptime:", uptime())
        samples: dict[str, list[float]] = {"before": [], "after": []}
        for i in range(args.launches):
            for name in ("before", "after") if i % 2 == 0 else ("after", "before"):
                samples[name].append(launch_first_turns_ms(routers[name], args.nodes, timeout=60))
        print("uptime:", uptime())
        for name, xs in samples.items():
            xs.sort()
            print(f"{name:6}: median {statistics.median(xs):6.1f} ms  p25 {xs[len(xs) // 4]:6.1f}  "
                  f"min {xs[0]:6.1f}  max {xs[-1]:6.1f}   (target: median <= 150 ms)")
    finally:
        for r in routers.values():
            r.stop()


if __name__ == "__main__":
    main()
