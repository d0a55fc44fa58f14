"""Queue decisions (core/queue.py) and the outbox ingest (router/ingest.py) on the shared harness."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from codeswarm.core.kernel import Decision, InboxLine
from codeswarm.core.queue import DispatchIdle, Enqueue
from codeswarm.router.ingest import READ_STEP, NodeWatch, OutboxIngest
from codeswarm.router.liveness import ShellBook
from tests.harness import T0, Harness

# ---------------------------------------------------------------- queue


def running(h: Harness, nodes: int = 2, **params: Any) -> Any:
    swarm, _ = h.launch(nodes=nodes, **params)
    h.start(swarm)
    return swarm


def enqueue(h: Harness, swarm: Any, selector: str = "idle", nodes: list[int] | None = None,
            content: str = "work") -> list[InboxLine]:
    d = h.decide(Enqueue(swarm.swarm_id, "rq", None, selector, nodes, content))
    return [e for e in d.effects if isinstance(e, InboxLine)]


def test_idle_items_go_to_the_lowest_idle_nodes_in_fifo_order_and_wait_for_the_rest(h: Harness) -> None:
    swarm = running(h, nodes=2)
    lines = [enqueue(h, swarm, content=f"item {i}") for i in range(3)]
    assert [[(a.node_id, a.line["content"]) for a in ls] for ls in lines] == [[(0, "item 0")], [(1, "item 1")], []]
    assert [i["content"] for i in swarm.queue] == ["item 2"]
    # node 0 finishes: DispatchIdle feeds it the head item
    iid0 = next(i.injection_id for i in swarm.injections.values() if i.node_id == 0)
    h.turn(swarm, 0, iid0)
    d = h.decide(DispatchIdle(swarm.swarm_id))
    assert [(a.node_id, a.line["content"]) for a in d.effects] == [(0, "item 2")]
    assert swarm.queue == []
    updated = [d["items"] for n, d in h.events() if n == "queue_updated"]
    assert [len(items) for items in updated] == [1, 0, 1, 0, 1, 0]


def test_one_decision_never_gives_one_idle_node_two_items(h: Harness) -> None:
    swarm = running(h, nodes=1)
    h.decide(Enqueue(swarm.swarm_id, "r1", None, "idle", None, "a"))  # dispatched: node 0 busy
    h.decide(Enqueue(swarm.swarm_id, "r2", None, "idle", None, "b"))  # waits
    assert [i["content"] for i in swarm.queue] == ["b"]
    assert h.names().count("inter_swarm_dispatched") == 1


def test_all_and_nodes_items_are_dispatched_at_once_even_to_busy_nodes(h: Harness) -> None:
    swarm = running(h, nodes=3)
    h.inject(swarm, [1])
    assert [a.node_id for a in enqueue(h, swarm, "all", [0, 1, 2])] == [0, 1, 2]
    assert [a.node_id for a in enqueue(h, swarm, "nodes", [2])] == [2]
    assert swarm.queue == []


def test_a_pending_swarm_keeps_idle_items_until_it_runs(h: Harness) -> None:
    swarm, _ = h.launch(nodes=1)
    assert enqueue(h, swarm) == []
    h.start(swarm)
    assert [a.node_id for a in h.decide(DispatchIdle(swarm.swarm_id)).effects] == [0]


def test_termination_drops_waiting_items_after_swarm_terminated(h: Harness) -> None:
    swarm, _ = h.launch(nodes=1)
    enqueue(h, swarm, content="x")
    enqueue(h, swarm, content="y")
    mark = h.mark()
    h.terminated(swarm)
    names = h.names(after=mark)
    assert names[-4:] == ["swarm_terminated", "inter_swarm_dropped", "inter_swarm_dropped", "queue_updated"]
    assert h.events()[-1][1]["items"] == [] and swarm.queue == []
    assert h.replayed().swarms[swarm.swarm_id].queue == []


def test_enqueue_to_an_ended_swarm_decides_nothing(h: Harness) -> None:
    swarm, _ = h.launch(nodes=1)
    h.terminated(swarm)
    mark = h.mark()
    assert enqueue(h, swarm) == [] and h.names(after=mark) == []


# ---------------------------------------------------------------- ingest


class Host:
    """What the ingest needs of the Router, backed by the harness (IngestHost protocol)."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.state = h.state
        self.book = ShellBook()
        self.settings = h.settings

    def now(self) -> float:
        return self.h.now

    def decide(self, inp: Any, now: float | None = None) -> Decision:
        return self.h.decide(inp, now)


def write(path: Path, *lines: dict[str, Any] | bytes) -> None:
    with path.open("ab") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else orjson.dumps(line) + b"\n")


def lifecycle(seq: int, event: str, **data: Any) -> dict[str, Any]:
    return {"seq": seq, "ts": T0, "type": "lifecycle", "event": event, "data": data, "injection_id": None}


def watch(tmp_path: Path, swarm: Any, host: Host) -> tuple[OutboxIngest, NodeWatch, Path]:
    ingest = OutboxIngest(host)  # type: ignore[arg-type]
    path = tmp_path / "outbox.jsonl"
    path.touch()
    node = swarm.nodes[0]  # as OutboxIngest.sync starts a watch: at the durable position
    w = NodeWatch(swarm.swarm_id, 0, str(path), seq=node.outbox_seq, offset=node.outbox_offset)
    return ingest, w, path


