"""Property (hypothesis): for random sequences of inputs through decide + reduce, replaying the
logged events through reduce from an empty state gives exactly the live state, no field masked.

The inputs cover every decider: launch, inject, enqueue, outbox lifecycle and runtime lines,
scheduler observations, ticks with the clock moving, approvals, the terminate procedure, queue
dispatch and routing of final answers, inbox write failures. A decision that breaks a transition
table raises IllegalTransition inside reduce, which fails the property too.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codeswarm.core.approvals import ApprovalDelivered, Approve
from codeswarm.core.nodeloss import NodeGone, NodeRespawned, RedeliverAcked
from codeswarm.core.evidence import JobObservation, JobState
from codeswarm.core.kernel import InboxLine
from codeswarm.core.lifecycle import (
    AnnounceTerminating,
    InboxWriteFailed,
    RepeatTerminated,
    ShutdownSent,
    TerminateRefused,
)
from codeswarm.core.queue import DispatchIdle, Enqueue, RouteAnswer
from codeswarm.protocol import Command, Rejection
from codeswarm.router.normalize.base import usage_event
from tests.harness import Harness

_EXPLORE = int(os.environ.get("CODESWARM_HYPOTHESIS_EXAMPLES") or 0)
SWARMS, NODES = 3, 3
swarm_ix = st.integers(0, SWARMS - 1)
node_ix = st.integers(0, NODES - 1)
pick = st.integers(0, 7)  # which of the known injections / approvals

ops = st.lists(st.one_of(
    st.tuples(st.just("launch"), st.booleans(), st.booleans()),
    st.tuples(st.just("inject"), swarm_ix, st.sets(node_ix, min_size=1)),
    # the last flag: the decision's inbox lines cannot be written (InboxWriteFailed: inter_swarm_blocked)
    st.tuples(st.just("enqueue"), swarm_ix, st.sampled_from(["idle", "all", "nodes"]), st.sets(node_ix, min_size=1),
              st.booleans()),
    st.tuples(st.just("start"), swarm_ix, node_ix),
    st.tuples(st.just("heartbeat"), swarm_ix, node_ix),
    st.tuples(st.just("accept"), swarm_ix, node_ix, pick),
    st.tuples(st.just("worker_error"), swarm_ix, node_ix),
    st.tuples(st.just("exit"), swarm_ix, node_ix, st.sampled_from(["error", "shutdown"])),
    st.tuples(st.just("runtime"), swarm_ix, node_ix, pick,
              st.sampled_from(["turn_started", "assistant_delta", "final", "turn_complete", "approval",
                               "command_started", "thread_active", "thread_idle", "usage"])),
    st.tuples(st.just("observe"), swarm_ix, st.sampled_from(list(JobState))),
    st.tuples(st.just("tick"), st.sampled_from([0.5, 5, 31, 65, 400, 4000])),
    st.tuples(st.just("approve"), swarm_ix, pick, st.booleans(), st.booleans()),
    st.tuples(st.just("terminate"), swarm_ix, st.sampled_from(["announce", "shutdown", "refused", "done", "repeat"])),
    st.tuples(st.just("dispatch"), swarm_ix, st.booleans()),
    st.tuples(st.just("blocked"), swarm_ix, node_ix),  # a node starts, an idle item for it cannot be written
    st.tuples(st.just("inbox_failed"), swarm_ix, pick),
    st.tuples(st.just("budget"), swarm_ix, st.sampled_from([None, 0.5, 2.0, 100.0])),
    st.tuples(st.just("lost"), swarm_ix, node_ix),  # issue 12 #9: node lost, restarted
    st.tuples(st.just("respawned"), swarm_ix, node_ix),
    st.tuples(st.just("redeliver"), swarm_ix),  # a router restart re-sends acked prompts
), max_size=60)

ANSWERS = ["done", "ok\n/swarm[s0]/idle check this", "/swarm[s1]/all everyone\n\n/reply thanks",
           "/swarm[s2]/node[0-1] pair up", "/swarm[nobody]/idle x"]


def unwritable(h: Harness, d: Any) -> None:
    """The delivery task could not write any of the decision's prompts (as router/app.py reports it)."""
    for e in d.effects:
        if isinstance(e, InboxLine) and e.line.get("type") == "user":
            h.decide(InboxWriteFailed(e.swarm_id, e.line["injection_id"], "EIO"))


