"""Start-up order (issue 13): once recovery is done the router answers queries from the recovered
state, while every other command waits until the rest of start-up (adopt, terminations, warnings,
dispatchers, redelivery) is done. In-process RouterServer on a real unix socket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from codeswarm.config import parse_config
from codeswarm.paths import socket_path
from codeswarm.protocol import PROTOCOL
from codeswarm.router.server import RouterServer


def command(name: str, rid: str, payload: dict[str, Any] | None = None) -> bytes:
    return orjson.dumps({"protocol": PROTOCOL, "type": "command", "command": name, "request_id": rid,
                         "payload": payload or {}}) + b"\n"


async def answers(stream: trio.SocketStream, buf: list[bytes], wanted: set[str]) -> dict[str, dict[str, Any]]:
    """Read until every request id in `wanted` has its first answer."""
    got: dict[str, dict[str, Any]] = {}
    while not wanted <= got.keys():
        while b"\n" not in buf[0]:
            data = await stream.receive_some(1 << 16)
            assert data, "the router closed the connection"
            buf[0] += data
        raw, buf[0] = buf[0].split(b"\n", 1)
        ev = orjson.loads(raw)
        rid = (ev.get("data") or {}).get("request_id")
        if rid in wanted and rid not in got:
            got[rid] = ev
    return got


def test_queries_are_answered_during_start_up_and_other_commands_wait(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config({"cluster": {"local": {"workspace_root": str(tmp_path / "runs")}}}, None, base_dir=tmp_path)
    server = RouterServer(config, tmp_path / "h")
    reached, release = trio.Event(), trio.Event()
    real_warnings = server._report_startup_warnings

    async def slow_start_step() -> None:  # a start-up step after the listeners (adopt, warnings, ...) that takes long
        reached.set()
        await release.wait()
        await real_warnings()

    monkeypatch.setattr(server, "_report_startup_warnings", slow_start_step)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.run)
            await reached.wait()
            stream = await trio.open_unix_socket(str(socket_path(tmp_path / "h")))
            buf = [b""]
            await stream.send_all(command("ping", "p") + command("swarm_list", "l")
                                  + command("swarm_status", "s", {"swarm_id": "nope"}) + command("inject", "i", {
                                      "swarm_id": "nope", "content": "x"}))
            with trio.fail_after(10):  # answered from the recovered state, start-up still unfinished
                early = await answers(stream, buf, {"p", "l", "s"})
            assert early["p"]["event"] == "pong" and early["l"]["data"]["swarms"] == {}
            assert early["s"]["data"]["code"] == "unknown_swarm"
            assert not server.handlers.started.is_set()
            with trio.move_on_after(0.3):  # the inject is not answered while start-up is unfinished
                await answers(stream, buf, {"i"})
                pytest.fail("a command other than a query was handled before start-up finished")
            release.set()
            with trio.fail_after(10):
                late = await answers(stream, buf, {"i"})
            assert server.handlers.started.is_set()
            assert late["i"]["event"] == "command_rejected" and late["i"]["data"]["code"] == "unknown_swarm"
            await stream.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
    server.router.log.close()
