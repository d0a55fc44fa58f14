"""A node's spend: each `usage` event -> the tokens and dollars it adds, accumulated across threads.

Runtimes report counters cumulative per agent thread (codex: per thread, and a swarm with
`fresh_thread_per_injection` starts a new thread every turn; the mock: per node). What an event adds
is its totals minus the previous totals *of the same thread*; a new thread starts from zero. A
thread whose totals went down was restarted under the same key (a respawned runtime) and starts from
zero too. Claude's `result` usage counts exactly one turn: its `last_*` counters are what it adds.

Two steps, both pure: `measure` decides (the router logs its figures on the event) and `NodeMeter.apply`
folds a logged event into the state (recovery replays it; an event at or below the meter's seq is
ignored, so a replay never counts twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from codeswarm.spend.pricing import (PricingCatalog, TokenCounts, combine_labels, cost_of_counts, counts,
                                     pricing_model_for)

PER_TURN_SOURCES = frozenset({"claude/result"})  # usage sources whose last_* counters are the whole increment
MAX_THREADS = 8  # threads remembered per node: one runs at a time, older ones never report again
COST_PLACES = Decimal("1e-10")
MAX_NAME = 200  # thread and model names kept in the state are cut here: a forged outbox line can be 1 MiB


def money(value: Decimal) -> float:
    """Dollars as logged: rounded to 1e-10, so the sum of logged figures is exact to far below a cent."""
    return float(value.quantize(COST_PLACES))


@dataclass(frozen=True)
class Charge:
    """What one usage event adds: decided once, logged on the event."""

    tokens: TokenCounts
    cost_usd: Decimal | None  # None: the model has no price and the runtime reported no cost
    last_call_cost_usd: Decimal | None
    pricing_model: str | None
    cost_source: str | None  # "pricing" (model_pricing) | "runtime" (the runtime's own figure) | None
    thread_key: str

    def fields(self, node_spend_after: Decimal) -> dict[str, Any]:
        """The fields added to the `usage` event (PROTOCOL.md 5.5 and docs/SPEND.md)."""
        return {
            "pricing_model": self.pricing_model,
            "estimated_cost_usd": None if self.cost_usd is None else money(self.cost_usd),
            "last_estimated_cost_usd": None if self.last_call_cost_usd is None else money(self.last_call_cost_usd),
            "cost_unknown": self.cost_usd is None,
            "cost_source": self.cost_source,
            "thread_key": self.thread_key,
            "delta_tokens": self.tokens.to_json(),
            "node_spend_usd": money(node_spend_after),
        }


@dataclass
class NodeMeter:
    """One node's accumulated usage; JSON-able (it lives in the router state)."""

    tokens: TokenCounts = field(default_factory=TokenCounts)
    cost_usd: Decimal = Decimal(0)
    unpriced_tokens: int = 0  # tokens of usage events whose cost is unknown
    pricing_model: str | None = None  # one model's name, or "mixed"
    threads: dict[str, list[int]] = field(default_factory=dict)  # thread key -> its last cumulative counters
    seq: int = 0  # last log seq folded in

    @property
    def cost_unknown(self) -> bool:
        return self.unpriced_tokens > 0

    def measure(self, usage: Mapping[str, Any], catalog: PricingCatalog, params: Mapping[str, Any],
                runtime: str) -> Charge:
        """Decide what `usage` (a normalized usage event's data) adds to this node. Does not mutate."""
        return measure(usage, self.threads.get(_thread_key(usage)), catalog, params, runtime)

    def apply(self, event: Mapping[str, Any], seq: int, *, track_threads: bool = True) -> bool:
        """Fold a logged usage event (with the Charge fields) in; False if it was already counted.
        A swarm's total is a NodeMeter that does not track threads."""
        if seq <= self.seq:
            return False
        self.seq = seq
        added = TokenCounts.from_json(event.get("delta_tokens") if isinstance(event.get("delta_tokens"), dict) else {})
        self.tokens = self.tokens + added
        cost = event.get("estimated_cost_usd")
        if isinstance(cost, (int, float)) and not isinstance(cost, bool):
            self.cost_usd += Decimal(repr(float(cost)))
        elif added.total:
            self.unpriced_tokens += added.total
        if isinstance(event.get("pricing_model"), str):
            self.pricing_model = combine_labels(self.pricing_model, event["pricing_model"])
        key = event.get("thread_key")
        if track_threads and isinstance(key, str) and _has_totals(event) \
                and event.get("usage_source") not in PER_TURN_SOURCES:
            self.threads.pop(key, None)
            self.threads[key] = list(TokenCounts.from_json(event).as_tuple())
            while len(self.threads) > MAX_THREADS:
                self.threads.pop(next(iter(self.threads)))
        return True

    def to_json(self) -> dict[str, Any]:
        return {"tokens": self.tokens.to_json(), "cost_usd": str(self.cost_usd), "unpriced_tokens": self.unpriced_tokens,
                "pricing_model": self.pricing_model, "threads": self.threads, "seq": self.seq}

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> "NodeMeter":
        if not d:
            return cls()
        return cls(tokens=TokenCounts.from_json(d.get("tokens")), cost_usd=Decimal(str(d.get("cost_usd") or 0)),
                   unpriced_tokens=int(d.get("unpriced_tokens") or 0), pricing_model=d.get("pricing_model"),
                   threads={str(k): list(v) for k, v in (d.get("threads") or {}).items()}, seq=int(d.get("seq") or 0))


