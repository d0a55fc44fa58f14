"""Helpers for tests/slurm: the cluster handle, the Slurm config, PATH shims and small event utilities.

A plain module (not conftest.py) so that test modules can import it by name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "slurm-cluster.sh"


@dataclass
class SlurmCluster:
    dir: Path
    env: dict[str, str]  # SLURM_CONF and friends, also exported into os.environ for the session
    nodes: int

    def control(self, action: str, timeout: float = 90) -> None:
        """ctld-stop | ctld-start | ctld-pause | ctld-resume (see scripts/slurm-cluster.sh)."""
        proc = subprocess.run(["bash", str(SCRIPT), action, str(self.dir)], capture_output=True, text=True,
                              timeout=timeout)
        assert proc.returncode == 0, f"slurm-cluster.sh {action} failed:\n{proc.stderr}"

    def run(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **self.env})

    def resume_drained_nodes(self) -> None:
        """A node drained by an earlier test (e.g. "Kill task failed") would starve the next ones."""
        out = self.run("sinfo", "-h", "-N", "-o", "%N %t")
        drained = sorted({ln.split()[0] for ln in out.stdout.splitlines()
                          if len(ln.split()) == 2 and ln.split()[1].startswith(("drain", "drng", "drai"))})
        if drained:
            self.run("scontrol", "update", f"NodeName={','.join(drained)}", "State=RESUME")

    def job_ids(self) -> list[str]:
        out = self.run("squeue", "-h", "-o", "%i")
        return out.stdout.split() if out.returncode == 0 else []


# ------------------------------------------------------------------ the router on Slurm (through the .pyz)

def slurm_config(tmp: Path, **router: Any) -> dict[str, Any]:
    """Two profiles (partitions debug and second) on the test cluster, mock runtime, fast polling."""
    # The interpreter that runs these tests can run the .pyz (same Python as the build).
    env = {"CODESWARM_PYTHON": sys.executable}
    return {
        "cluster": {"slurm": {
            "workspace_root": str(tmp / "ws"), "cluster_subdir": "cs", "time_limit": "00:10:00",
            "profiles": {"default": {"partition": "debug", "env": env},
                         "second": {"partition": "second", "env": env}},
        }},
        "router": {"status_poll_interval_seconds": 1, "poll_interval_seconds": 0.2, "inject_timeout_seconds": 30,
                   "job_gone_confirmations": 3, "job_gone_window_seconds": 4, **router},
        "launch_providers": [
            {"id": "slurm-mock", "label": "Slurm (mock)", "backend": "slurm", "cluster_profile": "default",
             "defaults": {"worker_mode": "mock", "approval_policy": "never", "mock_delay_ms": 5},
             "launch_soft_timeout_seconds": 10, "launch_hard_timeout_seconds": 60},
            {"id": "slurm-second", "label": "Slurm second partition (mock)", "backend": "slurm",
             "cluster_profile": "second",
             "defaults": {"worker_mode": "mock", "approval_policy": "never", "mock_delay_ms": 5}},
        ],
    }


def codeswarm_class(config: pytest.Config) -> Any:
    """The lead's Codeswarm handle class from tests/conftest.py (conftest modules are not importable by name)."""
    want = (REPO / "tests" / "conftest.py").resolve()
    for plugin in config.pluginmanager.get_plugins():
        f = getattr(plugin, "__file__", None)
        if f and Path(f).resolve() == want:
            return plugin.Codeswarm
    raise RuntimeError("tests/conftest.py (Codeswarm handle) is not loaded")


class Shims:
    """A PATH directory of wrappers around squeue/sbatch/sacct that log calls and inject faults.

    Control files in the directory: `<cmd>.fail` (fail N more times, "Unable to contact slurm
    controller"), `<cmd>.hang` (exists: hang), `hide` (job ids that squeue/sacct must not show).
    Every call is logged to `<cmd>.calls` as "<epoch> <args>".
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        for cmd in ("squeue", "sbatch", "sacct", "scancel"):
            real = shutil.which(cmd)
            assert real, f"{cmd} not on PATH"
            script = path / cmd
            script.write_text(SHIM.replace("@CMD@", cmd).replace("@REAL@", real))
            script.chmod(0o755)

    def fail(self, cmd: str, times: int) -> None:
        (self.path / f"{cmd}.fail").write_text(str(times))

    def failures_left(self, cmd: str) -> int:
        try:
            return int((self.path / f"{cmd}.fail").read_text() or 0)
        except FileNotFoundError:
            return 0

    def hang(self, cmd: str, on: bool = True) -> None:
        flag = self.path / f"{cmd}.hang"
        if on:
            flag.write_text("1")
        else:
            flag.unlink(missing_ok=True)

    def hide(self, *job_ids: str) -> None:
        (self.path / "hide").write_text(" ".join(job_ids))

    def call_args(self, cmd: str, since: float = 0.0, until: float = float("inf")) -> list[list[str]]:
        """The arguments of each logged call in [since, until)."""
        try:
            lines = (self.path / f"{cmd}.calls").read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            stamp, _, args = line.partition(" ")
            if line.strip() and since <= float(stamp) < until:
                out.append(args.split())
        return out

    def calls(self, cmd: str) -> list[float]:
        try:
            lines = (self.path / f"{cmd}.calls").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [float(line.split(" ", 1)[0]) for line in lines if line.strip()]


SHIM = r"""#!/bin/bash
d=$(dirname "$0")
echo "$(date +%s.%N) $*" >> "$d/@CMD@.calls"
if [ -s "$d/@CMD@.fail" ]; then
    n=$(cat "$d/@CMD@.fail")
    if [ "$n" -gt 0 ]; then
        echo $((n - 1)) > "$d/@CMD@.fail"
        echo "@CMD@: error: Unable to contact slurm controller (connect failure)" >&2
        exit 1
    fi
fi
[ -e "$d/@CMD@.hang" ] && exec sleep 60
if [ -s "$d/hide" ]; then
    set -o pipefail
    "@REAL@" "$@" | awk -F'|' -v ids="$(cat "$d/hide")" 'BEGIN { n = split(ids, a, " "); for (i = 1; i <= n; i++) h[a[i]] = 1 } !($1 in h)'
    exit $?
fi
exec "@REAL@" "$@"
"""




# ------------------------------------------------------------------ CLI helpers

def launch(cs: Any, nodes: int, provider: str = "slurm-mock", *params: str, timeout: float = 60) -> dict[str, Any]:
    args = ["launch", "--nodes", str(nodes), "--provider", provider]
    for p in params:
        args += ["--param", p]
    return cs.json(*args, timeout=timeout)


def swarms(cs: Any) -> dict[str, Any]:
    return cs.json("list")


def swarm_state(cs: Any, swarm_id: str) -> str | None:
    entry = swarms(cs).get(swarm_id)
    return entry["state"] if entry else None


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def wait_state(cs: Any, swarm_id: str, state: str, timeout: float = 60) -> None:
    wait_until(lambda: swarm_state(cs, swarm_id) == state, timeout, f"swarm {swarm_id} {state}")


def of(events: list[dict[str, Any]], name: str, swarm_id: str | None = None) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name and (swarm_id is None or e["data"].get("swarm_id") == swarm_id)]
