"""protocol.py: command parsing and rejection codes, node selectors, line encoding (PROTOCOL.md 2-4)."""

from __future__ import annotations

import orjson
import pytest

from codeswarm.errors import SelectorError
from codeswarm.protocol import (
    COMMANDS,
    MAX_LINE_BYTES,
    PROTOCOL,
    Command,
    Rejection,
    encode_line,
    make_command,
    make_event,
    parse_command_line,
    parse_node_selector,
    require_bool,
    require_int,
    require_obj,
    require_str,
    resolve_nodes,
)


def line(obj: object) -> bytes:
    return orjson.dumps(obj)


def envelope(**over: object) -> dict:
    env = {"protocol": PROTOCOL, "type": "command", "command": "ping", "request_id": "r-1", "payload": {}}
    env.update(over)
    return env


def rejected(raw: bytes) -> Rejection:
    with pytest.raises(Rejection) as info:
        parse_command_line(raw)
    return info.value


# ---------------------------------------------------------------- parse_command_line


def test_valid_command_parses():
    cmd = parse_command_line(line(envelope(command="inject", payload={"swarm_id": "s", "content": "x"})))
    assert cmd == Command("inject", "r-1", {"swarm_id": "s", "content": "x"})


def test_make_command_round_trips_for_every_command():
    for name in sorted(COMMANDS):
        cmd = parse_command_line(orjson.dumps(make_command(name, {"a": 1}, "rid")))
        assert (cmd.command, cmd.request_id, cmd.payload) == (name, "rid", {"a": 1})


def test_missing_type_and_payload_are_tolerated():
    env = envelope()
    del env["type"], env["payload"]
    cmd = parse_command_line(line(env))
    assert cmd.payload == {} and cmd.command == "ping"


def test_null_payload_is_empty():
    assert parse_command_line(line(envelope(payload=None))).payload == {}


def test_unknown_payload_fields_are_kept_not_rejected():
    cmd = parse_command_line(line(envelope(payload={"whatever": [1, 2]}, extra_top_level=True)))
    assert cmd.payload == {"whatever": [1, 2]}


def test_line_too_long():
    rej = rejected(b" " * (MAX_LINE_BYTES + 1))
    assert rej.code == "line_too_long" and rej.request_id is None


def test_line_of_exactly_the_limit_is_parsed():
    env = envelope()
    raw = line(env)
    padded = raw + b" " * (MAX_LINE_BYTES - len(raw))
    assert len(padded) == MAX_LINE_BYTES
    assert parse_command_line(padded).command == "ping"


@pytest.mark.parametrize(
    "raw",
    [b"{", b"not json", b"\xff\xfe{}", b"", b'{"a": 1} trailing', b"[1, 2]", b'"a string"', b"42", b"null",
     b"true", b'[{"protocol": "codeswarm.router.v1"}]'],
)
def test_invalid_json(raw):
    rej = rejected(raw)
    assert rej.code == "invalid_json"
    assert rej.request_id is None
    assert rej.data()["request_id"] is None and rej.data()["reason"]


@pytest.mark.parametrize(
    "over, field",
    [
        ({"protocol": None}, "protocol"),
        ({"type": "event"}, "type"),
        ({"command": None}, "command"),
        ({"command": ""}, "command"),
        ({"command": 7}, "command"),
        ({"payload": [1]}, "payload"),
        ({"payload": "x"}, "payload"),
    ],
)
def test_invalid_envelope_echoes_request_id(over, field):
    rej = rejected(line(envelope(**over)))
    assert rej.code == "invalid_envelope"
    assert field in rej.reason
    assert rej.request_id == "r-1"


def test_missing_protocol_field():
    env = envelope()
    del env["protocol"]
    rej = rejected(line(env))
    assert rej.code == "invalid_envelope" and "protocol" in rej.reason and rej.request_id == "r-1"


@pytest.mark.parametrize("rid", [None, 5, "", "x" * 129, ["r"], {"a": 1}])
def test_bad_request_id_is_invalid_envelope_without_echo(rid):
    env = envelope(request_id=rid)
    if rid is None:
        del env["request_id"]
    rej = rejected(line(env))
    assert rej.code == "invalid_envelope" and "request_id" in rej.reason
    assert rej.request_id is None
    assert rej.command == "ping"  # the command name is known and reported


def test_request_id_of_128_chars_is_accepted():
    assert parse_command_line(line(envelope(request_id="x" * 128))).request_id == "x" * 128


@pytest.mark.parametrize("proto", ["codeswarm.router.v2", "", "CODESWARM.ROUTER.V1", 1, ["codeswarm.router.v1"]])
def test_unsupported_protocol(proto):
    rej = rejected(line(envelope(protocol=proto)))
    assert rej.code == "unsupported_protocol"
    assert rej.request_id == "r-1"


