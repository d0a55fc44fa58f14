"""Shared by the runtime-orphan tests (tests/codex/test_codex_orphans.py, tests/claude/test_claude_orphans.py):
a node's agent runtime runs a command that hangs, from a real swarm through the real .pyz; these find the
runtime process, its worker and everything under them, by PID, and check that all of it is gone later."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import Codeswarm, _alive

DELAY = 12  # the command's processes write their markers this long after they start (a loaded CI
# machine's terminate must come well within it)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def cmdline(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(ppid(int(entry.name)), []).append(int(entry.name))
            except (OSError, IndexError):
                continue
    out, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def hang_script(tmp: Path, name: str) -> Path:
    """A command that records its pids (this shell, a subshell, one that left with setsid) and writes
    three markers DELAY s later."""
    pids, mark = tmp / f"{name}-pids", tmp / f"{name}-marker"
    script = tmp / f"{name}.sh"
    script.write_text(f"(sleep {DELAY}; touch {mark}-sub) & SUB=$!\n"
                      f"setsid sh -c 'echo $$ > {pids}.setsid; sleep {DELAY}; touch {mark}-setsid' &\n"
                      f"while [ ! -s {pids}.setsid ]; do sleep 0.01; done\n"
                      f"echo $$ $SUB $(cat {pids}.setsid) > {pids}.tmp; mv {pids}.tmp {pids}\n"
                      f"sleep {DELAY}; touch {mark}-main; wait\n")
    return script


def start_turn(cs: Codeswarm, name: str, started: list[int], *launch: str) -> dict[str, Any]:
    """Launch one node, inject a turn that runs the hang script; its processes once it runs: the
    runtime process (the worker's child the command runs under), the worker, the runtime's tree, the
    worker's process guard(s). Every pid goes to `started` too (the caller's cleanup)."""
    sid = cs.json("launch", "--nodes", "1", *launch)["swarm_id"]
    script = hang_script(cs.tmp, name)
    cs.run("inject", sid, "--prompt", f"RUN: sh {script}")
    pids_file = cs.tmp / f"{name}-pids"
    wait_until(pids_file.exists, "the turn's command never started", timeout=120)
    t0 = time.monotonic()
    pids = [int(p) for p in pids_file.read_text().split()]
    workers = set(cs.worker_pids())
    runtime = pids[0]
    while ppid(runtime) not in workers:
        runtime = ppid(runtime)  # up from the command's shell
        assert runtime > 1, f"the command {pids[0]} does not run under a worker of ours"
    worker = ppid(runtime)
    assert os.getsid(pids[0]) != os.getsid(runtime), "the command runs in a session of its own"
    tree = descendants(runtime)
    assert set(pids[:2]) <= tree
    guards = [p for p in descendants(worker) if b"CODESWARM_OWNER=" in b" ".join(cmdline(p))]
    started.extend([runtime, *tree, *pids, *guards])
    return {"sid": sid, "pids": pids, "runtime": runtime, "worker": worker, "tree": tree, "guards": guards,
            "t0": t0}


def sigkill_worker(run: dict[str, Any]) -> None:
    os.kill(run["worker"], signal.SIGKILL)
    wait_until(lambda: not _alive(run["worker"]), "the worker survived SIGKILL", timeout=10)


def assert_all_gone_and_nothing_written(cs: Codeswarm, name: str, run: dict[str, Any]) -> None:
    everything = {run["runtime"], *run["guards"], *run["tree"], *run["pids"]}
    wait_until(lambda: not any(_alive(p) for p in everything),
               f"outlived the worker: {sorted(p for p in everything if _alive(p))}", timeout=DELAY - 2)
    time.sleep(max(0.0, run["t0"] + DELAY + 1.5 - time.monotonic()))  # past the moment they would have written
    assert not list(cs.tmp.glob(f"{name}-marker*")), "a process of the dead worker wrote after its death"
    assert len(run["guards"]) == 1, "one process guard per worker"


def kill_leftovers(started: list[int], tmp: Path) -> None:
    """After a failing run (an older build): what the test's turn left running, only that, by PID (and
    only while its environment still names the test's directory: not a reused pid)."""
    for pid in started:
        try:
            ours = str(tmp).encode() in Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if ours and _alive(pid) and os.getsid(pid) != os.getsid(0):
            os.kill(pid, signal.SIGKILL)
    started.clear()


def terminate_and_check_clean_stop(cs: Codeswarm, name: str, run: dict[str, Any]) -> None:
    """The normal stop of a node in the hang script's turn (terminate --force): everything is gone and
    nothing written, no event reports an error, and the worker exited 0 (`shutdown`)."""
    out = cs.json("terminate", run["sid"], "--force", "--wait", timeout=120)
    assert out["state"] == "terminated"
    assert_all_gone_and_nothing_written(cs, name, run)
    events = cs.events("--swarm", run["sid"])
    assert not [e for e in events if "error" in e["event"]], [e for e in events if "error" in e["event"]]
    (exited,) = [e["data"] for e in events if e["event"] == "node_status" and e["data"].get("worker") == "exited"]
    assert (exited["exit_code"], exited["exit_reason"]) == (0, "shutdown")
