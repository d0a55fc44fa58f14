"""Work queues through the real .pyz (issue 8): enqueue_inject, queue_list, dispatch, kill -9."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from tests.conftest import Codeswarm

ITEMS = 10


def _named(evs: list[dict[str, Any]], name: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in evs if e["event"] == name and all(e["data"].get(k) == v for k, v in match.items())]


def test_idle_queue_runs_each_item_once_fifo_one_at_a_time_and_survives_kill_9(cs: Codeswarm) -> None:
    sid = cs.json("launch", "--nodes", "3")["swarm_id"]
    # Keep every node busy while the items are queued, so they really wait in the queue: a turn that
    # waits for its approval (ten enqueue commands can outlast a few seconds' turn on a loaded machine,
    # and then the items went out as they came).
    hold = cs.json("inject", sid, "--prompt", "[mock:approval] hold")
    # delivered, or already started: the lean worker starts a turn in the same outbox write batch
    assert all(n["outcome"] in ("delivered", "started") for n in hold["nodes"]) and len(hold["nodes"]) == 3
    prompts = [f"[mock:slow=2] item {i}" for i in range(ITEMS)]
    queue_ids = [cs.run("enqueue", sid, "--prompt", p).stdout.strip() for p in prompts]
    assert len(set(queue_ids)) == ITEMS and all(queue_ids)
    cs.wait_for(lambda evs: len(_named(evs, "exec_approval_required", swarm_id=sid)) == 3, "--swarm", sid)
    assert not _named(cs.events("--swarm", sid), "inter_swarm_dispatched"), "every item waited in the queue"
    for held in cs.json("approvals", "--swarm", sid):
        cs.run("approve", sid, "accept", "--node", str(held["node_id"]), "--call", held["call_id"])

    # Kill the router once some items went out and others still wait (items go out about
    # three every two seconds, so this state lasts long enough to be seen even on a loaded machine).
    def mid_way(evs: list[dict[str, Any]]) -> bool:
        out = len(_named(evs, "inter_swarm_dispatched", target_swarm_id=sid))
        return len(_named(evs, "inter_swarm_enqueued", target_swarm_id=sid)) == ITEMS and 4 <= out <= ITEMS - 2

    cs.wait_for(mid_way, "--swarm", sid, timeout=60)
    waiting = cs.json("queue")
    assert waiting, "the kill must land while items are still queued"
    assert [i["queue_id"] for i in waiting] == queue_ids[ITEMS - len(waiting):]  # the tail, in order
    assert all(i["selector"] == "idle" and i["target_swarm_id"] == sid for i in waiting)
    old = cs.router_pid()
    cs.kill_router()

    def all_done(evs: list[dict[str, Any]]) -> bool:
        done = {e["data"]["injection_id"] for e in _named(evs, "turn_complete", swarm_id=sid)}
        return len({e["data"]["queue_id"] for e in _named(evs, "inter_swarm_dispatched")
                    if e["data"]["injection_id"] in done}) == ITEMS

    evs = cs.wait_for(all_done, "--swarm", sid, timeout=90)
    assert cs.router_pid() != old
    assert cs.json("queue") == []

    enqueued = _named(evs, "inter_swarm_enqueued", target_swarm_id=sid)
    dispatched = _named(evs, "inter_swarm_dispatched", target_swarm_id=sid)
    # each item: enqueued once, dispatched exactly once, in FIFO order
    assert [e["data"]["queue_id"] for e in enqueued] == queue_ids
    assert [e["data"]["queue_id"] for e in dispatched] == queue_ids
    by_iid = {e["data"]["injection_id"]: e for e in dispatched}
    assert len(by_iid) == ITEMS
    for e in dispatched:
        assert e["data"]["selector"] == "idle" and isinstance(e["data"]["node_id"], int)

    # each prompt ran exactly once, on the node it was dispatched to, and turn_started says which
    started = [e for e in _named(evs, "turn_started", swarm_id=sid) if e["data"]["injection_id"] in by_iid]
    assert sorted(e["data"]["prompt"] for e in started) == sorted(prompts)
    for e in started:
        d = by_iid[e["data"]["injection_id"]]["data"]
        assert e["data"]["node_id"] == d["node_id"]
        assert prompts[queue_ids.index(d["queue_id"])] == e["data"]["prompt"]
    for iid in by_iid:
        names = [e["event"] for e in evs if e["data"].get("injection_id") == iid]
        assert names.count("inject_ack") == 1 and names.count("turn_complete") == 1, names
        assert "inject_failed" not in names

    # never two turns at once on one node: per node, every open..close span is closed before the next
    spans: dict[int, list[tuple[int, int]]] = defaultdict(list)
    ack_seq = {e["data"]["injection_id"]: e["seq"] for e in _named(evs, "inject_ack", swarm_id=sid)}
    done_seq = {e["data"]["injection_id"]: e["seq"] for e in _named(evs, "turn_complete", swarm_id=sid)}
    for iid in ack_seq:
        spans[_node_of(evs, iid)].append((ack_seq[iid], done_seq[iid]))
    for node, node_spans in spans.items():
        node_spans.sort()
        for (_, end), (start, _) in zip(node_spans, node_spans[1:]):
            assert end < start, f"node {node} ran two injections at once"
    assert {d["data"]["node_id"] for d in dispatched} == {0, 1, 2}  # the work was spread over the swarm


def _node_of(evs: list[dict[str, Any]], iid: str) -> int:
    return next(e["data"]["node_id"] for e in evs if e["event"] == "inject_ack" and e["data"]["injection_id"] == iid)


def test_enqueue_all_and_nodes_dispatch_at_once_and_cli_errors(cs: Codeswarm) -> None:
    sid = cs.json("launch", "--nodes", "3")["swarm_id"]
    other = cs.json("launch", "--nodes", "1")["swarm_id"]
    all_ = cs.json("enqueue", sid, "--prompt", "to everyone", "--selector", "all", "--source", other)
    some = cs.json("enqueue", sid, "--prompt", "to some", "--nodes", "0,2")
    assert all_["selector"] == "all" and all_["nodes"] == [0, 1, 2] and all_["source_swarm_id"] == other
    assert some["selector"] == "nodes" and some["nodes"] == [0, 2]

    def finished(evs: list[dict[str, Any]]) -> bool:
        return sum(1 for e in evs if e["event"] == "turn_complete" and e["data"]["swarm_id"] == sid) >= 5

    evs = cs.wait_for(finished, "--swarm", sid, timeout=60)
    for item, nodes, prompt in ((all_, [0, 1, 2], "to everyone"), (some, [0, 2], "to some")):
        disp = _named(evs, "inter_swarm_dispatched", queue_id=item["queue_id"])
        assert len(disp) == 1 and disp[0]["data"]["nodes"] == nodes
        acks = _named(evs, "inject_ack", request_id=item["request_id"])
        assert [a["data"]["node_id"] for a in acks] == nodes
        assert all(a["data"]["prompt"] == prompt for a in acks)
        assert disp[0]["seq"] < acks[0]["seq"]
    assert cs.json("queue") == []
    assert cs.run("queue").stdout.strip() == "queue is empty"

    rejected = [
        (("enqueue", "no-such-swarm", "--prompt", "x"), 3, "unknown target_swarm_id"),
        (("enqueue", sid, "--prompt", "x", "--nodes", "5"), 3, "out of range"),
        (("enqueue", sid, "--prompt", "x", "--selector", "nodes"), 2, "--nodes"),
        (("enqueue", sid, "--prompt", "x", "--selector", "all", "--nodes", "1"), 2, "--nodes"),
        (("enqueue", sid, "--prompt", ""), 2, "empty"),
    ]
    for args, code, text in rejected:
        proc = cs.run(*args, check=False)
        assert proc.returncode == code and text in proc.stderr, (args, proc.returncode, proc.stderr)


def test_items_waiting_for_a_terminated_swarm_are_dropped(cs: Codeswarm) -> None:
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    cs.json("inject", sid, "--prompt", "[mock:slow=30] busy")
    qids = [cs.run("enqueue", sid, "--prompt", f"later {i}").stdout.strip() for i in range(2)]
    table = cs.run("queue").stdout
    assert all(q in table for q in qids) and "later 0" in table
    cs.json("terminate", sid, "--force", "--wait", "--timeout", "60")
    evs = cs.wait_for(lambda evs: len(_named(evs, "inter_swarm_dropped")) == 2, "--swarm", sid, timeout=30)
    dropped = _named(evs, "inter_swarm_dropped")
    assert [d["data"]["queue_id"] for d in dropped] == qids
    assert all(d["data"]["reason"] for d in dropped)
    names = [e["event"] for e in evs]
    assert names.index("swarm_terminated") < min(i for i, n in enumerate(names) if n == "inter_swarm_dropped")
    assert not _named(evs, "inter_swarm_dispatched")
    assert cs.json("queue") == []
    late = cs.run("enqueue", sid, "--prompt", "too late", check=False)
    assert late.returncode == 3 and "terminating or terminated" in late.stderr