def test_unsupported_protocol_with_bad_request_id_echoes_null():
    rej = rejected(line(envelope(protocol="v0", request_id=12)))
    assert rej.code == "unsupported_protocol" and rej.request_id is None


def test_unknown_command():
    rej = rejected(line(envelope(command="launch_rockets")))
    assert rej.code == "unknown_command"
    assert rej.request_id == "r-1" and rej.command == "launch_rockets"
    assert "launch_rockets" in rej.reason
    assert rej.data() == {"request_id": "r-1", "reason": rej.reason, "code": "unknown_command",
                          "command": "launch_rockets"}


@pytest.mark.parametrize("key", ["", "k" * 129, 5, ["k"]])
def test_bad_idempotency_key(key):
    rej = rejected(line(envelope(payload={"idempotency_key": key})))
    assert rej.code == "invalid_payload" and "idempotency_key" in rej.reason and rej.request_id == "r-1"


def test_rejection_extra_fields_are_in_data():
    rej = Rejection("unknown_approval", "unknown approval request", request_id="r", command="approve_execution",
                    job_id="j", call_id="c")
    assert rej.data()["job_id"] == "j" and rej.data()["call_id"] == "c"


# ---------------------------------------------------------------- payload helpers


def cmd(**payload: object) -> Command:
    return Command("inject", "r-9", payload)


def test_require_str():
    assert require_str(cmd(a="x"), "a") == "x"
    assert require_str(cmd(), "a", optional=True) is None
    assert require_str(cmd(a=""), "a", allow_empty=True) == ""
    for payload, problem in [({}, "required"), ({"a": 3}, "must be a string"), ({"a": ""}, "must not be empty")]:
        with pytest.raises(Rejection) as info:
            require_str(cmd(**payload), "a")
        assert info.value.code == "invalid_payload"
        assert info.value.reason == f"a: {problem}"
        assert info.value.request_id == "r-9" and info.value.command == "inject"


def test_require_int():
    assert require_int(cmd(n=3), "n") == 3
    assert require_int(cmd(), "n", default=1) == 1
    for bad in (True, 1.5, "3", None):
        with pytest.raises(Rejection):
            require_int(cmd(n=bad), "n")
    with pytest.raises(Rejection, match="must be >= 1"):
        require_int(cmd(n=0), "n", minimum=1)


def test_require_bool_and_obj():
    assert require_bool(cmd(b=False), "b") is False
    assert require_bool(cmd(), "b", default=True) is True
    with pytest.raises(Rejection, match="must be a boolean"):
        require_bool(cmd(b=1), "b")
    with pytest.raises(Rejection, match="required"):
        require_bool(cmd(), "b")
    assert require_obj(cmd(), "o") == {}
    assert require_obj(cmd(o={"k": 1}), "o") == {"k": 1}
    with pytest.raises(Rejection, match="must be an object"):
        require_obj(cmd(o=[1]), "o")


# ---------------------------------------------------------------- node selectors


@pytest.mark.parametrize(
    "value, expected",
    [
        ("all", [0, 1, 2, 3, 4, 5]),
        (None, [0, 1, 2, 3, 4, 5]),
        (3, [3]),
        (0, [0]),
        ([0, 2], [0, 2]),
        ([4, 1, 4, 1], [1, 4]),
        ("3", [3]),
        ("0,2-4", [0, 2, 3, 4]),
        ("[0,2]", [0, 2]),
        ("[0, 2]", [0, 2]),
        (" 0 , 2 - 4 ", [0, 2, 3, 4]),
        ("\t1,\n2", [1, 2]),
        ("4-5,0-1", [0, 1, 4, 5]),
        ("2,2,1-3,3", [1, 2, 3]),
        ("5-5", [5]),
        ("0-5", [0, 1, 2, 3, 4, 5]),
    ],
)
def test_selector_valid(value, expected):
    assert parse_node_selector(value, 6) == expected


@pytest.mark.parametrize("value", [6, -1, [0, 6], [-1], "6", "0,6", "5-6", "0-100000", "[7]", 10**30])
def test_selector_out_of_range_is_invalid_nodes(value):
    with pytest.raises(SelectorError) as info:
        parse_node_selector(value, 6)
    assert info.value.code == "invalid_nodes"
    assert "out of range" in info.value.message == str(info.value)


