"""The Slurm batch script is a pure function of the profile, the params and the worker command."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

import pytest

from codeswarm.config import SlurmProfile, parse_config
from codeswarm.router.providers.slurm_script import (
    batch_script,
    job_comment,
    job_name,
    resolve_request,
    restart_env,
    sbatch_options,
    task_command,
)

SWARM = "0123456789abcdef0123456789abcdef"
ARGV = ["python3", "/shared/swarm/codeswarm/bin/codeswarm-abc.pyz", "worker"]


def profile(**kw) -> SlurmProfile:
    base = dict(
        name="p", workspace_root=Path("/shared/swarm"), cluster_subdir="codeswarm",
        partition="mi2508x", time_limit="02:00:00",
    )
    base.update(kw)
    return SlurmProfile(**base)


def request(prof: SlurmProfile | None = None, params=None, env=None, n=3):
    return resolve_request(prof or profile(), SWARM, n, params or {}, env or {"CODESWARM_PARAMS": "{}"}, ARGV)


def directives(script: str) -> list[str]:
    return [ln[len("#SBATCH "):] for ln in script.splitlines() if ln.startswith("#SBATCH ")]


def test_nodes_tasks_name_comment_output():
    opts = sbatch_options(request(n=4))
    assert "--nodes=4" in opts and "--ntasks=4" in opts and "--ntasks-per-node=1" in opts
    assert f"--job-name=codeswarm-{SWARM[:8]}" in opts and job_name(SWARM) == "codeswarm-01234567"
    assert f"--comment={job_comment(SWARM)}" in opts and SWARM in job_comment(SWARM)
    assert " " not in job_comment(SWARM)  # sbatch splits #SBATCH lines on whitespace
    assert "--output=/shared/swarm/codeswarm/logs/slurm-%j.out" in opts
    assert "--chdir=/shared/swarm/codeswarm" in opts


def test_partition_time_from_profile_and_null_account_qos_left_out():
    opts = sbatch_options(request())
    assert "--partition=mi2508x" in opts and "--time=02:00:00" in opts
    assert not any(o.startswith(("--account", "--qos")) for o in opts)


def test_account_qos_and_extra_from_profile():
    prof = profile(account="acct1", qos="high", sbatch_extra=("--gres=gpu:8", "--exclusive"))
    opts = sbatch_options(request(prof))
    assert "--account=acct1" in opts and "--qos=high" in opts
    assert opts[-2:] == ["--gres=gpu:8", "--exclusive"]  # extras last: later options win in sbatch


def test_params_override_profile_and_null_params_keep_it():
    req = request(params={"partition": "debug", "time_limit": "00:10:00", "account": "a2", "qos": None})
    opts = sbatch_options(req)
    assert "--partition=debug" in opts and "--time=00:10:00" in opts and "--account=a2" in opts
    assert not any(o.startswith("--qos") for o in opts)
    assert "--partition=mi2508x" in sbatch_options(request(params={"partition": ""}))


def test_script_env_and_srun_line():
    prof = profile(env={"PATH": "/opt/py/bin:/usr/bin", "CODESWARM_PARAMS": "profile-loses"})
    env = {"CODESWARM_PARAMS": '{"worker_mode": "mock", "q": "it\'s"}', "CODESWARM_WORKER_MODE": "mock",
           "CODESWARM_JOB_ID": "stale", "CODESWARM_NODE_ID": "7"}
    script = batch_script(request(prof, env=env))
    assert script.startswith("#!/bin/bash\n")
    assert 'export CODESWARM_JOB_ID="$SLURM_JOB_ID"' in script
    assert "export CODESWARM_SWARM_ROOT=/shared/swarm/codeswarm/runs/\"$SLURM_JOB_ID\"" in script
    assert "export CODESWARM_JOB_ID=stale" not in script and "CODESWARM_NODE_ID=7" not in script
    assert f"export CODESWARM_PARAMS={shlex.quote(env['CODESWARM_PARAMS'])}" in script
    assert "export PATH=/opt/py/bin:/usr/bin" in script
    srun = next(ln for ln in script.splitlines() if ln.startswith("srun "))
    assert "--nodes=3 --ntasks=3 --ntasks-per-node=1" in srun
    inner = shlex.split(srun)[-1]
    assert inner == task_command(shlex.join(ARGV))
    assert inner.startswith("export CODESWARM_NODE_ID=$SLURM_PROCID; ")


def test_script_runs_in_bash_with_fake_srun(tmp_path):
    """Execute the generated script with stub srun/SLURM vars: the env each task sees is right."""
    prof = profile(workspace_root=tmp_path, cluster_subdir="cs")
    env = {"CODESWARM_PARAMS": '{"a": "b c", "d": "$HOME `x`"}'}
    argv = ["/usr/bin/env"]
    req = resolve_request(prof, SWARM, 2, {}, env, argv)
    script = batch_script(req)
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    srun = bindir / "srun"
    # Stub srun: run the task command twice, as procid 0 and 1, like two nodes would.
    srun.write_text('#!/bin/bash\nfor i in 0 1; do SLURM_PROCID=$i "${@: -3}"; done\n')
    srun.chmod(0o755)
    (tmp_path / "job.sh").write_text(script)
    proc = subprocess.run(
        ["bash", str(tmp_path / "job.sh")],
        env={"PATH": f"{bindir}:/usr/bin:/bin", "SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "n[1-2]"},
        capture_output=True, text=True, timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    out = (tmp_path / "cs" / "runs" / "42" / "slurm.out").read_text()
    assert "CODESWARM_NODE_ID=0" in out and "CODESWARM_NODE_ID=1" in out
    assert "CODESWARM_JOB_ID=42" in out
    assert f"CODESWARM_SWARM_ROOT={tmp_path}/cs/runs/42" in out
    assert 'CODESWARM_PARAMS={"a": "b c", "d": "$HOME `x`"}' in out
    assert (tmp_path / "cs" / "runs" / "42" / "mailbox" / "outbox").is_dir()


@pytest.mark.parametrize("bad", [{"BAD NAME": "x"}, {"1X": "y"}])
def test_invalid_env_names_rejected(bad):
    with pytest.raises(ValueError):
        batch_script(request(env=bad))


def test_newline_in_option_rejected():
    with pytest.raises(ValueError):
        batch_script(request(params={"partition": "a\n#SBATCH --x"}))


def test_zero_nodes_rejected():
    with pytest.raises(ValueError):
        sbatch_options(request(n=0))


def test_profiles_from_config_file_shape(tmp_path):
    cfg = parse_config(
        {
            "cluster": {"slurm": {"workspace_root": "/shared", "cluster_subdir": "cs", "time_limit": "00:05:00",
                                  "profiles": {"a": {"partition": "debug"},
                                               "b": {"partition": "second", "qos": "q",
                                                     "sbatch_extra": ["--exclusive"]}}}},
        },
        None, base_dir=tmp_path,
    )
    opts_b = sbatch_options(request(cfg.slurm_profile("b")))
    assert "--partition=second" in opts_b and "--qos=q" in opts_b and "--exclusive" in opts_b
    assert "--partition=debug" in sbatch_options(request(cfg.slurm_profile("a")))


def test_paths_with_spaces_are_double_quoted_for_sbatch():
    opts = sbatch_options(request(profile(workspace_root=Path("/shared/my swarm"))))
    assert '--chdir="/shared/my swarm/codeswarm"' in opts
    assert '--output="/shared/my swarm/codeswarm/logs/slurm-%j.out"' in opts
    script = batch_script(request(profile(workspace_root=Path("/shared/my swarm"))))
    assert "export CODESWARM_SWARM_ROOT='/shared/my swarm/codeswarm/runs'/\"$SLURM_JOB_ID\"" in script


def _run_task(tmp_path: Path, worker: str, wait: int = 5) -> subprocess.Popen[str]:
    root = tmp_path / "runs" / "42"
    (root / "mailbox" / "inbox").mkdir(parents=True)
    (root / "mailbox" / "outbox").mkdir(parents=True)
    env = {"PATH": "/usr/bin:/bin", "SLURM_PROCID": "3", "CODESWARM_JOB_ID": "42", "CODESWARM_SWARM_ROOT": str(root),
           **restart_env({"restart": "on-failure", "restart_max": 2})}
    return subprocess.Popen(["bash", "-c", task_command(worker, wait)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _marks(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "runs" / "42" / "mailbox" / "outbox" / "42_03.exit"
    return [ln.split() for ln in path.read_text().splitlines()] if path.exists() else []


def test_task_supervisor_marks_a_dead_worker_and_restarts_it_on_request(tmp_path: Path) -> None:
    """Issue 12 #9 on Slurm: the worker's death is marked at once; the router's restart file
    starts it again (same node id and env); a clean exit ends the task."""
    counter = tmp_path / "runs_count"
    # 1st run: killed (137); 2nd run: exits 0 (a requested shutdown)
    worker = (f'c=$(cat {counter} 2>/dev/null || echo 0); echo $((c+1)) >{counter}; '
              f'echo "node=$CODESWARM_NODE_ID"; [ "$c" = 0 ] && exit 137; exit 0')
    proc = _run_task(tmp_path, f"bash -c {shlex.quote(worker)}")
    deadline = time.monotonic() + 5
    while not _marks(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [m[:2] for m in _marks(tmp_path)] == [["0", "137"]]
    assert proc.poll() is None, "the task waits for the router's decision"
    (tmp_path / "runs" / "42" / "mailbox" / "inbox" / "42_03.restart").write_text("1")
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert out.count("node=3") == 2
    assert [m[:2] for m in _marks(tmp_path)] == [["0", "137"], ["1", "0"]]


@pytest.mark.parametrize("decision", ["stop", None])
def test_task_supervisor_ends_on_stop_or_after_the_wait(tmp_path: Path, decision: str | None) -> None:
    proc = _run_task(tmp_path, "bash -c 'exit 3'", wait=1)
    if decision:
        deadline = time.monotonic() + 5
        while not _marks(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.02)
        (tmp_path / "runs" / "42" / "mailbox" / "inbox" / "42_03.restart").write_text(decision)
    proc.communicate(timeout=10)
    assert proc.returncode == 3
    assert [m[:2] for m in _marks(tmp_path)] == [["0", "3"]]


def test_task_supervisor_without_restart_policy_ends_at_once(tmp_path: Path) -> None:
    """No `restart: on-failure`: a dead worker ends its task as before (the job can end by itself)."""
    root = tmp_path / "runs" / "42"
    (root / "mailbox" / "outbox").mkdir(parents=True)
    env = {"PATH": "/usr/bin:/bin", "SLURM_PROCID": "3", "CODESWARM_JOB_ID": "42", "CODESWARM_SWARM_ROOT": str(root)}
    proc = subprocess.run(["bash", "-c", task_command("bash -c 'exit 7'", 60)], env=env, timeout=10)
    assert proc.returncode == 7
    assert [m[:2] for m in _marks(tmp_path)] == [["0", "7"]]
    assert restart_env({"restart": "no"}) == {}
    assert restart_env({"restart": "on-failure"}) == {"CODESWARM_RESTART": "on-failure", "CODESWARM_RESTART_MAX": "3"}
