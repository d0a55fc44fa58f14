"""Lifecycle states and the tables of allowed transitions (PROTOCOL.md 6, 7, 8.5).

A reducer moves a record only through `move`; a pair missing from its table is a bug in the
deciding code (or a log written by an incompatible router) and raises IllegalTransition, as h11
raises LocalProtocolError. A feature that needs a new transition adds the pair here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from codeswarm.errors import CodeswarmError


class SwarmState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


class WorkerState(enum.StrEnum):
    NOT_STARTED = "not_started"
    RUNNING = "running"
    STALE = "stale"
    EXITED = "exited"
    LOST = "lost"  # the provider saw the worker process end without worker_exited (issue 12 #9)


class InjectionState(enum.StrEnum):
    ACKED = "acked"
    DELIVERED = "delivered"
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"


S, W, Inj = SwarmState, WorkerState, InjectionState

SWARM_TRANSITIONS: Mapping[SwarmState, frozenset[SwarmState]] = {
    S.PENDING: frozenset({S.RUNNING, S.TERMINATING, S.TERMINATED}),
    S.RUNNING: frozenset({S.TERMINATING, S.TERMINATED}),
    # back to the state before it when the backend refuses to cancel
    S.TERMINATING: frozenset({S.PENDING, S.RUNNING, S.TERMINATED}),
    S.TERMINATED: frozenset(),
}

WORKER_TRANSITIONS: Mapping[WorkerState, frozenset[WorkerState]] = {
    W.NOT_STARTED: frozenset({W.RUNNING, W.STALE, W.EXITED, W.LOST}),
    # running -> running: a second worker_started (a worker restarted by its job) is reported again
    W.RUNNING: frozenset({W.RUNNING, W.STALE, W.EXITED, W.LOST}),
    W.STALE: frozenset({W.RUNNING, W.EXITED, W.LOST}),
    # a worker_started line after an exit: a new worker process on that node (e.g. a requeued job)
    W.EXITED: frozenset({W.RUNNING, W.EXITED}),
    # lost -> running: the restarted worker wrote worker_started; lost -> exited: a late worker_exited
    W.LOST: frozenset({W.RUNNING, W.EXITED}),
}

INJECTION_TRANSITIONS: Mapping[InjectionState, frozenset[InjectionState]] = {
    Inj.ACKED: frozenset({Inj.DELIVERED, Inj.FAILED}),
    # delivered -> completed: a queued turn aborted before it started (worker exit, terminate)
    # delivered -> failed: a queued turn withdrawn before it started (budget_exceeded, core/spend.py)
    Inj.DELIVERED: frozenset({Inj.STARTED, Inj.COMPLETED, Inj.FAILED}),
    Inj.STARTED: frozenset({Inj.COMPLETED}),
    Inj.COMPLETED: frozenset(),
    Inj.FAILED: frozenset(),
}

TABLES: Mapping[str, Mapping[enum.StrEnum, frozenset[enum.StrEnum]]] = {
    "swarm": SWARM_TRANSITIONS,  # type: ignore[dict-item]
    "worker": WORKER_TRANSITIONS,  # type: ignore[dict-item]
    "injection": INJECTION_TRANSITIONS,  # type: ignore[dict-item]
}
_ENUMS: Mapping[str, type[enum.StrEnum]] = {"swarm": SwarmState, "worker": WorkerState, "injection": InjectionState}

OPEN_INJECTION_STATES = frozenset({Inj.ACKED, Inj.DELIVERED, Inj.STARTED})
CLOSED_INJECTION_STATES = frozenset({Inj.COMPLETED, Inj.FAILED})
ACTIVE_SWARM_STATES = frozenset({S.PENDING, S.RUNNING})


class IllegalTransition(CodeswarmError):
    """A reducer was asked for a move its table does not allow: a bug, never a user error."""

    def __init__(self, kind: str, old: str, new: str, where: str) -> None:
        super().__init__(f"illegal {kind} transition {old} -> {new} ({where})")
        self.kind, self.old, self.new, self.where = kind, old, new, where


# (old, new) -> new as its enum, for every allowed move: one lookup per reduced transition (the hot
# path of a burst of turns) instead of two enum constructions. StrEnum members hash as their text.
_ALLOWED: Mapping[str, Mapping[tuple[str, str], enum.StrEnum]] = {
    kind: {(old, new): new for old, targets in table.items() for new in targets} for kind, table in TABLES.items()
}


def move(kind: str, old: str, new: str, where: str = "") -> enum.StrEnum:
    """Return `new` as its enum when `old -> new` is in the table of `kind`, else raise."""
    target = _ALLOWED[kind].get((old, new))
    if target is not None:
        return target
    enum_type = _ENUMS[kind]
    try:
        target = enum_type(new)
        allowed = TABLES[kind][enum_type(old)]
    except ValueError:
        raise IllegalTransition(kind, str(old), str(new), where) from None
    if target not in allowed:
        raise IllegalTransition(kind, str(old), str(new), where)
    return target
