"""`codeswarm inject`: send a prompt to nodes; with --wait, until every target finished its turn."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from codeswarm.commands.common import (
    EXIT_PARTIAL,
    EXIT_TIMEOUT,
    Rejected,
    config_option,
    connect,
    expect,
    handle_errors,
    json_option,
    print_json,
    prompt_options,
    read_prompt,
    rejected_message,
)

# The events --wait needs; the deltas of a busy swarm would only slow this client down.
OUTCOME_EVENTS = ["inject_ack", "inject_delivered", "inject_failed", "agent_error", "turn_started", "turn_complete",
                  "command_rejected"]


@click.command(help="Send a prompt to all or some nodes of a swarm.")
@click.argument("swarm_id")
@prompt_options
@click.option("--nodes", "selector", default="all", show_default=True, help='Nodes: all, 3, "0,2-4" or [0,2].')
@click.option("--wait", is_flag=True, help="Wait until every target node finished its turn.")
@click.option("--timeout", type=float, default=None,
              help="Seconds to wait; when exceeded, print what each node reached and exit 4 (5 if a node failed).")
@click.option("--idempotency-key", default=None,
              help="Retry-safe: the same key with the same prompt injects once and reports that injection.")
@config_option
@json_option
@handle_errors
def command(swarm_id: str, prompt: str | None, prompt_file: str | None, selector: str, wait: bool,
            timeout: float | None, idempotency_key: str | None, config_path: str | None, state_dir: str | None,
            no_autostart: bool, as_json: bool) -> None:
    prompt = read_prompt(prompt, prompt_file)
    nodes: Any = selector
    stripped = selector.strip()
    if stripped.isascii() and stripped.isdigit():  # "²".isdigit() is True too; int() would raise
        nodes = int(stripped)
    if not prompt:
        raise click.BadParameter("must not be empty", param_hint="--prompt")
    deadline = time.monotonic() + (timeout if timeout is not None else (3600 * 24 if wait else 60))
    with connect(config_path, state_dir, no_autostart) as client:
        # Subscribe to the swarm first so that no turn event of ours can slip by.
        expect(client.request("subscribe", {"swarm_id": swarm_id, "events": OUTCOME_EVENTS}), "subscribed")
        status = expect(client.request("swarm_status", {"swarm_id": swarm_id}), "swarm_status")
        from codeswarm.errors import SelectorError
        from codeswarm.protocol import parse_node_selector

        try:
            targets = parse_node_selector(nodes, int(status["node_count"]))
        except SelectorError as exc:
            raise Rejected(f"rejected: {exc.message} ({exc.code})") from None
        payload: dict[str, Any] = {"swarm_id": swarm_id, "nodes": nodes, "content": prompt}
        if idempotency_key:
            payload["idempotency_key"] = idempotency_key
        rid = client.send("inject", payload)
        rid, result, timed_out = _follow(client, swarm_id, rid, set(targets), wait, deadline)
    nodes_out = sorted(result.values(), key=lambda n: n["node_id"])
    for node_id in sorted(set(targets) - {n["node_id"] for n in nodes_out}):  # never acked before the timeout
        nodes_out.append({"node_id": node_id, "injection_id": None, "outcome": "not_acked"})
    nodes_out.sort(key=lambda n: n["node_id"])
    failed = [n for n in nodes_out if n["outcome"] == "failed"]
    if as_json:
        body: dict[str, Any] = {"swarm_id": swarm_id, "request_id": rid, "nodes": nodes_out}
        if timed_out:
            body["timed_out"] = True
        print_json(body)
    else:
        for n in nodes_out:
            extra = f" ({n['reason']})" if n.get("reason") else ""
            click.echo(f"node {n['node_id']}: {n['outcome']}{extra}  {n['injection_id'] or ''}".rstrip())
        if timed_out:
            click.echo(f"Error: timed out before every node finished ({len(failed)} failed)", err=True)
    # Documented exit codes (README): 5 when a node failed, else 4 when the wait timed out.
    if failed:
        sys.exit(EXIT_PARTIAL)
    if timed_out:
        sys.exit(EXIT_TIMEOUT)


def is_connection_rejection(env: dict[str, Any]) -> bool:
    from codeswarm.client import is_connection_rejection as check

    return check(env)


def _follow(client: Any, swarm_id: str, rid: str, targets: set[int], wait: bool,
            deadline: float) -> tuple[str, dict[str, dict[str, Any]], bool]:
    """Follow the outcome events of request `rid`; the bool is True when the deadline passed first
    (with at least one node acked: a router that never answered stays a TimeoutError)."""
    by_id: dict[str, dict[str, Any]] = {}
    followed = [rid]  # the request followed: the original one after command_deduplicated
    try:
        _follow_events(client, swarm_id, followed, targets, wait, deadline, by_id)
    except TimeoutError:
        if not by_id:
            raise
        return followed[0], by_id, True
    return followed[0], by_id, False


def _follow_events(client: Any, swarm_id: str, followed: list[str], targets: set[int], wait: bool,
                   deadline: float, by_id: dict[str, dict[str, Any]]) -> None:
    rid = followed[0]
    done: set[str] = set()
    seen: set[int] = set()
    for env in client.events(deadline):
        name, data = env.get("event"), env.get("data") or {}
        if not env.get("directed"):
            if env.get("seq") in seen:  # a replay after re-subscribing may repeat live events
                continue
            seen.add(env.get("seq"))
        if name == "command_deduplicated" and data.get("request_id") == rid:
            # an earlier attempt already ran: follow that one, from its first event
            rid = followed[0] = data["original_request_id"]
            since = max(0, (data.get("first_seq") or 1) - 1) if data.get("first_seq") else None
            sub: dict[str, Any] = {"swarm_id": swarm_id, "events": OUTCOME_EVENTS}
            if since is not None:
                sub["since"] = since
            client.send("subscribe", sub)
            continue
        if name == "command_rejected" and (data.get("request_id") == rid or is_connection_rejection(env)):
            raise Rejected(rejected_message(env))
        iid = data.get("injection_id")
        if name == "inject_ack" and data.get("request_id") == rid:
            by_id[iid] = {"node_id": data["node_id"], "injection_id": iid, "outcome": "acked"}
        rec = by_id.get(iid) if isinstance(iid, str) else None
        if rec is None:
            continue
        if name == "inject_delivered":
            rec["outcome"] = "delivered"
            if not wait:
                done.add(iid)
        elif name == "turn_started" and wait and rec["outcome"] in ("acked", "delivered"):
            rec["outcome"] = "started"
        elif name == "inject_failed":
            rec.update(outcome="failed", reason=data.get("reason"), error=data.get("error"))
            done.add(iid)
        elif name == "agent_error":
            rec["error"] = data.get("message")
        elif name == "turn_complete":
            status = data.get("status") or "completed"
            rec["outcome"] = "completed" if status == "completed" and not data.get("aborted") else "failed"
            if rec["outcome"] == "failed":
                rec["reason"] = "aborted" if data.get("aborted") else status
            done.add(iid)
        if len(by_id) == len(targets) and done >= set(by_id):
            return
