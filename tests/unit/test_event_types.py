"""The event registry (codeswarm/core/event_types): complete, true to the code and the wire contract,
and its checker reports what is wrong.

- Every event name the code emits is declared: an AST scan of codeswarm/ finds each `.emit(name,
  ...)`, `.send_directed(name, ...)` and `make_event(name, ...)` call (codeswarm/worker is not the
  router: its `emit(payload)` writes outbox lines) and each event tuple a normalizer returns. A name
  that is not a literal must be listed in DYNAMIC with the names it can take.
- Every event of PROTOCOL.md 5 is declared; every declared event is emitted (or is the one
  PROTOCOL event this router never emits) and named in the document its `documented` points to.
- check_event reports unknown names, missing and unknown keys and wrong types, also nested ones.
- The hooks check what tests record: tests/harness.py (Harness.record) and an in-process Router
  (tests/conftest.py wraps Router._record).
"""

from __future__ import annotations

import ast
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from codeswarm.core.event_types import EVENTS, check_event
from codeswarm.core.kernel import Event
from codeswarm.spend.budget import BudgetState, crossings
from tests.harness import Harness

ROOT = Path(__file__).resolve().parents[2]
CODE = ROOT / "codeswarm"
SPEC = ROOT.parent / "shared" / "spec" / "PROTOCOL.md"

# PROTOCOL.md section 5's event tables (checked against the file itself when ../shared is there).
PROTOCOL_EVENTS = {
    "swarm_launched", "swarm_status", "swarm_list", "swarm_terminated", "swarm_removed", "workspace_archive_ready",
    "workspace_archive_failed", "providers_list", "node_status", "inject_ack", "inject_delivered", "inject_failed",
    "turn_started", "reasoning_delta", "reasoning", "assistant_delta", "assistant", "turn_complete", "task_started",
    "task_complete", "thread_status", "agent_error", "command_started", "command_completed", "file_change",
    "exec_approval_required", "exec_approval_resolved", "queue_list", "queue_updated", "inter_swarm_enqueued",
    "inter_swarm_dispatched", "inter_swarm_blocked", "inter_swarm_dropped", "command_rejected", "subscribed",
    "unsubscribed", "pong", "command_deduplicated", "usage",
}
NEVER_EMITTED: dict[str, str] = {}  # declared events no code emits (with why), none today

BUDGET_MARKS = set(crossings(BudgetState(Decimal(1)), Decimal(2)))
# Emit calls whose name is not a literal: (file, function) -> the names it can be.
DYNAMIC: dict[tuple[str, str], set[str] | str] = {
    ("codeswarm/core/spend.py", "check_budget"): BUDGET_MARKS,
    ("codeswarm/core/project_budget.py", "check"): BUDGET_MARKS,
    ("codeswarm/core/turns.py", "decide_runtime"): "normalizers",  # the normalized events, passed on
    # pass-through: the envelope of an event already emitted (its name is checked where it is emitted)
    ("codeswarm/router/connection.py", "send_directed"): "its callers",
    ("codeswarm/router/app.py", "_record"): "Router.decide / Router.emit",
    ("codeswarm/router/app.py", "_private_lines"): "Router.decide / Router.emit",
}
EMITTERS = {"emit", "send_directed", "make_event"}


def _function_of(tree: ast.AST) -> dict[ast.AST, str]:
    """node -> the name of the innermost function holding it (ast.walk is breadth-first: outer first)."""
    owner: dict[ast.AST, str] = {}
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if node is not fn:
                    owner[node] = fn.name
    return owner


