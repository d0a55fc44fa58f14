"""Cost of one stoppable git call (codeswarm/projects/gitproc.py) against a plain subprocess.run.

    python3 benchmarks/bench_git_calls.py [--rounds 7] [--calls 40]

A project task's git calls run in their own process group, registered with the attempt's GitStop so
that a cancel can kill them. This prints the time per `git checkout -q -f -B` in one clone (the
call every task checkout makes) three ways, in alternating rounds: a plain `subprocess.run` (what
gitops.git did before session 3), `gitproc.run` outside an attempt (the router's integration) and
inside one (a GitStop current). Target: ratio to the plain call <= 1.05 (medians).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codeswarm.projects import gitops, gitproc  # noqa: E402

TARGET = 1.05


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-git-") as tmp:
        repo = Path(tmp) / "repo"
        subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
        for i in range(50):
            (repo / f"f{i}.txt").write_text(f"{i}\n" * 100)
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
        subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", "init"], cwd=repo, check=True)
        checkout = Path(tmp) / "checkout"
        gitops.prepare_checkout(str(repo), checkout)
        cmd = ["git", "-c", "protocol.ext.allow=never", "-c", "maintenance.auto=false", "-c", "gc.auto=0",
               "checkout", "-q", "-f", "-B", "codeswarm/p/t", "refs/remotes/origin/main"]
        stop = gitproc.GitStop()

        def plain() -> None:
            subprocess.run(cmd, cwd=checkout, env=gitops._env(), capture_output=True, text=True, timeout=600,
                           check=True, stdin=subprocess.DEVNULL)

        def outside() -> None:
            gitproc.run(cmd, checkout, gitops._env(), 600)

        def inside() -> None:
            token = gitproc._CURRENT.set(stop)
            try:
                gitproc.run(cmd, checkout, gitops._env(), 600)
            finally:
                gitproc._CURRENT.reset(token)

        ways: dict[str, Callable[[], None]] = {"plain subprocess.run": plain, "gitproc.run": outside,
                                               "gitproc.run under a GitStop": inside}
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, fn in ways.items():
                t0 = time.perf_counter()
                for _ in range(args.calls):
                    fn()
                times[name].append((time.perf_counter() - t0) / args.calls * 1000)
    base = statistics.median(times["plain subprocess.run"])
    print(f"git checkout -f -B, {args.rounds} rounds x {args.calls} calls (median ms per call):")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"  {name}: {med:.2f} ms (ratio {med / base:.3f}, target <= {TARGET}); rounds "
              + ", ".join(f"{v:.2f}" for v in values))


if __name__ == "__main__":
    main()
