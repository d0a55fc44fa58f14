"""Bad input of every kind gets a clear answer, the connection stays usable, state does not change."""

from __future__ import annotations

import json
import os
import socket
import stat
from typing import Any

import pytest

from codeswarm.mailbox import append_line
from tests.conftest import Codeswarm

PROTO = "codeswarm.router.v1"


class Raw:
    """A raw line client on the router socket."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.settimeout(20)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next_event(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            assert chunk, "router closed the connection"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def answer(self, request_id: str | None = None) -> dict[str, Any]:
        """The next event addressed to us (directed, or carrying our request_id)."""
        while True:
            ev = self.next_event()
            rid = ev["data"].get("request_id")
            if ev.get("directed") or (request_id is not None and rid == request_id):
                return ev

    def command(self, command: str, payload: Any, rid: str) -> dict[str, Any]:
        self.send(json.dumps({"protocol": PROTO, "type": "command", "command": command, "request_id": rid,
                              "payload": payload}).encode() + b"\n")
        return self.answer(rid)


@pytest.fixture
def swarm(cs: Codeswarm) -> tuple[Codeswarm, str]:
    sid = cs.run("launch", "--nodes", "2").stdout.strip()
    cs.json("inject", sid, "--prompt", "ready", "--wait", "--timeout", "60")
    return cs, sid


def state_of(cs: Codeswarm) -> Any:
    listing = cs.json("list")
    for rec in listing.values():
        rec.pop("created_at", None)
    return listing


def test_protocol_garbage_is_answered_and_changes_nothing(swarm: tuple[Codeswarm, str]) -> None:
    cs, sid = swarm
    before = state_of(cs)
    head_before = cs.events()[-1]["seq"]
    raw = Raw(str(cs.home / "router.sock"))
    raw.send(b"{not json\n")
    ev = raw.answer()
    assert ev["event"] == "command_rejected" and ev["data"]["code"] == "invalid_json"
    raw.send(b"[1,2,3]\n")
    assert raw.answer()["data"]["code"] == "invalid_json"
    raw.send(b"\xff\xfe\n")
    assert raw.answer()["data"]["code"] == "invalid_json"
    raw.send(json.dumps({"protocol": "codeswarm.router.v0", "command": "ping", "request_id": "p0"}).encode() + b"\n")
    assert raw.answer("p0")["data"]["code"] == "unsupported_protocol"
    assert raw.command("launch_rockets", {}, "r1")["data"]["code"] == "unknown_command"
    assert raw.command("inject", {"swarm_id": sid, "content": 42}, "r2")["data"]["code"] == "invalid_payload"
    assert raw.command("inject", {"swarm_id": sid, "content": "x", "nodes": "2-1"}, "r3")["data"]["code"] == \
        "invalid_payload"
    assert raw.command("inject", {"swarm_id": "nope", "content": "x"}, "r4")["data"]["code"] == "unknown_swarm"
    rej = raw.command("inject", {"swarm_id": sid, "content": "x", "nodes": [0, 5]}, "r5")
    assert rej["data"]["code"] == "invalid_nodes" and "5" in rej["data"]["reason"]
    assert raw.command("swarm_launch", {"nodes": "many"}, "r6")["data"]["code"] == "invalid_payload"
    assert raw.command("swarm_launch", {"nodes": 1, "provider": "nope"}, "r7")["data"]["code"] == "unknown_provider"
    assert raw.command("swarm_launch", {"nodes": 1, "provider_params": {"worker_mode": "gpt"}}, "r8")["data"][
        "code"] == "invalid_provider_params"
    assert raw.command("subscribe", {"since": -1}, "r9")["data"]["code"] == "invalid_payload"
    assert raw.command("approve_execution", {"job_id": "x", "call_id": "y", "approved": True}, "r10")["data"][
        "code"] == "unknown_approval"
    # an over-size line is discarded up to its LF; the next line works
    raw.send(b'{"a": "' + b"x" * (1 << 20) + b'"}\n')
    ev = raw.answer()
    assert ev["data"]["code"] == "line_too_long" and ev["data"]["request_id"] is None
    pong = raw.command("ping", {}, "r11")
    assert pong["event"] == "pong" and "seq" in pong["data"]["extensions"]
    # nothing changed: no swarm, no injection, only rejections were logged
    assert state_of(cs) == before
    after = [e for e in cs.events() if e["seq"] > head_before]
    assert {e["event"] for e in after} <= {"command_rejected"}


def test_garbage_outbox_line_is_reported_not_fatal(swarm: tuple[Codeswarm, str]) -> None:
    cs, sid = swarm
    job = cs.json("status", sid)["job_id"]
    outbox = cs.tmp / "runs" / job / "mailbox" / "outbox" / f"{job}_01.jsonl"
    # A worker that went mad: garbage, a line without seq, then the worker continues normally.
    with open(outbox, "ab") as f:
        f.write(b"this is not json\n")
    append_line(outbox, {"type": "runtime", "payload": {"method": "turn/started"}})
    evs = cs.wait_for(lambda evs: sum(1 for e in evs if e["data"].get("error_code") == "outbox_invalid_line") >= 2,
                      "--swarm", sid)
    errs = [e["data"] for e in evs if e["data"].get("error_code") == "outbox_invalid_line"]
    assert all(e["node_id"] == 1 and e["fatal"] is False for e in errs)
    ok = cs.json("inject", sid, "--prompt", "still fine", "--wait", "--timeout", "60")
    assert [n["outcome"] for n in ok["nodes"]] == ["completed", "completed"]


def test_broken_config_is_a_clear_cli_error(cs: Codeswarm) -> None:
    cs.config_path.write_text("{ broken")
    out = cs.run("list", check=False)
    assert out.returncode == 2 and "not valid JSON" in out.stderr and str(cs.config_path) in out.stderr
    cs.config_path.write_text(json.dumps({"cluster": {"local": {"workspace_root": 5}}}))
    out = cs.run("list", check=False)
    assert out.returncode == 2 and "workspace_root" in out.stderr
    missing = cs.run("list", "--config", str(cs.tmp / "nope.json"), check=False)
    assert missing.returncode == 2 and "config file not found" in missing.stderr
    usage = cs.run("launch", "--nodes", "0", check=False)
    assert usage.returncode == 2
    assert not (cs.home / "router.sock").exists(), "no router may start from a broken config"


def test_second_router_refuses_the_same_state_dir(cs: Codeswarm) -> None:
    cs.run("list")
    second = cs.run("router", "run", check=False, timeout=30)
    assert second.returncode == 2 and "another router" in second.stderr
    assert cs.run("router", "status").returncode == 0
    # only the owner may steer swarms
    assert stat.S_IMODE(os.stat(cs.home / "router.sock").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cs.home).st_mode) == 0o700
