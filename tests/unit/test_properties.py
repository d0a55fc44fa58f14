"""Property-based tests (hypothesis) of everything that parses untrusted input (issue 7, item 4).

Protocol lines, node selectors, config files, outbox chunks, socket framing and the event log.
Each property is fast (no sleeps, small sizes) so the whole file runs in seconds. Inputs that
once broke a property are pinned with @example, so their regression test does not depend on luck.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from codeswarm.config import parse_config
from codeswarm.errors import ConfigError, SelectorError
from codeswarm.mailbox import parse_chunk
from codeswarm.protocol import COMMANDS, PROTOCOL, Command, Rejection, parse_command_line, parse_node_selector
from codeswarm.router.connection import LineReader
from codeswarm.router.store import EventLog
from codeswarm.router.normalize.base import usage_event

# CI runs a fixed set of examples (derandomized, no example database in the work tree), so a
# landing is never blocked by luck. For a long exploratory run:
#   CODESWARM_HYPOTHESIS_EXAMPLES=5000 .venv/bin/python -m pytest tests/unit/test_properties.py
_EXPLORE = int(os.environ.get("CODESWARM_HYPOTHESIS_EXAMPLES") or 0)
_COMMON: dict[str, Any] = {"deadline": None, "database": None, "derandomize": not _EXPLORE,
                           "suppress_health_check": [HealthCheck.too_slow]}
FAST = settings(max_examples=_EXPLORE or 200, **_COMMON)
SLOW_IO = settings(max_examples=_EXPLORE or 40, **_COMMON)

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)

ENVELOPE_CODES = {"invalid_envelope", "unsupported_protocol", "unknown_command", "invalid_payload"}
LINE_CODES = ENVELOPE_CODES | {"invalid_json", "line_too_long"}


# ---------------------------------------------------------------- protocol lines


@FAST
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_the_parser(raw):
    try:
        cmd = parse_command_line(raw)
    except Rejection as rej:
        assert rej.code in LINE_CODES
        orjson.dumps(rej.data())
    else:
        assert isinstance(cmd, Command) and cmd.command in COMMANDS


def _valid_rid(v: Any) -> bool:
    return isinstance(v, str) and 1 <= len(v) <= 128


envelope_values = {
    "protocol": st.just(PROTOCOL) | json_values,
    "type": st.just("command") | json_values,
    "command": st.sampled_from(sorted(COMMANDS)) | json_values,
    "request_id": st.text(min_size=1, max_size=130) | json_values,
    "payload": st.dictionaries(st.sampled_from(["idempotency_key", "swarm_id", "x"]), json_values, max_size=3)
    | json_values,
}


@st.composite
def envelopes(draw):
    keys = draw(st.sets(st.sampled_from(sorted(envelope_values))))
    obj = {k: draw(envelope_values[k]) for k in keys}
    obj.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
    return obj


@FAST
@given(envelopes())
def test_random_envelopes_parse_or_reject_with_the_right_echo(obj):
    raw = orjson.dumps(obj)
    try:
        cmd = parse_command_line(raw)
    except Rejection as rej:
        assert rej.code in ENVELOPE_CODES
        rid = obj.get("request_id")
        # request_id is echoed exactly when it was a valid string (PROTOCOL.md 2.3), else null.
        assert rej.request_id == (rid if _valid_rid(rid) else None)
        orjson.dumps(rej.data())
    else:
        assert obj.get("protocol") == PROTOCOL and obj.get("type", "command") == "command"
        assert cmd.command == obj["command"] and cmd.command in COMMANDS
        assert cmd.request_id == obj["request_id"] and _valid_rid(cmd.request_id)
        assert cmd.payload == (obj.get("payload") or {}) and isinstance(cmd.payload, dict)


# ---------------------------------------------------------------- node selectors


def reference_selector(value: str, n: int) -> list[int] | str:
    """An independent reading of PROTOCOL.md 4.2: the ids, or the rejection code."""
    if value == "all":
        return list(range(n))
    compact = re.sub(r"\s", "", value)
    if compact.startswith("[") and compact.endswith("]"):
        compact = compact[1:-1]
    ids: list[int] = []
    for item in compact.split(","):
        m = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", item)
        if not m:
            return "invalid_payload"
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if a > b:
            return "invalid_payload"
        if b - a > 100_000:
            return "invalid_nodes"
        ids += range(a, b + 1)
    if any(i >= n for i in ids):
        return "invalid_nodes"
    return sorted(set(ids))


def run_selector(value: Any, n: int) -> list[int] | str:
    try:
        ids = parse_node_selector(value, n)
    except SelectorError as exc:
        assert exc.code in ("invalid_payload", "invalid_nodes") and isinstance(exc.message, str)
        return exc.code
    assert ids == sorted(set(ids)) and all(0 <= i < n for i in ids)
    return ids


selector_text = st.text(alphabet="0123456789,-[] \t\nal", max_size=30)


@FAST
@given(selector_text, st.integers(1, 40))
@example("0,2-4", 5)
@example("[ 3 - 3 ]", 4)
@example("all", 3)
def test_ascii_selector_strings_match_the_reference(value, n):
    assert run_selector(value, n) == reference_selector(value, n)


@FAST
@given(st.lists(st.integers(-5, 60), max_size=8) | st.integers(-5, 60), st.integers(1, 40))
def test_integer_selectors(value, n):
    got = run_selector(value, n)
    ids = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not value:
        assert got == "invalid_payload"
    elif all(0 <= i < n for i in ids):
        assert got == sorted(set(ids))
    else:
        assert got == "invalid_nodes"


@FAST
@given(st.text(max_size=20) | json_values, st.integers(1, 40))
@example("²", 4)
def test_any_selector_value_is_parsed_or_rejected_with_a_code(value, n):
    run_selector(value, n)


# ---------------------------------------------------------------- config loading

BASE_CONFIG: dict[str, Any] = {
    "cluster": {
        "local": {"workspace_root": "runs", "default_sandbox_mode": "workspace-write"},
        "slurm": {
            "ssh_retry_attempts": 4,
            "profiles": {"hp": {"login_host": "h", "workspace_root": "/shared/s", "cluster_subdir": "cs",
                                "partition": "p", "time_limit": "01:00:00", "account": None,
                                "sbatch_extra": ["--exclusive"], "env": {"A": "1"}}},
        },
    },
    "router": {"inject_timeout_seconds": 60, "max_terminated_swarms": 10, "include_raw": False,
               "tcp": {"enabled": False, "port": 8765}, "state_dir": "/tmp/x"},
    "launch_providers": [
        {"id": "local-mock", "label": "L", "backend": "local", "defaults": {"worker_mode": "mock",
                                                                             "mock_delay_ms": 5},
         "launch_fields": [], "launch_panels": [], "launch_soft_timeout_seconds": 30, "env": {"B": "2"}},
        {"id": "hp-codex", "backend": "slurm", "cluster_profile": "hp",
         "defaults": {"approval_policy": "never", "time_limit": "00:10:00", "partition": "q"}},
    ],
}


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


CONFIG_PATHS = _paths(BASE_CONFIG)


def mutated(path: tuple, value: Any, delete: bool) -> dict[str, Any]:
    cfg = copy.deepcopy(BASE_CONFIG)
    parent = cfg
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return cfg


def test_the_base_config_of_the_properties_is_valid():
    cfg = parse_config(BASE_CONFIG, Path("base.json"), base_dir=Path("/"))
    assert [p.id for p in cfg.presets] == ["local-mock", "hp-codex"]


@FAST
@given(st.sampled_from(CONFIG_PATHS), json_values, st.booleans())
@example(("launch_providers", 0, "launch_panels"), 5, False)  # both once raised TypeError, not ConfigError
@example(("launch_providers", 1, "cluster_profile"), ["hp"], False)
def test_a_config_with_one_value_changed_loads_or_raises_config_error(path, value, delete):
    cfg = mutated(path, value, delete)
    try:
        parse_config(cfg, Path("conf.json"), base_dir=Path("/"))
    except ConfigError as exc:
        assert "conf.json" in str(exc)


@FAST
@given(st.dictionaries(st.sampled_from(["cluster", "router", "launch_providers", "x"]), json_values, max_size=4)
       | json_values)
def test_random_json_configs_raise_only_config_error(obj):
    try:
        parse_config(obj, Path("conf.json"), base_dir=Path("/"))
    except ConfigError as exc:
        assert "conf.json" in str(exc)


# ---------------------------------------------------------------- outbox chunks

outbox_pieces = st.lists(
    st.one_of(
        json_values.map(lambda v: orjson.dumps(v)),
        st.fixed_dictionaries({"seq": st.integers(0, 10**6)}, optional={"type": st.text(max_size=5)})
        .map(lambda v: orjson.dumps(v)),
        st.binary(max_size=30),
    ),
    max_size=10,
)


@FAST
@given(st.binary(max_size=500) | outbox_pieces.map(b"\n".join), st.integers(0, 10**9))
def test_random_outbox_chunks_never_raise(chunk, offset):
    batch = parse_chunk(chunk, offset)
    assert offset <= batch.offset <= offset + len(chunk)
    if b"\n" in chunk:
        assert batch.offset == offset + chunk.rfind(b"\n") + 1
    else:
        assert batch.offset == offset and batch.lines == []
    assert all(isinstance(line, dict) for line in batch.lines)
    pieces = [p for p in chunk[: batch.offset - offset].split(b"\n") if p.strip()]
    assert len(batch.lines) + len(batch.bad) == len(pieces)


@FAST
@given(outbox_pieces, st.lists(st.integers(0, 60), max_size=12))
def test_polling_a_growing_outbox_sees_each_complete_line_once(pieces, cuts):
    """The writer appends; the reader polls at arbitrary moments: same lines as one final read."""
    whole = b"".join(p.replace(b"\n", b" ") + b"\n" for p in pieces)
    marks = sorted({min(c * 7, len(whole)) for c in cuts} | {len(whole)})
    offset, seen, bad = 0, [], 0
    for written in marks:
        batch = parse_chunk(whole[offset:written], offset)
        seen += batch.lines
        bad += len(batch.bad)
        offset = batch.offset
    once = parse_chunk(whole, 0)
    assert offset == len(whole)
    assert seen == once.lines and bad == len(once.bad)


# ---------------------------------------------------------------- socket framing


def _kinds(items: list) -> list:
    return ["REJECTED" if isinstance(x, Rejection) else x for x in items]


framing_lines = st.lists(st.binary(max_size=24).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
                         max_size=8)


@FAST
@given(framing_lines, st.lists(st.integers(1, 30), max_size=10))
def test_line_reader_output_does_not_depend_on_chunking(lines, sizes):
    stream = b"".join(line + b"\n" for line in lines) + b"tail-without-lf"
    whole = _kinds(LineReader(limit=16).feed(stream))
    r = LineReader(limit=16)
    pieces, pos = [], 0
    for size in sizes:
        pieces.append(stream[pos:pos + size])
        pos += size
    pieces.append(stream[pos:])
    chunked = []
    for piece in pieces:
        chunked += _kinds(r.feed(piece))
    assert chunked == whole
    expected = ["REJECTED" if len(line) > 16 else line for line in lines if len(line) > 16 or line.strip()]
    assert whole == expected


# ---------------------------------------------------------------- event log

log_ops = st.lists(
    st.one_of(st.tuples(st.just("append"), st.integers(1, 7)), st.just(("reopen",)), st.just(("crash",)),
              st.just(("torn",))),
    max_size=12,
)


@SLOW_IO
@given(log_ops)
def test_event_log_seq_strictly_increases_across_restarts_and_tears(ops):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "events"
        log = EventLog(d, max_events=10, segment_events=3)
        handed_out: list[int] = []
        for op in ops:
            if op[0] == "append":
                seqs = [log.next_seq() for _ in range(op[1])]
                log.append([orjson.dumps({"event": "e", "seq": s, "data": {}}) + b"\n" for s in seqs], seqs[0])
                handed_out += seqs
            elif op[0] == "reopen":
                log.close()
                log = EventLog(d, max_events=10, segment_events=3)
            else:
                if log._fd is not None:
                    if op[0] == "torn":
                        os.write(log._fd, b'{"event": "e", "seq": 99999')  # a write cut short by the crash
                    os.close(log._fd)
                    log._fd = None
                log = EventLog(d, max_events=10, segment_events=3)
            on_disk = [s for s, _ in log.read_since(0)]
            assert on_disk == sorted(set(on_disk))
            assert set(on_disk) <= set(handed_out)
            assert on_disk == [s for s in handed_out if s >= log.oldest_seq]  # only old ones pruned
            assert handed_out == sorted(set(handed_out))  # never reused
            assert log.head_seq >= (handed_out[-1] if handed_out else 0)
        log.close()


def test_event_log_keeps_max_events_after_an_unclean_stop(tmp_path):
    def add(log: EventLog, n: int) -> None:
        seqs = [log.next_seq() for _ in range(n)]
        log.append([orjson.dumps({"event": "e", "seq": s, "data": {}}) + b"\n" for s in seqs], seqs[0])

    log = EventLog(tmp_path, max_events=10, segment_events=4)
    add(log, 6)
    os.close(log._fd)  # killed: no close()
    log._fd = None
    log = EventLog(tmp_path, max_events=10, segment_events=4)
    add(log, 3)
    assert len(list(log.read_since(0))) == 9  # fewer than max_events were ever written: keep all


# ---------------------------------------------------------------- the injection lifecycle, random walks

from codeswarm.core.evidence import JobObservation, JobState  # noqa: E402

WALK_NODES = 3
_node = st.integers(0, WALK_NODES - 1)
walk_ops = st.lists(
    st.one_of(
        st.tuples(st.just("inject"), st.sets(_node, min_size=1)),
        st.tuples(st.just("accept"), _node, st.integers(0, 4)),
        st.tuples(st.just("runtime"), _node, st.integers(-1, 4),
                  st.sampled_from(["turn_started", "assistant_delta", "turn_complete", "usage", "command_started"])),
        st.tuples(st.just("start"), _node),
        st.tuples(st.just("heartbeat"), _node),
        st.tuples(st.just("exit"), _node, st.sampled_from(["error", "shutdown", "signal"])),
        st.tuples(st.just("tick"), st.floats(0, 200)),
        st.tuples(st.just("observe"), st.sampled_from(list(JobState))),
    ),
    max_size=40,
)


def _walk(h, ops) -> Any:
    swarm, _ = h.launch(nodes=WALK_NODES, system_prompt="sys")
    targets: dict[int, list[str]] = {n: [i.injection_id for i in swarm.injections.values() if i.node_id == n]
                                     for n in range(WALK_NODES)}
    # A worker writes turn_accepted before any runtime line of that injection (PROTOCOL.md 8.4).
    accepted: dict[int, list[str]] = {n: [] for n in range(WALK_NODES)}
    for op in ops:
        if swarm.state == "terminated":
            break
        kind = op[0]
        if kind == "inject":
            for n, iid in h.inject(swarm, sorted(op[1]), content="p").items():
                targets[n].append(iid)
            continue
        if kind == "tick":
            h.at(h.now + op[1]).tick()
            continue
        if kind == "observe":
            h.at(h.now + 1).observe(swarm, JobObservation(op[1], "X"))
            continue
        node = swarm.nodes[op[1]]
        if node.worker == "exited" or (node.worker == "not_started" and kind != "start"):
            continue  # a worker writes nothing before it starts or after it exits
        if kind == "start":
            h.start(swarm, op[1])
        elif kind == "heartbeat":
            h.lifecycle(swarm, op[1], "heartbeat", {"busy": False})
        elif kind == "exit":
            h.exit(swarm, op[1], reason=op[2])
        else:
            ids = targets[op[1]] if kind == "accept" else accepted[op[1]]
            iid = ids[op[2] % len(ids)] if ids and op[2] >= 0 else None
            if kind == "accept" and iid is not None:
                h.accept(swarm, op[1], iid)
                accepted[op[1]].append(iid)
            elif kind == "runtime":
                # each as the normalizers make it (its shape is checked: codeswarm/core/event_types)
                payload = ({"call_id": "c", "command": "ls", "cwd": "/w"} if op[3] == "command_started"
                           else usage_event("codex/token_count", {"total_tokens": 5}, None)[1] if op[3] == "usage"
                           else {"content": "x"})
                h.runtime(swarm, op[1], iid, (op[3], payload))
    if swarm.state != "terminated":
        h.terminated(swarm, "requested", "req-t")
    return swarm, targets


@settings(max_examples=_EXPLORE or 200, **{**_COMMON, "suppress_health_check": [
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture]})
@given(walk_ops)
def test_injection_lifecycle_invariants_hold_for_random_worker_behaviour(make_harness, ops):
    h = make_harness(inject_timeout_seconds=60, worker_heartbeat_timeout_seconds=100,
                     worker_start_timeout_seconds=150, job_gone_confirmations=2, job_gone_window_seconds=10)
    swarm, targets = _walk(h, ops)
    log = [(name, data) for _seq, name, data, _now in h.log]
    names = [name for name, _ in log]
    assert names[0] == "swarm_launched" and names.count("swarm_terminated") == 1
    end = names.index("swarm_terminated")
    assert end == len(names) - 1  # nothing about the swarm after it (no removal in this walk)
    for iid in {i for ids in targets.values() for i in ids}:
        idx = {}
        for i, (name, data) in enumerate(log):
            if data.get("injection_id") == iid:
                idx.setdefault(name, []).append(i)
        assert len(idx["inject_ack"]) == 1
        outcomes = idx.get("inject_delivered", []) + idx.get("inject_failed", [])
        assert len(outcomes) == 1, f"{iid}: exactly one terminal outcome, got {outcomes}"
        assert idx["inject_ack"][0] < outcomes[0] < end
        if "inject_delivered" in idx:
            [complete] = idx["turn_complete"]  # every delivered injection ends exactly once
            assert idx["inject_delivered"][0] < complete < end
            started = idx.get("turn_started", [])
            assert len(started) <= 1
            if started:
                assert idx["inject_delivered"][0] < started[0] < complete
                for name in ("assistant_delta", "command_started"):
                    for i in idx.get(name, []):
                        if i < complete:  # the turn's own content sits inside the turn
                            assert started[0] < i
            else:
                assert not any(i < complete for n in ("assistant_delta", "command_started") for i in idx.get(n, []))
        else:
            assert "turn_started" not in idx and "turn_complete" not in idx
        assert swarm.injections[iid].state in ("completed", "failed")
    # Recovery by replay reaches exactly the same state, no field masked.
    def comparable(sw: Any) -> dict[str, Any]:
        return orjson.loads(orjson.dumps(sw.to_json()))

    assert comparable(h.replayed().swarms[swarm.swarm_id]) == comparable(swarm)
