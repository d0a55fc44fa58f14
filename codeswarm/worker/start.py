"""`codeswarm worker`: picks the worker loop for this node's runtime.

The lean loop (lean.py) for the mock runtime, the trio worker (main.py) for codex and claude, and
for a lean worker that handed a project task over (CODESWARM_WORKER_LOOP=trio, set across its exec).
"""

from __future__ import annotations

import os
import sys

from codeswarm import codec
from codeswarm.worker.context import load_context


def main() -> int:
    codec.use_stdlib()  # until we know the runtime: orjson costs ~3.8 MB (codec.py)
    ctx = load_context()
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
