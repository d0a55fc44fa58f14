"""Review of the snapshots written at a clean stop (a7843f2): a stop that cancels the committer between
taking a batch's snapshots and writing them must not leave a state.json that claims those swarms' events
were applied (their events would never be replayed again)."""

from __future__ import annotations

from pathlib import Path

import trio

from codeswarm.config import parse_config
from codeswarm.router.app import Router
from tests.harness import Harness


def test_a_stop_that_cuts_a_snapshot_write_loses_no_swarm(tmp_path: Path) -> None:
    config = parse_config({"cluster": {"local": {"workspace_root": str(tmp_path / "runs")}}}, None, base_dir=tmp_path)
    home = tmp_path / "home"
    h = Harness()
    a, _ = h.launch(nodes=1)
    b, _ = h.launch(nodes=1)
    events = [(name, data) for _seq, name, data, _now in h.log]
    first = [e for e in events if e[1].get("swarm_id") == a.swarm_id]
    then = [e for e in events if e[1].get("swarm_id") != a.swarm_id]
    assert first and then
    r = Router(config, home, {})
    r.recover()

    async def main() -> None:
        with trio.fail_after(20):
            await scenario()

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            r._snapshot_due = True  # the next batch takes its snapshots (as SNAPSHOT_INTERVAL would)
            await r._snap_lock.acquire()  # ... and its write waits here when the stop comes
            nursery.start_soon(r.committer)
            for name, data in first:
                r.emit(name, data)
            while r.committed_seq < r.log.head_seq or not r._snap_lock.statistics().tasks_waiting:
                await trio.sleep(0)  # a checkpoint: the committer runs (no event tells a lock waiter)
            nursery.cancel_scope.cancel()  # the stop
        r._snap_lock.release()
        async with trio.open_nursery() as nursery:  # the rest is committed, not snapshotted yet
            nursery.start_soon(r.committer)
            for name, data in then:
                r.emit(name, data)
            while r.committed_seq < r.log.head_seq:
                await trio.sleep(0)
            nursery.cancel_scope.cancel()
        await r.save_snapshots_on_stop()

    trio.run(main)
    expected = {sid: r.state.swarms[sid].to_json() for sid in (a.swarm_id, b.swarm_id)}
    r.log.close()
    again = Router(config, home, {})
    again.recover()
    assert {sid: s.to_json() for sid, s in again.state.swarms.items()} == expected