def test_each_line_once_in_seq_order_and_liveness_in_the_shell(h: Harness, tmp_path: Path) -> None:
    swarm, _ = h.launch(nodes=1)
    host = Host(h)
    ingest, w, path = watch(tmp_path, swarm, host)
    write(path, lifecycle(1, "worker_started", hostname="n1"), lifecycle(2, "heartbeat"))
    h.at(T0 + 3)
    assert ingest.poll_node(w) is True
    assert swarm.nodes[0].worker == "running" and swarm.nodes[0].hostname == "n1"
    assert host.book.last_heard[(swarm.swarm_id, 0)] == T0 + 3  # not a core record
    assert (w.seq, swarm.nodes[0].outbox_seq) == (2, 1)  # the durable seq moves with events only
    assert ingest.poll_node(w) is False  # nothing new
    # Lines with repeated seqs at new places in the file: reported and processed, never dropped
    # (issue 12 #5: what was read is known by position; seq is only checked).
    write(path, lifecycle(2, "heartbeat"), lifecycle(1, "worker_started"))
    mark = h.mark()
    ingest.poll_node(w)
    codes = [d.get("error_code") for n, d in h.events(after=mark) if n == "agent_error"]
    assert codes == ["outbox_seq_duplicate", "outbox_seq_backwards"]
    assert "node_status" in h.names(after=mark)  # the second worker_started was processed


def test_a_restarted_router_rereads_and_skips_what_became_events(h: Harness, tmp_path: Path) -> None:
    swarm, _ = h.launch(nodes=1)
    ingest, w, path = watch(tmp_path, swarm, Host(h))
    write(path, lifecycle(1, "worker_started"), lifecycle(2, "worker_error", message="m1"), lifecycle(3, "heartbeat"))
    ingest.poll_node(w)
    fresh = h.replayed()  # what a restarted router recovers: the position after the last line with events
    node = fresh.swarms[swarm.swarm_id].nodes[0]
    after_m1 = sum(len(raw) for raw in path.read_bytes().splitlines(keepends=True)[:2])
    assert (node.outbox_seq, node.outbox_offset) == (2, after_m1)
    h.state = fresh
    host = Host(h)
    ingest, w, path = watch(tmp_path, fresh.swarms[swarm.swarm_id], host)
    assert (w.seq, w.offset) == (2, after_m1)  # the heartbeat after it is read again: it makes no event
    write(path, lifecycle(4, "worker_error", message="m2"))
    mark = h.mark()
    ingest.poll_node(w)
    assert [d["message"] for n, d in h.events(after=mark)] == ["m2"]  # m1 is not repeated


def test_bad_lines_become_agent_errors_and_do_not_stop_the_good_ones(h: Harness, tmp_path: Path) -> None:
    swarm, _ = h.launch(nodes=1)
    ingest, w, path = watch(tmp_path, swarm, Host(h))
    write(path, b"{not json\n", {"type": "lifecycle", "event": "heartbeat"}, {"seq": 1, "type": "mystery"},
          lifecycle(2, "worker_started"))
    ingest.poll_node(w)
    errors = [d for n, d in h.events() if n == "agent_error"]
    assert [d["error_code"] for d in errors] == ["outbox_invalid_line"] * 3
    assert "without an integer seq" in errors[1]["message"] and "mystery" in errors[2]["message"]
    assert swarm.nodes[0].worker == "running"


def test_a_poll_reads_a_step_and_a_line_longer_than_a_step_whole(h: Harness, tmp_path: Path) -> None:
    """A poll decides at most READ_STEP bytes (the loop lets the committer in between polls), except
    that a line longer than that is read whole on the same poll: no line is ever stuck."""
    swarm, _ = h.launch(nodes=1)
    ingest, w, path = watch(tmp_path, swarm, Host(h))
    big = "x" * (READ_STEP + 1000)
    write(path, lifecycle(1, "worker_error", message=big), lifecycle(2, "worker_error", message="after"))
    assert ingest.poll_node(w) is True
    assert [d["message"] for n, d in h.events() if n == "agent_error"] == [big, "after"]
    small = [lifecycle(3 + i, "worker_error", message="m" * 200) for i in range(2 * READ_STEP // 300)]
    write(path, *small)
    mark = h.mark()
    polls = 0
    while ingest.poll_node(w):
        polls += 1
    assert len(h.names(after=mark)) == len(small) and polls >= 2


def test_a_watch_forgotten_during_a_round_is_not_read_in_it(h: Harness, tmp_path: Path) -> None:
    """The loop yields within a round (a backlog must not stall answers); a node forgotten meanwhile
    (its swarm terminated: sync dropped the watch) is not read on in that round."""
    import trio
    import trio.testing

    swarm, _ = h.launch(nodes=2)
    ingest = OutboxIngest(Host(h))  # type: ignore[arg-type]
    watches = []
    for node in range(2):
        path = tmp_path / f"outbox{node}.jsonl"
        write(path, lifecycle(1, "worker_error", message=f"from node {node}"))
        w = NodeWatch(swarm.swarm_id, node, str(path), notified=True)
        ingest.watches[(swarm.swarm_id, node)] = w
        watches.append(w)
    real_poll = ingest.poll_node

    def poll_then_forget_the_other(w: NodeWatch) -> bool:
        other = watches[1 - w.node_id]
        ingest.watches.pop((other.swarm_id, other.node_id), None)
        return real_poll(w)

    ingest.poll_node = poll_then_forget_the_other  # type: ignore[method-assign]

    async def main() -> None:
        for w in watches:
            ingest._schedule(w, 0.0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ingest.run)
            await trio.sleep(1)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    errors = [d["message"] for n, d in h.events() if n == "agent_error"]
    assert len(errors) == 1 and errors[0] in ("from node 0", "from node 1")
