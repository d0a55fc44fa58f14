"""The Slurm batch script of one swarm (pure: strings in, a script out; no I/O).

One job per swarm: `--nodes=N --ntasks=N --ntasks-per-node=1`, and `srun` starts one worker per node
from the same .pyz. The node index comes from SLURM_PROCID, mapped onto CODESWARM_NODE_ID inside the
task (the worker itself never reads scheduler variables, PROTOCOL.md 8.5).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Mapping, Sequence

from codeswarm.config import SlurmProfile

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Profile/preset params that override the profile's scheduler settings (PROTOCOL.md 9.4).
OVERRIDABLE = ("partition", "time_limit", "account", "qos")


@dataclass(frozen=True)
class JobRequest:
    """Everything the script depends on, resolved by the provider."""

    swarm_id: str
    node_count: int
    cluster_root: PurePath  # <workspace_root>/<cluster_subdir>
    worker_argv: Sequence[str]  # e.g. ["python3", "<cluster_root>/bin/codeswarm-<hash>.pyz", "worker"]
    env: Mapping[str, str]  # worker env common to all nodes (worker_env + profile env)
    partition: str | None
    time_limit: str | None
    account: str | None
    qos: str | None
    sbatch_extra: Sequence[str] = ()


def job_name(swarm_id: str) -> str:
    return f"codeswarm-{swarm_id[:8]}"


def job_comment(swarm_id: str) -> str:
    # No spaces: sbatch splits #SBATCH lines on whitespace.
    return f"codeswarm_swarm_id={swarm_id}"


def resolve_request(
    profile: SlurmProfile,
    swarm_id: str,
    node_count: int,
    params: Mapping[str, Any],
    worker_env: Mapping[str, str],
    worker_argv: Sequence[str],
) -> JobRequest:
    """Merge the profile with provider_params (a null/empty param keeps the profile's value)."""
    merged: dict[str, str | None] = {
        "partition": profile.partition or None,
        "time_limit": profile.time_limit or None,
        "account": profile.account or None,
        "qos": profile.qos or None,
    }
    for key in OVERRIDABLE:
        value = params.get(key)
        if isinstance(value, str) and value.strip():
            merged[key] = value.strip()
    env = {**profile.env, **dict(worker_env)}  # the swarm's own CODESWARM_* win over cluster-wide settings
    return JobRequest(
        swarm_id=swarm_id,
        node_count=node_count,
        cluster_root=PurePath(profile.workspace_root) / profile.cluster_subdir,
        worker_argv=tuple(worker_argv),
        env=env,
        partition=merged["partition"],
        time_limit=merged["time_limit"],
        account=merged["account"],
        qos=merged["qos"],
        sbatch_extra=tuple(profile.sbatch_extra),
    )


def sbatch_options(req: JobRequest) -> list[str]:
    """The #SBATCH options, in a stable order; later options win in sbatch, so extras come last."""
    if req.node_count < 1:
        raise ValueError("node_count must be >= 1")
    n = req.node_count
    opts = [
        f"--job-name={job_name(req.swarm_id)}",
        f"--comment={job_comment(req.swarm_id)}",
        f"--nodes={n}",
        f"--ntasks={n}",
        "--ntasks-per-node=1",
        f"--chdir={_path_value(req.cluster_root)}",
        # The swarm root needs the job id, unknown before submission, and Slurm cannot create
        # directories for --output: early output goes to logs/, the script then moves to the swarm root.
        f"--output={_path_value(req.cluster_root / 'logs' / 'slurm-%j.out')}",
    ]
    for key, flag in (("partition", "--partition"), ("time_limit", "--time"), ("account", "--account"), ("qos", "--qos")):
        value = getattr(req, key)
        if value:
            opts.append(f"{flag}={value}")
    opts.extend(req.sbatch_extra)
    return opts


def _path_value(path: PurePath) -> str:
    # sbatch splits #SBATCH lines on whitespace but honours double quotes (checked on 22.05).
    text = str(path)
    return f'"{text}"' if any(c.isspace() for c in text) else text


def _sbatch_line(opt: str) -> str:
    # sbatch parses #SBATCH lines itself (no shell), so quoting would end up in the value;
    # a newline would end the directive, which we refuse instead.
    if "\n" in opt or "\r" in opt:
        raise ValueError(f"sbatch option contains a newline: {opt!r}")
    return f"#SBATCH {opt}"


# Per-task supervisor (issue 12 #9). The worker runs as a child of this shell, so a worker killed
# on its node (kill -9, OOM) is noticed at once: the shell appends "<attempt> <status> <epoch>" to
# the node's exit marker, which the router reads (SlurmProvider.node_liveness). It then waits for
# the router's decision in the node's restart file: a number above <attempt> starts the worker
# again in the same workspace (restart policy), "stop" or RESTART_WAIT seconds end the task. A
# worker that exits 0 (a requested shutdown) ends the task at once, and so does any exit when the
# swarm has no restart policy (CODESWARM_RESTART) or no restarts left (CODESWARM_RESTART_MAX).
RESTART_WAIT_SECONDS = 600
_TASK = " ".join("""
export CODESWARM_NODE_ID=$SLURM_PROCID;
n=$(printf %02d "$SLURM_PROCID");
mark="$CODESWARM_SWARM_ROOT/mailbox/outbox/${CODESWARM_JOB_ID}_$n.exit";
ask="$CODESWARM_SWARM_ROOT/mailbox/inbox/${CODESWARM_JOB_ID}_$n.restart";
attempt=0;
while :; do
  WORKER;
  rc=$?;
  echo "$attempt $rc $(date +%s)" >>"$mark";
  [ "$rc" = 0 ] && exit 0;
  [ "${CODESWARM_RESTART:-no}" = on-failure ] || exit "$rc";
  [ "$attempt" -lt "${CODESWARM_RESTART_MAX:-0}" ] || exit "$rc";
  waited=0;
  while :; do
    want=$(cat "$ask" 2>/dev/null);
    case "$want" in stop) exit "$rc" ;; ''|*[!0-9]*) ;; *) [ "$want" -gt "$attempt" ] && break ;; esac;
    [ "$waited" -ge WAIT ] && exit "$rc";
    sleep 1;
    waited=$((waited + 1));
  done;
  attempt=$want;
done""".split())


def restart_env(params: Mapping[str, Any]) -> dict[str, str]:
    """What the task supervisor needs of the swarm's restart policy (params `restart`, `restart_max`)."""
    if params.get("restart") != "on-failure":
        return {}
    return {"CODESWARM_RESTART": "on-failure", "CODESWARM_RESTART_MAX": str(restart_max(params))}


def restart_max(params: Mapping[str, Any]) -> int:
    value = params.get("restart_max", DEFAULT_RESTART_MAX)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else DEFAULT_RESTART_MAX


DEFAULT_RESTART_MAX = 3


def task_command(worker: str, wait_seconds: int = RESTART_WAIT_SECONDS) -> str:
    """The bash program each srun task runs: the worker under its supervisor loop."""
    return _TASK.replace("WORKER", worker).replace("WAIT", str(int(wait_seconds)))


def batch_script(req: JobRequest) -> str:
    """The full script submitted with `sbatch --parsable` on stdin."""
    for name in req.env:
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid environment variable name: {name!r}")
    runs = req.cluster_root / "runs"
    lines = ["#!/bin/bash", *(_sbatch_line(o) for o in sbatch_options(req))]
    lines += [
        f"# Codeswarm swarm {req.swarm_id}: one worker per node, {req.node_count} node(s).",
        "set -u",
        'export CODESWARM_JOB_ID="$SLURM_JOB_ID"',
        f'export CODESWARM_SWARM_ROOT={shlex.quote(str(runs))}/"$SLURM_JOB_ID"',
    ]
    for name in sorted(req.env):
        if name in ("CODESWARM_JOB_ID", "CODESWARM_SWARM_ROOT", "CODESWARM_NODE_ID"):
            continue  # set from the job itself; a stale value from the router must not win
        lines.append(f"export {name}={shlex.quote(req.env[name])}")
    worker = shlex.join(req.worker_argv)
    lines += [
        # Workers mkdir their own dirs too; 0700 because prompts and events are private.
        'umask 077',
        'mkdir -p "$CODESWARM_SWARM_ROOT/mailbox/inbox" "$CODESWARM_SWARM_ROOT/mailbox/outbox"',
        'exec >>"$CODESWARM_SWARM_ROOT/slurm.out" 2>&1',
        'echo "codeswarm job $SLURM_JOB_ID on $SLURM_JOB_NODELIST at $(date -Is)"',
        # --kill-on-bad-exit=0: one node's worker dying must not take the other nodes down.
        f"srun --export=ALL --nodes={req.node_count} --ntasks={req.node_count} --ntasks-per-node=1 "
        f"--kill-on-bad-exit=0 /bin/bash -c {shlex.quote(task_command(worker))}",
        "rc=$?",
        'echo "codeswarm job $SLURM_JOB_ID: srun exited with $rc at $(date -Is)"',
        "exit $rc",
    ]
    return "\n".join(lines) + "\n"
