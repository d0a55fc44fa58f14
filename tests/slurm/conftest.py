"""A real 4-node Slurm 22.05 cluster for the whole session (scripts/slurm-cluster.sh).

The cluster runs as root on loopback in a fixed directory, so that a crashed earlier run is found by
its PID files and stopped before a fresh start. If it cannot start, the fixture fails loudly: these
tests are never skipped.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
CLUSTER_DIR = Path(os.environ.get("CODESWARM_TEST_SLURM_DIR", "/tmp/codeswarm-slurm-ci"))


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

    def cancel_all(self) -> None:
        self.run("scancel", "--me")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    if os.geteuid() != 0:
        pytest.fail("tests/slurm need root: they start munged, slurmctld and 4 slurmd (scripts/slurm-cluster.sh)")
    env = {**os.environ, "SLURM_CI_NODES": "4", "SLURM_CI_REUSE": "0", "SLURM_CI_MIN_JOB_AGE": "5"}
    proc = subprocess.run(["bash", str(SCRIPT), "start", str(CLUSTER_DIR)], capture_output=True, text=True,
                          env=env, timeout=300)
    if proc.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop", str(CLUSTER_DIR)], capture_output=True, timeout=120)
        pytest.fail(f"the Slurm test cluster did not start (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    exported: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export "):].partition("=")
            exported[key] = value
    saved = {k: os.environ.get(k) for k in exported}
    os.environ.update(exported)  # routers and CLIs started by the tests inherit SLURM_CONF
    try:
        yield SlurmCluster(CLUSTER_DIR, exported, 4)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stop = subprocess.run(["bash", str(SCRIPT), "stop", str(CLUSTER_DIR)], capture_output=True, text=True,
                              timeout=120)
        assert stop.returncode == 0, f"slurm-cluster.sh stop failed:\n{stop.stderr}"


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """The session cluster, with the controller up and the queue emptied after each test."""
    try:
        yield slurm_cluster
    finally:
        slurm_cluster.control("ctld-resume")  # harmless when it was not paused
        slurm_cluster.control("ctld-start")  # a no-op when it runs
        slurm_cluster.cancel_all()
