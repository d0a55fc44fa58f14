"""Swarm-to-swarm routing through the real .pyz (issue 8).

The mock agent echoes its prompt on lines of their own in its final answer, so a prompt that
contains a directive makes the node "say" that directive.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import Codeswarm


def _named(evs: list[dict[str, Any]], name: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in evs if e["event"] == name and all(e["data"].get(k) == v for k, v in match.items())]


def test_directive_starts_a_turn_in_another_swarm_and_reply_comes_back(cs: Codeswarm) -> None:
    alpha = cs.json("launch", "--nodes", "2", "--alias", "alpha", "--auto-route")["swarm_id"]
    beta = cs.json("launch", "--nodes", "1", "--alias", "beta", "--auto-route")["swarm_id"]
    # node 1 of alpha delegates to beta; beta's answer carries a /reply that goes back to alpha node 1
    cs.json("inject", alpha, "--nodes", "1", "--prompt", "Delegating:\n/swarm[beta]/idle /reply pong from beta")

    def replied(evs: list[dict[str, Any]]) -> bool:
        back = _reply_ids(evs, alpha)
        return any(e["data"]["injection_id"] in back for e in _named(evs, "turn_complete", swarm_id=alpha))

    evs = cs.wait_for(replied, timeout=60)
    sub = _named(evs, "auto_route_submitted", swarm_id=alpha)
    assert len(sub) == 1
    assert sub[0]["data"]["target_swarm_id"] == beta and sub[0]["data"]["selector"] == "idle"
    assert sub[0]["data"]["node_id"] == 1
    item = _named(evs, "inter_swarm_enqueued", target_swarm_id=beta)
    assert len(item) == 1 and item[0]["data"]["source_swarm_id"] == alpha
    beta_turn = _named(evs, "turn_started", swarm_id=beta)
    assert [e["data"]["prompt"] for e in beta_turn] == ["/reply pong from beta"]

    back = _named(evs, "auto_route_submitted", swarm_id=beta)
    assert len(back) == 1
    assert back[0]["data"]["selector"] == "reply" and back[0]["data"]["target_swarm_id"] == alpha
    assert back[0]["data"]["nodes"] == [1]
    alpha_turns = _named(evs, "turn_started", swarm_id=alpha)
    assert [(e["data"]["node_id"], e["data"]["prompt"]) for e in alpha_turns][-1] == (1, "pong from beta")
    assert not _named(evs, "auto_route_ignored")
    # one directive, one route: nothing routed twice and nothing left in the queue
    assert len(_named(evs, "turn_started", swarm_id=beta)) == 1
    assert cs.json("queue") == []


def _reply_ids(evs: list[dict[str, Any]], alpha: str) -> set[str]:
    return {e["data"]["injection_id"] for e in evs if e["event"] == "inject_ack" and e["data"]["swarm_id"] == alpha
            and e["data"]["prompt"] == "pong from beta"}


def test_unknown_alias_is_ignored_with_an_event_and_routing_is_off_by_default(cs: Codeswarm) -> None:
    alpha = cs.json("launch", "--nodes", "1", "--alias", "alpha", "--auto-route")["swarm_id"]
    quiet = cs.json("launch", "--nodes", "1", "--alias", "quiet")["swarm_id"]  # no --auto-route
    cs.json("inject", alpha, "--prompt", "Try:\n/swarm[gamma]/idle hello\n\n/swarm[quiet]/node[3] too far",
            "--wait", "--timeout", "60")
    cs.json("inject", quiet, "--prompt", "Not routed:\n/swarm[alpha]/idle should not arrive", "--wait",
            "--timeout", "60")
    evs = cs.wait_for(lambda evs: len(_named(evs, "auto_route_ignored", swarm_id=alpha)) == 2, timeout=30)
    ignored = sorted((e["data"] for e in _named(evs, "auto_route_ignored", swarm_id=alpha)),
                     key=lambda d: d["target_alias"])
    assert [d["target_alias"] for d in ignored] == ["gamma", "quiet"]
    assert "gamma" in ignored[0]["reason"] and "range" in ignored[1]["reason"]
    assert not _named(evs, "auto_route_submitted")
    assert not [e for e in evs if e["event"].startswith("auto_route_") and e["data"]["swarm_id"] == quiet]
    # nothing reached alpha from the swarm without auto_route
    assert [e["data"]["prompt"] for e in _named(evs, "turn_started", swarm_id=alpha)] == [
        "Try:\n/swarm[gamma]/idle hello\n\n/swarm[quiet]/node[3] too far"]
    assert not _named(evs, "inter_swarm_enqueued")


def test_alias_must_be_unique_among_active_swarms(cs: Codeswarm) -> None:
    cs.json("launch", "--nodes", "1", "--alias", "alpha")
    dup = cs.run("launch", "--nodes", "1", "--alias", "alpha", check=False)
    assert dup.returncode == 3 and "alias" in dup.stderr
