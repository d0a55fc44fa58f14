"""The worker's `interrupt` control (budget_exceeded): the running turn stops gently and completes
`interrupted`; a queued injection it names never starts. Driven in-process: the slow turn's 30 s
wait cannot pass within the test, so only the interrupt can end it."""

from __future__ import annotations

from pathlib import Path

import orjson
import trio
import trio.testing

from codeswarm.worker.main import Worker
from codeswarm.worker.runtimes.base import WorkerContext
from codeswarm.worker.runtimes.mock import MockRuntime


def outbox_lines(worker: Worker) -> list[dict]:
    return [orjson.loads(raw) for raw in worker.outbox.path.read_bytes().splitlines()]


def runtime_methods(worker: Worker, injection_id: str) -> list[str]:
    return [ln["payload"].get("method") for ln in outbox_lines(worker)
            if ln["type"] == "runtime" and ln["injection_id"] == injection_id]


async def test_interrupt_stops_the_running_turn_and_drops_the_queued_one(tmp_path: Path) -> None:
    ctx = WorkerContext(job_id="j1", node_id=0, swarm_root=tmp_path, workspace=tmp_path / "node_00",
                        params={"worker_mode": "mock"})
    worker = Worker(ctx)
    async with trio.open_nursery() as nursery:
        worker.nursery = nursery
        worker.runtime = MockRuntime(ctx, worker._emit_runtime)
        await worker.runtime.start()
        nursery.start_soon(worker._turns)
        await worker._handle({"type": "user", "injection_id": "i1", "content": "[mock:slow=30] long"})
        await worker._handle({"type": "user", "injection_id": "i2", "content": "queued"})
        await trio.testing.wait_all_tasks_blocked()
        # i1 is in its slow wait after its first model call; i2 waits behind it
        assert runtime_methods(worker, "i1").count("thread/tokenUsage/updated") == 1
        assert worker.busy_with == "i1" and runtime_methods(worker, "i2") == []
        await worker._handle({"type": "control", "control_id": "c1",
                              "payload": {"kind": "interrupt", "reason": "budget_exceeded",
                                          "injection_ids": ["i1", "i2"]}})
        await trio.testing.wait_all_tasks_blocked()
        done = [ln["payload"] for ln in outbox_lines(worker)
                if ln["type"] == "runtime" and ln["payload"].get("method") == "turn/completed"]
        assert [d["params"]["turn"]["status"] for d in done] == ["interrupted"]
        assert runtime_methods(worker, "i2") == [] and worker.busy_with is None
        # a turn that was not withdrawn still runs
        await worker._handle({"type": "user", "injection_id": "i3", "content": "after"})
        await trio.testing.wait_all_tasks_blocked()
        assert runtime_methods(worker, "i3")[-1] == "turn/completed"
        nursery.cancel_scope.cancel()


async def test_interrupt_without_ids_is_reported(tmp_path: Path) -> None:
    ctx = WorkerContext(job_id="j1", node_id=0, swarm_root=tmp_path, workspace=tmp_path / "node_00",
                        params={"worker_mode": "mock"})
    worker = Worker(ctx)
    await worker._control({"kind": "interrupt", "injection_ids": "all"})
    errors = [ln for ln in outbox_lines(worker) if ln.get("event") == "worker_error"]
    assert errors and "without injection_ids" in errors[0]["data"]["message"]