def run(h: Harness, program: list[tuple[Any, ...]]) -> None:
    swarms: list[Any] = []
    outbox: dict[tuple[str, int], int] = {}

    def line_seq(sw: Any, n: int) -> int:
        outbox[(sw.swarm_id, n)] = outbox.get((sw.swarm_id, n), 0) + 1
        return outbox[(sw.swarm_id, n)]

    for op in program:
        kind = op[0]
        if kind == "launch":
            if len(swarms) < SWARMS:
                sw, _ = h.launch(nodes=NODES, system_prompt="sys" if op[1] else "", swarm_alias=f"s{len(swarms)}",
                                 auto_route=op[2], worker_mode="mock" if op[1] else "codex",
                                 _launch_hard_timeout_seconds=300, restart="on-failure", restart_max=2,
                                 **({"budget_usd": 3.0} if op[2] else {}))
                swarms.append(sw)
            continue
        if kind == "tick":
            h.at(h.now + op[1]).tick()
            continue
        if not swarms:
            continue
        sw = swarms[op[1] % len(swarms)]
        if sw.swarm_id not in h.state.swarms:
            continue  # removed by retention
        injections = list(sw.injections.values())
        if kind == "inject":
            if sw.active:
                h.inject_lines(sw, sorted(op[2]), "p")
        elif kind == "enqueue":
            if sw.active:
                nodes = sorted(op[3]) if op[2] == "nodes" else (list(range(NODES)) if op[2] == "all" else None)
                d = h.decide(Enqueue(sw.swarm_id, "rq", None, op[2], nodes, "queued work"))
                if len(op) > 4 and op[4]:
                    unwritable(h, d)
        elif kind in ("start", "heartbeat", "worker_error", "exit"):
            event = {"start": "worker_started", "heartbeat": "heartbeat", "worker_error": "worker_error",
                     "exit": "worker_exited"}[kind]
            data = {"hostname": "h"} if kind == "start" else {"message": "m", "exit_code": 1, "reason": op[3]
                                                             if kind == "exit" else None}
            h.last_heard[(sw.swarm_id, op[2])] = h.now
            from codeswarm.core.turns import LifecycleLine

            h.decide(LifecycleLine(sw.swarm_id, op[2], {"seq": line_seq(sw, op[2]), "type": "lifecycle",
                                                        "event": event, "data": data}))
        elif kind == "accept":
            if injections:
                inj = injections[op[3] % len(injections)]
                h.last_heard[(sw.swarm_id, op[2])] = h.now
                from codeswarm.core.turns import LifecycleLine

                h.decide(LifecycleLine(sw.swarm_id, op[2], {"seq": line_seq(sw, op[2]), "type": "lifecycle",
                                                            "event": "turn_accepted", "injection_id": inj.injection_id,
                                                            "data": {"queued": False, "turn_id": "t"}}))
        elif kind == "runtime":
            iid = injections[op[3] % len(injections)].injection_id if injections and op[3] < 6 else None
            what = op[4]
            ev = {"turn_started": ("turn_started", {"turn_id": "t2"}),
                  "assistant_delta": ("assistant_delta", {"content": "x"}),
                  "final": ("assistant", {"content": ANSWERS[op[3] % len(ANSWERS)], "final_answer": True}),
                  "turn_complete": ("turn_complete", {"turn_id": "t2"}),
                  "approval": ("exec_approval_required", {"call_id": f"c{op[3] % 3}", "command": ["ls"], "rpc_id": 5,
                                                          "reason": None, "cwd": "/w"}),
                  "command_started": ("command_started", {"call_id": f"c{op[3] % 3}", "command": ["ls"], "cwd": "/w"}),
                  "thread_active": ("thread_status", {"status": {"type": "active"}}),
                  "thread_idle": ("thread_status", {"status": {"type": "idle"}}),
                  # a thread per pick parity; $1 per 400,000 input tokens at the mock's and gpt-5.4's 2.5/M
                  # (as the normalizers make it: every counter, null when not reported)
                  "usage": usage_event("codex/token_count", {"input_tokens": 400_000 * (1 + op[3]), "output_tokens": 3,
                                                             "total_tokens": 400_003 + 400_000 * op[3]}, None,
                                       thread_id=f"th{op[3] % 2}")}[what]
            seq = line_seq(sw, op[2])
            h.last_heard[(sw.swarm_id, op[2])] = h.now
            from codeswarm.core.turns import RuntimeOutput

            h.decide(RuntimeOutput(sw.swarm_id, op[2], iid, [ev], seq))
            if what == "final" and iid is not None:
                h.decide(RouteAnswer(sw.swarm_id, op[2], iid, ev[1]["content"]))
        elif kind == "observe":
            h.at(h.now + 11).observe(sw, JobObservation(op[2], "X"))
        elif kind == "approve":
            approvals = list(sw.approvals.values())
            if not approvals:
                continue
            a = approvals[op[2] % len(approvals)]
            cmd = Command("approve_execution", f"ra{len(h.log)}",
                          {"job_id": sw.job_id, "call_id": a.call_id, "node_id": a.node_id, "approved": op[3]})
            try:
                d = h.decide(Approve(cmd))
            except Rejection:
                continue
            if op[4]:  # the control line reached the inbox
                for then in d.effects:
                    if isinstance(then, ApprovalDelivered):
                        h.decide(then)
        elif kind == "terminate":
            step = op[2]
            if step == "announce":
                h.decide(AnnounceTerminating(sw.swarm_id, "rt"))
            elif step == "shutdown" and sw.state == "terminating":
                h.decide(ShutdownSent(sw.swarm_id))
            elif step == "refused" and sw.state == "terminating":
                h.decide(TerminateRefused(sw.swarm_id, "rt", "scancel: refused"))
            elif step == "done":
                h.terminated(sw, "requested", "rt")
            elif step == "repeat":
                h.decide(RepeatTerminated(sw.swarm_id, "rt"))
        elif kind == "blocked":
            if sw.active and sw.nodes[op[2]].worker != "running":
                from codeswarm.core.turns import LifecycleLine

                h.last_heard[(sw.swarm_id, op[2])] = h.now
                h.decide(LifecycleLine(sw.swarm_id, op[2], {"seq": line_seq(sw, op[2]), "type": "lifecycle",
                                                            "event": "worker_started", "data": {"hostname": "h"}}))
            if sw.active:
                unwritable(h, h.decide(Enqueue(sw.swarm_id, "rq", None, "idle", None, "queued work")))
        elif kind == "dispatch":
            d = h.decide(DispatchIdle(sw.swarm_id))
            if len(op) > 2 and op[2]:
                unwritable(h, d)
        elif kind == "budget":
            from codeswarm.core.spend import SetBudget

            h.decide(SetBudget(sw.swarm_id, op[2], "rb"))
        elif kind == "lost":
            h.decide(NodeGone(sw.swarm_id, op[2], "worker pid 1 is gone"))
        elif kind == "respawned":
            attempt = sw.nodes[op[2]].restart_count + 1
            h.decide(NodeRespawned(sw.swarm_id, op[2], attempt, {"procs": [{"pid": 100 + attempt}]}))
        elif kind == "inbox_failed" and injections:  # pick 7: the newest (a queue item's, when dispatched last)
            inj = injections[-1] if op[2] == 7 else injections[op[2] % len(injections)]
            h.decide(InboxWriteFailed(sw.swarm_id, inj.injection_id, "EIO"))
        elif kind == "redeliver":
            h.decide(RedeliverAcked())


