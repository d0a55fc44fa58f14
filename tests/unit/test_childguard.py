"""The process guard (codeswarm/projects/childguard.py) with real processes: an owner process starts a
verify-like child through gitproc.spawn (its own session, a pipeline, a grandchild that left with
setsid, one that cleared its environment), then is SIGKILLed; everything it started through gitproc
is gone, by PID, and none of their delayed writes happens. The control run (the guard's mark
withheld) shows the same children outliving their owner: the gap the guard closes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import _alive

ROOT = Path(__file__).resolve().parents[2]
DELAY = 2.0  # the children write their markers this long after they start

# The owner: starts a marked child (and one unmarked sleep, which the guard must leave alone), says
# ready, then waits to be killed. argv: tmp dir, "guard" or "control".
OWNER = r"""
import os, subprocess, sys, time
from pathlib import Path
from codeswarm.projects import childguard, gitproc
tmp, mode = Path(sys.argv[1]), sys.argv[2]
if mode == "control":
    childguard.env = lambda: {}
script = f'''
(sleep {DELAY}; touch {tmp}/pipeline) &
echo $! >> {tmp}/pids
setsid sh -c 'echo $$ >> {tmp}/pids; sleep {DELAY}; touch {tmp}/setsid' &
env -i /bin/sh -c 'echo $$ >> {tmp}/pids; sleep {DELAY}; touch {tmp}/cleared' &
echo $$ >> {tmp}/pids
wait
'''
proc, _, _ = gitproc.spawn(["bash", "-c", script], dict(os.environ), session=True, stdin=subprocess.DEVNULL)
free = subprocess.Popen(["sleep", "60"])
Path(tmp, "free").write_text(str(free.pid))
print(childguard.guard_pid(), flush=True)
time.sleep(600)
""".replace("{DELAY}", str(DELAY))


def wait_until(check, what: str, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def start_owner(tmp: Path, mode: str) -> tuple[subprocess.Popen[str], list[int], int, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CODESWARM_OWNER", None)
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp), mode], env=env, stdout=subprocess.PIPE,
                             text=True)
    assert owner.stdout is not None
    guard = owner.stdout.readline().strip()
    t0 = time.monotonic()
    pids_file = tmp / "pids"
    wait_until(lambda: pids_file.exists() and len(pids_file.read_text().split()) == 4, "the child never started")
    return owner, [int(p) for p in pids_file.read_text().split()], int(guard) if guard.isdigit() else 0, t0


@pytest.mark.parametrize("mode", ["guard", "control"])
def test_what_an_owner_started_dies_with_it_and_writes_nothing(tmp_path: Path, mode: str) -> None:
    owner, pids, guard, t0 = start_owner(tmp_path, mode)
    free = int((tmp_path / "free").read_text())
    try:
        assert all(_alive(p) for p in pids)
        assert len({os.getsid(p) for p in pids}) == 2, "one grandchild left the session with setsid"
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        if mode == "control":  # without the mark the owner's SIGKILL leaves them all running
            time.sleep(0.5)
            assert all(_alive(p) for p in pids), "the control's children died without a guard"
            return
        wait_until(lambda: not any(_alive(p) for p in pids),
                   f"outlived their SIGKILLed owner: {[p for p in pids if _alive(p)]}")
        wait_until(lambda: not _alive(guard), "the guard outlived its sweep")
        assert _alive(free), "the guard killed a child that did not carry its mark"
        time.sleep(max(0.0, t0 + DELAY + 1.0 - time.monotonic()))  # past the moment they would have written
        assert not [m for m in ("pipeline", "setsid", "cleared") if (tmp_path / m).exists()]
    finally:
        for pid in [*pids, free]:  # only what this test started (their groups: the subshell's sleep too)
            if _alive(pid):
                group = os.getpgid(pid)
                os.killpg(group, signal.SIGKILL) if group != os.getpgrp() else os.kill(pid, signal.SIGKILL)
        if owner.poll() is None:
            owner.kill()
            owner.wait()


def test_the_guard_ends_with_its_owner_s_normal_exit_and_spares_other_marks(tmp_path: Path) -> None:
    """A normal exit is a death too: the guard sweeps and ends. A process with another owner's mark
    (a restarted worker's) is not touched."""
    other = subprocess.Popen(["sleep", "60"], env={**os.environ, "CODESWARM_OWNER": "someone-else"})
    code = ("import sys; from codeswarm.projects import childguard; childguard.env(); "
            "print(childguard.guard_pid(), flush=True)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                             timeout=30).stdout
        guard = int(out)
        wait_until(lambda: not _alive(guard), "the guard outlived its owner's exit")
        assert _alive(other.pid)
    finally:
        other.kill()
        other.wait()


# A runtime-like owner: its marked child (an app-server) lives on after the owner's death and runs a
# command in a session of its own with a cleared environment (codex's shell_environment_policy):
# neither the mark nor the leader's group reaches that command, only "a descendant of a marked process".
RUNTIME_OWNER = r"""
import os, subprocess, sys, time
from pathlib import Path
from codeswarm.projects import childguard
tmp = Path(sys.argv[1])
server = f'''
setsid env -i /bin/sh -c 'echo $$ > {tmp}/cmd; sleep {DELAY}; touch {tmp}/cleared' &
echo $$ > {tmp}/server
wait
'''
subprocess.Popen(["sh", "-c", server], env={**os.environ, **childguard.env()}, start_new_session=True)
print(childguard.guard_pid(), flush=True)
time.sleep(600)
""".replace("{DELAY}", str(DELAY))


def test_a_cleared_environment_command_under_a_living_marked_process_dies_too(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CODESWARM_OWNER", None)
    owner = subprocess.Popen([sys.executable, "-c", RUNTIME_OWNER, str(tmp_path)], env=env,
                             stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    guard = int(owner.stdout.readline())
    pids: list[int] = []
    try:
        wait_until(lambda: all((tmp_path / f).exists() and (tmp_path / f).read_text().strip()
                               for f in ("server", "cmd")), "the server never started its command")
        t0 = time.monotonic()
        server, cmd = (int((tmp_path / f).read_text()) for f in ("server", "cmd"))
        pids = [server, cmd]
        assert b"CODESWARM_OWNER=" not in Path(f"/proc/{cmd}/environ").read_bytes()
        assert os.getsid(cmd) == cmd != os.getsid(server)
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        wait_until(lambda: not any(_alive(p) for p in pids),
                   f"outlived their SIGKILLed owner: {[p for p in pids if _alive(p)]}")
        wait_until(lambda: not _alive(guard), "the guard outlived its sweep")
        time.sleep(max(0.0, t0 + DELAY + 1.0 - time.monotonic()))
        assert not (tmp_path / "cleared").exists()
    finally:
        for pid in pids:
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
        if owner.poll() is None:
            owner.kill()
            owner.wait()
