"""`codeswarm queue`: the queued prompts of every swarm (queue_list, PROTOCOL.md 5.6)."""

from __future__ import annotations

import time

import click

from codeswarm.commands.common import config_option, connect, expect, handle_errors, json_option, print_json
from codeswarm.commands.list import _age


@click.command(help="Show the queued prompts (oldest first); --json prints the items as a JSON array. "
                    "--cancel QUEUE_ID removes one item before it is dispatched.")
@click.option("--swarm", "swarm_id", default=None, help="Only items aimed at this swarm.")
@click.option("--cancel", "cancel_id", default=None, metavar="QUEUE_ID",
              help="Cancel this queued item (exit 3 if it is no longer queued).")
@config_option
@json_option
@handle_errors
def command(swarm_id: str | None, cancel_id: str | None, config_path: str | None, state_dir: str | None,
            no_autostart: bool, as_json: bool) -> None:
    if cancel_id is not None:
        with connect(config_path, state_dir, no_autostart, timeout=30) as client:
            data = expect(client.request("queue_cancel", {"queue_id": cancel_id}), "queue_cancelled")
        if as_json:
            print_json(data)
        else:
            click.echo(f"cancelled {data.get('queue_id')} (was for swarm {data.get('target_swarm_id')})")
        return
    with connect(config_path, state_dir, no_autostart, timeout=30) as client:
        data = expect(client.request("queue_list"), "queue_list")
    items = [i for i in data.get("items") or [] if swarm_id is None or i.get("target_swarm_id") == swarm_id]
    if as_json:
        print_json(items)
        return
    if not items:
        click.echo("queue is empty")
        return
    click.echo(f"{'QUEUE_ID':36}  {'TARGET':36}  {'SELECTOR':8}  {'NODES':9}  {'AGE':>5}  PROMPT")
    now = time.time()
    for i in items:
        nodes = i.get("nodes")
        shown = "-" if nodes is None else ",".join(str(n) for n in nodes) if isinstance(nodes, list) else str(nodes)
        text = " ".join(str(i.get("content") or "").split())
        text = text if len(text) <= 60 else text[:57] + "..."
        created = _epoch(i.get("created_at"))
        age = _age(max(0.0, now - created)) if created is not None else "?"
        click.echo(f"{str(i.get('queue_id')):36}  {str(i.get('target_swarm_id')):36}  {str(i.get('selector')):8}  "
                   f"{shown:9}  {age:>5}  {text}")
        blocked = i.get("blocked")
        if isinstance(blocked, dict):  # inter_swarm_blocked: back at the head until the node's next transition
            click.echo(f"{'':38}blocked on node {blocked.get('node_id')}: {blocked.get('reason')}")


def _epoch(value: object) -> float | None:
    """created_at as epoch seconds, whether the router sent a number or an ISO-8601 string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        import datetime as dt

        try:
            return dt.datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None
