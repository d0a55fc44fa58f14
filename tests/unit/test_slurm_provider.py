"""SlurmProvider's decisions with a scripted command runner (no Slurm needed): call batching, the
sacct fallback, transient failures, ssh retries, idempotent submit and cancel."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Callable

import pytest

from codeswarm.config import parse_config
from codeswarm.errors import ProviderError
from codeswarm.router.providers.base import JobHandle, JobState, LaunchSpec
from codeswarm.router.providers.slurm import CommandResult, SlurmProvider, install_pyz

SWARM = "feedface" + "0" * 24
Handler = Callable[[list[str], bytes | None], CommandResult | None]


def make_config(tmp_path: Path, **profile_extra):
    prof = {"partition": "debug", **profile_extra}
    return parse_config(
        {"cluster": {"slurm": {"workspace_root": str(tmp_path / "ws"), "cluster_subdir": "cs",
                               "time_limit": "00:05:00", "ssh_retry_delay_seconds": 0,
                               "profiles": {"default": prof, "remote": {"partition": "debug",
                                                                        "login_host": "login1"}}}}},
        None, base_dir=tmp_path,
    )


class Fake:
    """Records every command; answers with the handler. Commands over ssh are unwrapped."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls: list[list[str]] = []
        self.hosts: list[str] = []
        self.envs: list[dict[str, str] | None] = []

    async def __call__(self, argv, stdin, timeout, env=None):
        self.envs.append(env)
        host = ""
        if argv[0] == "ssh":
            host = argv[argv.index("--") - 1]
            argv = shlex.split(argv[-1])
        self.calls.append(argv)
        self.hosts.append(host)
        return self.handler(argv, stdin)

    def count(self, prog: str) -> int:
        return sum(1 for c in self.calls if c[0] == prog)


def provider(tmp_path, handler, **kw) -> tuple[SlurmProvider, Fake]:
    p = SlurmProvider(make_config(tmp_path), command_timeout=5, worker_command=["/bin/true"], **kw)
    fake = Fake(handler)
    p._exec = fake  # type: ignore[method-assign]
    return p, fake


def ok(out: str = "") -> CommandResult:
    return CommandResult(0, out, "")


def job(i: int | str, profile: str = "default", host: str = "") -> JobHandle:
    return JobHandle(str(i), Path(f"/x/{i}"), "slurm", profile, {"login_host": host})


@pytest.mark.trio
async def test_one_squeue_for_twenty_jobs(tmp_path):
    def handler(argv, stdin):
        assert argv[0] == "squeue"
        ids = argv[argv.index("-j") + 1].split(",")
        return ok("".join(f"{i}|RUNNING|None|node1\n" for i in ids))

    p, fake = provider(tmp_path, handler)
    obs = await p.poll([job(i) for i in range(2, 22)])
    assert fake.count("squeue") == 1 and p.squeue_calls == 1 and fake.count("sacct") == 0
    assert len(obs) == 20 and all(o.state is JobState.RUNNING for o in obs.values())
    ids = fake.calls[0][fake.calls[0].index("-j") + 1]
    assert ids == ",".join(str(i) for i in range(2, 22))  # numeric order, each once
    assert "--states=all" in fake.calls[0]


@pytest.mark.trio
async def test_missing_jobs_cross_checked_with_sacct_then_sacct_c(tmp_path):
    def handler(argv, stdin):
        if argv[0] == "squeue":
            return ok("5|RUNNING|None|node1\n")
        if argv[:2] == ["sacct", "-c"]:
            return ok("6|TIMEOUT|0:0|node[1-2]\n")
        return CommandResult(1, "", "Slurm accounting storage is disabled\n")

    p, fake = provider(tmp_path, handler)
    obs = await p.poll([job(5), job(6), job(7)])
    assert obs["5"].state is JobState.RUNNING
    assert obs["6"].state is JobState.ENDED and obs["6"].reason == "time_limit"
    assert obs["7"].state is JobState.NOT_FOUND
    assert [c[:2] for c in fake.calls if c[0] == "sacct"] == [["sacct", "-X"], ["sacct", "-c"]]
    sacct_ids = fake.calls[-1][fake.calls[-1].index("-j") + 1]
    assert sacct_ids == "6,7"  # only the missing ones, in one call
    fake.calls.clear()
    await p.poll([job(6)])
    assert [c[:2] for c in fake.calls] == [["squeue", "-h"], ["sacct", "-c"]]  # the working mode is remembered


