"""A crashing background loop (ticker, poller) is reported to clients, not logged and forgotten.

In-process RouterServer on a temporary state dir, trio's MockClock (autojump) for the loops'
sleeps. The fault is injected where a bug would sit: the core's decision for a tick, and a
provider whose poll raises something that is not a ProviderError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from codeswarm.config import parse_config
from codeswarm.core.evidence import JobObservation
from codeswarm.core.kernel import Decision
from codeswarm.core.lifecycle import Launch
from codeswarm.core.ticks import Tick
from codeswarm.router.providers.base import ClusterProvider, JobHandle, LaunchSpec
from codeswarm.router.server import LOOP_REPORT_EVERY, RouterServer


def make_server(tmp_path: Path) -> RouterServer:
    config = parse_config({"cluster": {"local": {"workspace_root": str(tmp_path / "runs")}}}, None,
                          base_dir=tmp_path)
    return RouterServer(config, tmp_path / "home")


def logged(server: RouterServer) -> list[tuple[str, dict[str, Any]]]:
    server.router.log.fsync()
    out = []
    for _seq, raw in server.router.log.read_since(0):
        obj = orjson.loads(raw)
        out.append((obj["event"], obj["data"]))
    return out


async def run_for(server: RouterServer, seconds: float, *loops: Any) -> None:
    r = server.router
    async with trio.open_nursery() as nursery:
        r.nursery = nursery
        nursery.start_soon(r.committer)
        # Stop the loops before the final commit: the commit waits on a real thread (fsync), and
        # meanwhile the autojumping clock would let the loops run more rounds than `seconds` allow.
        async with trio.open_nursery() as loops_nursery:
            for loop in loops:
                loops_nursery.start_soon(*loop)
            await trio.sleep(seconds)
            loops_nursery.cancel_scope.cancel()
        await r.commit()
        nursery.cancel_scope.cancel()


def test_a_failing_ticker_is_reported_then_its_recovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = make_server(tmp_path)
    r = server.router
    real_decide = r.decide
    failing = {"rounds": 3}

    def decide(inp: Any) -> Decision:
        if isinstance(inp, Tick) and failing["rounds"] > 0:
            failing["rounds"] -= 1
            raise RuntimeError("a bug in a decider")
        return real_decide(inp)

    monkeypatch.setattr(r, "decide", decide)
    trio.run(run_for, server, 10.5, (server._ticker,), clock=trio.testing.MockClock(autojump_threshold=0))
    warnings = [d for n, d in logged(server) if n == "router_warning"]
    assert [w["error_code"] for w in warnings] == ["background_loop_failed", "background_loop_recovered"]
    assert warnings[0]["loop"] == "ticker" and "a bug in a decider" in warnings[0]["message"]
    assert "after 3 failures" in warnings[1]["message"]


def test_a_ticker_failing_every_round_is_reported_at_a_bounded_rate(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    server = make_server(tmp_path)

    def decide(inp: Any) -> Decision:
        raise RuntimeError("always")

    monkeypatch.setattr(server.router, "decide", decide)
    rounds = 2 * LOOP_REPORT_EVERY + 5
    trio.run(run_for, server, rounds + 0.5, (server._ticker,), clock=trio.testing.MockClock(autojump_threshold=0))
    warnings = [d for n, d in logged(server) if n == "router_warning"]
    assert [w["failures"] for w in warnings] == [1, LOOP_REPORT_EVERY, 2 * LOOP_REPORT_EVERY]


class BrokenProvider(ClusterProvider):
    backend = "local"

    async def submit(self, spec: LaunchSpec) -> JobHandle:
        raise AssertionError("not used")

    async def poll(self, jobs: list[JobHandle]) -> dict[str, JobObservation]:
        raise KeyError("a provider bug, not a scheduler answer")

    async def cancel(self, job: JobHandle) -> None:
        raise AssertionError("not used")


def test_a_poller_crash_is_reported_to_clients(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    r = server.router
    job = {"job_id": "local-x", "swarm_root": str(tmp_path / "runs" / "x"), "backend": "local", "profile": None,
           "extra": {}}
    r.decide(Launch("req", "s1", job, 1, "local", "local-mock", {"worker_mode": "mock"}, ""))
    trio.run(run_for, server, 2 * r.settings.status_poll_interval_seconds + 1, (server._poller, "local",
                                                                             BrokenProvider()),
             clock=trio.testing.MockClock(autojump_threshold=0))
    [warning] = [d for n, d in logged(server) if n == "router_warning"]
    assert warning["error_code"] == "background_loop_failed" and warning["loop"] == "local poller"
    assert "a provider bug" in warning["message"]
