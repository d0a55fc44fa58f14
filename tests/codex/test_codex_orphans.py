"""The agent runtime dies with its worker (the process guard, codeswarm/projects/childguard.py), through
the real .pyz and the real pinned `codex app-server` against the fake Responses API on loopback.

A worker SIGKILLed while its app-server runs a command in a turn: afterwards the app-server, every
process under it (codex runs each command in a PTY session of its own: a SIGKILL of the app-server's
group misses them, P12) and a grandchild that left with setsid are gone, by PID, and none of their
delayed writes in the node's workspace happens. The normal stop (terminate) during the same kind of
turn: everything is gone too, the worker reports no error, and the guard ends with the worker."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest

from fake_responses import FakeResponses

from tests.conftest import Codeswarm, _alive

DELAY = 8  # the command's processes write their markers this long after they start


def wait_until(check, what: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def ppid(pid: int) -> int:
    return int(stat(pid)[1])


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


def codex_config(tmp: Path, codex_bin: str, fake: FakeResponses) -> dict[str, Any]:
    defaults = {"worker_mode": "codex", "approval_policy": "never", "sandbox_mode": "danger-full-access",
                "codex_path": codex_bin, "codex_home": "{swarm_root}/codex_home/node_{node_id}",
                "codex_ephemeral": True, **fake.provider_params()}
    return {"cluster": {"local": {"workspace_root": str(tmp / "runs")}},
            "router": {"inject_timeout_seconds": 60, "poll_interval_seconds": 0.1},
            "launch_providers": [{"id": "local-codex", "label": "Local (Codex, fake model)", "backend": "local",
                                  "defaults": defaults, "env": {"FAKE_MODEL_API_KEY": "sk-fake-e2e"}}]}


def start_turn(cs: Codeswarm, codex_bin: str, fake: FakeResponses, name: str) -> dict[str, Any]:
    """Launch one codex node, inject a turn running the hang script; the processes once it runs."""
    cs.write_config(codex_config(cs.tmp, codex_bin, fake))
    sid = cs.json("launch", "--nodes", "1", "--provider", "local-codex")["swarm_id"]
    script = hang_script(cs.tmp, name)
    cs.run("inject", sid, "--prompt", f"RUN: sh {script}")
    pids_file = cs.tmp / f"{name}-pids"
    wait_until(pids_file.exists, "the turn's command never started", timeout=90)
    t0 = time.monotonic()
    pids = [int(p) for p in pids_file.read_text().split()]
    server = pids[0]
    while not (cmdline(server)[0].endswith(b"/codex") and cmdline(server)[1] == b"app-server"):
        server = ppid(server)  # up from the command's shell: the app-server that runs it
    worker = ppid(server)
    assert worker in cs.worker_pids(), f"the app-server's parent {worker} is not our worker"
    assert os.getsid(pids[0]) != os.getsid(server), "codex runs the command in a session of its own"
    tree = descendants(server)
    assert set(pids[:2]) <= tree
    guards = [p for p in descendants(worker) if b"CODESWARM_OWNER=" in b" ".join(cmdline(p))]
    STARTED.extend([server, *tree, *pids, *guards])
    return {"sid": sid, "pids": pids, "server": server, "worker": worker, "tree": tree, "guards": guards,
            "t0": t0}


def assert_all_gone_and_nothing_written(cs: Codeswarm, name: str, run: dict[str, Any]) -> None:
    everything = {run["server"], *run["guards"], *run["tree"], *run["pids"]}
    wait_until(lambda: not any(_alive(p) for p in everything),
               f"outlived the worker: {sorted(p for p in everything if _alive(p))}", timeout=DELAY - 2)
    time.sleep(max(0.0, run["t0"] + DELAY + 1.5 - time.monotonic()))  # past the moment they would have written
    assert not list(cs.tmp.glob(f"{name}-marker*")), "a process of the dead worker wrote after its death"
    assert len(run["guards"]) == 1, "one process guard per worker"


STARTED: list[int] = []


@pytest.fixture(autouse=True)
def _kill_leftovers() -> Iterator[None]:
    """A failing run (an older build) leaves the app-server and its command running: only those, by PID."""
    yield
    for pid in STARTED:
        if _alive(pid) and os.getsid(pid) != os.getsid(0):
            os.kill(pid, signal.SIGKILL)
    STARTED.clear()


def test_a_sigkilled_worker_s_app_server_and_its_commands_die_with_it(cs: Codeswarm, codex_bin: str,
                                                                      fake_model: FakeResponses) -> None:
    run = start_turn(cs, codex_bin, fake_model, "killed")
    os.kill(run["worker"], signal.SIGKILL)
    wait_until(lambda: not _alive(run["worker"]), "the worker survived SIGKILL", timeout=10)
    assert_all_gone_and_nothing_written(cs, "killed", run)


def test_a_worker_stopped_in_a_turn_stops_its_app_server_itself_without_an_error(
        cs: Codeswarm, codex_bin: str, fake_model: FakeResponses) -> None:
    """The normal path (terminate --force: the shutdown reaches the worker in the turn): the worker's
    own stop ends the app-server (stdin EOF, exit 0, reaped by the worker) and it kills its command
    (P12); the worker exits 0 with nothing reported as an error; the guard then ends with it."""
    run = start_turn(cs, codex_bin, fake_model, "stopped")
    out = cs.json("terminate", run["sid"], "--force", "--wait", timeout=120)
    assert out["state"] == "terminated"
    assert_all_gone_and_nothing_written(cs, "stopped", run)
    events = cs.events("--swarm", run["sid"])
    assert not [e for e in events if "error" in e["event"]], [e for e in events if "error" in e["event"]]
    (exited,) = [e["data"] for e in events if e["event"] == "node_status" and e["data"].get("worker") == "exited"]
    assert (exited["exit_code"], exited["exit_reason"]) == (0, "shutdown")
    log = next((cs.tmp / "runs").rglob("codex_*.stderr.log")).read_text(errors="replace")
    assert "panicked" not in log and "Traceback" not in log
