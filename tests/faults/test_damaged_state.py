"""Damaged state files are reported, never skipped in silence (issue 11): damaged lines in the middle of
the event log and a damaged idempotency.json each become a `router_warning` and a line in
`codeswarm router status`; a damaged idempotency file refuses unknown keys instead of forgetting them.
Runs the real dist/codeswarm.pyz."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Codeswarm

DAMAGED = b'{"protocol":"codeswarm.router.v1","type":"ev\x00\xff damaged by the disk\n'


def _warnings(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["data"] for e in evs if e["event"] == "router_warning"]


def _damage_lines(cs: Codeswarm, names: set[str], count: int) -> list[int]:
    """Overwrite `count` logged events named in `names` with garbage; returns their seqs."""
    hit: list[int] = []
    for seg in sorted((cs.home / "events").glob("*.jsonl")):
        lines = seg.read_bytes().splitlines(keepends=True)
        for i, raw in enumerate(lines):
            if len(hit) < count and json.loads(raw)["event"] in names:
                hit.append(json.loads(raw)["seq"])
                lines[i] = DAMAGED
        seg.write_bytes(b"".join(lines))
    assert len(hit) == count
    return hit


def test_damaged_mid_log_lines_are_counted_in_a_warning_and_in_router_status(cs: Codeswarm) -> None:
    sid = cs.run("launch", "--nodes", "1").stdout.strip()
    done = cs.json("inject", sid, "--prompt", "[mock:firehose=50] hello", "--wait", "--timeout", "60")
    assert done["nodes"][0]["outcome"] == "completed"
    cs.run("router", "stop")
    damaged = _damage_lines(cs, {"assistant_delta"}, 3)
    (cs.home / "swarms" / f"{sid}.json").write_bytes(b"garbage")  # recovery now replays the whole log
    evs = cs.wait_for(lambda es: len(_warnings(es)) >= 2)
    found = [w for w in _warnings(evs) if w.get("error_code") == "event_log_damaged_lines"]
    assert len(found) == 1, _warnings(evs)
    assert found[0]["count"] == 3 and "skipped 3 damaged lines" in found[0]["message"]
    served = {e["seq"] for e in cs.events()}
    assert served.isdisjoint(damaged) and min(damaged) - 1 in served  # the lines around them are served
    status = cs.run("router", "status")
    assert status.returncode == 0
    assert "skipped 3 damaged lines" in status.stdout and "snapshot ignored" in status.stdout, status.stdout
    again = cs.json("inject", sid, "--prompt", "after", "--wait", "--timeout", "60")  # the swarm still works
    assert again["nodes"][0]["outcome"] == "completed"
    cs.run("router", "stop")  # a clean start clears the report
    cs.run("router", "start")
    assert "warning" not in cs.run("router", "status").stdout


def test_a_damaged_idempotency_file_refuses_unknown_keys_and_says_so(cs: Codeswarm) -> None:
    sid = cs.run("launch", "--nodes", "1").stdout.strip()
    cs.json("inject", sid, "--prompt", "nightly", "--idempotency-key", "cron-1", "--wait", "--timeout", "60")
    cs.run("router", "stop")
    (cs.home / "idempotency.json").write_bytes(b'{"cron-1": {"command": "inj\x00')  # the key is lost
    # the cron job retries: the router cannot know whether cron-1 ran, so it runs nothing
    retry = cs.run("inject", sid, "--prompt", "nightly", "--idempotency-key", "cron-1", check=False)
    assert retry.returncode == 3 and "idempotency_unknown" in retry.stderr, (retry.stdout, retry.stderr)
    acks = [e for e in cs.events("--swarm", sid) if e["event"] == "inject_ack" and e["data"].get("prompt") == "nightly"]
    assert len(acks) == 1, "the retry must not run the prompt a second time"
    warnings = [w for w in _warnings(cs.events()) if w.get("error_code") == "idempotency_file_corrupt"]
    assert len(warnings) == 1 and "idempotency.json" in warnings[0]["message"]
    asides = list(cs.home.glob("idempotency.json.*.corrupt"))
    assert len(asides) == 1 and asides[0].read_bytes().startswith(b'{"cron-1"')
    status = cs.run("router", "status").stdout
    assert "idempotency_file_corrupt" in status and asides[0].name in status, status
    # commands without a key are not affected
    assert cs.json("inject", sid, "--prompt", "no key", "--wait", "--timeout", "60")["nodes"][0]["outcome"] == "completed"
    # the operator checked what ran and clears it: new keys work again
    cs.run("router", "stop")
    asides[0].unlink()
    fresh = cs.json("inject", sid, "--prompt", "nightly 2", "--idempotency-key", "cron-2", "--wait", "--timeout", "60")
    assert fresh["nodes"][0]["outcome"] == "completed"
    assert "warning" not in cs.run("router", "status").stdout