def snapshot(state: Any) -> dict[str, Any]:
    return orjson.loads(orjson.dumps({sid: sw.to_json() for sid, sw in state.swarms.items()}))


@settings(max_examples=_EXPLORE or 300, deadline=None, database=None, derandomize=not _EXPLORE,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ops)
def test_replaying_the_log_gives_exactly_the_live_state(program: list[tuple[Any, ...]]) -> None:
    h = Harness(inject_timeout_seconds=60, worker_heartbeat_timeout_seconds=30, worker_start_timeout_seconds=100,
                job_gone_confirmations=2, job_gone_window_seconds=10, approval_timeout_seconds=300,
                terminated_ttl_seconds=1000, max_terminated_swarms=1)
    run(h, program)
    assert snapshot(h.replayed()) == snapshot(h.state)
    seqs = [seq for seq, *_ in h.log]
    assert seqs == list(range(1, len(seqs) + 1))


def test_the_program_space_reaches_every_reducer() -> None:
    """The strategy is not too weak to matter: one hand-written program touches every reducer."""
    from codeswarm.core import REGISTRY

    h = Harness(inject_timeout_seconds=60, worker_heartbeat_timeout_seconds=30, job_gone_confirmations=2,
                job_gone_window_seconds=10, terminated_ttl_seconds=1000, max_terminated_swarms=1)
    program = [("launch", True, True), ("launch", False, False), ("enqueue", 1, "idle", {0}),
               ("start", 0, 0), ("start", 0, 1), ("accept", 0, 0, 0), ("runtime", 0, 0, 0, "approval"),
               ("approve", 0, 0, True, True), ("runtime", 0, 0, 0, "thread_active"),
               ("runtime", 0, 0, 1, "final"), ("runtime", 0, 0, 4, "final"), ("runtime", 0, 0, 0, "turn_complete"),
               ("observe", 1, JobState.NOT_FOUND), ("observe", 1, JobState.RUNNING), ("terminate", 1, "announce"),
               ("terminate", 1, "refused"), ("terminate", 1, "done"), ("enqueue", 0, "all", {0}),
               ("runtime", 0, 1, 1, "usage"), ("runtime", 0, 1, 3, "usage"), ("budget", 0, 100.0), ("tick", 65),
               ("lost", 0, 1), ("respawned", 0, 1), ("runtime", 0, 0, 0, "thread_idle"), ("enqueue", 0, "idle", {0}),
               ("inbox_failed", 0, 7), ("redeliver", 0), ("terminate", 0, "done"),
               ("tick", 4000)]
    run(h, program)
    seen = {name for _, name, _, _ in h.log}
    from codeswarm.core.project_records import REDUCERS as PROJECT_REDUCERS  # their own: test_project_replay.py

    assert set(REGISTRY.reducers) - seen - set(PROJECT_REDUCERS) == set()
    assert snapshot(h.replayed()) == snapshot(h.state)