_METER_KEYS = ("tokens", "cost_usd", "unpriced_tokens", "pricing_model", "threads", "seq")  # to_json()'s
_TOKENS_JSON = ("input_tokens", "cached_input_tokens", "cache_write_input_tokens", "cache_write_1h_input_tokens",
                "output_tokens", "reasoning_output_tokens", "total_tokens")  # TokenCounts.to_json()'s


def folded(d: Mapping[str, Any] | None, event: Mapping[str, Any], seq: int, *,
           track_threads: bool = True) -> dict[str, Any] | None:
    """`NodeMeter.from_json(d)`, `.apply(event, seq)`, `.to_json()` (None: already counted) without
    building the meter, on a meter as to_json() writes it (else that very path): the reducer folds
    every usage event into a node's and the swarm's meter. Never mutates `d` (a record loaded from
    an event may share it). tests/unit/test_meter_fold.py checks both paths give the same."""
    tokens = d.get("tokens") if d else None
    if (type(tokens) is not dict or tuple(d) != _METER_KEYS or tuple(tokens) != _TOKENS_JSON  # type: ignore[arg-type]
            or type(d["cost_usd"]) is not str or type(d["unpriced_tokens"]) is not int  # type: ignore[index]
            or type(d["seq"]) is not int or type(d["threads"]) is not dict):  # type: ignore[index]
        meter = NodeMeter.from_json(d)
        return meter.to_json() if meter.apply(event, seq, track_threads=track_threads) else None
    assert d is not None
    if seq <= d["seq"]:
        return None
    delta = event.get("delta_tokens")
    added = counts(delta if isinstance(delta, dict) else None)
    cost = event.get("estimated_cost_usd")
    cost_text = d["cost_usd"] or "0"
    unpriced = d["unpriced_tokens"]
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        cost_text = str(Decimal(cost_text) + Decimal(repr(float(cost))))
    else:
        cost_text = str(Decimal(cost_text))
        unpriced += added[0] + added[4]  # input + output: TokenCounts.total
    label = d["pricing_model"]
    if isinstance(event.get("pricing_model"), str):
        label = combine_labels(label, event["pricing_model"])
    threads = d["threads"]
    key = event.get("thread_key")
    if track_threads and isinstance(key, str) and _has_totals(event) \
            and event.get("usage_source") not in PER_TURN_SOURCES:
        threads = dict(threads)
        threads.pop(key, None)
        threads[key] = list(counts(event))
        while len(threads) > MAX_THREADS:
            threads.pop(next(iter(threads)))
    now = [a + b for a, b in zip(counts(tokens), added)]
    return {"tokens": dict(zip(_TOKENS_JSON, (*now, now[0] + now[4]))), "cost_usd": cost_text,
            "unpriced_tokens": unpriced, "pricing_model": label, "threads": threads, "seq": seq}


def _thread_key(usage: Mapping[str, Any]) -> str:
    thread_id = usage.get("thread_id")
    return thread_id[:MAX_NAME] if isinstance(thread_id, str) else ""


def measure(usage: Mapping[str, Any], prev_counts: Any, catalog: PricingCatalog, params: Mapping[str, Any],
            runtime: str) -> Charge:
    """What `usage` adds to a node whose meter holds `prev_counts` (the thread's last cumulative
    counters, or None) for the usage's thread: NodeMeter.measure without building the meter (the
    decider reads the node's JSON meter directly: this runs per usage event)."""
    thread_key = _thread_key(usage)
    last = counts(usage, "last_")
    if usage.get("usage_source") in PER_TURN_SOURCES or not _has_totals(usage):
        added = last
    else:
        total = counts(usage)
        prev = tuple(prev_counts) if prev_counts and len(prev_counts) == len(total) else \
            TokenCounts(*(prev_counts or ())).as_tuple()  # (as the dataclass does: padded, or it raises)
        went_down = any(t < p for t, p in zip(total, prev))
        added = total if went_down else tuple([t - p for t, p in zip(total, prev)])
    reported_model = usage.get("model_name")
    model_name = reported_model[:MAX_NAME] if isinstance(reported_model, str) else None
    pricing_model = pricing_model_for(params, runtime, model_name)
    price = catalog.lookup(pricing_model)
    tokens = TokenCounts(*added)
    if price is not None:
        return Charge(tokens, cost_of_counts(added, price), cost_of_counts(last, price), pricing_model, "pricing",
                      thread_key)
    reported = usage.get("reported_cost_usd")
    if isinstance(reported, (int, float)) and not isinstance(reported, bool) and reported >= 0:
        return Charge(tokens, Decimal(str(reported)), None, pricing_model, "runtime", thread_key)
    return Charge(tokens, None, None, pricing_model, None, thread_key)