def emit_sites(root: Path) -> tuple[list[tuple[str, int, str]], list[tuple[str, str, int]]]:
    """(file, line, name) of literal names; (file, function, line) of the others."""
    literal, dynamic = [], []
    for path in sorted(root.rglob("*.py")):
        rel = str(path.relative_to(root.parent))
        if rel.startswith("codeswarm/worker/"):
            continue
        tree = ast.parse(path.read_text(), rel)
        owner = _function_of(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called not in EMITTERS:
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                literal.append((rel, node.lineno, first.value))
            else:
                dynamic.append((rel, owner.get(node, "<module>"), node.lineno))
    return literal, dynamic


def normalizer_names(root: Path) -> set[str]:
    """Event names of the (name, data) tuples the normalizers return, append or list."""
    names = set()
    for path in (root / "router" / "normalize").glob("*.py"):
        tree = ast.parse(path.read_text())
        for parent in ast.walk(tree):
            if isinstance(parent, ast.Return):
                kids = [parent.value]
            elif isinstance(parent, ast.List):
                kids = list(parent.elts)
            elif isinstance(parent, ast.Call) and isinstance(parent.func, ast.Attribute) and parent.func.attr == "append":
                kids = list(parent.args)
            else:
                continue
            for kid in kids:
                if isinstance(kid, ast.Tuple) and len(kid.elts) == 2 and isinstance(kid.elts[0], ast.Constant) \
                        and isinstance(kid.elts[0].value, str):
                    names.add(kid.elts[0].value)
    return names


def emitted_names() -> set[str]:
    literal, _dynamic = emit_sites(CODE)
    names = {name for _f, _l, name in literal} | normalizer_names(CODE)
    for value in DYNAMIC.values():
        names |= value if isinstance(value, set) else set()
    return names


# ---------------------------------------------------------------- the registry is complete and true


def test_every_name_passed_to_emit_is_declared() -> None:
    literal, dynamic = emit_sites(CODE)
    assert len(literal) > 80, "the scan finds the emit calls"
    missing = [f"{f}:{line} {name}" for f, line, name in literal if name not in EVENTS]
    assert missing == []
    unlisted = sorted({(f, fn) for f, fn, _line in dynamic} - set(DYNAMIC))
    assert unlisted == [], "an emit whose name is not a literal: list the names it can take in DYNAMIC"
    assert BUDGET_MARKS == {"budget_warning", "budget_exceeded"}
    assert {n for v in DYNAMIC.values() if isinstance(v, set) for n in v} <= set(EVENTS)


def test_every_event_a_normalizer_makes_is_declared() -> None:
    names = normalizer_names(CODE)
    assert {"assistant", "usage", "turn_complete", "exec_approval_required", "agent_error"} <= names
    assert names - set(EVENTS) == set()


def test_the_scan_sees_an_undeclared_name(tmp_path: Path) -> None:
    """The scan is not blind: a copy of the tree with one typo'd emit and one unlisted dynamic emit."""
    copy = tmp_path / "codeswarm"
    (copy / "core").mkdir(parents=True)
    (copy / "core" / "x.py").write_text("def f(out, n):\n    out.emit('inject_acked', {})\n    out.emit(n, {})\n")
    literal, dynamic = emit_sites(copy)
    assert [name for _f, _l, name in literal if name not in EVENTS] == ["inject_acked"]
    assert dynamic == [("codeswarm/core/x.py", "f", 3)]


def test_every_protocol_event_is_declared() -> None:
    if SPEC.exists():  # the list above is the spec's: a new event there must be added here too
        section5 = SPEC.read_text().split("\n## 5. Events", 1)[1].split("\n## 6.", 1)[0]
        in_tables = set(re.findall(r"^\| `([a-z_]+)`(?: \(ext\))? \|", section5, re.M)) | {"usage"}  # usage: prose in 5.5
        assert in_tables == PROTOCOL_EVENTS
    assert PROTOCOL_EVENTS - set(EVENTS) == set()


def test_every_declared_event_is_emitted_and_documented_where_it_says() -> None:
    emitted = emitted_names()
    assert set(EVENTS) - emitted == set(NEVER_EMITTED)
    for name, et in EVENTS.items():
        doc = et.documented.split()[0]
        text = SPEC.read_text() if doc == "PROTOCOL.md" and SPEC.exists() else \
            (ROOT / doc).read_text() if doc != "PROTOCOL.md" else ""
        assert not text or name in text, f"{name} is not named in {doc}"
        assert et.doc, f"{name} has no docstring on {et.shape.__name__}"
        assert et.delivery in ("broadcast", "directed", "both") and et.feature


def test_every_shape_resolves_to_types_the_checker_knows() -> None:
    for et in EVENTS.values():
        get_type_hints(et.shape)
        check_event(et.name, {})  # raises TypeError on a type the checker cannot check


# ---------------------------------------------------------------- the checker reports what is wrong

GOOD_ACK = {"request_id": "r", "swarm_id": "s", "job_id": "j", "node_id": 0, "injection_id": "i", "prompt": "p",
            "acked_at": 1.5}


def test_a_right_event_has_no_problem() -> None:
    assert check_event("inject_ack", GOOD_ACK) == []
    assert check_event("inject_ack", {**GOOD_ACK, "request_id": None, "acked_at": 2, "truncated": True}) == []


@pytest.mark.parametrize(("name", "data", "problem"), [
    ("inject_acked", GOOD_ACK, "unknown event 'inject_acked'"),
    (7, GOOD_ACK, "unknown event 7"),
    ("inject_ack", [1], "inject_ack: data is list, not an object"),
    ("inject_ack", {k: v for k, v in GOOD_ACK.items() if k != "injection_id"}, "inject_ack: missing key 'injection_id'"),
    ("inject_ack", {**GOOD_ACK, "injection": "i"}, "inject_ack: unknown key 'injection'"),
    ("inject_ack", {**GOOD_ACK, "node_id": "0"}, "inject_ack.node_id: expected int, got str"),
    ("inject_ack", {**GOOD_ACK, "node_id": True}, "inject_ack.node_id: expected int, got bool"),
    ("inject_ack", {**GOOD_ACK, "acked_at": None}, "inject_ack.acked_at: expected float, got null"),
    ("inject_ack", {**GOOD_ACK, "swarm_id": None}, "inject_ack.swarm_id: expected str, got null"),
    ("inject_ack", {**GOOD_ACK, "request_id": 5}, "inject_ack.request_id: expected str | None, got int"),
    ("node_status", {"swarm_id": "s", "job_id": "j", "node_id": 0, "injection_id": None, "worker": "zombie",
                     "last_heartbeat_at": None},
     "node_status.worker: expected one of ['not_started', 'running', 'stale', 'exited', 'lost'], got 'zombie'"),
    ("command_completed", {"swarm_id": "s", "job_id": "j", "node_id": 0, "injection_id": None, "call_id": "c",
                           "command": "ls", "cwd": None, "stdout": "", "stderr": "", "exit_code": None,
                           "duration": {"secs": 1, "nanos": 0.5}, "status": "completed"},
     "command_completed.duration.nanos: expected int, got float"),
    ("queue_updated", {"target_swarm_id": "t", "length": 1, "total": 1, "items": [{"queue_id": "q"}]},
     "queue_updated.items[0]: missing key 'content'"),
    ("swarm_list", {"request_id": None, "swarms": {"s": {"job_id": 5}}}, "swarm_list.swarms['s'].job_id: expected "
                                                                        "str, got int"),
    ("project_task_blocked", {"project_id": "p", "task_id": "t", "blocked_by": ["a", 2]},
     "project_task_blocked.blocked_by[1]: expected str, got int"),
])
def test_a_wrong_event_is_reported(name: Any, data: Any, problem: str) -> None:
    assert problem in check_event(name, data)


def test_the_harness_fails_a_test_that_records_a_wrong_event() -> None:
    h = Harness()
    swarm, _ = h.launch(nodes=1)
    with pytest.raises(AssertionError, match="inject_ack.*missing key 'prompt'"):
        h.record([Event("inject_ack", {k: v for k, v in GOOD_ACK.items() if k != "prompt"})])
    h = Harness(check_events=False)  # the opt-out, for tests of the transition tables
    h.record([Event("inject_acked", {})])
    assert h.names() == ["inject_acked"]


@pytest.mark.wrong_events
def test_an_in_process_router_reports_a_wrong_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The conftest hook sees both ways an in-process router records: Router.emit and Router.decide."""
    from codeswarm import core
    from codeswarm.config import parse_config
    from codeswarm.core.kernel import Decision
    from codeswarm.router.app import Router
    from tests.conftest import EVENT_PROBLEMS

    config = parse_config({"cluster": {"local": {"workspace_root": str(tmp_path / "runs")}}}, None, base_dir=tmp_path)
    r = Router(config, tmp_path / "home", {})
    r.recover()
    EVENT_PROBLEMS.clear()
    r.emit("router_warning", {"message": "fine", "error_code": "x"})
    assert EVENT_PROBLEMS == []
    r.emit("router_warning", {"message": 7})
    r.emit("router_warnings", {"message": "x"})
    monkeypatch.setattr(core, "decide", lambda *_a: Decision([Event("swarm_removed", {"swarm_id": "s"})], []))
    r.decide(object())
    assert [p.split(":")[0] for p in EVENT_PROBLEMS] == ["router_warning", "router_warnings", "swarm_removed"]
    assert "router_warning.message: expected str, got int" in EVENT_PROBLEMS[0]
    EVENT_PROBLEMS.clear()
    r.log.close()


def test_the_log_check_of_every_cli_test_reports_a_wrong_logged_line(tmp_path: Path) -> None:
    """What the `cs` fixture runs at teardown (tests/conftest.py log_problems) over a router's log."""
    from tests.conftest import log_problems

    (tmp_path / "events").mkdir()
    good = {"protocol": "codeswarm.router.v1", "type": "event", "seq": 1, "event": "inject_ack", "data": GOOD_ACK}
    bad = {**good, "seq": 2, "data": {**GOOD_ACK, "node_id": "0"}}
    lines = [json.dumps(good), "{torn", json.dumps(bad), json.dumps({**good, "seq": 3, "event": "inject_acked"})]
    (tmp_path / "events" / "000000000001.jsonl").write_text("\n".join(lines) + "\n")
    problems, names = log_problems(tmp_path)
    assert problems == ["000000000001.jsonl:3 seq 2: inject_ack.node_id: expected int, got str",
                        "000000000001.jsonl:4 seq 3: unknown event 'inject_acked'"]
    assert names == {"inject_ack", "inject_acked"}


def test_an_approval_request_without_reason_or_cwd_still_carries_both_keys(h: Harness) -> None:
    """Found by the checker: a runtime request with no reason/cwd made an exec_approval_required
    without the keys PROTOCOL.md 5.5 lists; core/approvals.py now always sets them (null)."""
    swarm, _ = h.launch(nodes=1)
    h.start(swarm)
    iid = h.inject(swarm, [0])[0]
    h.accept(swarm, 0, iid)
    h.runtime(swarm, 0, iid, ("exec_approval_required", {"call_id": "c1", "command": ["ls"]}))
    (data,) = [d for n, d in h.events() if n == "exec_approval_required"]
    assert data["reason"] is None and data["cwd"] is None
    assert check_event("exec_approval_required", data) == []
