"""`codeswarm events`: the event log, as NDJSON (--json) or a readable per-node transcript."""

from __future__ import annotations

import sys
from typing import Any

import click

from codeswarm.commands.common import config_option, connect, expect, handle_errors, json_option


@click.command(help="Print logged events after --since; --follow keeps streaming live events.")
@click.option("--swarm", "swarm_id", default=None, help="Only events of this swarm.")
@click.option("--since", type=click.IntRange(min=0), default=0, show_default=True, help="Replay events with seq > SINCE.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing live events.")
@config_option
@json_option
@handle_errors
def command(swarm_id: str | None, since: int, follow: bool, config_path: str | None, state_dir: str | None,
            no_autostart: bool, as_json: bool) -> None:
    payload: dict[str, Any] = {"since": since}
    if swarm_id:
        payload["swarm_id"] = swarm_id
    out = sys.stdout
    with connect(config_path, state_dir, no_autostart) as client:
        rid = client.send("subscribe", payload)
        # Live events queued before the subscribe took effect may arrive ahead of the replay (and again
        # inside it): hold everything until `subscribed`, then print it once, in seq order.
        held: dict[int, dict[str, Any]] = {}
        last: int | None = None
        for env in client.events():
            data = env.get("data") or {}
            if env.get("event") == "command_rejected" and data.get("request_id") == rid:
                expect(env, "subscribed")  # a logged (not directed) event: it must not wait in `held`
            if env.get("directed"):
                if data.get("request_id") == rid:
                    expect(env, "subscribed")
                    last = since
                    for seq in sorted(held):
                        if seq > last:
                            _print(out, held[seq], as_json)
                            last = seq
                    held.clear()
                    last = max(last, int(data.get("head_seq") or 0))
                    if not follow:
                        break
                    out.flush()
                continue
            seq = env.get("seq") or 0
            if last is None:
                held[seq] = env
                continue
            if seq <= last:
                continue
            last = seq
            _print(out, env, as_json)
            if follow:
                out.flush()
    out.flush()


def _print(out: Any, env: dict[str, Any], as_json: bool) -> None:
    if as_json:
        import orjson

        out.write(orjson.dumps(env).decode() + "\n")
    else:
        text = render(env)
        if text is not None:
            out.write(text + "\n")


def render(env: dict[str, Any]) -> str | None:
    """One readable line per event; streaming deltas are shown as they come."""
    name, d = env.get("event"), env.get("data") or {}
    seq = env.get("seq")
    sid = str(d.get("swarm_id") or d.get("target_swarm_id") or "")[:8]
    where = f"{sid}" + (f"/n{d['node_id']}" if isinstance(d.get("node_id"), int) else "")
    if name in ("assistant_delta", "reasoning_delta"):
        return None  # the complete `assistant` / `reasoning` line follows
    if name == "assistant":
        body = d.get("content", "")
    elif name == "reasoning":
        body = "(thinking) " + str(d.get("content", ""))
    elif name == "command_started":
        body = f"$ {_cmd(d.get('command'))}"
    elif name == "command_completed":
        out = (d.get("stdout") or "").rstrip()
        body = f"exit {d.get('exit_code')}" + (f": {out[:200]}" if out else "")
    elif name == "turn_started":
        body = f"turn started: {str(d.get('prompt') or '')[:80]}"
    elif name == "turn_complete":
        body = f"turn complete ({d.get('status', 'completed')}{', aborted' if d.get('aborted') else ''})"
        if isinstance(d.get("turn_cost_usd"), (int, float)):
            body += f"  cost ${d['turn_cost_usd']:.4f}" + ("+?" if d.get("turn_cost_unknown") else "")
    elif name == "turn_cost_updated":
        body = (f"turn cost updated (usage after the turn completed)  cost ${d.get('turn_cost_usd') or 0:.4f}"
                + ("+?" if d.get("turn_cost_unknown") else ""))
    elif name == "usage":
        body = f"tokens {d.get('total_tokens')} (last {d.get('last_total_tokens')})"
        if d.get("cost_unknown"):
            body += f"  cost unknown ({d.get('pricing_model') or 'no model'} has no price)"
        elif isinstance(d.get("estimated_cost_usd"), (int, float)):
            body += f"  +${d['estimated_cost_usd']:.4f} (node ${d.get('node_spend_usd') or 0:.4f})"
    elif name in ("budget_warning", "budget_exceeded"):
        body = (f"{name}: spent ${d.get('spend_usd', 0):.4f} of ${d.get('budget_usd', 0):.2f} "
                f"({d.get('scope', 'swarm')} budget{_of_project(d)})")
    elif name == "budget_updated":
        budget = d.get("budget_usd")
        body = ("budget removed" if budget is None else f"budget set to ${budget:.2f}") + _of_project(d)
    elif name in ("inject_ack", "inject_delivered", "inject_failed"):
        body = name + (f": {d.get('reason')}" if d.get("reason") else "")
    elif name == "agent_error":
        body = f"error: {d.get('message')}"
    elif name == "exec_approval_required":
        body = f"approval needed for call {d.get('call_id')}: {_cmd(d.get('command'))}"
    elif name == "command_rejected":
        body = f"rejected {d.get('command')}: {d.get('reason')}"
    elif name in ("swarm_launched", "swarm_status", "swarm_terminated", "swarm_removed", "node_status"):
        body = f"{name} {d.get('state') or d.get('worker') or d.get('reason') or ''}".rstrip()
    else:
        body = name
    return f"{seq:>7} {where:12} {body}"


def _of_project(d: dict[str, Any]) -> str:
    return f" of project {d['project_id']}" if d.get("scope") == "project" and d.get("project_id") else ""


def _cmd(c: Any) -> str:
    if isinstance(c, list):
        return " ".join(str(x) for x in c)
    return str(c)
