"""CPU cost per outbox line of the router's ingest, in process (no sockets, no other processes).

    python3 benchmarks/bench_ingest_cpu.py [--nodes 64] [--lines 4000] [--profile FILE]
    python3 benchmarks/bench_ingest_cpu.py --nodes 4 --turns 200     # bench_burst's turns instead

The real Router (source tree) with a 64-node mock swarm whose workers are the script: each node's
outbox gets `--lines` assistant deltas of a started turn (bench_core's ingest backlog), then the
ingest reads them (poll_node: read, parse, normalize, decide, reduce, encode) and the committer's
work is done once (log append + fan-out to no client). Prints microseconds of CPU per line for each
part: a figure that moves much less with the machine's load than events/s of the whole router.
With --turns N: N injections per node (decided as bench_burst's inject commands are), and each
node's outbox gets what the lean mock worker writes for them (its turn script, through the worker's
Outbox writer): the router's CPU per mock turn.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codeswarm.config import parse_config  # noqa: E402
from codeswarm.core.lifecycle import Inject, Launch  # noqa: E402
from codeswarm.mailbox import outbox_path  # noqa: E402
from codeswarm.router.app import Router  # noqa: E402
from codeswarm.worker.outbox import Outbox  # noqa: E402
from codeswarm.worker.runtimes.base import WorkerContext  # noqa: E402
from codeswarm.worker.runtimes.mock import LeanMock  # noqa: E402


def line(seq: int, job: str, node: int, iid: str | None, kind: str, **fields: object) -> bytes:
    obj = {"seq": seq, "ts": time.time(), "job_id": job, "node_id": node, "injection_id": iid, "type": kind, **fields}
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def delta(seq: int, job: str, node: int, iid: str, text: str) -> bytes:
    return line(seq, job, node, iid, "runtime", runtime="mock",
                payload={"method": "codex/event/agent_message_content_delta",
                         "params": {"msg": {"type": "agent_message_content_delta", "delta": text}}})


def main() -> None:
    trio.run(run)


async def run() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=64)
    ap.add_argument("--lines", type=int, default=4000)
    ap.add_argument("--turns", type=int, default=0, help="mock turns per node instead of a delta backlog")
    ap.add_argument("--profile", help="write a cProfile of the ingest part to this file")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cs-ingest-cpu-"))
    config = parse_config({"cluster": {"local": {"workspace_root": str(tmp / "runs")}}}, None, base_dir=tmp)
    (tmp / "state").mkdir()
    router = Router(config, tmp / "state", {})
    job_id = "local-bench"
    root = tmp / "runs" / job_id
    job = {"job_id": job_id, "swarm_root": str(root), "backend": "local", "profile": None, "extra": {}}
    router.decide(Launch(request_id="r", swarm_id="s1", job=job, node_count=args.nodes, provider="local",
                         provider_id="mock", params={"worker_mode": "mock"}, system_prompt=""))
    swarm = router.state.swarms["s1"]
    paths = {n: outbox_path(root, job_id, n) for n in range(args.nodes)}
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    for n, p in paths.items():  # the worker starts
        p.write_bytes(line(1, job_id, n, None, "lifecycle", event="worker_started",
                           data={"hostname": "h", "pid": 1, "runtime": "mock", "worker_protocol": 1}))
    router.ingest.sync()
    for w in router.ingest.watches.values():
        router.ingest.poll_node(w)
    head0 = router.log.head_seq
    t_inject = 0.0
    if args.turns:
        t0 = time.process_time()
        for i in range(args.turns):
            router.decide(Inject("s1", list(range(args.nodes)), f"burst {i}", f"b{i}"))
        t_inject = time.process_time() - t0
        mock_turns(root, job_id, swarm, args.nodes)
    else:
        backlog(router, swarm, paths, job_id, args.nodes, args.lines)
    prof = cProfile.Profile() if args.profile else None
    t0 = time.process_time()
    if prof:
        prof.enable()
    for w in list(router.ingest.watches.values()):
        while router.ingest.poll_node(w):
            pass
    if prof:
        prof.disable()
        prof.dump_stats(args.profile)
    t1 = time.process_time()
    batch, lines = router._pending, router._pending_lines
    router.log.append(lines, batch[0].seq)
    router._fanout(batch)
    t2 = time.process_time()
    events = router.log.head_seq - head0
    print(f"lines {router.ingest.lines_read}  events {events}")
    if args.turns:
        turns = args.turns * args.nodes
        print(f"inject decisions ({args.turns} x {args.nodes} nodes)     {t_inject / turns * 1e6:8.1f} us/turn")
        print(f"ingest of the turns' outbox lines        {(t1 - t0) / turns * 1e6:8.1f} us/turn "
              f"({(t1 - t0) / events * 1e6:.1f} us/event, {events / turns:.1f} events/turn)")
        print(f"commit (log append, ring, no client)     {(t2 - t1) / turns * 1e6:8.1f} us/turn")
        total = t2 - t0 + t_inject
        print(f"total                                    {total / turns * 1e6:8.1f} us/turn "
              f"-> {turns / total:,.0f} turns/s of one core")
        return
    print(f"ingest (read, parse, normalize, decide, reduce, encode)  {(t1 - t0) / events * 1e6:6.2f} us/event")
    print(f"commit (log append, ring, fan-out to no client)         {(t2 - t1) / events * 1e6:6.2f} us/event")
    print(f"total                                                   {(t2 - t0) / events * 1e6:6.2f} us/event "
          f"-> {events / (t2 - t0):,.0f} events/s of one core")


def backlog(router: Router, swarm: Any, paths: dict[int, Path], job_id: str, nodes: int, count: int) -> None:
    """bench_core's backlog: one started turn per node, then `count` assistant deltas each."""
    router.decide(Inject("s1", list(range(nodes)), "go", "rq"))
    iids = {i.node_id: i.injection_id for i in swarm.injections.values()}
    for n, p in paths.items():
        with open(p, "ab") as f:
            f.write(line(2, job_id, n, iids[n], "lifecycle", event="turn_accepted", data={"queued": False}))
            f.write(line(3, job_id, n, iids[n], "runtime", runtime="mock",
                         payload={"method": "codex/event/task_started", "params": {"msg": {"type": "task_started"}}}))
            f.write(b"".join(delta(4 + i, job_id, n, iids[n], f"tok{i} ") for i in range(count)))


def mock_turns(root: Path, job_id: str, swarm: Any, nodes: int) -> None:
    """What each node's lean mock worker writes for its injections, in order (accepted, then the turns)."""
    for n in range(nodes):
        ctx = WorkerContext(job_id, n, root, root / f"node_{n:02d}", {"worker_mode": "mock", "mock_delay_ms": 0})
        ctx.workspace.mkdir(parents=True, exist_ok=True)
        out = Outbox(outbox_path(root, job_id, n), job_id, n)
        busy: list[str | None] = [None]
        mock = LeanMock(ctx, lambda payload: out.runtime("mock", payload, busy[0]), NoWaits())
        mock.start()
        mine = [i for i in swarm.injections.values() if i.node_id == n]
        for k, inj in enumerate(mine):
            out.lifecycle("turn_accepted", {"queued": k > 0}, inj.injection_id)
        for inj in mine:
            busy[0] = inj.injection_id
            mock.run_turn(inj.injection_id, inj.prompt)


class NoWaits:
    """The lean worker's host API without an inbox: mock_delay_ms 0 never really waits."""

    def sleep(self, seconds: float) -> None:
        pass

    def wait_until(self, done: Any, timeout: float) -> bool:
        return bool(done())


if __name__ == "__main__":
    main()
