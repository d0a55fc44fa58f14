"""Issue 12 #11 acceptance on the real 4-node Slurm cluster: a preset's env secret reaches every
worker and is written nowhere (state dir, workspace root, slurmctld's spool and every Slurm log);
an unset ${VAR} fails the launch naming it.

The canary lives only in the router's environment (CS_CANARY_SOURCE); the preset says
`"env": {"API_KEY": "${CS_CANARY_SOURCE}"}`. The mock runtime answers `[mock:env-sha256=API_KEY]`
with the SHA-256 of the variable, which proves the value arrived without ever printing it.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any, Iterator

import pytest

from slurm_helpers import SlurmCluster, codeswarm_class, launch, of, slurm_config

pytestmark = pytest.mark.slurm


def _files_containing(roots: list[Path], needle: bytes) -> list[str]:
    hits = []
    for root in roots:
        for p in [root, *root.rglob("*")] if root.exists() else []:
            try:
                if p.is_file() and not p.is_symlink() and needle in p.read_bytes():
                    hits.append(str(p))
            except OSError:
                continue
    return hits


@pytest.fixture
def secret_cs(slurm: SlurmCluster, slurm_pyz: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    config = slurm_config(tmp_path)
    base = config["launch_providers"][0]
    config["launch_providers"] += [
        {**base, "id": "slurm-secret", "env": {"API_KEY": "${CS_CANARY_SOURCE}", "CODESWARM_HEARTBEAT_SECONDS": "5"}},
        {**base, "id": "slurm-unset", "env": {"API_KEY": "${CS_CANARY_UNSET}"}},
    ]
    handle = codeswarm_class(request.config)(slurm_pyz, tmp_path, config)
    handle.env.update(slurm.env)
    handle.env["CODESWARM_SLURM_COMMAND_TIMEOUT"] = "4"
    handle.canary = "canary-" + secrets.token_hex(12)
    handle.env["CS_CANARY_SOURCE"] = handle.canary
    handle.env.pop("CS_CANARY_UNSET", None)
    try:
        yield handle
    finally:
        handle.cleanup()


def test_canary_secret_reaches_the_workers_and_is_written_nowhere(secret_cs: Any, slurm: SlurmCluster) -> None:
    cs = secret_cs
    canary = cs.canary.encode()
    swarm = launch(cs, 2, "slurm-secret")
    sid = swarm["swarm_id"]
    out = cs.json("inject", sid, "--prompt", "[mock:env-sha256=API_KEY]", "--wait", "--timeout", "120")
    assert all(n["outcome"] == "completed" for n in out["nodes"]), out
    digest = hashlib.sha256(canary).hexdigest()
    answers = [e["data"]["content"] for e in of(cs.events(), "assistant", sid) if e["data"].get("final_answer")]
    assert len(answers) == 2 and all(f"env API_KEY sha256={digest}" in a for a in answers), answers
    ws = cs.tmp / "ws"
    assert not list((ws / "cs" / "secrets").glob("*/*")), "each worker deletes its env file once read"
    roots = [cs.home, ws, slurm.dir]
    assert _files_containing(roots, canary) == [], "while the job runs"
    cs.run("terminate", sid, "--wait", timeout=180)
    assert _files_containing(roots + [cs.tmp], canary) == [], "after the job ended"
    script = next(ws.glob("cs/runs/*/job.sbatch")).read_text()
    assert "CODESWARM_SECRETS_DIR" in script and "API_KEY" not in script


def test_an_unset_variable_fails_the_launch_naming_it(secret_cs: Any, slurm: SlurmCluster) -> None:
    before = set(slurm.job_ids())
    proc = secret_cs.run("launch", "--nodes", "1", "--provider", "slurm-unset", check=False, timeout=60)
    assert proc.returncode == 3, proc
    assert "${CS_CANARY_UNSET} is not set in the router's environment" in proc.stderr
    assert "API_KEY" in proc.stderr and "Traceback" not in proc.stderr
    assert set(slurm.job_ids()) == before, "nothing was submitted"
    assert secret_cs.json("list") == {}