@pytest.mark.parametrize(
    "value",
    ["", "  ", "[]", "all,1", "[all]", "a", "1,", ",1", "1,,2", "1-", "-1", "3-1", "1-2-3", "1.5", "0x1",
     "+1", "[1", "1]", "[[1]]", [], [1, "2"], [True], [1.0], True, False, 1.0, {"a": 1}, "ALL"],
)
def test_selector_malformed_is_invalid_payload(value):
    with pytest.raises(SelectorError) as info:
        parse_node_selector(value, 6)
    assert info.value.code == "invalid_payload"
    assert info.value.message.startswith("nodes")


def test_selector_whitespace_is_ignored_even_inside_numbers():
    # PROTOCOL.md 4.2: "whitespace is ignored", so "1 2" is node 12.
    assert parse_node_selector("1 2", 20) == [12]


def test_selector_huge_range_is_refused_without_expanding_it():
    with pytest.raises(SelectorError) as info:
        parse_node_selector("0-999999999999", 4)
    assert info.value.code == "invalid_nodes"


def test_resolve_nodes_turns_errors_into_rejections():
    c = Command("inject", "r-5", {})
    with pytest.raises(Rejection) as info:
        resolve_nodes(c, "9", 4)
    assert (info.value.code, info.value.request_id, info.value.command) == ("invalid_nodes", "r-5", "inject")
    with pytest.raises(Rejection) as info:
        resolve_nodes(c, "x", 4)
    assert info.value.code == "invalid_payload"
    assert resolve_nodes(c, "1-2", 4) == [1, 2]


@pytest.mark.parametrize("value", ["²", "1-²", "0,³"])
def test_selector_unicode_digits_are_invalid_payload(value):
    with pytest.raises(Rejection) as info:
        resolve_nodes(Command("inject", "r", {}), value, 4)
    assert info.value.code == "invalid_payload"


def test_selector_with_a_5000_digit_number_is_rejected_cleanly():
    with pytest.raises(Rejection) as info:
        resolve_nodes(Command("inject", "r", {}), "9" * 5000, 4)
    assert info.value.code in ("invalid_payload", "invalid_nodes")


# ---------------------------------------------------------------- encoding


def test_make_event_and_encode_line():
    env = make_event("inject_ack", {"node_id": 1}, seq=7, timestamp="2025-01-01T00:00:00+00:00")
    raw = encode_line(env)
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    obj = orjson.loads(raw)
    assert obj == {"protocol": PROTOCOL, "type": "event", "timestamp": "2025-01-01T00:00:00+00:00",
                   "event": "inject_ack", "seq": 7, "data": {"node_id": 1}}
    assert "directed" not in obj
    assert orjson.loads(encode_line(make_event("pong", {}, seq=3, timestamp="t", directed=True)))["directed"] is True


def test_newlines_in_strings_stay_escaped():
    raw = encode_line(make_event("assistant", {"content": "a\nb\r\n"}, seq=1, timestamp="t"))
    assert raw.count(b"\n") == 1
    assert orjson.loads(raw)["data"]["content"] == "a\nb\r\n"


def test_small_event_is_not_marked_truncated():
    raw = encode_line(make_event("command_completed", {"stdout": "x" * 1000}, seq=1, timestamp="t"))
    assert "truncated" not in orjson.loads(raw)["data"]


@pytest.mark.parametrize("key", ["stdout", "stderr", "content", "raw"])
def test_oversize_event_is_shortened_and_marked(key):
    data = {"swarm_id": "s", "node_id": 3, key: "x" * (MAX_LINE_BYTES + 10), "exit_code": 0}
    raw = encode_line(make_event("command_completed", data, seq=42, timestamp="t"))
    assert len(raw) - 1 <= MAX_LINE_BYTES
    obj = orjson.loads(raw)
    assert obj["seq"] == 42 and obj["event"] == "command_completed"
    assert obj["data"]["truncated"] is True
    assert obj["data"]["swarm_id"] == "s" and obj["data"]["node_id"] == 3 and obj["data"]["exit_code"] == 0


def test_oversize_raw_object_is_dropped():
    data = {"raw": {"items": ["y" * 1000] * 2000}, "content": "ok"}
    obj = orjson.loads(encode_line(make_event("assistant", data, seq=1, timestamp="t")))
    assert obj["data"]["raw"] is None and obj["data"]["truncated"] is True and obj["data"]["content"] == "ok"


def test_many_large_fields_still_fit():
    data = {k: "é" * (MAX_LINE_BYTES // 3) for k in ("stdout", "stderr", "content", "prompt", "message")}
    data.update(other="z" * MAX_LINE_BYTES, node_id=1)
    raw = encode_line(make_event("command_completed", data, seq=9, timestamp="t"))
    assert len(raw) - 1 <= MAX_LINE_BYTES
    obj = orjson.loads(raw)
    assert obj["data"]["truncated"] is True and obj["data"]["node_id"] == 1 and obj["seq"] == 9
