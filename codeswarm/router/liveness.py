"""The shell's non-durable bookkeeping: what the router saw, kept out of core records on purpose.

- `last_heard[(swarm_id, node_id)]`: when the router last read an outbox line of that node
  (liveness). Not durable: after a restart every running node starts a fresh heartbeat window
  (`recovered`), so a node is never declared stale because the router was down.
- the outbox read position of each node (highest seq read, byte offset) is on its
  `ingest.NodeWatch`. Not durable: after a restart the outbox is read again from the start and
  lines up to the node's durable `outbox_seq` (recovered from the events) are skipped, so
  nothing is lost or repeated.
- `observed[swarm_id]`: the last successful scheduler check time and the last poll error, shown
  in `swarm_status` replies.

The core gets what it needs of this as input (e.g. `Tick(last_heard=...)`); it never reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Observed:
    checked_at: float | None = None
    poll_error: str | None = None


@dataclass
class ShellBook:
    last_heard: dict[tuple[str, int], float] = field(default_factory=dict)
    observed: dict[str, Observed] = field(default_factory=dict)

    def heard(self, swarm_id: str, node_id: int, now: float) -> None:
        self.last_heard[(swarm_id, node_id)] = now

    def heard_by_node(self, swarm_id: str, node_count: int) -> dict[int, float]:
        return {n: t for n in range(node_count) if (t := self.last_heard.get((swarm_id, n))) is not None}

    def observation(self, swarm_id: str) -> Observed:
        obs = self.observed.get(swarm_id)
        if obs is None:
            obs = self.observed[swarm_id] = Observed()
        return obs

    def forget(self, swarm_id: str) -> None:
        """Drop everything about a swarm that the core removed."""
        self.observed.pop(swarm_id, None)
        for key in [k for k in self.last_heard if k[0] == swarm_id]:
            del self.last_heard[key]