def measure_json(d: Mapping[str, Any] | None, usage: Mapping[str, Any], catalog: PricingCatalog,
                 params: Mapping[str, Any], runtime: str) -> tuple[Charge, Decimal]:
    """`NodeMeter.from_json(d).measure(...)` and that meter's cost, read off the JSON meter (the
    decider needs only the usage's thread and the node's cost of the meter)."""
    if not d:
        return measure(usage, None, catalog, params, runtime), Decimal(0)
    prev = (d.get("threads") or {}).get(_thread_key(usage))
    return measure(usage, prev, catalog, params, runtime), Decimal(str(d.get("cost_usd") or 0))


def _has_totals(usage: Mapping[str, Any]) -> bool:
    return any(isinstance(usage.get(k), int) for k in ("input_tokens", "output_tokens", "total_tokens"))


@dataclass(frozen=True)
class SpendSummary:
    """Totals over several nodes (a swarm, a project)."""

    cost_usd: Decimal
    tokens: TokenCounts
    unpriced_tokens: int
    pricing_model: str | None

    @property
    def cost_unknown(self) -> bool:
        return self.unpriced_tokens > 0

    def to_json(self) -> dict[str, Any]:
        return {"spend_usd": money(self.cost_usd), "total_tokens": self.tokens.total,
                "cost_unknown": self.cost_unknown, "unpriced_tokens": self.unpriced_tokens,
                "pricing_model": self.pricing_model}


def summarize(meters: list[NodeMeter]) -> SpendSummary:
    cost, tokens, unpriced, label = Decimal(0), TokenCounts(), 0, None
    for m in meters:
        cost += m.cost_usd
        tokens = tokens + m.tokens
        unpriced += m.unpriced_tokens
        if m.pricing_model is not None:
            label = combine_labels(label, m.pricing_model)
    return SpendSummary(cost, tokens, unpriced, label)


@dataclass
class ProjectMeter:
    """A project's spend: the cost of its tasks' turns (usage events tagged with the project) and of
    its planner turn; JSON-able (it lives in the project record, core/project_budget.py)."""

    cost_usd: Decimal = Decimal(0)
    total_tokens: int = 0
    unpriced_tokens: int = 0
    pricing_model: str | None = None
    tasks: dict[str, str] = field(default_factory=dict)  # task id -> its cost (Decimal text), all attempts
    planner_usd: Decimal = Decimal(0)
    seq: int = 0  # last log seq folded in: a replayed usage event is never counted twice

    @property
    def cost_unknown(self) -> bool:
        return self.unpriced_tokens > 0

    def apply(self, event: Mapping[str, Any], seq: int, task_id: str) -> bool:
        """Fold a logged usage event of one of the project's tasks in; False if already counted."""
        if seq <= self.seq:
            return False
        self.seq = seq
        added = TokenCounts.from_json(event.get("delta_tokens") if isinstance(event.get("delta_tokens"), dict) else {})
        self.total_tokens += added.total
        cost = event.get("estimated_cost_usd")
        if isinstance(cost, (int, float)) and not isinstance(cost, bool):
            c = Decimal(repr(float(cost)))
            self.cost_usd += c
            self.tasks[task_id[:MAX_NAME]] = str(Decimal(self.tasks.get(task_id[:MAX_NAME], "0")) + c)
        elif added.total:
            self.unpriced_tokens += added.total
        if isinstance(event.get("pricing_model"), str):
            self.pricing_model = combine_labels(self.pricing_model, event["pricing_model"][:MAX_NAME])
        return True

    @classmethod
    def opening(cls, planner_usd: float) -> "ProjectMeter":
        """A new project's meter: the cost of the planner turn that wrote its task graph, if any."""
        cost = Decimal(repr(float(planner_usd)))
        return cls(cost_usd=cost, planner_usd=cost)

    def task_usd(self, task_id: str) -> float:
        return money(Decimal(self.tasks.get(task_id, "0")))

    def to_json(self) -> dict[str, Any]:
        return {"cost_usd": str(self.cost_usd), "total_tokens": self.total_tokens,
                "unpriced_tokens": self.unpriced_tokens, "pricing_model": self.pricing_model,
                "tasks": dict(self.tasks), "planner_usd": str(self.planner_usd), "seq": self.seq}

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> "ProjectMeter":
        if not d:
            return cls()
        return cls(cost_usd=Decimal(str(d.get("cost_usd") or 0)), total_tokens=int(d.get("total_tokens") or 0),
                   unpriced_tokens=int(d.get("unpriced_tokens") or 0), pricing_model=d.get("pricing_model"),
                   tasks={str(k): str(v) for k, v in (d.get("tasks") or {}).items()},
                   planner_usd=Decimal(str(d.get("planner_usd") or 0)), seq=int(d.get("seq") or 0))