@pytest.mark.trio
async def test_purged_single_id_is_an_empty_answer_not_a_failure(tmp_path):
    def handler(argv, stdin):
        if argv[0] == "squeue":
            return CommandResult(1, "", "slurm_load_jobs error: Invalid job id specified\n")
        return ok("")

    p, _ = provider(tmp_path, handler)
    assert (await p.poll([job(9)]))["9"].state is JobState.NOT_FOUND


@pytest.mark.trio
@pytest.mark.parametrize(
    "result",
    [
        None,  # timed out
        CommandResult(1, "", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"),
        CommandResult(1, "", "squeue: error: something unexpected\n"),
        CommandResult(127, "", "squeue: command not found"),
    ],
)
async def test_failed_squeue_is_transient_and_not_evidence(tmp_path, result):
    p, fake = provider(tmp_path, lambda argv, stdin: result)
    with pytest.raises(ProviderError) as info:
        await p.poll([job(1), job(2)])
    assert info.value.transient
    assert fake.count("sacct") == 0  # a failed listing is not "missing"


@pytest.mark.trio
async def test_one_call_per_login_host_and_a_failing_host_leaves_its_jobs_unknown(tmp_path):
    def handler(argv, stdin):
        return ok("1|RUNNING|None|n1\n") if "1" in argv[-1].split(",") else None

    p, fake = provider(tmp_path, handler)
    obs = await p.poll([job(1), job(2, "remote", "login1"), job(3, "remote", "login1")])
    assert fake.count("squeue") == 2  # one per host; a timeout is not retried within the poll
    assert set(fake.hosts) == {"", "login1"}
    assert obs["1"].state is JobState.RUNNING
    assert obs["2"].state is JobState.UNKNOWN and obs["3"].state is JobState.UNKNOWN


@pytest.mark.trio
async def test_ssh_255_retried_then_answer(tmp_path):
    answers = [CommandResult(255, "", "ssh: connect to host login1: Connection refused")] * 2 + [ok("4|PENDING|Priority|\n")]

    p, fake = provider(tmp_path, lambda argv, stdin: answers.pop(0))
    obs = await p.poll([job(4, "remote", "login1")])
    assert obs["4"].state is JobState.PENDING and obs["4"].reason == "Priority"
    assert fake.count("squeue") == 3 and p.squeue_calls == 1  # one logical call


@pytest.mark.trio
async def test_ssh_255_exhausted_is_transient(tmp_path):
    p, fake = provider(tmp_path, lambda a, s: CommandResult(255, "", "ssh: Could not resolve hostname"))
    with pytest.raises(ProviderError) as info:
        await p.poll([job(4, "remote", "login1")])
    assert info.value.transient and "login1" in str(info.value)
    assert fake.count("squeue") == 4


def spec(**params) -> LaunchSpec:
    return LaunchSpec(SWARM, 3, params, {"CODESWARM_PARAMS": '{"worker_mode": "mock"}'}, None)


@pytest.mark.trio
async def test_submit_builds_script_and_swarm_root(tmp_path):
    seen = {}

    def handler(argv, stdin):
        seen["argv"], seen["script"] = argv, stdin.decode()
        return ok("42\n")

    p, _ = provider(tmp_path, handler)
    handle = await p.submit(spec(partition="second"))
    assert seen["argv"] == ["sbatch", "--parsable"]
    assert "#SBATCH --partition=second" in seen["script"] and "#SBATCH --nodes=3" in seen["script"]
    root = tmp_path / "ws" / "cs" / "runs" / "42"
    assert handle.job_id == "42" and handle.swarm_root == root and handle.backend == "slurm"
    assert handle.profile == "default"
    assert (root / "mailbox" / "inbox").is_dir() and (root / "node_02").is_dir()
    assert (root / "job.sbatch").read_text() == seen["script"]
    assert (root.stat().st_mode & 0o777) == 0o700


@pytest.mark.trio
async def test_submit_refused_is_not_transient(tmp_path):
    err = "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    p, fake = provider(tmp_path, lambda a, s: CommandResult(1, "", err))
    with pytest.raises(ProviderError) as info:
        await p.submit(spec())
    assert not info.value.transient and "Invalid partition name" in str(info.value)
    assert fake.count("sbatch") == 1


@pytest.mark.trio
async def test_submit_timeout_finds_the_job_by_name_and_comment(tmp_path):
    def handler(argv, stdin):
        if argv[0] == "sbatch":
            return None  # timed out: maybe submitted, maybe not
        assert f"--name=codeswarm-{SWARM[:8]}" in argv
        return ok(f"50|codeswarm_swarm_id=other\n51|codeswarm_swarm_id={SWARM}\n")

    p, fake = provider(tmp_path, handler)
    handle = await p.submit(spec())
    assert handle.job_id == "51" and fake.count("sbatch") == 1


@pytest.mark.trio
async def test_submit_timeout_without_job_is_transient(tmp_path):
    p, _ = provider(tmp_path, lambda a, s: None if a[0] == "sbatch" else ok(""))
    with pytest.raises(ProviderError) as info:
        await p.submit(spec())
    assert info.value.transient


@pytest.mark.trio
async def test_cancel_then_confirm(tmp_path):
    states = iter(["7|RUNNING|None|n1\n", "7|COMPLETING|None|n1\n", "7|CANCELLED|None|n1\n"])

    def handler(argv, stdin):
        return ok("") if argv[0] == "scancel" else ok(next(states))

    p, fake = provider(tmp_path, handler)
    await p.cancel(job(7))
    assert fake.calls[0] == ["scancel", "7"] and fake.count("squeue") == 3


@pytest.mark.trio
async def test_cancel_of_a_purged_job_is_success(tmp_path):
    def handler(argv, stdin):
        if argv[0] == "scancel":
            return CommandResult(1, "", "scancel: error: Kill job error on job id 7: Invalid job id specified\n")
        if argv[0] == "squeue":
            return CommandResult(1, "", "slurm_load_jobs error: Invalid job id specified\n")
        return CommandResult(1, "", "Slurm accounting storage is disabled\n")

    p, _ = provider(tmp_path, handler)
    await p.cancel(job(7))


@pytest.mark.trio
async def test_cancel_refused(tmp_path):
    err = "scancel: error: Kill job error on job id 7: Access/permission denied\n"
    p, _ = provider(tmp_path, lambda a, s: CommandResult(1, "", err))
    with pytest.raises(ProviderError) as info:
        await p.cancel(job(7))
    assert not info.value.transient


@pytest.mark.trio
async def test_cancel_not_confirmed_is_transient(tmp_path, autojump_clock):
    p, _ = provider(tmp_path, lambda a, s: ok("") if a[0] == "scancel" else ok("7|RUNNING|None|n1\n"),
                    cancel_confirm_timeout=10)
    with pytest.raises(ProviderError) as info:
        await p.cancel(job(7))
    assert info.value.transient and "RUNNING" in str(info.value)


def test_install_pyz_is_content_addressed(tmp_path):
    src = tmp_path / "codeswarm.pyz"
    src.write_bytes(b"PK fake zipapp 1")
    a = install_pyz(src, tmp_path / "bin")
    assert a.read_bytes() == src.read_bytes() and a.name.startswith("codeswarm-")
    assert install_pyz(src, tmp_path / "bin") == a
    src.write_bytes(b"PK fake zipapp 2")
    b = install_pyz(src, tmp_path / "bin")
    assert b != a and a.exists() and b.read_bytes() == b"PK fake zipapp 2"


@pytest.mark.trio
async def test_poll_interval_backs_off_while_nothing_changes(tmp_path):
    answer = {"text": "1|RUNNING|None|n1\n", "fail": False}

    def handler(argv, stdin):
        if answer["fail"]:
            return CommandResult(1, "", "Unable to contact slurm controller")
        return ok(answer["text"])

    p, _ = provider(tmp_path, handler)
    base = p.config.router.status_poll_interval_seconds
    assert p.poll_interval == base
    intervals = []
    for _ in range(6):
        await p.poll([job(1)])
        intervals.append(p.poll_interval)
    assert intervals[0] == base and intervals[-1] == 4 * base and intervals == sorted(intervals)
    answer["text"] = "1|COMPLETING|None|n1\n"  # a change
    await p.poll([job(1)])
    assert p.poll_interval == base
    for _ in range(3):
        await p.poll([job(1)])
    assert p.poll_interval > base
    answer["fail"] = True
    with pytest.raises(ProviderError):
        await p.poll([job(1)])
    assert p.poll_interval == base  # a failed poll: look again soon


# ---------------------------------------------------------------- issue 12 #11: secrets never in the script


def secret_spec(env: dict[str, str]) -> LaunchSpec:
    return LaunchSpec("sw-secret", 2, {"worker_mode": "mock"}, {"CODESWARM_WORKER_MODE": "mock", **env}, None)


@pytest.mark.trio
async def test_preset_env_goes_to_0600_node_files_not_the_script_nor_sbatch_env(tmp_path, monkeypatch):
    canary = "canary-7d1f0c9a"
    monkeypatch.setenv("CS_TEST_KEY", canary)
    seen = {}

    def handler(argv, stdin):
        seen["script"] = stdin.decode()
        return ok("43\n")

    p, fake = provider(tmp_path, handler)
    handle = await p.submit(secret_spec({"API_KEY": "${CS_TEST_KEY}", "PLAIN": "literal-secret"}))
    assert canary not in seen["script"] and "literal-secret" not in seen["script"]
    assert "export CODESWARM_WORKER_MODE=mock" in seen["script"]
    sbatch_env = fake.envs[0]
    assert sbatch_env is not None and "CS_TEST_KEY" not in sbatch_env and canary not in sbatch_env.values()
    secrets_dir = tmp_path / "ws" / "cs" / "secrets" / "sw-secret"
    assert f"export CODESWARM_SECRETS_DIR={secrets_dir}" in seen["script"]
    assert (secrets_dir.stat().st_mode & 0o777) == 0o700
    for node in (0, 1):
        f = secrets_dir / f"{node}.json"
        assert (f.stat().st_mode & 0o777) == 0o600
        assert json.loads(f.read_text()) == {"API_KEY": canary, "PLAIN": "literal-secret"}
    assert canary not in (handle.swarm_root / "job.sbatch").read_text()
    from codeswarm.secrets_env import take_node_file

    assert take_node_file(secrets_dir, 0) == {"API_KEY": canary, "PLAIN": "literal-secret"}
    assert not (secrets_dir / "0.json").exists() and secrets_dir.exists()
    take_node_file(secrets_dir, 1)
    assert not secrets_dir.exists()  # the last reader removes the directory


@pytest.mark.trio
async def test_unset_variable_fails_the_launch_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("CS_TEST_UNSET", raising=False)
    p, fake = provider(tmp_path, lambda argv, stdin: ok("44\n"))
    with pytest.raises(ProviderError) as info:
        await p.submit(secret_spec({"API_KEY": "${CS_TEST_UNSET}"}))
    assert "API_KEY: ${CS_TEST_UNSET} is not set in the router's environment" in str(info.value)
    assert not info.value.transient and fake.count("sbatch") == 0


@pytest.mark.trio
async def test_cancel_removes_env_files_no_worker_took_and_a_failed_sbatch_leaves_none(tmp_path, monkeypatch):
    monkeypatch.setenv("CS_TEST_KEY", "v")
    p, _ = provider(tmp_path, lambda argv, stdin: ok("45\n") if argv[0] == "sbatch" else
                    ok("") if argv[0] == "scancel" else ok("45|CANCELLED|None|n1\n"))
    handle = await p.submit(secret_spec({"API_KEY": "${CS_TEST_KEY}"}))
    secrets_dir = Path(handle.extra["secrets_dir"])
    assert sorted(f.name for f in secrets_dir.iterdir()) == ["0.json", "1.json"]  # the job never ran
    await p.cancel(handle)
    assert not secrets_dir.exists()
    refused, _ = provider(tmp_path, lambda argv, stdin: CommandResult(1, "", "sbatch: error: invalid partition"))
    with pytest.raises(ProviderError):
        await refused.submit(LaunchSpec("sw-refused", 1, {}, {"API_KEY": "${CS_TEST_KEY}"}, None))
    assert not (tmp_path / "ws" / "cs" / "secrets" / "sw-refused").exists()
