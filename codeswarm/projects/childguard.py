"""What this process starts for projects (git, a verify command) dies with it, however it dies.

gitproc runs each git in its own process group and a verify in its own session, so that a stop can
kill them as a whole; the price is that they leave the worker's group, and a SIGKILL of the worker
(kill -9, the OOM killer, the local provider's terminate escalating to killpg) left them running in
the node's checkout, writing it while the next attempt or a restarted worker used it.

The guard: one small process per worker (started on the first git or verify), in its own session so
that a kill of the worker's group does not reach it, holding the read end of a pipe whose only write
end is the worker's (O_CLOEXEC: no child inherits it). When the worker is gone - any death, or a
normal exit - the read gets EOF and the guard SIGKILLs every process of this user whose environment
carries the worker's mark (OWNER_ENV=<mark>, given to every git and verify; their helpers, hooks and
a verify's pipeline inherit it, also what left the group with setsid), every descendant of a marked
process that still lives (a child that cleared its environment: codex's shell_environment_policy)
and the process group each marked group leader leads, then sweeps again until a pass finds nothing
(a fork racing the first pass). The agent runtimes (the codex app-server, Claude Code) are marked
too, with the commands they run: a SIGKILLed worker's agent does not go on spending tokens.

Why not PR_SET_PDEATHSIG: it reaches only the direct child (git, bash), not git's helpers nor a
verify's children (a SIGKILLed bash leaves its pipeline running); it needs subprocess's preexec_fn,
documented unsafe with threads (git runs from trio's worker threads) and it turns off the vfork
fast path for every git call; and the signal comes when the forking *thread* ends, not the process
(harmless here only because that thread waits for its git). The guard costs nothing per call (one more environment variable) and
one Python start-up per worker that runs a project task.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

OWNER_ENV = "CODESWARM_OWNER"

# Run by the guard process (python -I -S: no site, no codeswarm import; argv[1] is "OWNER_ENV=mark").
GUARD_CODE = r"""
import os, signal, sys, time
needle = b"\0" + sys.argv[1].encode() + b"\0"
while os.read(0, 4096):  # EOF: the owner is gone
    pass

def sweep():
    marked, children = [], {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/" + name + "/stat", "rb") as fh:
                state, ppid = fh.read().rsplit(b")", 1)[1].split()[:2]
            if state == b"Z":  # dead already (its parent has not reaped it): nothing to kill
                continue
            with open("/proc/" + name + "/environ", "rb") as fh:
                env = b"\0" + fh.read() + b"\0"
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(int(ppid), []).append(int(name))
        if needle in env:
            marked.append(int(name))
    # A marked process's descendants too, taken from the same snapshot before any kill (a killed
    # parent's children are reparented): a runtime may start its commands with a cleared environment
    # in sessions of their own (codex's shell_environment_policy, a PTY per command).
    doomed, todo = set(marked), list(marked)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in doomed:
                doomed.add(child)
                todo.append(child)
    doomed.discard(os.getpid())
    for pid in doomed:
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(doomed)

deadline = time.monotonic() + 10.0
while sweep() and time.monotonic() < deadline:
    time.sleep(0.01)
"""

_lock = threading.Lock()
_state: dict[str, object] = {}   # "mark", "pid", "fd", "owner" (the pid that started the guard)


def env() -> dict[str, str]:
    """The environment entry every child to guard must carry; starts the guard on the first call.
    OSError when the guard cannot be started."""
    if _state.get("owner") != os.getpid():  # first call, or a forked copy of the process
        with _lock:
            if _state.get("owner") != os.getpid():
                _start()
    return {OWNER_ENV: str(_state["mark"])}


def guard_pid() -> int | None:
    """The guard process's pid (None before the first child): for tests and diagnostics."""
    pid = _state.get("pid")
    return pid if isinstance(pid, int) and _state.get("owner") == os.getpid() else None


def _start() -> None:
    mark = f"{os.getpid()}-{time.time_ns()}-{os.urandom(4).hex()}"
    rfd, wfd = os.pipe()  # non-inheritable (PEP 446): only this process holds the write end
    try:
        clean = {k: v for k, v in os.environ.items() if k != OWNER_ENV}  # the guard must not match itself
        proc = subprocess.Popen([sys.executable or "python3", "-I", "-S", "-c", GUARD_CODE, f"{OWNER_ENV}={mark}"],
                                stdin=rfd, stdout=subprocess.DEVNULL, start_new_session=True, env=clean)
    except OSError as exc:
        os.close(wfd)
        raise OSError(exc.errno, f"cannot start the process guard ({exc.strerror})") from exc
    finally:
        os.close(rfd)
    _state.update(mark=mark, pid=proc.pid, fd=wfd, owner=os.getpid(), proc=proc)
