"""The router writes a swarm's snapshot with orjson.dumps(swarm) (the dataclass directly, no
asdict deep copy: router/app.py _collect_snapshots). Those bytes must be exactly what
Swarm.to_json() gives, for a swarm with every kind of nested record, and load back equal."""

from __future__ import annotations

import orjson

from codeswarm.core.queue import Enqueue
from codeswarm.core.records import Swarm
from tests.harness import Harness
from codeswarm.router.normalize.base import usage_event


def test_a_swarm_snapshot_is_its_to_json_and_loads_back_equal(h: Harness) -> None:
    swarm, _ = h.launch(nodes=3, auto_route=True)
    h.start(swarm)
    iids = h.inject(swarm, [0, 1])
    h.turn(swarm, 0, iids[0])
    h.runtime(swarm, 1, iids[1], usage_event("codex/token_count", {"input_tokens": 100, "output_tokens": 5,
                                                                   "total_tokens": 105},
                                             {"input_tokens": 100, "output_tokens": 5}))
    h.runtime(swarm, 1, iids[1], ("exec_approval_required", {"call_id": "c1", "kind": "command", "command": ["ls"],
                                                              "available_decisions": ["accept"], "rpc_id": 3}))
    for i in range(3):  # nodes 0 and 2 take one each, the third waits in the queue
        h.decide(Enqueue(swarm.swarm_id, f"rq{i}", None, "idle", None, f"work {i}"))
    assert swarm.approvals and swarm.queue and swarm.nodes[1].spend and len(swarm.injections) >= 2
    raw = orjson.dumps(swarm)
    assert raw == orjson.dumps(swarm.to_json())
    assert Swarm.from_json(orjson.loads(raw)) == swarm
