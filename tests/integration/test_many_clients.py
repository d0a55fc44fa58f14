"""100 socket subscribers + 10 WebSocket subscribers (through `codeswarm web`) and one consumer
that never reads, while another swarm floods the router with ~25 MB of command output.

Expected: every subscriber gets the same complete stream of its swarm; the router stays up and
answers; the slow consumer is dropped (bounded backlog, 16 MiB; router.log says why) and resumes
from the last seq it received without a gap.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from typing import Any

import orjson
import trio

from tests.conftest import Codeswarm

PROTO = "codeswarm.router.v1"
N_SOCKET, N_WS = 100, 10


def cmd(command: str, payload: dict[str, Any], rid: str) -> bytes:
    return orjson.dumps({"protocol": PROTO, "type": "command", "command": command, "request_id": rid,
                         "payload": payload}) + b"\n"


class SockSub:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""
        self.events: list[dict[str, Any]] = []

    async def next(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            data = await self.stream.receive_some(1 << 20)
            if not data:
                raise EOFError
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        ev = orjson.loads(line)
        self.events.append(ev)
        return ev


class WsSub:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def next(self) -> dict[str, Any]:
        ev = orjson.loads(await self.ws.get_message())
        self.events.append(ev)
        return ev


async def until(sub: Any, pred: Any) -> None:
    while not pred(await sub.next()):
        pass


def start_web(cs: Codeswarm) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(cs.pyz), "web", "--port", "0"], env=cs.env, cwd=cs.tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"http://([\d.]+):(\d+)/\S*token=([^\s&#]+)", line)
    assert m, f"no URL from codeswarm web: {line!r}"
    return proc, line.strip()


def test_100_subscribers_websockets_and_a_slow_consumer(cs: Codeswarm) -> None:
    import trio_websocket

    a = cs.json("launch", "--nodes", "1")["swarm_id"]
    b = cs.json("launch", "--nodes", "1")["swarm_id"]
    warm_a = cs.json("inject", a, "--prompt", "warm", "--wait", "--timeout", "60")["nodes"][0]["injection_id"]
    warm_b = cs.json("inject", b, "--prompt", "warm", "--wait", "--timeout", "60")["nodes"][0]["injection_id"]
    sock_path = str(cs.home / "router.sock")
    web, url = start_web(cs)
    m = re.search(r"http://([\d.]+):(\d+)/\S*token=([^\s&#]+)", url)
    assert m
    host, port, token = m.group(1), int(m.group(2)), m.group(3)

    # The slow consumer: subscribes to everything, then never reads.
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(sock_path)
    slow.sendall(cmd("subscribe", {}, "slow"))
    result: dict[str, Any] = {"warm_a": warm_a}

    async def main() -> None:
        subs: list[Any] = []
        async with trio.open_nursery() as nursery:
            for i in range(N_SOCKET):
                s = SockSub(await trio.open_unix_socket(sock_path))
                await s.stream.send_all(cmd("subscribe", {"swarm_id": a}, f"s{i}"))
                subs.append(s)
            for i in range(N_WS):
                ws = await trio_websocket.connect_websocket(
                    nursery, host, port, f"/ws?token={token}", use_ssl=False,
                    extra_headers=[("Origin", f"http://{host}:{port}")])
                await ws.send_message(cmd("subscribe", {"swarm_id": a}, f"w{i}").decode())
                subs.append(WsSub(ws))
            fast = SockSub(await trio.open_unix_socket(sock_path))
            await fast.stream.send_all(cmd("subscribe", {}, "fast"))
            with trio.fail_after(30):
                for s in [*subs, fast]:
                    await until(s, lambda e: e["event"] == "subscribed")
            # every subscriber reads continuously in its own task, as a real client does
            a_iid: list[str] = []
            flood_iid: list[str] = []

            # Known by swarm, not by the ids the inject CLIs print: a turn can end before its CLI has
            # exited and its id is known here, and a reader would then pass over the one event it waits for.
            def new_turn_done(e: dict[str, Any], swarm: str, warm: str) -> bool:
                return (e["event"] == "turn_complete" and e["data"].get("swarm_id") == swarm
                        and e["data"].get("injection_id") != warm)

            def a_done(e: dict[str, Any]) -> bool:
                return new_turn_done(e, a, warm_a)

            def both_done(e: dict[str, Any]) -> bool:
                return any(a_done(x) for x in fast.events) and any(new_turn_done(x, b, warm_b) for x in fast.events)

            t0 = time.monotonic()
            with trio.fail_after(90):
                async with trio.open_nursery() as readers:
                    for sub in subs:
                        readers.start_soon(until, sub, a_done)
                    readers.start_soon(until, fast, both_done)
                    flood = await trio.run_process(
                        [sys.executable, str(cs.pyz), "inject", b, "--prompt",
                         "[mock:long=131072][mock:commands=170] flood", "--json"], env=cs.env, capture_stdout=True)
                    flood_iid.append(json.loads(flood.stdout)["nodes"][0]["injection_id"])
                    done = await trio.run_process(
                        [sys.executable, str(cs.pyz), "inject", a, "--prompt", "[mock:firehose=300] stream",
                         "--json"], env=cs.env, capture_stdout=True)
                    a_iid.append(json.loads(done.stdout)["nodes"][0]["injection_id"])
            result["seconds"] = time.monotonic() - t0
            ended = {x["data"]["injection_id"] for x in fast.events if x["event"] == "turn_complete"}
            assert set(a_iid) | set(flood_iid) <= ended, "the turns that ended are the two injected ones"
            result["subs"] = [[e["seq"] for e in s.events if not e.get("directed")] for s in subs]
            result["fast"] = fast.events
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        web.kill()
        web.wait()
    end = min(e["seq"] for e in result["fast"] if e["event"] == "turn_complete" and e["data"].get("swarm_id") == a
              and e["seq"] > 0 and not e.get("directed") and e["data"].get("injection_id") != result["warm_a"])
    fast_a = [e["seq"] for e in result["fast"] if e["data"].get("swarm_id") == a and not e.get("directed")
              and e["seq"] <= end]
    assert fast_a, "the fast subscriber saw swarm A"
    for seqs in result["subs"]:
        assert seqs == fast_a, "every socket and WebSocket subscriber got the same complete stream of A"
    # the router is up, answers, and says why it dropped the slow one
    assert cs.run("router", "status").returncode == 0
    log = (cs.home / "router.log").read_text()
    assert "slow consumer" in log, "router.log says why the connection was dropped"
    # The slow consumer reads now: what was in its socket buffer, then EOF (it was dropped).
    slow.settimeout(20)
    raw = b""
    while chunk := slow.recv(1 << 20):
        raw += chunk
    slow.close()
    lines = raw.split(b"\n")[:-1]  # the part after the last LF may be a cut line
    got = [orjson.loads(x) for x in lines]
    notice = [e for e in got if e["event"] == "router_warning" and e["data"].get("error_code") == "slow_consumer"]
    last = max((e["seq"] for e in got if not e.get("directed")), default=0)
    if notice:  # sent when the client read in time; otherwise only router.log has it
        assert notice[0]["data"]["resume_since"] <= last or last == 0
    # resume from the last seq received: no gap to the log
    full = [e["seq"] for e in cs.events()]
    resumed = [e["seq"] for e in cs.events() if e["seq"] > last]
    received = [e["seq"] for e in got if not e.get("directed")]
    assert received + resumed == [s for s in full if s >= (received[0] if received else 1)], "no gap, no duplicate"
    assert len(raw) < 24 << 20, "the slow consumer was cut off, not sent everything"
