"""Fixtures for tests/slurm: a real 4-node Slurm 22.05 cluster for the whole session
(scripts/slurm-cluster.sh) and the real .pyz configured for it.

The cluster runs as root on loopback in a fixed directory, so that a crashed earlier run is found by
its PID files and stopped before a fresh start. If it cannot start, the fixture fails loudly: these
tests are never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from slurm_helpers import SCRIPT, Shims, SlurmCluster, codeswarm_class, slurm_config

CLUSTER_DIR = Path(os.environ.get("CODESWARM_TEST_SLURM_DIR", "/tmp/codeswarm-slurm-ci"))


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
    """The session cluster; the controller is up again and this test's jobs are cancelled afterwards."""
    before = set(slurm_cluster.job_ids())
    try:
        yield slurm_cluster
    finally:
        slurm_cluster.control("ctld-resume")  # harmless when it was not paused
        slurm_cluster.control("ctld-start")  # a no-op when it runs
        new = sorted(set(slurm_cluster.job_ids()) - before)
        if new:  # only this test's jobs: a long-running job of another fixture must survive
            slurm_cluster.run("scancel", *new)
        slurm_cluster.resume_drained_nodes()


@pytest.fixture
def shims(tmp_path: Path) -> Shims:
    return Shims(tmp_path / "shims")


@pytest.fixture(scope="session")
def slurm_pyz(pyz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of dist/codeswarm.pyz: a rebuild during the session must not pull it away."""
    copy = tmp_path_factory.mktemp("pyz") / "codeswarm.pyz"
    shutil.copyfile(pyz, copy)
    return copy


@pytest.fixture
def slurm_cs(slurm: SlurmCluster, slurm_pyz: Path, tmp_path: Path, shims: Shims,
             request: pytest.FixtureRequest) -> Iterator[Any]:
    """The real .pyz with a Slurm config; its router (autostarted) sees the shims first on PATH."""
    handle = codeswarm_class(request.config)(slurm_pyz, tmp_path, slurm_config(tmp_path))
    handle.env["PATH"] = f"{shims.path}{os.pathsep}{handle.env.get('PATH', '')}"
    handle.env["CODESWARM_SLURM_COMMAND_TIMEOUT"] = "4"
    handle.env.update(slurm.env)
    try:
        yield handle
    finally:
        handle.cleanup()
