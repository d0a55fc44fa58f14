"""PROTOCOL.md 4.3 / 5.6 `inter_swarm_blocked` through the real .pyz: a queued prompt dispatched to an
idle node whose inbox cannot be written (a directory in the inbox file's place: the router's append
fails with an OSError, root or not) stays at the head of the queue, survives a router kill -9, and runs exactly once
when the inbox works again and the node has its next idle transition."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Codeswarm


def _named(evs: list[dict[str, Any]], name: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in evs if e["event"] == name and all(e["data"].get(k) == v for k, v in match.items())]


def _inbox(cs: Codeswarm, sid: str, node_id: int) -> Path:
    job = json.loads((cs.home / "swarms" / f"{sid}.json").read_text())["job"]
    return Path(job["swarm_root"]) / "mailbox" / "inbox" / f"{job['job_id']}_{node_id:02d}.jsonl"


def test_an_unwritable_inbox_blocks_the_item_which_survives_a_restart_and_runs_once(cs: Codeswarm) -> None:
    sid = cs.json("launch", "--nodes", "1")["swarm_id"]
    cs.wait_for(lambda evs: bool(_named(evs, "node_status", worker="running")), "--swarm", sid, timeout=60)
    inbox = _inbox(cs, sid, 0)
    aside = inbox.with_name(inbox.name + ".aside")
    had_inbox = inbox.exists()
    if had_inbox:
        inbox.rename(aside)
    inbox.mkdir()  # the router refuses to append to it (mailbox.open_mailbox_file: OSError)

    qid = cs.run("enqueue", sid, "--prompt", "queued work", "--source", sid).stdout.strip()
    def put_back(evs: list[dict[str, Any]]) -> bool:  # blocked, then its injection failed `requeued`
        # (not "blocked" alone: the stream may stop between the two lines, and the test reads both)
        return any(_named(evs, "inject_failed", injection_id=b["data"]["injection_id"])
                   for b in _named(evs, "inter_swarm_blocked", queue_id=qid))

    evs = cs.wait_for(put_back, "--swarm", sid, timeout=60)
    [blocked] = _named(evs, "inter_swarm_blocked", queue_id=qid)
    assert blocked["data"]["node_id"] == 0 and "not a regular file" in blocked["data"]["reason"]
    assert blocked["data"]["source_swarm_id"] == sid and blocked["data"]["target_swarm_id"] == sid
    [first] = _named(evs, "inter_swarm_dispatched", queue_id=qid)
    assert first["seq"] < blocked["seq"]
    assert first["data"]["injection_id"] == blocked["data"]["injection_id"]
    [failed] = _named(evs, "inject_failed", injection_id=first["data"]["injection_id"])
    assert failed["data"]["reason"] == "requeued" and blocked["seq"] < failed["seq"]
    [item] = cs.json("queue")
    assert item["queue_id"] == qid and item["content"] == "queued work" and item["blocked"]["node_id"] == 0
    table = cs.run("queue").stdout
    assert qid in table and "blocked on node 0: cannot write node 0's inbox" in table

    # The queue (with the block) survives a kill -9 of the router.
    old = cs.router_pid()
    cs.kill_router()
    [item] = cs.json("queue")  # starts the router again
    assert cs.router_pid() != old
    assert item["queue_id"] == qid and item["blocked"]["node_id"] == 0

    # The inbox works again; a direct prompt gives node 0 a turn, and at its end (the node's next
    # idle transition; or earlier, if a load-delayed heartbeat made the node stale and running again)
    # the queued prompt goes out again, to node 0, and runs.
    inbox.rmdir()
    if had_inbox:
        aside.rename(inbox)
    direct = cs.json("inject", sid, "--prompt", "direct")
    assert [n["outcome"] for n in direct["nodes"]] in (["delivered"], ["started"])

    def ran(evs: list[dict[str, Any]]) -> bool:
        done = {e["data"]["injection_id"] for e in _named(evs, "turn_complete", swarm_id=sid)}
        return any(e["data"]["injection_id"] in done for e in _named(evs, "inter_swarm_dispatched", queue_id=qid))

    evs = cs.wait_for(ran, "--swarm", sid, timeout=60)
    assert cs.json("queue") == []
    dispatches = _named(evs, "inter_swarm_dispatched", queue_id=qid)
    blocks = _named(evs, "inter_swarm_blocked", queue_id=qid)
    # every dispatch but the last was blocked, then put back once each; no retry without something
    # from node 0 in between (the worker's own "inbox: not a regular file" agent_error is one, so a
    # retry may come at the restart's dispatch): no loop on an inbox that stays unwritable
    assert 2 <= len(dispatches) <= 10 and len(blocks) == len(dispatches) - 1
    for b, d in zip(blocks, dispatches[1:]):
        between = [e for e in evs if b["seq"] < e["seq"] < d["seq"] and e["data"].get("node_id") == 0
                   and ("outbox_seq" in e["data"] or e["event"] == "node_status")]
        assert between, f"queue item retried at seq {d['seq']} with no transition of node 0 since seq {b['seq']}"
    assert [b["data"]["injection_id"] for b in blocks] == [d["data"]["injection_id"] for d in dispatches[:-1]]
    for d in dispatches:
        iid = d["data"]["injection_id"]
        ends = [e["event"] for e in evs if e["event"] in ("inject_delivered", "inject_failed")
                and e["data"].get("injection_id") == iid]
        assert ends == (["inject_delivered"] if d is dispatches[-1] else ["inject_failed"]), (iid, ends)
    last = dispatches[-1]["data"]["injection_id"]
    started = [e for e in _named(evs, "turn_started", swarm_id=sid) if e["data"]["prompt"] == "queued work"]
    assert [e["data"]["injection_id"] for e in started] == [last]  # the prompt ran once
