"""Parsing of squeue/sacct/sbatch output and the transient-vs-refusal classification (pure)."""

from __future__ import annotations

import pytest

from codeswarm.router.providers.base import JobState
from codeswarm.router.providers.slurm_parse import (
    SchedulerRecord,
    first_line,
    is_invalid_job_id,
    is_transient,
    normalize_state,
    observation,
    parse_sacct,
    parse_sbatch,
    parse_squeue,
)

# Real output of Slurm 22.05.8 (`squeue -h --states=all -o '%i|%T|%r|%N' -j ...`).
SQUEUE = """\
3|FAILED|NonZeroExitCode|node1
2|RUNNING|None|node[1-2]
4|CANCELLED|None|node2
5|PENDING|ReqNodeNotAvail, UnavailableNodes:node[1-4]|
6|COMPLETING|None|node3
garbage line
"""


def test_parse_squeue():
    recs = parse_squeue(SQUEUE)
    assert set(recs) == {"2", "3", "4", "5", "6"}
    assert recs["2"] == SchedulerRecord("2", "RUNNING", None, ("node[1-2]",))
    assert recs["3"].reason == "NonZeroExitCode"
    assert recs["5"].state == "PENDING" and recs["5"].nodes == ()
    assert recs["5"].reason.startswith("ReqNodeNotAvail")


def test_parse_squeue_empty():
    assert parse_squeue("") == {}


def test_parse_sacct_job_level_only_and_wanted_ids():
    out = "2|COMPLETED|0:0|node1\n2.batch|COMPLETED|0:0|node1\n3|CANCELLED by 0|0:15|node[1-3]\n9|FAILED|1:0|n\n"
    recs = parse_sacct(out, {"2", "3"})
    assert set(recs) == {"2", "3"}
    assert recs["3"].state == "CANCELLED" and recs["3"].reason == "0:15"
    assert recs["2"].nodes == ("node1",)


@pytest.mark.parametrize(
    "raw,expected", [("CANCELLED by 1000", "CANCELLED"), ("RUNNING", "RUNNING"), (" timeout ", "TIMEOUT"),
                     ("COMPLETED+", "COMPLETED")]
)
def test_normalize_state(raw, expected):
    assert normalize_state(raw) == expected


@pytest.mark.parametrize(
    "state,job_state,reason",
    [
        ("PENDING", JobState.PENDING, None),
        ("CONFIGURING", JobState.PENDING, None),
        ("REQUEUED", JobState.PENDING, None),
        ("RUNNING", JobState.RUNNING, None),
        ("COMPLETING", JobState.RUNNING, None),
        ("SUSPENDED", JobState.RUNNING, None),
        ("COMPLETED", JobState.ENDED, "completed"),
        ("FAILED", JobState.ENDED, "failed"),
        ("CANCELLED", JobState.ENDED, "cancelled"),
        ("TIMEOUT", JobState.ENDED, "time_limit"),
        ("NODE_FAIL", JobState.ENDED, "node_failure"),
        ("OUT_OF_MEMORY", JobState.ENDED, "out_of_memory"),
        ("PREEMPTED", JobState.ENDED, "preempted"),
        ("BOOT_FAIL", JobState.ENDED, "boot_failure"),
        ("DEADLINE", JobState.ENDED, "deadline"),
        ("SOMETHING_NEW", JobState.UNKNOWN, None),
    ],
)
def test_observation_mapping(state, job_state, reason):
    obs = observation(SchedulerRecord("1", state))
    assert obs.state is job_state and obs.scheduler_state == state
    assert obs.reason == reason


def test_pending_reason_is_passed_on():
    obs = observation(SchedulerRecord("1", "PENDING", "Resources"))
    assert obs.reason == "Resources"


@pytest.mark.parametrize("out,job", [("123\n", "123"), ("77;cluster\n", "77"), ("warning: x\n9\n", "9")])
def test_parse_sbatch(out, job):
    assert parse_sbatch(out) == job


def test_parse_sbatch_without_id():
    with pytest.raises(ValueError):
        parse_sbatch("")


def test_invalid_job_id():
    assert is_invalid_job_id("slurm_load_jobs error: Invalid job id specified")
    assert not is_invalid_job_id("slurm_load_jobs error: Unable to contact slurm controller (connect failure)")


@pytest.mark.parametrize(
    "rc,stderr,ssh,transient",
    [
        (None, "", False, True),  # timeout
        (1, "slurm_load_jobs error: Unable to contact slurm controller (connect failure)", False, True),
        (1, "sbatch: error: Batch job submission failed: Unable to contact slurm controller", False, True),
        (1, "squeue: error: Socket timed out on send/recv operation", False, True),
        (255, "ssh: connect to host login port 22: Connection refused", True, True),
        (255, "", True, True),
        (255, "", False, False),  # without ssh, 255 is the program's own status
        (1, "sbatch: error: Batch job submission failed: Invalid partition name specified", False, False),
        (1, "sbatch: error: Batch job submission failed: Invalid account or account/partition combination",
         False, False),
        (1, "scancel: error: Kill job error on job id 5: Access/permission denied", False, False),
    ],
)
def test_is_transient(rc, stderr, ssh, transient):
    assert is_transient(rc, stderr, via_ssh=ssh) is transient


def test_first_line_prefers_the_error():
    err = "sbatch: warning: x\nsbatch: error: invalid partition specified: nosuch\nsbatch: error: Batch job submission failed: Invalid partition name specified\n"
    assert first_line(err).endswith("Invalid partition name specified")
    assert first_line("") == ""


def test_backoff_grows_only_while_everything_runs_unchanged():
    from codeswarm.router.providers.base import JobObservation
    from codeswarm.router.providers.slurm_parse import MAX_BACKOFF, next_backoff, observation_signature

    running = observation_signature({"1": JobObservation(JobState.RUNNING, "RUNNING")})
    factor, previous = 1.0, None
    factors = []
    for _ in range(6):
        factor = next_backoff(factor, previous, running, True)
        previous = running
        factors.append(factor)
    assert factors[0] == 1.0 and factors[1] > 1.0 and factors[-1] == MAX_BACKOFF
    assert factors == sorted(factors)
    ended = observation_signature({"1": JobObservation(JobState.ENDED, "CANCELLED", "cancelled")})
    assert next_backoff(MAX_BACKOFF, running, ended, False) == 1.0  # a change: back to the base rate
    assert next_backoff(MAX_BACKOFF, running, running, False) == 1.0  # something pending or missing
