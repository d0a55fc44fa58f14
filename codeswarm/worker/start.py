"""`codeswarm worker`: picks the worker loop for this node's runtime.

The lean loop (lean.py) for the mock runtime, the trio worker (main.py) for codex and claude, and
for a lean worker that handed a project task over (CODESWARM_WORKER_LOOP=trio, set across its exec).
"""

from __future__ import annotations

import fcntl
import os
import sys

from codeswarm import codec
from codeswarm.mailbox import make_private_dirs
from codeswarm.worker.context import WorkerContext, load_context


def node_lock(ctx: WorkerContext) -> int | None:
    """Hold the node's lock for the worker's lifetime; None when another worker of the node holds it.

    Two workers on one mailbox would both read the inbox and interleave the outbox seq: a restart
    racing a worker that is still alive (issue 12 #9) must not do that. The descriptor is not
    inherited: a lean worker that execs into the trio worker takes the lock again here."""
    path = ctx.swarm_root / "mailbox" / "outbox" / f"{ctx.job_id}_{ctx.node_id:02d}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError as exc:  # a filesystem without locks (ENOLCK): run unguarded, and say so
        print(f"codeswarm worker: cannot lock {path} ({exc.strerror}); running without the node lock",
              file=sys.stderr)
    return fd


def main() -> int:
    codec.use_stdlib()  # until we know the runtime: orjson costs ~3.8 MB (codec.py)
    ctx = load_context()
    try:
        make_private_dirs(ctx.swarm_root / "mailbox" / "outbox")
        locked = node_lock(ctx)
    except OSError as exc:
        print(f"codeswarm worker: cannot open the mailbox: {exc}", file=sys.stderr)
        return 2
    if locked is None:
        print(f"codeswarm worker: node {ctx.node_id} of job {ctx.job_id} already has a running worker",
              file=sys.stderr)
        return 3
    mode = str(ctx.params.get("worker_mode") or "mock")
    if mode != "mock" or os.environ.get("CODESWARM_WORKER_LOOP") == "trio":
        codec.use_orjson()
        from codeswarm.worker.main import run_trio_worker

        return run_trio_worker(ctx)
    from codeswarm.worker.lean import LeanWorker

    try:
        worker = LeanWorker(ctx)
    except OSError as exc:
        print(f"codeswarm worker: cannot open the mailbox: {exc}", file=sys.stderr)
        return 2
    return worker.run()
