"""Bad input at scale on the live router socket: seeded random bytes from several connections, and a
hypothesis run of random command envelopes. The router answers or drops the client, never dies:
the same router pid answers a ping afterwards, and every envelope got exactly one answer.
"""

from __future__ import annotations

import json
import random
import socket
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Codeswarm, _alive

PROTO = "codeswarm.router.v1"
SEED = 20261125

FRAGMENTS = [b"{", b"}", b"\n", b"\r\n", b'"protocol":"codeswarm.router.v1"', b'"command":"ping"', b'"request_id":',
             b"\xff\xfe", b"\x00", b"[", b"null", b'"payload":{"since":-1}', b"\\u0000", b'"' * 7, b"9" * 40]


def ping_ok(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    s.sendall(json.dumps({"protocol": PROTO, "type": "command", "command": "ping", "request_id": "p"}).encode() + b"\n")
    buf = b""
    while b'"pong"' not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return False
        buf += chunk
    s.close()
    return True


def garbage(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.4:
        return rng.randbytes(rng.randint(1, 4096))
    if kind < 0.8:
        return b"".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 30)))
    if kind < 0.95:
        return json.dumps({"protocol": PROTO, "command": rng.choice(["ping", "subscribe", "inject", "x"]),
                           "request_id": rng.choice(["r", 1, None, "", "r" * 300]),
                           "payload": rng.choice([{}, [], "x", {"swarm_id": "nope"}, {"since": 10**30}])}).encode() + b"\n"
    return b"y" * rng.randint(1 << 20, (1 << 20) + 5000)  # an oversize line, cut without LF


def blast(path: str, seed: int, rounds: int, counts: dict[str, int]) -> None:
    rng = random.Random(seed)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    received = 0
    try:
        for _ in range(rounds):
            s.sendall(garbage(rng))
            s.setblocking(False)
            try:
                while chunk := s.recv(1 << 20):
                    received += len(chunk)
            except BlockingIOError:
                pass
            s.setblocking(True)
            s.settimeout(5)
        s.sendall(b"\n")  # end whatever line is open
    except (BrokenPipeError, ConnectionResetError):
        counts["dropped"] = counts.get("dropped", 0) + 1  # dropping a client is an allowed answer
    finally:
        s.close()
    counts["bytes_back"] = counts.get("bytes_back", 0) + received


def test_random_bytes_from_several_connections(cs: Codeswarm) -> None:
    cs.run("router", "start")
    pid = cs.router_pid()
    path = str(cs.home / "router.sock")
    counts: dict[str, int] = {}
    threads = [threading.Thread(target=blast, args=(path, SEED + i, 150, counts)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert counts.get("bytes_back", 0) > 0, "the router answered the garbage"
    assert pid is not None and _alive(pid) and cs.router_pid() == pid, "the router never died"
    assert ping_ok(path)
    assert cs.json("list") == {}


class Line:
    def __init__(self, path: str) -> None:
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(10)
        self.s.connect(path)
        self.buf = b""

    def answer(self, rid: str | None) -> dict[str, Any]:
        """The answer to the last command: an event carrying its request_id, or a directed one."""
        while True:
            while b"\n" not in self.buf:
                chunk = self.s.recv(1 << 20)
                assert chunk, "the router closed the connection"
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            ev = json.loads(line)
            if rid is not None and ev["data"].get("request_id") == rid:
                return ev
            if ev.get("directed") and ev["event"] in ("command_rejected", "pong", "subscribed", "unsubscribed",
                                                      "swarm_list", "providers_list", "queue_list") \
                    and ev["data"].get("request_id") in (rid, None):
                return ev


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# swarm_launch is left out: a valid random launch would start real workers.
commands = st.sampled_from(["inject", "enqueue_inject", "approve_execution", "swarm_terminate", "providers_list",
                            "swarm_list", "swarm_status", "queue_list", "subscribe", "unsubscribe", "ping"]) \
    | st.text(max_size=12)
payload_keys = st.sampled_from(["swarm_id", "nodes", "content", "since", "log_id", "idempotency_key", "selector",
                                "approval_id", "decision", "terminate_params", "events", "target_swarm_id"])
envelopes = st.fixed_dictionaries(
    {"protocol": st.sampled_from([PROTO, PROTO, "codeswarm.router.v0"]), "command": commands},
    optional={"type": st.sampled_from(["command", "event", 3]),
              "payload": st.dictionaries(payload_keys, json_values, max_size=5) | json_values},
)


@pytest.fixture
def live(cs: Codeswarm) -> tuple[Codeswarm, Line]:
    cs.run("router", "start")
    return cs, Line(str(cs.home / "router.sock"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(env=envelopes, rid=st.integers(0, 10**9))
def test_random_envelopes_get_one_answer_each(live: tuple[Codeswarm, Line], env: dict[str, Any], rid: int) -> None:
    cs, line = live
    request_id = f"h{rid}"
    line.s.sendall(json.dumps({**env, "request_id": request_id}).encode() + b"\n")
    ev = line.answer(request_id)
    assert ev["event"] != "router_warning"
    # the connection still works after every answer
    line.s.sendall(json.dumps({"protocol": PROTO, "command": "ping", "request_id": f"{request_id}p"}).encode() + b"\n")
    assert line.answer(f"{request_id}p")["event"] == "pong"
