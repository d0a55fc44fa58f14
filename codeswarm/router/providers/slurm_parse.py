"""Pure parsing of Slurm command output and classification of its failures (no I/O).

Verified against Slurm 22.05.8 (docs/SLURM.md): `squeue -h --states=all -j IDS -o FMT` lists pending,
running and recently finished jobs (until MinJobAge); a single purged id makes squeue fail with
"Invalid job id specified" (rc 1), which is an empty answer, not a failure. `sacct -c` reads the
jobcomp log and keeps finished jobs after they leave slurmctld's memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from codeswarm.router.providers.base import JobObservation, JobState

SEP = "|"
# %i job id, %T long state, %r reason, %N node list. The separator cannot occur in any of them.
SQUEUE_FORMAT = SEP.join(("%i", "%T", "%r", "%N"))
SACCT_FIELDS = "JobID,State,ExitCode,NodeList"

PENDING_STATES = frozenset(
    {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
)
# COMPLETING: the job's processes are being cleaned up; its final state comes with the next answer.
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"})
ENDED_REASONS = {
    "COMPLETED": "completed",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
    "TIMEOUT": "time_limit",
    "DEADLINE": "deadline",
    "NODE_FAIL": "node_failure",
    "BOOT_FAIL": "boot_failure",
    "OUT_OF_MEMORY": "out_of_memory",
    "PREEMPTED": "preempted",
    "REVOKED": "revoked",
}

# stderr fragments that say "the scheduler could not answer" rather than "this request is wrong".
_TRANSIENT_MARKERS = (
    "unable to contact slurm controller",
    "socket timed out",
    "connection refused",
    "connection reset",
    "connection timed out",
    "transport endpoint",
    "slurm_receive_msg",
    "slurmctld is not responding",
    "temporarily unavailable",
    "resource temporarily unavailable",
    "try again",
    "communication connection failure",
    "zero bytes were transmitted or received",
    "protocol authentication error",
    "munge",
    "could not establish a configuration source",
    "ssh:",
    "kex_exchange_identification",
    "no route to host",
    "name or service not known",
    "temporary failure in name resolution",
)
INVALID_JOB_ID = "invalid job id specified"
SSH_TRANSPORT_FAILURE = 255


@dataclass(frozen=True)
class SchedulerRecord:
    job_id: str
    state: str  # long Slurm state name, e.g. RUNNING, TIMEOUT
    reason: str | None = None  # squeue %r (why pending) or sacct ExitCode
    nodes: tuple[str, ...] = ()


def normalize_state(raw: str) -> str:
    """`CANCELLED by 0` -> CANCELLED; `RUNNING+` -> RUNNING (sacct decorations)."""
    word = raw.strip().split(" ", 1)[0].rstrip("+").upper()
    return word


def observation(rec: SchedulerRecord) -> JobObservation:
    """Map one scheduler record to what the core understands."""
    state = rec.state
    if state in ENDED_REASONS:
        return JobObservation(JobState.ENDED, scheduler_state=state, reason=ENDED_REASONS[state], nodes=rec.nodes)
    if state in PENDING_STATES:
        return JobObservation(JobState.PENDING, scheduler_state=state, reason=rec.reason, nodes=rec.nodes)
    if state in RUNNING_STATES:
        return JobObservation(JobState.RUNNING, scheduler_state=state, nodes=rec.nodes)
    # A state this table does not know (a newer Slurm): say so rather than guess.
    return JobObservation(JobState.UNKNOWN, scheduler_state=state, reason=rec.reason, nodes=rec.nodes)


def _nodes(field: str) -> tuple[str, ...]:
    field = field.strip()
    if not field or field in ("(null)", "None assigned", "None"):
        return ()
    return (field,)  # a hostlist expression (node[1-3]); kept compact on purpose


def parse_squeue(stdout: str) -> dict[str, SchedulerRecord]:
    """Lines of SQUEUE_FORMAT -> {job_id: record}. Malformed lines are skipped."""
    out: dict[str, SchedulerRecord] = {}
    for line in stdout.splitlines():
        parts = line.strip().split(SEP)
        if len(parts) < 2 or not parts[0]:
            continue
        job_id, state = parts[0].strip(), normalize_state(parts[1])
        reason = parts[2].strip() if len(parts) > 2 else ""
        nodes = _nodes(parts[3]) if len(parts) > 3 else ()
        out[job_id] = SchedulerRecord(job_id, state, None if reason in ("", "None") else reason, nodes)
    return out


def parse_sacct(stdout: str, wanted: set[str] | frozenset[str]) -> dict[str, SchedulerRecord]:
    """`sacct [-c] -P -n --format=SACCT_FIELDS` -> job-level records of the wanted ids.

    Step lines (`12.batch`, `12.0`) are ignored; when a job appears twice (requeued), the last wins.
    """
    out: dict[str, SchedulerRecord] = {}
    for line in stdout.splitlines():
        parts = line.strip().split(SEP)
        if len(parts) < 2:
            continue
        job_id = parts[0].strip()
        if job_id not in wanted:
            continue
        exit_code = parts[2].strip() if len(parts) > 2 else ""
        nodes = _nodes(parts[3]) if len(parts) > 3 else ()
        out[job_id] = SchedulerRecord(job_id, normalize_state(parts[1]), exit_code or None, nodes)
    return out


def parse_sbatch(stdout: str) -> str:
    """`sbatch --parsable` prints `ID` or `ID;cluster`. Raises ValueError when there is no id."""
    for line in stdout.splitlines():
        token = line.strip().split(";", 1)[0]
        if token.isdigit():
            return token
    raise ValueError(f"sbatch printed no job id: {stdout.strip()[:200]!r}")


def is_invalid_job_id(stderr: str) -> bool:
    return INVALID_JOB_ID in stderr.lower()


def is_transient(returncode: int | None, stderr: str, *, via_ssh: bool = False) -> bool:
    """True when a failure says nothing about the request itself (retry later, change nothing)."""
    if returncode is None:  # timed out
        return True
    if via_ssh and returncode == SSH_TRANSPORT_FAILURE:
        return True
    low = stderr.lower()
    return any(marker in low for marker in _TRANSIENT_MARKERS)


def first_line(text: str, limit: int = 300) -> str:
    """The most telling line of stderr for an error message."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    pick = (errors or lines or [""])[-1]
    return pick[:limit]


# Polling back-off (submitit's approach): while every job runs and nothing changed, stretch the
# interval step by step up to MAX_BACKOFF x the configured one; any change, a job that is pending,
# ended or missing, or a failed poll brings it straight back to 1x.
BACKOFF_STEP = 1.5
MAX_BACKOFF = 4.0


def observation_signature(observations: dict[str, JobObservation]) -> tuple[tuple[str, str, str | None], ...]:
    return tuple(sorted((job_id, o.state.value, o.scheduler_state) for job_id, o in observations.items()))


def next_backoff(factor: float, previous: tuple | None, current: tuple, all_running: bool) -> float:
    """The next interval multiplier after a successful poll."""
    if not all_running or previous != current:
        return 1.0
    return min(factor * BACKOFF_STEP, MAX_BACKOFF)
